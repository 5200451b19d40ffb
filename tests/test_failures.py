import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonlib.core import failures, tasks
from reasonlib.core.failures import classify


def test_class_lists():
    assert failures.ALL == ("correct",) + failures.CLASSES
    assert len(set(failures.ALL)) == 7


@pytest.mark.parametrize("a, b, pred", [(12, 3, 15), (0, 0, 0), (47, 85, 132), (9999, 1, 10000)])
def test_correct(a, b, pred):
    assert classify(a, b, pred) == "correct"


def test_format():
    assert classify(12, 3, None) == "format"
    assert classify(12, 3, tasks.parse_answer("1x", "plain")) == "format"
    assert classify(0, 0, None) == "format"  # even when a bare digit would have been right


@pytest.mark.parametrize("a, b, pred", [
    (12, 3, 123), (12, 3, 312),     # a then b, b then a
    (3, 12, 312), (3, 12, 123),     # both orders count for 3+12 as well
    (10, 5, 105),                   # also one digit inserted into 15: operand_dup wins
])
def test_operand_dup(a, b, pred):
    assert classify(a, b, pred) == "operand_dup"


@pytest.mark.parametrize("a, b, pred", [
    (47, 85, 122),    # 132: carry into the tens dropped (also fits digit_sub: carry wins)
    (95, 17, 12),     # 112: carry into the hundreds dropped (also fits digit_count)
    (12, 3, 25),      # 15 -> 25: a spurious carry (pred > sum)
    (12, 3, 115),     # 15 -> 115: spurious carry into the hundreds
    (999, 1, 900),    # 1000: |900 - 1000| = 100 and 999+1 carries into the hundreds
])
def test_carry(a, b, pred):
    assert classify(a, b, pred) == "carry"


def test_carry_needs_a_carry_when_pred_is_below_the_sum():
    # 12+3 -> 5: 10 below the sum, but 2+3 does not carry into the tens -> not a carry error
    assert classify(12, 3, 5) == "digit_count"
    # 12+3 -> 14 differs by 1 = 10^0: k = 0 never counts as a carry
    assert classify(12, 3, 14) == "digit_sub"
    # 41+21 -> 52: 10 below, no carry anywhere -> one digit substituted
    assert classify(41, 21, 52) == "digit_sub"


@pytest.mark.parametrize("a, b, pred", [
    (12, 3, 155),    # a digit inserted
    (12, 3, 1),      # a digit removed (1 = 15 - 14: not a power of ten)
    (12, 3, 5),      # a digit removed (10 below the sum but no carry, see above)
    (47, 85, 1322),  # inserted at the end
])
def test_digit_count(a, b, pred):
    assert classify(a, b, pred) == "digit_count"


@pytest.mark.parametrize("a, b, pred", [(12, 3, 18), (12, 3, 95), (47, 85, 172), (47, 85, 139)])
def test_digit_sub(a, b, pred):
    assert classify(a, b, pred) == "digit_sub"


@pytest.mark.parametrize("a, b, pred", [(12, 3, 40), (12, 3, 51), (47, 85, 0), (12, 3, 1555),
                                        (47, 85, 213)])
def test_other(a, b, pred):
    assert classify(a, b, pred) == "other"


def _docstring_examples():
    rows = []
    for line in failures.__doc__.splitlines():
        m = re.match(r"^(\w+)\s{2,}.*\s(\d+)\+(\d+) -> (\S+)\s*$", line)
        if m:
            rows.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)))
    return rows


def test_docstring_table_examples_hold():
    rows = _docstring_examples()
    assert [r[0] for r in rows] == list(failures.ALL)  # one example per class, in order
    for klass, a, b, pred in rows:
        value = tasks.parse_answer(pred.strip("'"), "plain")
        assert classify(a, b, value) == klass, (klass, a, b, pred)


def test_docstring_examples_listed_explicitly():
    assert classify(12, 3, 15) == "correct"
    assert classify(12, 3, tasks.parse_answer("1x", "plain")) == "format"
    assert classify(12, 3, 123) == "operand_dup"
    assert classify(47, 85, 122) == "carry"
    assert classify(12, 3, 155) == "digit_count"
    assert classify(12, 3, 18) == "digit_sub"
    assert classify(12, 3, 40) == "other"


def _rule_holds(klass, a, b, pred):
    """The rule of ``klass`` from the module docstring, written out independently."""
    s = a + b
    if klass == "operand_dup":
        return str(pred) in (f"{a}{b}".lstrip("0") or "0", f"{b}{a}".lstrip("0") or "0")
    if klass == "carry":
        d = abs(pred - s)
        k = len(str(d)) - 1
        return k >= 1 and d == 10 ** k and (
            (a % 10 ** k + b % 10 ** k) >= 10 ** k or pred > s)
    ps, ss = str(pred), str(s)
    if klass == "digit_count":
        if abs(len(ps) - len(ss)) != 1:
            return False
        lo, hi = sorted((ps, ss), key=len)
        return any(hi[:i] + hi[i + 1:] == lo for i in range(len(hi)))
    if klass == "digit_sub":
        return len(ps) == len(ss) and sum(x != y for x, y in zip(ps, ss)) == 1
    raise AssertionError(klass)


_ORDER = ("operand_dup", "carry", "digit_count", "digit_sub")
operand = st.integers(0, 10 ** 4 - 1)


def _check(a, b, pred):
    c = classify(a, b, pred)
    assert c in failures.ALL
    assert (c == "correct") == (pred is not None and pred == a + b)
    assert (c == "format") == (pred is None)
    if c in ("correct", "format"):
        return
    # the class's rule holds and no earlier rule does; "other": no rule holds
    upto = _ORDER.index(c) if c in _ORDER else len(_ORDER)
    for earlier in _ORDER[:upto]:
        assert not _rule_holds(earlier, a, b, pred), (a, b, pred, c, earlier)
    if c != "other":
        assert _rule_holds(c, a, b, pred), (a, b, pred, c)


@given(a=operand, b=operand, pred=st.one_of(st.none(), st.integers(0, 10 ** 6 - 1)))
def test_classify_property_any_prediction(a, b, pred):
    _check(a, b, pred)


@given(a=operand, b=operand, k=st.integers(0, 5), sign=st.sampled_from([-1, 1]),
       kind=st.sampled_from(["pow10", "dup", "edit"]), pos=st.integers(0, 6),
       digit=st.integers(0, 9))
def test_classify_property_near_misses(a, b, k, sign, kind, pos, digit):
    """Predictions built to sit near the rule boundaries (random ones are mostly "other")."""
    s = a + b
    ss = str(s)
    if kind == "pow10":
        pred = s + sign * 10 ** k
    elif kind == "dup":
        pred = int(f"{a}{b}" if sign > 0 else f"{b}{a}")
    else:  # one digit inserted, removed or replaced
        i = pos % (len(ss) + 1)
        d = str(digit)
        t = [ss[:i] + d + ss[i:], ss[:i] + ss[i + 1:], ss[:i] + d + ss[i + 1:]][k % 3]
        pred = int(t) if t else None
    if pred is not None and pred < 0:
        pred = None
    _check(a, b, pred)


def test_study_error_flags_count_each_problem_once_where_the_error_can_occur():
    recs = [{"a": 12, "b": 3, "bucket": "mixed", "class": "digit_sub"},
            {"a": 12, "b": 3, "bucket": "low_sum", "class": "digit_sub"},   # the same problem
            {"a": 47, "b": 85, "bucket": "general", "class": "digit_sub"},  # equal lengths
            {"a": 5, "b": 803, "bucket": "mixed3", "class": "correct"},
            {"a": 9, "b": 120, "bucket": "general", "class": "operand_dup"},
            {"a": 1, "b": 30, "bucket": "d2_carry", "class": "digit_sub"}]  # not a study bucket
    flags = failures.study_error_flags(recs, ("mixed", "low_sum", "mixed3", "general"))
    assert sorted(flags) == [False, True, True]

"""A taxonomy of wrong answers (a pure function), for the failure analysis in 07.

Classes, checked in this order (the first that fits wins):

==================  ===========================================================  ==============
class               rule (pred = parsed answer, sum = a + b)                      example
==================  ===========================================================  ==============
correct             pred == sum                                                   12+3 -> 15
format              the answer does not parse (or never ended)                    12+3 -> '1x'
operand_dup         pred is the two operands written side by side (either order)  12+3 -> 123
carry               |pred - sum| is 10^k (k >= 1) and the sum carries into        47+85 -> 122
                    column k (a dropped or spurious carry)
digit_count         pred has one digit more or fewer than sum and equals sum      12+3 -> 155
                    with one digit inserted or removed
digit_sub           same number of digits as sum, exactly one digit differs       12+3 -> 18
other               anything else                                                 12+3 -> 40
==================  ===========================================================  ==============
"""
from __future__ import annotations

CLASSES = ("format", "operand_dup", "carry", "digit_count", "digit_sub", "other")
ALL = ("correct",) + CLASSES


def _carry_into(a: int, b: int, k: int) -> bool:
    """True when adding a and b carries into column k (k >= 1)."""
    return (a % 10 ** k + b % 10 ** k) >= 10 ** k


def _one_edit_length(s: str, t: str) -> bool:
    """s and t differ by inserting or deleting exactly one character."""
    if abs(len(s) - len(t)) != 1:
        return False
    short, long_ = (s, t) if len(s) < len(t) else (t, s)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def classify(a: int, b: int, pred: int | None) -> str:
    """The class of answer ``pred`` (None = did not parse) to ``a + b``."""
    a, b = int(a), int(b)
    s = a + b
    if pred is None:
        return "format"
    pred = int(pred)
    if pred == s:
        return "correct"
    if pred in (int(f"{a}{b}"), int(f"{b}{a}")):
        return "operand_dup"
    diff = abs(pred - s)
    k = len(str(diff)) - 1
    if diff == 10 ** k and k >= 1 and (_carry_into(a, b, k) or pred > s):
        return "carry"
    ps, ss = str(pred), str(s)
    if _one_edit_length(ps, ss):
        return "digit_count"
    if len(ps) == len(ss) and sum(x != y for x, y in zip(ps, ss)) == 1:
        return "digit_sub"
    return "other"


STUDY_CLASSES = ("digit_sub", "operand_dup")   # the study's 12+3 -> 18 and 12+3 -> 123


def study_error_flags(records, buckets) -> list[bool]:
    """One flag per distinct problem of ``buckets`` whose operands differ in length (where a
    12+3-style error can occur): whether its answer was one (:data:`STUDY_CLASSES`). A problem
    in two buckets (``low_sum`` lies inside ``mixed``) counts once. ``records``: dicts with
    ``a``, ``b``, ``bucket`` and ``class``, of one checkpoint."""
    flags: dict[tuple[int, int], bool] = {}
    for r in records:
        a, b = int(r["a"]), int(r["b"])
        if r["bucket"] in buckets and len(str(a)) != len(str(b)):
            flags.setdefault((a, b), r["class"] in STUDY_CLASSES)
    return list(flags.values())

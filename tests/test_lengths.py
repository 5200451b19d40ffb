"""The length study's problems: exact operand lengths, the train/test rule, fixed order."""
import numpy as np
import pytest

from reasonlib.study import lengths
from reasonlib.core import tasks


def _digits(x):
    return np.array([len(str(int(v))) for v in x])


@pytest.mark.parametrize("D", [2, 3])
def test_every_length_has_exactly_n_digit_operands(D):
    for n in lengths.lengths_for(D):
        a, b, seen = lengths.problems(n, D, 300, 1234)
        assert len(a) == (100 if n == 1 else 300 if n > 2 or D > 2 else len(a))
        assert (_digits(a) == n).all() and (_digits(b) == n).all(), n
        assert len(set(zip(a.tolist(), b.tolist()))) == len(a), "problems are distinct"
        assert seen == (n == 1)


@pytest.mark.parametrize("D", [2, 3])
def test_inside_the_trained_range_only_never_trained_problems(D):
    excl = tasks.train_exclusions(D, 1234)
    val = tasks.validation_keys(D, 1234)
    for n in range(2, D + 1):
        a, b, _ = lengths.problems(n, D, 500, 1234)
        keys = tasks.problem_key(a, b)
        assert tasks.in_sorted(keys, excl).all(), n
        assert not tasks.in_sorted(keys, val).any(), f"{n}: scored on validation problems"


def test_no_training_bucket_reaches_past_max_digits():
    for D in (1, 2, 3, 4):   # the d2_* stages train 2-digit operands even at D = 1
        assert lengths.longest_trained(D) == max(D, 2)
    assert lengths.lengths_for(3) == list(range(1, 10))   # up to 3D
    assert lengths.lengths_for(1) == [1, 2, 3, 4]          # at least D + 3


def test_fixed_order_and_nested():
    a1, b1, _ = lengths.problems(5, 3, 50, 7)
    a2, b2, _ = lengths.problems(5, 3, 50, 7)
    assert (a1 == a2).all() and (b1 == b2).all()
    a3, _, _ = lengths.problems(5, 3, 50, 8)
    assert not (a1 == a3).all()


def test_longest_test_problem_fits_the_context():
    for fmt in tasks.FORMATS:
        a, b, _ = lengths.problems(9, 3, 20, 1234)
        toks, _ = tasks.render_examples(a, b, fmt)
        assert toks.shape[1] <= tasks.block_size_for(3, fmt)
        p, _ = tasks.render_prompts(a, b)
        assert p.shape[1] + tasks.answer_budget(a, b, 3, fmt) <= tasks.block_size_for(3, fmt)


def test_bad_length_is_refused():
    with pytest.raises(ValueError, match="operand length must be in 1..9"):
        lengths.problems(10, 3, 10, 1234)
    with pytest.raises(ValueError, match="1..9"):
        lengths.problems(0, 3, 10, 1234)

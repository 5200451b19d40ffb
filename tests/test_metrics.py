import math
from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest

from reasonlib.core import metrics, tasks


def brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Share of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            got = float(metrics.pass_at_k(n, c, k))
            assert got == pytest.approx(float(brute_pass_at_k(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_vectorized():
    c = np.array([[0, 1], [3, 8]])
    got = metrics.pass_at_k(8, c, 2)
    assert got.shape == (2, 2)
    want = [[float(brute_pass_at_k(8, int(x), 2)) for x in row] for row in c]
    np.testing.assert_allclose(got, want, atol=1e-12)
    # per-problem n as an array
    got = metrics.pass_at_k(np.array([4, 6]), np.array([1, 1]), 2)
    np.testing.assert_allclose(got, [0.5, 1 / 3], atol=1e-12)


@pytest.mark.parametrize("n,k", [(1, 1), (5, 1), (5, 3), (16, 16), (100, 7)])
def test_pass_at_k_edges(n, k):
    assert metrics.pass_at_k(n, 0, k) == 0.0
    assert metrics.pass_at_k(n, n, k) == 1.0
    for c in range(max(0, n - k + 1), n + 1):  # fewer than k wrong samples: always a hit
        assert metrics.pass_at_k(n, c, k) == 1.0


def test_pass_at_1_is_fraction_correct():
    c = np.arange(11)
    np.testing.assert_allclose(metrics.pass_at_k(10, c, 1), c / 10, atol=1e-12)


@pytest.mark.parametrize("n,k", [(3, 4), (0, 1), (15, 16)])
def test_pass_at_k_needs_k_samples(n, k):
    with pytest.raises(ValueError, match=f"pass@{k}"):
        metrics.pass_at_k(n, 0, k)


@pytest.mark.parametrize("c", [-1, 6])
def test_pass_at_k_rejects_c_outside_range(c):
    with pytest.raises(ValueError, match="c must"):
        metrics.pass_at_k(5, c, 1)


def test_pass_at_k_stable_for_large_n():
    v = float(metrics.pass_at_k(1000, 1, 16))
    assert math.isfinite(v) and 0 <= v <= 1
    assert v == pytest.approx(16 / 1000, rel=1e-9)
    exact = 1 - Fraction(math.comb(1000 - 37, 16), math.comb(1000, 16))
    assert float(metrics.pass_at_k(1000, 37, 16)) == pytest.approx(float(exact), rel=1e-9)
    big = metrics.pass_at_k(100_000, np.array([0, 1, 50_000, 99_999]), 16)
    assert np.isfinite(big).all() and ((0 <= big) & (big <= 1)).all()


def test_wilson_known_value():
    lo, hi = metrics.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=5e-4)
    assert hi == pytest.approx(0.9433, abs=5e-4)
    lo, hi = metrics.wilson(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=5e-4)


@pytest.mark.parametrize("n", [1, 2, 7, 30, 1000])
def test_wilson_contains_p_and_is_in_unit_interval(n):
    for s in sorted({0, 1, n // 3, n // 2, n - 1, n, n * 0.37}):
        if s < 0:
            continue
        lo, hi = metrics.wilson(s, n)
        assert 0.0 <= lo <= s / n <= hi <= 1.0
        assert hi - lo > 0
    assert metrics.wilson(0, n)[0] == 0.0 and metrics.wilson(n, n)[1] == 1.0


def test_wilson_narrows_with_n():
    w = [metrics.wilson(0.3 * n, n) for n in (10, 100, 1000)]
    widths = [hi - lo for lo, hi in w]
    assert widths[0] > widths[1] > widths[2]


def test_wilson_empty_is_nan():
    lo, hi = metrics.wilson(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


def test_score_marks_parsed_and_correct():
    a, b = np.array([1, 20, 3, 4, 5]), np.array([2, 30, 4, 5, 6])
    texts = ["3", "50", "8", "", "1 1"]
    parsed, correct = metrics.score(texts, a, b, "plain")
    assert parsed.tolist() == [True, True, True, False, False]
    assert correct.tolist() == [True, True, False, False, False]
    parsed, correct = metrics.score(["3", "05", "7"], a[:3], b[:3], "reversed")
    assert parsed.tolist() == [True, True, True]
    assert correct.tolist() == [True, True, True]
    parsed, correct = metrics.score(["03;>3", ">50", "7"], a[:3], b[:3], "scratchpad")
    assert parsed.tolist() == [True, True, False]
    assert correct.tolist() == [True, True, False]


def test_greedy_and_sampled_eval_structure(tiny_model):
    ev = tasks.make_eval_set(1, 6, seed=0, buckets=("d1", "mixed"))
    g = metrics.greedy_eval(tiny_model, ev, "plain")
    assert set(g) == {"d1", "mixed"}
    for r in g.values():
        assert r["n"] == 6 and len(r["answers"]) == 6
        assert 0 <= r["acc"] <= r["parse"] <= 1  # a correct answer always parses
        lo, hi = r["acc_ci"]
        assert 0 <= lo <= r["acc"] <= hi <= 1
    s = metrics.sampled_eval(tiny_model, ev, "plain", n_samples=4, temperature=1.0, top_k=0, seed=1,
                             ks=[1, 2, 4])
    for r in s.values():
        assert r["n_samples"] == 4 and len(r["c"]) == 6
        assert set(r["pass"]) == {1, 2, 4}  # ks above n_samples are skipped
        # pass@1 is the mean per-sample accuracy
        assert r["pass"][1]["value"] == pytest.approx(r["sampled_acc"], abs=1e-12)
        vals = [r["pass"][k]["value"] for k in (1, 2, 4)]
        assert vals == sorted(vals)  # pass@k grows with k


def test_greedy_eval_counts_correct_and_parsed(monkeypatch):
    """greedy_eval scores what the sampler returns: feed it known answers."""
    ev = tasks.make_eval_set(2, 10, seed=0, buckets=("d2_carry", "general"))

    def fake_answers(model, a, b, fmt, max_digits, **kw):
        texts = [tasks.answer_text(int(x), int(y), fmt) for x, y in zip(a, b)]
        texts[0] = "9" * 5  # one wrong (parses, wrong value)
        texts[1] = "oops"   # one unparsable
        return texts, None

    monkeypatch.setattr(metrics, "_answers", fake_answers)
    g = metrics.greedy_eval(None, ev, "reversed")
    for r in g.values():
        assert r["acc"] == pytest.approx(0.8) and r["parse"] == pytest.approx(0.9)

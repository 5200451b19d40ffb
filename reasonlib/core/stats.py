"""Bounded interval estimates: percentile bootstrap over seeds or over problems, and the exact
(Clopper-Pearson) binomial interval for "k of n seeds", and exact tests of two such counts
(Fisher's for independent groups, the sign test for the same seeds under two recipes).

Why these and not Student-t: a t-interval over 5 seeds of a quantity that splits (one seed at
14.5%, four near 95%) reaches [33.8, 123.3]%, outside what an accuracy can be. A percentile
bootstrap interval of a mean lies between the smallest and the largest value it resamples,
so it never leaves the range of the quantity; the exact binomial interval lies in [0, 1] by
construction. Both are deterministic here: with few units (seeds) every resample is
enumerated, otherwise the resamples come from a fixed seed.

Every function is pure, takes plain arrays and returns floats.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

LEVEL = 0.95
EXACT_UP_TO = 6          # with at most this many units, enumerate all n^n resamples
RESAMPLES = 4000         # otherwise draw this many, from BOOT_SEED
BOOT_SEED = 20261201


def _quantiles(x: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(x, [a, 1 - a])
    return float(lo), float(hi)


def _resample_index(n: int, seed: int = BOOT_SEED, exact_up_to: int = EXACT_UP_TO,
                    resamples: int = RESAMPLES):
    """Index arrays (B, n) of bootstrap resamples, in chunks: all n^n when n is small."""
    if n <= exact_up_to:
        idx = np.array(list(itertools.product(range(n), repeat=n)), dtype=np.int64)
        yield idx
        return
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 2_000_000 // n))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def bootstrap(rows: np.ndarray, stat: Callable[[np.ndarray], np.ndarray],
              level: float = LEVEL, seed: int = BOOT_SEED) -> tuple[float, float, float]:
    """(point, lo, hi): ``stat`` of the column means of ``rows`` (units x columns), and its
    percentile bootstrap interval over the units (rows are resampled whole, so columns stay
    paired). ``stat`` maps column means (B, m) to (B,)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    n = rows.shape[0]
    if n == 0:
        raise ValueError("bootstrap needs at least one unit")
    point = float(stat(rows.mean(axis=0, keepdims=True))[0])
    if n == 1:
        return point, point, point
    vals = [stat(rows[idx].mean(axis=1)) for idx in _resample_index(n, seed)]
    lo, hi = _quantiles(np.concatenate(vals), level)
    # the quantile of a finite set of resampled statistics can differ from the point in the
    # last bit; an interval always holds its own estimate
    return point, min(lo, point), max(hi, point)


def mean_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi) of 1-d ``values`` with its percentile bootstrap interval."""
    return bootstrap(np.asarray(values, dtype=np.float64)[:, None], lambda m: m[:, 0], level)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _binom_cdf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0 if k < n else 1.0
    return float(sum(math.exp(_log_comb(n, i) + i * math.log(p) + (n - i) * math.log1p(-p))
                     for i in range(k + 1)))


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval for k successes in n trials (bisection on the binomial CDF)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = (1 - level) / 2

    def solve(f):   # the p in [0, 1] where f crosses 0 (f decreasing in p)
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
        return (lo + hi) / 2

    # lower: P(X >= k | p) = a; upper: P(X <= k | p) = a (both sides decrease in p as written)
    lower = 0.0 if k == 0 else solve(lambda p: a - (1 - _binom_cdf(k - 1, n, p)))
    upper = 1.0 if k == n else solve(lambda p: _binom_cdf(k, n, p) - a)
    return lower, upper


def _hypergeom(k: int, k_total: int, n_a: int, n_b: int) -> float:
    """P(k successes in group a) when k_total successes fall at random into groups of n_a, n_b."""
    return math.exp(_log_comb(n_a, k) + _log_comb(n_b, k_total - k) - _log_comb(n_a + n_b, k_total))


def fisher_exact(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p of Fisher's exact test for "k_a of n_a" against "k_b of n_b" (independent
    groups): the chance, with the margins fixed, of a table no likelier than the one seen."""
    if min(n_a, n_b) < 1 or not (0 <= k_a <= n_a and 0 <= k_b <= n_b):
        raise ValueError(f"fisher_exact needs 0 <= k <= n and n >= 1, got {k_a} of {n_a}, {k_b} of {n_b}")
    k = k_a + k_b
    seen = _hypergeom(k_a, k, n_a, n_b)
    probs = [_hypergeom(i, k, n_a, n_b) for i in range(max(0, k - n_b), min(k, n_a) + 1)]
    return min(1.0, sum(p for p in probs if p <= seen * (1 + 1e-9)))


def sign_test(only_a: int, only_b: int) -> float:
    """Two-sided exact p for paired outcomes (McNemar's exact test): of the units where the two
    differ, ``only_a`` succeed under a alone and ``only_b`` under b alone; under no difference
    each such unit is a fair coin."""
    if min(only_a, only_b) < 0:
        raise ValueError(f"sign_test needs counts >= 0, got {only_a} and {only_b}")
    n = only_a + only_b
    return 1.0 if n == 0 else min(1.0, 2 * _binom_cdf(min(only_a, only_b), n, 0.5))

"""The edge of competence: problems binned by what the start can already do, and pass@k
curves to k = 128 per bin (issue 42, after Yue et al. 2025 and Zhang et al. 2025).

Does RL discover, or only sharpen? RL models win at small k, and their starts may overtake
them as k grows; RL may raise pass@128 only on problems at the edge of what the start can
do. The bins, from the start's pass rates on each problem (:func:`bins`):

* ``beyond``: the start's pass@128 is 0. No sample of 128 is right; RL's reward is silent.
* ``edge``: otherwise, the problem has more than D digits in an operand, or the start's
  pass@1 is below :data:`EDGE_PASS1`. The start sometimes gets it right.
* ``in-range``: the rest, at most D digits and pass@1 at least :data:`EDGE_PASS1`.

pass@k is the unbiased estimator (``metrics.pass_at_k``) from at least :data:`MIN_SAMPLES`
samples a problem. Pure functions of counts: sampling stays in the notebooks.
"""
from __future__ import annotations

import numpy as np

from ..core import metrics

BINS = ("in-range", "edge", "beyond")
KS = (1, 2, 4, 8, 16, 32, 64, 128)
TOP_K = KS[-1]
MIN_SAMPLES = 256   # samples a problem: the estimator at k = 128 from twice as many
EDGE_PASS1 = 0.5    # below this start pass@1 a problem is at the edge


def bins(digits: np.ndarray, pass1: np.ndarray, pass_top: np.ndarray, max_digits: int) -> np.ndarray:
    """Each problem's bin (:data:`BINS`) from its longest operand's ``digits`` and the start's
    ``pass1`` and pass@:data:`TOP_K` (``pass_top``) on it, arrays of one length."""
    digits, pass1, pass_top = (np.asarray(x) for x in (digits, pass1, pass_top))
    if not digits.shape == pass1.shape == pass_top.shape:
        raise ValueError(f"bins needs arrays of one shape, got {digits.shape}, {pass1.shape}, "
                         f"{pass_top.shape}")
    out = np.full(digits.shape, "in-range", dtype=object)
    out[(digits > max_digits) | (pass1 < EDGE_PASS1)] = "edge"
    out[pass_top == 0] = "beyond"
    return out


def curve(correct: np.ndarray, n: int, ks=KS) -> dict[int, float]:
    """The mean unbiased pass@k over problems, for each k in ``ks``, from each problem's
    ``correct`` count out of ``n`` samples (``n >= max(ks)``; nan without problems)."""
    correct = np.asarray(correct)
    if n < max(ks):
        raise ValueError(f"pass@{max(ks)} needs at least {max(ks)} samples a problem, got n={n}")
    if not len(correct):
        return {k: float("nan") for k in ks}
    return {k: float(metrics.pass_at_k(n, correct, k).mean()) for k in ks}


def crossing(before: dict[int, float], after: dict[int, float]) -> int | None:
    """The smallest k at which the start's curve (``before``) reaches the trained model's
    (``after``) having been below it at a smaller k: where "the base overtakes RL"; None
    when it never does (or was never below)."""
    below = False
    for k in sorted(before):
        if before[k] < after[k]:
            below = True
        elif below:
            return k
    return None

"""The edge-of-competence bins and their pass@k curves (reasonlib.study.edge)."""
import numpy as np
import pytest

from reasonlib.core import metrics
from reasonlib.study import edge


def test_bins_follow_the_issue_and_beyond_wins():
    digits = np.array([2, 3, 3, 4, 4, 5])
    pass1 = np.array([0.9, 0.3, 0.0, 0.9, 0.1, 0.0])
    top = np.array([1.0, 0.9, 0.0, 1.0, 0.4, 0.0])
    assert list(edge.bins(digits, pass1, top, 3)) == \
        ["in-range", "edge", "beyond", "edge", "edge", "beyond"]
    with pytest.raises(ValueError, match="one shape"):
        edge.bins(digits, pass1[:2], top, 3)


def test_curve_is_the_mean_unbiased_pass_at_k():
    c = np.array([0, 1, 128, 256])
    cur = edge.curve(c, 256)
    assert list(cur) == list(edge.KS)
    assert cur[1] == pytest.approx(np.mean(c / 256))
    assert cur[128] == pytest.approx(np.mean(metrics.pass_at_k(256, c, 128)))
    assert 0.5 < cur[128] <= 1 and all(cur[a] <= cur[b] for a, b in zip(edge.KS, edge.KS[1:]))
    assert np.isnan(edge.curve([], 256)[1])
    with pytest.raises(ValueError, match="at least 128 samples"):
        edge.curve(c, 100)


def test_crossing_is_where_the_start_overtakes():
    ks = edge.KS
    rl = {k: min(1.0, 0.5 + 0.02 * i) for i, k in enumerate(ks)}      # sharpened: flat
    base = {k: min(1.0, 0.2 + 0.1 * i) for i, k in enumerate(ks)}     # broad: rises
    assert edge.crossing(base, rl) == 16    # 0.60 >= 0.58: the base overtakes at k = 16
    assert edge.crossing(rl, base) is None  # RL's curve was never below the base's, then above
    assert edge.crossing(rl, rl) is None

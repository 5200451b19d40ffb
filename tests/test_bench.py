"""The benchmark (benchmarks/bench_vs_transformers.py): its paired ratio on hand-made step
times, and its FLOP floor against torch's count of the packed step."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vs_transformers.py"
_spec = importlib.util.spec_from_file_location("bench_vs_transformers", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_paired_ratio_hand_computed():
    ref = np.array([[2.0, 4.0], [3.0, 3.0]])     # transformers' step times, 2 repeats x 2 steps
    side = np.array([[1.0, 1.0], [2.0, 1.0]])
    ratio, (lo, hi), per = bench.paired_ratio(ref, side)
    assert ratio == pytest.approx(12 / 5)
    assert per == pytest.approx([6 / 2, 6 / 3])
    # every resampled ratio lies between the smallest and largest step pair's ratio (1.5, 4)
    assert 1.5 <= lo <= ratio <= hi <= 4.0


def test_paired_ratio_constant_and_seeded():
    ref = np.full((5, 20), 0.1)
    ratio, interval, per = bench.paired_ratio(ref, ref / 2)
    assert ratio == pytest.approx(2.0) and interval == pytest.approx((2.0, 2.0))
    assert per == pytest.approx([2.0] * 5)
    rng = np.random.default_rng(3)
    side = rng.uniform(0.04, 0.06, (5, 20))
    assert bench.paired_ratio(ref, side) == bench.paired_ratio(ref, side)   # same seed, same numbers
    lo, hi = bench.paired_ratio(ref, side)[1]
    assert lo < hi


def test_paired_ratio_refuses_unpaired_times():
    with pytest.raises(ValueError, match=r"\(5, 20\) and \(4, 20\)"):
        bench.paired_ratio(np.ones((5, 20)), np.ones((4, 20)))
    with pytest.raises(ValueError, match=r"\(100,\) and \(100,\)"):
        bench.paired_ratio(np.ones(100), np.ones(100))


@pytest.mark.parametrize("n_layer", [1, 3])
def test_floor_is_the_packed_step_less_the_last_layers_unscored_queries(n_layer):
    """floor_flops, counted from the batches, against torch's count of the packed step's
    products: equal for one layer; with more, the packed step also runs the last layer's
    query for the N - S unscored tokens (C^2 multiply-adds each, forward and backward)."""
    a = SimpleNamespace(seed=0, curriculum="targeted", fmt="reversed", max_digits=3,
                        batch_size=16, frac=0.9)
    batches = bench.make_batches(a, 2)
    shape = (n_layer, 2, C := 16)
    model = bench.reasonlib_builder("rope")(shape, bench.tasks.block_size_for(3, "reversed"), 0)
    counted = bench.step_flops(model, bench.reasonlib_packed_loss, batches)
    unscored = np.mean([int((b["tokens"][:, 1:] != bench.PAD).sum() - b["answer"][:, 1:].sum())
                        for b in batches])
    extra = 0 if n_layer == 1 else 6 * C * C * unscored
    assert counted == pytest.approx(bench.floor_flops(shape, batches) + extra, abs=1e-6)

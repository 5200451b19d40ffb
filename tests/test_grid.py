"""The length-pair grid and its withheld cell: the cell (1, D) is drawn by no training path,
and every grid cell is scored on problems training never draws."""
import numpy as np
import pytest

from conftest import tiny_sft_config
from reasonlib.core import tasks
from reasonlib.study import grid
from reasonlib.train import curriculum, rivals, rl, sft

SEED = 1234


def _hits(a, b, D):
    return int(tasks.in_cell(a, b, tasks.withheld_cell(D)).sum())


def test_the_withheld_cell_is_1_by_D_and_none_below_3_digits():
    assert tasks.withheld_cell(3) == (1, 3) and tasks.withheld_cell(5) == (1, 5)
    assert tasks.withheld_cell(2) is None and tasks.withheld_cell(1) is None
    assert (1, 3) not in tasks.pair_cells(3) and (3, 1) in tasks.pair_cells(3)
    assert len(tasks.pair_cells(3)) == 8


@pytest.mark.parametrize("D", [3, 4])
def test_no_training_bucket_draws_the_withheld_cell(D):
    rng = np.random.default_rng(0)
    excl = tasks.train_exclusions(D, SEED)
    # without the rule, general and mixed3 would: the check can fail
    assert _hits(*tasks._draw("general", 100_000, rng, D), D) > 0
    assert _hits(*tasks._draw("mixed3", 100_000, rng, D), D) > 0
    for b in tasks.TRAIN_BUCKETS:
        if b != "pairs" and tasks.bucket_size(b, D) == 0:
            continue
        a, c = tasks.sample_bucket(b, 50_000, rng, D, excl)
        assert _hits(a, c, D) == 0, b
        assert not tasks.in_sorted(tasks.problem_key(a, c), excl).any(), b


def test_pairs_draws_every_other_length_pair_equally_often():
    a, b = tasks.sample_bucket("pairs", 80_000, np.random.default_rng(1), 3,
                               tasks.train_exclusions(3, SEED))
    la, lb = tasks._ndigits(a), tasks._ndigits(b)
    counts = {c: int(((la == c[0]) & (lb == c[1])).sum()) for c in tasks.pair_cells(3)}
    assert sum(counts.values()) == 80_000
    # each share 1/8: 10,000 expected, binomial sd ~94; the excluded 40% of the 2-digit
    # cells is redrawn inside the cell, so no pair loses its share
    assert all(abs(v - 10_000) < 500 for v in counts.values()), counts


@pytest.mark.parametrize("name", curriculum.CURRICULA)
def test_every_curriculum_batch_avoids_the_withheld_cell(name):
    bm = curriculum.BatchMaker(name, "reversed", 3, 4096, np.random.default_rng(2),
                               exclude=tasks.train_exclusions(3, SEED))
    for frac in np.linspace(0, 0.999, 25):   # every stage
        bm.next_batch(float(frac))
        assert _hits(*bm.last_problems, 3) == 0, frac


def test_rl_prompts_avoid_the_withheld_cell():
    excl = tasks.train_exclusions(3, SEED)
    buckets = tasks.buckets_for(3)
    a, b, _ = rl.draw_mix(buckets, np.full(len(buckets), 1 / len(buckets)), 40_000,
                          np.random.default_rng(3), 3, excl)
    assert _hits(a, b, 3) == 0


def test_a_real_sft_and_rl_run_never_draws_the_withheld_cell(monkeypatch):
    """A spy on the one training draw: every problem a 3-digit SFT run (targeted_v2) and an RL
    run and RL's two rivals from it drew lies outside the withheld cell and outside every excluded problem."""
    drawn = []
    real = tasks.sample_bucket

    def spy(*a, **k):
        out = real(*a, **k)
        drawn.append(out)
        return out

    monkeypatch.setattr(tasks, "sample_bucket", spy)
    cfg = tiny_sft_config(curriculum="targeted_v2", max_digits=3, total_tokens=8000,
                          eval_every=20)
    model = sft.train_sft(cfg, progress=False).model
    n_sft = len(drawn)
    rcfg = rl.RLConfig(init="tiny", seed=0, steps=2, prompts_per_step=8, group_size=2, lr=1e-3,
                       beta=0.0, buckets=("general", "mixed3"), eval_every=2, eval_n=3)
    rl.train_rl(rcfg, model, cfg, progress=False)
    n_rl = len(drawn)
    for kind in rivals.KINDS:   # RL's rivals draw from the same pool, through the same draw
        rivals.train_rival(rivals.RivalConfig(init="tiny", kind=kind, budget=600, lr=1e-3,
                                              buckets=("general", "mixed3"), batch_size=8,
                                              prompts_per_step=8, group_size=2, eval_n=3),
                           model, cfg, progress=False)
    assert n_sft > 0 and n_rl > n_sft and len(drawn) > n_rl, "every path drew through tasks.sample_bucket"
    a = np.concatenate([x for x, _ in drawn])
    b = np.concatenate([y for _, y in drawn])
    assert _hits(a, b, 3) == 0
    assert not tasks.in_sorted(tasks.problem_key(a, b), tasks.train_exclusions(3, cfg.eval_seed)).any()


@pytest.mark.parametrize("D", [3, 4])
def test_grid_cells_hold_never_trained_problems_of_their_lengths(D):
    excl = tasks.train_exclusions(D, SEED)
    val = tasks.validation_keys(D, SEED)
    kinds = {grid.kind(c, D) for c in grid.cells(D)}
    assert kinds == {"seen", "trained", "withheld", "untrained"}
    assert len(grid.cells(D)) == (D + 3) ** 2
    for c in grid.cells(D):
        a, b = grid.problems(c, D, 150, SEED)
        va, vb = grid.problems(c, D, 150, SEED, source="val")
        assert len(a) > 0 and (tasks._ndigits(a) == c[0]).all() and (tasks._ndigits(b) == c[1]).all()
        keys, vkeys = tasks.problem_key(a, b), tasks.problem_key(va, vb)
        assert len(np.unique(keys)) == len(keys), c
        if grid.kind(c, D) == "seen":
            continue
        if grid.kind(c, D) == "trained":   # never trainable, and eval apart from validation
            assert tasks.in_sorted(keys, excl).all() and tasks.in_sorted(vkeys, val).all(), c
        assert not tasks.in_sorted(keys, val).any(), c
        assert len(np.intersect1d(keys, vkeys)) == 0, c


def test_grid_problems_are_fixed_and_bad_cells_refused():
    a1, _ = grid.problems((2, 5), 3, 40, SEED)
    a2, _ = grid.problems((2, 5), 3, 40, SEED)
    assert (a1 == a2).all()
    with pytest.raises(ValueError, match="lengths must be in 1..6"):
        grid.problems((7, 1), 3, 10, SEED)
    with pytest.raises(ValueError, match="source"):
        grid.problems((2, 2), 3, 10, SEED, source="test")


def test_score_counts_every_answer_once(tiny_model):
    res = grid.score(tiny_model, 3, "reversed", 6, SEED, n_samples=8, k=8)
    assert set(res) == {grid.name(c) for c in grid.cells(3)}
    for r in res.values():
        assert sum(r["classes"].values()) == r["n"]
        assert r["classes"]["correct"] == round(r["acc"] * r["n"])
        assert 0 <= r["ci"][0] <= r["acc"] <= r["ci"][1] <= 1 and "pass8" in r
    m = grid.matrix(res, 3)
    assert m.shape == (6, 6) and m[0, 2] == res["1x3"]["acc"]
    assert grid.summary(res)["withheld"] == res["1x3"]["acc"]


def test_mean_matrix_over_seeds():
    m = grid.mean_matrix({"1x1": [0.5, 1.0], "2x3": [0.2], "3x1": []})
    assert m.shape == (3, 3) and m[0, 0] == 0.75 and m[1, 2] == 0.2
    assert np.isnan(m[2, 0]) and np.isnan(m[1, 1])   # no value, no cell

"""Held-out problems are never trained on: no training path (SFT stages and replay of both
curricula, the format arms, RL prompts) can draw a held-out or reserved eval problem of any
bucket.

The proof has two halves. (1) Every training draw goes through ``tasks.sample_bucket`` with
the one exclusion set ``tasks.train_exclusions(max_digits, eval_seed)``: a spy on it, while
real (tiny) SFT runs of every curriculum and format and an RL run execute, sees every call.
(2) ``sample_bucket`` never returns an excluded problem, for every bucket and digit count:
a small bucket is drawn from its allowed part (checked exhaustively), a large one by
rejection (checked on many draws). Together with (3) every eval problem outside d1 being in
the exclusion set, no metric is ever computed on a problem a model trained on."""
from __future__ import annotations

import numpy as np
import pytest

from reasonlib.train import rl, sft
from reasonlib.core import tasks

from conftest import tiny_sft_config

D, EVAL_SEED = 3, 1234


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = tasks.sample_bucket

    def wrapped(bucket, n, rng, max_digits, exclude=None):
        a, b = real(bucket, n, rng, max_digits, exclude)
        calls.append((bucket, max_digits, exclude, tasks.problem_key(a, b)))
        return a, b

    monkeypatch.setattr(tasks, "sample_bucket", wrapped)
    return calls


def _check(calls, expect_buckets):
    excl = tasks.train_exclusions(D, EVAL_SEED)
    assert calls, "no training draw was seen"
    drawn = set()
    for bucket, max_digits, exclude, keys in calls:
        assert max_digits == D
        assert exclude is not None and np.array_equal(exclude, excl), bucket   # the full set, every call
        assert not tasks.in_sorted(keys, excl).any(), bucket
        drawn.add(bucket)
    assert expect_buckets <= drawn, drawn


@pytest.mark.parametrize("curriculum,fmt", [("control", "reversed"), ("targeted", "reversed"),
                                            ("targeted", "plain"), ("targeted", "scratchpad")])
def test_every_sft_path_draws_only_trainable_problems(spy, curriculum, fmt):
    cfg = tiny_sft_config(curriculum=curriculum, fmt=fmt, max_digits=D, total_tokens=4000,
                          batch_size=32, eval_seed=EVAL_SEED)
    sft.train_sft(cfg, progress=False)
    stages = {"d1", "d2_nocarry", "d2_carry", "general"} | ({"mixed"} if curriculum == "targeted" else set())
    _check(spy, stages)


def test_rl_prompts_draw_only_trainable_problems(spy):
    cfg = tiny_sft_config(max_digits=D, total_tokens=1500, batch_size=16, eval_seed=EVAL_SEED)
    start = sft.train_sft(cfg, progress=False)
    spy.clear()
    rcfg = rl.RLConfig(init=rl.init_key(cfg), steps=3, prompts_per_step=24, group_size=2,
                       buckets=("general", "mixed", "low_sum", "d2_carry"), eval_every=100, eval_n=2)
    rl.train_rl(rcfg, start.model, cfg, progress=False)
    _check(spy, {"general", "mixed", "low_sum", "d2_carry"})


@pytest.mark.parametrize("digits", [1, 2, 3, 4])
def test_sample_bucket_never_returns_an_excluded_problem(digits):
    excl = tasks.train_exclusions(digits, EVAL_SEED)
    rng = np.random.default_rng(digits)
    for bucket in tasks.buckets_for(digits):
        e = tasks.enumerated(bucket, digits)
        if e is not None:    # small: the allowed part is exactly the bucket minus the exclusion
            keys = tasks.problem_key(*e)
            allowed = tasks.problem_key(*tasks._allowed(bucket, digits, excl))
            assert np.array_equal(np.sort(allowed), np.sort(keys[~np.isin(keys, excl)])), bucket
            if len(allowed) == 0:
                continue
        a, b = tasks.sample_bucket(bucket, 20_000, rng, digits, excl)
        assert not np.isin(tasks.problem_key(a, b), excl).any(), (bucket, digits)


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_every_eval_problem_but_d1_is_never_trained(digits):
    ev = tasks.make_eval_set(digits, tasks.MAX_RESERVED, EVAL_SEED)
    excl = tasks.train_exclusions(digits, EVAL_SEED)
    for bucket in ev.buckets:
        keys = ev.keys(bucket)
        a, b = keys // 10**9, keys % 10**9
        d1 = (a < 10) & (b < 10)
        assert tasks.in_sorted(keys[~d1], excl).all(), bucket
        assert ev.held_out(bucket).tolist() == (~d1).tolist(), bucket


def test_the_check_has_teeth(spy, monkeypatch):
    """Without the exclusion the same SFT stream draws held-out problems."""
    cfg = tiny_sft_config(curriculum="targeted", fmt="reversed", max_digits=D, total_tokens=4000,
                          batch_size=32, eval_seed=EVAL_SEED)
    real = tasks.train_exclusions
    monkeypatch.setattr(tasks, "train_exclusions", lambda *a: np.zeros(0, dtype=np.int64))
    sft.train_sft(cfg, progress=False)
    monkeypatch.setattr(tasks, "train_exclusions", real)
    keys = np.concatenate([k for *_, k in spy])
    assert tasks.in_sorted(keys, tasks.train_exclusions(D, EVAL_SEED)).any()

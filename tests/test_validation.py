"""The validation split (reasonlib.core.tasks.make_val_set): disjoint from training and from
every eval bucket, and the only problems the probe during training, and so every choice made
from it (transition steps, RL starts), reads."""
import numpy as np
import pytest

from reasonlib.core import metrics, tasks
from reasonlib.train import rl, sft

SEED = 1234


@pytest.mark.parametrize("digits", [2, 3, 4])
def test_validation_is_disjoint_from_every_eval_bucket_and_never_trained(digits):
    val = tasks.make_val_set(digits, tasks.MAX_VAL, SEED)
    ev = tasks.make_eval_set(digits, tasks.MAX_RESERVED, SEED)   # the largest eval set allowed
    eval_keys = np.unique(np.concatenate([ev.keys(b) for b in ev.buckets]))
    excl = tasks.train_exclusions(digits, SEED)
    rng = np.random.default_rng(0)
    assert "d1" not in val.buckets and val.buckets
    for b in val.buckets:
        keys = val.keys(b)
        assert len(np.unique(keys)) == len(keys), b
        assert not tasks.in_sorted(keys, eval_keys).any(), f"{b}: a validation problem is scored"
        assert tasks.in_sorted(keys, excl).all(), f"{b}: a validation problem can be trained on"
        drawn = tasks.problem_key(*tasks.sample_bucket(b, 20_000, rng, digits, exclude=excl))
        assert not np.isin(drawn, keys).any(), b
    # a tenth of every small stratum; the eval part (30%) is untouched
    small = tasks._val_small(3, SEED)
    assert len(small) == sum(round(tasks.VAL_SHARE * tasks.bucket_size(s, 3)) for s in tasks.HOLDOUT_STRATA)
    assert not tasks.in_sorted(small, tasks.heldout_keys(SEED)).any()


def test_validation_sets_are_nested_and_fixed():
    a, b = tasks.make_val_set(3, 50, SEED), tasks.make_val_set(3, 400, SEED)
    for k in a.buckets:
        assert (b.keys(k)[:50] == a.keys(k)).all()
    with pytest.raises(ValueError, match="n_per_bucket"):
        tasks.make_val_set(3, 0, SEED)


def test_the_probe_and_every_choice_made_from_it_read_validation_problems_only(
        tmp_path, monkeypatch, sft_config_factory):
    """Every problem the SFT and RL probes score is a validation problem; the transition step
    and the RL starts are functions of that probe's history alone."""
    seen = []
    real = metrics.greedy_eval

    def spy(model, eval_set, fmt, *a, **k):
        seen.append(np.concatenate([eval_set.keys(b) for b in eval_set.buckets]))
        return real(model, eval_set, fmt, *a, **k)

    monkeypatch.setattr(metrics, "greedy_eval", spy)
    cfg = sft_config_factory(eval_every=20, total_tokens=6000)
    res = sft.get_or_train(cfg, tmp_path, progress=False)
    val = tasks.validation_keys(cfg.max_digits, cfg.eval_seed)
    ev = tasks.make_eval_set(cfg.max_digits, tasks.MAX_RESERVED, cfg.eval_seed)
    eval_keys = np.unique(np.concatenate([ev.keys(b) for b in ev.buckets]))
    assert seen and all(tasks.in_sorted(k, val).all() for k in seen)
    assert not any(tasks.in_sorted(k, eval_keys).any() for k in seen)
    assert set(res.history) >= {"val"} and "eval" not in res.history
    # the selections read the probe history and nothing else: the same history, the same picks
    h = {"val": res.history["val"]}
    assert sft.transition_step(h, 0.0) == sft.transition_step(res.history, 0.0)
    assert rl.schedule_starts(h) == rl.schedule_starts(res.history) and rl.moving_start(h) == rl.moving_start(res.history)

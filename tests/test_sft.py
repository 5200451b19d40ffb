import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reasonlib.train import artifacts, params, sft
from reasonlib.core import runtime, tasks
from reasonlib.train.artifacts import CheckpointError


def _state_equal(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    return all(torch.equal(s1[k], s2[k]) for k in s1)


def test_loss_goes_down(sft_config_factory):
    cfg = sft_config_factory(total_tokens=12_000, curriculum="control")
    res = sft.train_sft(cfg, progress=False)
    loss = res.history["loss"]
    assert len(loss) > 40
    assert all(math.isfinite(x) for x in loss)
    assert loss[0] == pytest.approx(math.log(264), abs=0.5)  # untrained: ~uniform
    assert np.mean(loss[-10:]) < 0.6 * loss[0]
    assert res.trained_now and not res.model.training
    assert res.history["val"] and res.history["val"][-1]["step"] == len(loss)
    assert set(res.timing) == {"data_s", "loop_s", "cpu_s", "data_share"}
    assert 0 < res.timing["cpu_s"] <= 1.5 * res.timing["loop_s"] + 0.5   # one thread


def test_answer_loss_scores_answer_tokens_only(tiny_model):
    toks, ans = tasks.render_examples(np.array([3, 47, 5]), np.array([4, 85, 123]), "scratchpad")
    t, a = torch.as_tensor(toks), torch.as_tensor(ans)
    got = sft.answer_loss(tiny_model, t, a)
    with torch.no_grad():
        logits = tiny_model(t[:, :-1])
    terms = [F.cross_entropy(logits[i, j - 1][None], t[i, j][None])
             for i in range(len(t)) for j in range(1, t.shape[1]) if ans[i, j]]
    assert len(terms) == ans.sum()
    torch.testing.assert_close(got, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(tmp_path, sft_config_factory):
    cfg = sft_config_factory()
    path = tmp_path / "ckpt.pt"
    res = sft.train_sft(cfg, ckpt_path=path, progress=False)
    model, ck = sft.load_model(path, expect_config=cfg.to_dict())
    assert _state_equal(res.model, model)
    assert ck["done"] is True and ck["config"] == cfg.to_dict()
    assert ck["history"] == res.history and ck["tokens"] == res.history["tokens"][-1]
    with pytest.raises(CheckpointError, match="lr"):
        sft.load_model(path, expect_config=dataclasses.replace(cfg, lr=1e-4).to_dict())


@pytest.mark.parametrize("k", [1, 7])
def test_resume_equals_uninterrupted(tmp_path, sft_config_factory, k):
    cfg = sft_config_factory(total_tokens=2500, eval_every=4)
    a = sft.train_sft(cfg, progress=False)
    path = tmp_path / "b.pt"
    b1 = sft.train_sft(cfg, ckpt_path=path, progress=False, stop_after_step=k)
    assert b1.history["step"] == list(range(1, k + 1))
    ck = artifacts.load_checkpoint(path)
    assert ck["done"] is False and ck["step"] == k
    b = sft.train_sft(cfg, ckpt_path=path, progress=False)
    assert len(a.history["step"]) > k + 3
    assert _state_equal(a.model, b.model)
    assert a.history == b.history
    assert artifacts.load_checkpoint(path)["done"] is True


@pytest.mark.parametrize("pos,offset", [("nope", 0), ("abacus", 4), ("coupled", 4), ("local", 4)])
def test_every_position_scheme_trains_and_resumes_bitwise(tmp_path, sft_config_factory, pos, offset):
    """The placed schemes draw their training offsets from the torch generator, which the
    checkpoint saves: a resumed run equals an uninterrupted one."""
    cfg = sft_config_factory(total_tokens=2000, pos=pos, pos_offset=offset, fmt="reversed")
    assert cfg.pos_offset == offset and cfg.model_config().pos == pos
    a = sft.train_sft(cfg, progress=False)
    assert a.history["loss"][-1] < a.history["loss"][0]
    path = tmp_path / "p.pt"
    sft.train_sft(cfg, ckpt_path=path, progress=False, stop_after_step=5)
    b = sft.train_sft(cfg, ckpt_path=path, progress=False)
    assert _state_equal(a.model, b.model) and a.history == b.history


@pytest.mark.parametrize("pos,offset", [("rope", 0), ("local", 4)])
def test_packed_sft_tracks_the_padded_run_resumes_bitwise_and_has_its_own_key(
        tmp_path, sft_config_factory, pos, offset):
    """The packed step computes the padded step's loss with other roundings: the first
    steps' losses agree to float rounding (not bit for bit over a run: training is chaotic),
    a resumed packed run equals an uninterrupted one, and its artifact key is its own."""
    cfg = sft_config_factory(total_tokens=2000, pos=pos, pos_offset=offset, fmt="reversed")
    pk = dataclasses.replace(cfg, packed=True)
    a, p = (sft.train_sft(c, progress=False) for c in (cfg, pk))
    np.testing.assert_allclose(p.history["loss"][:3], a.history["loss"][:3], rtol=1e-4)
    assert p.history["loss"][-1] < p.history["loss"][0]
    path = tmp_path / "p.pt"
    sft.train_sft(pk, ckpt_path=path, progress=False, stop_after_step=5)
    b = sft.train_sft(pk, ckpt_path=path, progress=False)
    assert _state_equal(p.model, b.model) and p.history == b.history
    assert artifacts.load_checkpoint(path)["config"]["packed"] is True
    assert sft.artifact_key(pk) != sft.artifact_key(cfg)


def test_packed_is_a_parameter_that_reaches_every_arm():
    """``packed`` (a notebook / profile parameter, default false) sets every SFT arm's step;
    a non-bool is refused by name before anything trains."""
    P = params.validate({"packed": True, "formats": ["plain", "reversed"], "positions": ["rope", "local"]})
    assert all(c.packed for c in sft.study_arms(P).values())
    assert not any(c.packed for c in sft.study_arms(params.validate({})).values())
    with pytest.raises(params.ParamError, match="'packed' = 'yes'"):
        params.validate({"packed": "yes"})


def test_offset_is_dropped_where_no_scheme_reads_it(sft_config_factory):
    # rope and nope have no digit places: pos_offset cannot change them, so it cannot split a key
    assert sft_config_factory(pos="rope", pos_offset=8) == sft_config_factory(pos="rope", pos_offset=0)
    assert sft_config_factory(pos="coupled", pos_offset=8).pos_offset == 8


def test_resume_with_periodic_checkpoints(tmp_path, sft_config_factory):
    """ckpt_every saves mid-run; a crash after that resumes from the last save."""
    cfg = sft_config_factory(total_tokens=2000)
    a = sft.train_sft(cfg, progress=False)
    path = tmp_path / "c.pt"
    sft.train_sft(cfg, ckpt_path=path, ckpt_every=3, progress=False, stop_after_step=5)
    b = sft.train_sft(cfg, ckpt_path=path, ckpt_every=3, progress=False)
    assert _state_equal(a.model, b.model) and a.history == b.history


def test_resume_refuses_other_config(tmp_path, sft_config_factory):
    cfg = sft_config_factory()
    path = tmp_path / "d.pt"
    sft.train_sft(cfg, ckpt_path=path, progress=False, stop_after_step=2)
    with pytest.raises(CheckpointError, match="seed"):
        sft.train_sft(dataclasses.replace(cfg, seed=1), ckpt_path=path, progress=False)


def test_get_or_train_trains_once(tmp_path, sft_config_factory, monkeypatch):
    cfg = sft_config_factory()
    r1 = sft.get_or_train(cfg, tmp_path, progress=False)
    assert r1.trained_now
    d = sft.artifact_dir_for(cfg, tmp_path)
    assert r1.path == d / "ckpt.pt"
    key = artifacts.read_json(d / "key.json")   # what the folder name is a digest of
    assert key == sft.artifact_key(cfg) and key["config"] == cfg.to_dict()
    assert {"train.sft", "core.model", "train.curriculum", "core.tasks"} <= set(key["code"])
    assert artifacts.load_checkpoint(r1.path)["key"] == key
    assert r1.provenance == [artifacts.provenance("cpu")]

    def boom(*a, **kw):
        raise AssertionError("train_sft must not run again")

    monkeypatch.setattr(sft, "train_sft", boom)
    r2 = sft.get_or_train(cfg, tmp_path, progress=False)
    assert not r2.trained_now
    assert _state_equal(r1.model, r2.model)
    assert r2.history == r1.history
    assert r2.timing == r1.timing and r2.timing["loop_s"] > 0
    # another config lives elsewhere (and would train)
    other = dataclasses.replace(cfg, seed=3)
    assert sft.artifact_dir_for(other, tmp_path) != d
    # a different curriculum schedule for the same config fields lives elsewhere too
    monkeypatch.setitem(sft.stages.__globals__["_SHARES"], cfg.curriculum,
                        tuple(reversed(sft.stages.__globals__["_SHARES"][cfg.curriculum])))
    assert sft.artifact_dir_for(cfg, tmp_path) != d
    with pytest.raises(AssertionError, match="must not run"):
        sft.get_or_train(other, tmp_path, progress=False)


def test_lr_schedule_shape():
    base, wu, mn = 0.01, 0.1, 0.1
    lr = lambda f: sft.lr_at(f, base, wu, mn)  # noqa: E731
    assert lr(0.0) == pytest.approx(0.0, abs=1e-9)
    assert lr(wu / 2) == pytest.approx(base / 2, rel=1e-6)
    assert lr(wu) == pytest.approx(base)
    assert lr(1.0) == pytest.approx(mn * base)
    mid = wu + (1 - wu) / 2
    assert lr(mid) == pytest.approx(base * (mn + (1 - mn) * 0.5))  # cosine half-way
    fr = np.linspace(0, 1, 201)
    vals = [lr(f) for f in fr]
    up = [v for f, v in zip(fr, vals) if f <= wu]
    down = [v for f, v in zip(fr, vals) if f >= wu]
    assert all(b > a for a, b in zip(up, up[1:]))
    assert all(b <= a for a, b in zip(down, down[1:]))
    assert max(vals) == pytest.approx(base)
    assert min(down) >= mn * base - 1e-12
    # no warmup: starts at the peak
    assert sft.lr_at(0.0, base, 0.0, mn) == pytest.approx(base)


def test_history_lr_follows_schedule(sft_config_factory):
    cfg = sft_config_factory(total_tokens=2000, warmup_frac=0.2, min_lr_frac=0.1)
    h = sft.train_sft(cfg, progress=False).history
    fracs = [0] + [t / cfg.total_tokens for t in h["tokens"][:-1]]
    want = [sft.lr_at(f, cfg.lr, cfg.warmup_frac, cfg.min_lr_frac) for f in fracs]
    assert h["lr"] == pytest.approx(want)


@pytest.mark.parametrize("bad_step", [1, 3])
def test_nan_loss_raises_naming_step(tmp_path, sft_config_factory, monkeypatch, bad_step):
    real = sft.answer_loss
    calls = {"n": 0}

    def flaky(model, toks, ans, *offset, **kw):
        calls["n"] += 1
        loss = real(model, toks, ans, *offset, **kw)
        return loss * float("nan") if calls["n"] == bad_step else loss

    monkeypatch.setattr(sft, "answer_loss", flaky)
    path = tmp_path / "nan.pt"
    with pytest.raises(FloatingPointError, match=rf"nan at step {bad_step}\b") as e:
        sft.train_sft(sft_config_factory(), ckpt_path=path, ckpt_every=1, progress=False)
    assert str(path) in str(e.value)
    if bad_step > 1:  # the last good checkpoint is intact and resumable
        assert artifacts.load_checkpoint(path)["step"] == bad_step - 1


def test_sft_config_validation():
    with pytest.raises(ValueError, match="binary"):
        sft.SFTConfig(fmt="binary")
    cfg = sft.SFTConfig(fmt="scratchpad", max_digits=4)
    assert cfg.model_config().block_size == tasks.block_size_for(4, "scratchpad")


def test_config_from_params_maps_every_field():
    P = params.validate({"seed": 5, "lr": 0.004, "n_embd": 48, "n_head": 3, "fmt": "plain",
                         "replay": 0.3, "eval_n": 7, "n_eval": 9, "total_tokens": 123_456})
    cfg = sft.config_from_params(P, "control")
    assert cfg.curriculum == "control"
    for f in dataclasses.fields(sft.SFTConfig):
        if f.name not in sft.CONFIG_ONLY:
            assert getattr(cfg, f.name) == getattr(P, f.name), f.name


# ---- snapshots, continued SFT, several arms at once --------------------------------------

def test_snapshots_at_every_probe_and_continuing_one_is_the_run(tmp_path, sft_config_factory):
    cfg = sft_config_factory(eval_every=20, total_tokens=6000)
    full = sft.get_or_train(cfg, tmp_path, progress=False)
    probes = [e["step"] for e in full.history["val"]]
    assert sft.snapshot_steps(cfg, tmp_path) == probes[:-1]   # the last probe is ckpt.pt
    snap = artifacts.load_checkpoint(sft.snapshot_path(cfg, tmp_path, probes[0]), cfg.to_dict())
    assert snap["step"] == probes[0] and not snap["done"]
    # the snapshot's model is the run's at that step: its probe repeats exactly
    m = sft.load_snapshot(cfg, tmp_path, probes[0])
    probe = tasks.make_val_set(cfg.max_digits, cfg.eval_n, cfg.eval_seed)
    from reasonlib.core import metrics
    g = metrics.greedy_eval(m, probe, cfg.fmt)
    assert {b: r["acc"] for b, r in g.items()} == {b: full.history["val"][0][b] for b in g}
    # continued to the end of the budget: the uninterrupted run, bit for bit
    rest = full.history["tokens"][-1] - snap["tokens"]
    c = sft.continued(cfg, tmp_path, probes[0], rest, progress=False)
    assert c.trained_now and _state_equal(c.model, full.model)
    # a shorter continuation stops after the first step that reaches its tokens, and is cached
    short = sft.continued(cfg, tmp_path, probes[0], 500, progress=False)
    seen = short.history["tokens"]
    assert seen[-1] - snap["tokens"] >= 500 > seen[-2] - snap["tokens"]
    again = sft.continued(cfg, tmp_path, probes[0], 500, progress=False)
    assert not again.trained_now and _state_equal(again.model, short.model)
    assert again.timing == short.timing


def test_snapshot_errors_name_the_step_and_what_exists(tmp_path, sft_config_factory):
    cfg = sft_config_factory(eval_every=20, total_tokens=6000)
    sft.get_or_train(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"no SFT snapshot at step 21 .* at steps 20"):
        sft.load_snapshot(cfg, tmp_path, 21)
    none = dataclasses.replace(cfg, snapshots=False)
    sft.get_or_train(none, tmp_path, progress=False)
    assert sft.snapshot_steps(none, tmp_path) == []
    with pytest.raises(ValueError, match="it has none"):
        sft.continued(none, tmp_path, 20, 100, progress=False)


def test_sft_trains_at_one_thread_and_restores_the_process_threads(sft_config_factory):
    before = torch.get_num_threads()
    res = sft.train_sft(sft_config_factory(total_tokens=500), progress=False)
    assert res.provenance[0]["threads"] == runtime.TRAIN_THREADS == 1
    assert torch.get_num_threads() == before


def test_arms_trained_at_once_equal_arms_trained_alone(tmp_path, sft_config_factory):
    a = sft_config_factory(total_tokens=2000)
    b = sft_config_factory(total_tokens=2000, curriculum="control", snapshots=False)
    together = sft.get_or_train_many([a, b, a], tmp_path / "many", progress=False)
    assert [r.trained_now for r in together] == [True, True, True]   # by the workers, just now
    assert not any(r.trained_now for r in sft.get_or_train_many([a, b], tmp_path / "many", progress=False))
    assert _state_equal(together[0].model, together[2].model)
    for cfg, r in zip((a, b), together):
        alone = sft.get_or_train(cfg, tmp_path / "alone", progress=False)
        assert _state_equal(alone.model, r.model)


def test_study_arms_lists_every_arm_once():
    P = params.validate({"curricula": ["control"], "formats": ["plain", "reversed"],
                         "positions": ["rope", "local"], "pos_offset": 4})
    arms = sft.study_arms(P)
    assert list(arms) == ["control", "targeted", "format plain", "pos local"]
    assert arms["targeted"] == sft.config_from_params(P, "targeted") and arms["targeted"].snapshots
    assert arms["format plain"] == dataclasses.replace(arms["targeted"], fmt="plain", snapshots=False)
    assert arms["pos local"].pos == "local" and arms["pos local"].pos_offset == 4
    assert not arms["pos local"].snapshots


def test_an_arm_failing_in_its_worker_raises_its_own_error(tmp_path, sft_config_factory):
    good = sft_config_factory(total_tokens=1000)
    bad = sft_config_factory(total_tokens=1000, lr=1e30, curriculum="control")
    with pytest.raises(FloatingPointError, match="SFT loss is nan at step 2") as e:
        sft.get_or_train_many([good, bad], tmp_path, progress=False)
    assert any("worker process of SFT arm" in n for n in e.value.__notes__)

import copy
import json
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_model, tiny_sft_config
from reasonlib.train import artifacts, params, rl
from reasonlib.core import reward, sampling, tasks
from reasonlib.train.artifacts import CheckpointError
from reasonlib.core.tokenizer import EOS, PAD, VOCAB_SIZE, encode


# ---- helpers -------------------------------------------------------------------------
def _state_equal(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    return all(torch.equal(s1[k], s2[k]) for k in s1)


def _random_logp(shape, seed, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(scale * torch.randn(shape, generator=g, dtype=dtype), -1)


def _row_logprob(model, seq, sv, gm):
    """Per-rollout sum of the model's log-probs of its generated tokens."""
    with torch.no_grad():
        lp = torch.log_softmax(model(seq[:, :-1], valid=sv[:, :-1]).float(), -1)
    tok = lp.gather(2, seq[:, 1:, None]).squeeze(2)
    return (tok * gm[:, 1:]).sum(1)


def _pad_rows(rows, width):
    return np.array([r + [PAD] * (width - len(r)) for r in rows], dtype=np.int64)


def _eos_pad_biased_model():
    """Tiny untrained GPT whose head favours EOS and PAD, so sampled rows stop at varied
    places, on an EOS or on a sampled PAD, and some run to the budget."""
    m = make_model(seed=2)
    head = torch.nn.Linear(m.cfg.n_embd, m.cfg.vocab_size, bias=True)
    head.weight = m.tok.weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[EOS] = 5.0
        head.bias[PAD] = 4.0
    m.head = head
    return m.eval()


@pytest.fixture(scope="module")
def sft_start():
    """A tiny SFT model (2-digit plain addition, ~3k tokens) and its config, shared."""
    from reasonlib.train import sft
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny_sft_config(total_tokens=3000)
        model = sft.train_sft(cfg, progress=False).model
    finally:
        torch.set_num_threads(n)
    return model, cfg


def rl_config(**kw) -> rl.RLConfig:
    base = dict(init="tiny", seed=0, steps=6, prompts_per_step=8, group_size=4, lr=3e-3,
                beta=0.1, buckets=("d1",), eval_every=2, eval_n=3)
    base.update(kw)
    return rl.RLConfig(**base)


# ---- exact KL and the sample estimators ------------------------------------------------
def test_exact_kl_matches_brute_force():
    logp = _random_logp((3, VOCAB_SIZE), seed=0)
    logq = _random_logp((3, VOCAB_SIZE), seed=1, scale=3.0)
    got = rl.exact_kl(logp, logq)
    assert got.shape == (3,)
    for i in range(3):
        want = 0.0
        for v in range(VOCAB_SIZE):
            pv = math.exp(float(logp[i, v]))
            want += pv * (float(logp[i, v]) - float(logq[i, v]))
        assert float(got[i]) == pytest.approx(want, rel=1e-10, abs=1e-12)
    # the direction is KL(p || q), not KL(q || p)
    rev = rl.exact_kl(logq, logp)
    assert not torch.allclose(got, rev, rtol=1e-3)


def test_exact_kl_zero_on_equal_and_nonnegative():
    for dtype in (torch.float32, torch.float64):
        logp = _random_logp((5, 7, VOCAB_SIZE), seed=3, dtype=dtype)
        assert rl.exact_kl(logp, logp).abs().max().item() <= 1e-7
    for seed in range(20):
        scale = 0.1 + seed  # from nearly uniform to very peaked
        logp = _random_logp((4, VOCAB_SIZE), seed=seed, scale=scale, dtype=torch.float32)
        logq = _random_logp((4, VOCAB_SIZE), seed=100 + seed, scale=scale, dtype=torch.float32)
        assert (rl.exact_kl(logp, logq) >= 0).all()
    # shifting logits does not change the distribution: KL stays 0
    z = torch.randn(2, VOCAB_SIZE, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    assert rl.exact_kl(F.log_softmax(z, -1), F.log_softmax(z + 3.0, -1)).abs().max() < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k1_k3_unbiased(seed):
    V, n = 6, 200_000
    logp = _random_logp((V,), seed=10 + seed, scale=1.0)
    logq = _random_logp((V,), seed=20 + seed, scale=1.0)
    exact = rl.exact_kl(logp, logq).item()
    assert exact > 0.05  # a visible KL, so "unbiased" is not trivially true
    g = torch.Generator().manual_seed(seed)
    y = torch.multinomial(logp.exp(), n, replacement=True, generator=g)
    lp, lq = logp[y], logq[y]
    for est in (rl.kl_k1(lp, lq), rl.kl_k3(lp, lq)):
        se = est.std().item() / math.sqrt(n)
        assert abs(est.mean().item() - exact) < 5 * se, (est.mean().item(), exact, se)
    k3 = rl.kl_k3(lp, lq)
    assert (k3 >= 0).all()
    assert (rl.kl_k1(lp, lq) < 0).any()  # k1 goes negative on single samples, k3 never


def test_k3_has_lower_variance_near_the_reference():
    V, n = 6, 50_000
    logp = _random_logp((V,), seed=5, scale=1.0)
    logq = torch.log_softmax(logp + 0.1 * torch.randn(V, generator=torch.Generator().manual_seed(6),
                                                      dtype=torch.float64), -1)
    g = torch.Generator().manual_seed(7)
    y = torch.multinomial(logp.exp(), n, replacement=True, generator=g)
    k1, k3 = rl.kl_k1(logp[y], logq[y]), rl.kl_k3(logp[y], logq[y])
    assert k3.var() < 0.1 * k1.var()


# ---- group advantages ------------------------------------------------------------------
def test_group_advantages_hand_example():
    r = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    adv, flat = rl.group_advantages(r)
    torch.testing.assert_close(adv, torch.tensor([[0.5, -0.5], [0.0, 0.0], [-0.5, 0.5]]))
    assert flat == pytest.approx(1 / 3)


@pytest.mark.parametrize("std_normalize", [False, True])
def test_group_advantages_properties(std_normalize):
    g = torch.Generator().manual_seed(0)
    r = (torch.rand(40, 6, generator=g) < 0.3).float()
    r[:5] = 1.0  # some all-correct groups
    r[5:10] = 0.0  # some all-wrong groups
    r[10] = torch.tensor([0.25, 0.5, 0.5, 1.0, 0.0, 0.0])  # non-binary rewards too
    adv, flat = rl.group_advantages(r, std_normalize=std_normalize)
    assert adv.shape == r.shape and torch.isfinite(adv).all()
    torch.testing.assert_close(adv.sum(1), torch.zeros(40), atol=1e-5, rtol=0)
    is_flat = (r == r[:, :1]).all(1)
    assert flat == pytest.approx(is_flat.float().mean().item())
    assert is_flat.sum() >= 10 and flat < 1
    assert (adv[is_flat] == 0).all()
    # ordering is kept: a better reward never gets a lower advantage within a group
    for i in range(40):
        o = torch.argsort(r[i])
        assert (adv[i][o].diff() >= -1e-7).all()
    if std_normalize:
        s = adv[~is_flat].std(1, unbiased=False)
        torch.testing.assert_close(s, torch.ones_like(s), atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(adv, r - r.mean(1, keepdim=True))


# ---- rollout_batch ---------------------------------------------------------------------
def test_rollout_batch_masks_hand_made():
    prompts, valid = tasks.render_prompts(np.array([3, 47]), np.array([4, 85]))
    assert prompts.shape == (2, 7) and valid[0, :2].sum() == 0  # "3+4=" is left-padded
    gen = _pad_rows([
        encode("7") + [EOS],                 # ended on EOS
        encode("12345"),                     # never ended: the whole budget is generated
        [EOS],                               # EOS straight away
        encode("1") + [PAD],                 # ended on a sampled PAD
        encode("132") + [EOS],               # EOS on the last-but-one slot
        encode("13") + [PAD, EOS],           # a PAD first: the row ended there
    ], width=5)
    seq, sv, gm = rl.rollout_batch(prompts, valid, gen)
    assert seq.shape == sv.shape == gm.shape == (6, 12)
    assert sv.dtype == torch.bool and gm.dtype == torch.bool and seq.dtype == torch.int64
    n_gen = [2, 5, 1, 2, 4, 3]                       # generated tokens each row chose
    n_prompt = [5, 5, 5, 7, 7, 7]                    # "BOS3+4=" and "BOS47+85="
    for i in range(6):
        k, n = n_prompt[i], n_gen[i]
        # rows are packed to the left: prompt, then the chosen tokens, then PAD
        prompt_ids = prompts[i // 3][valid[i // 3]]
        np.testing.assert_array_equal(seq[i, :k].numpy(), prompt_ids)
        np.testing.assert_array_equal(seq[i, k:k + n].numpy(), gen[i, :n])
        assert (seq[i, k + n:] == PAD).all()
        assert sv[i, :k + n].all() and not sv[i, k + n:].any()   # valid is a prefix
        assert not gm[i, :k].any() and gm[i, k:k + n].all() and not gm[i, k + n:].any()


def test_rollout_batch_matches_sampler_and_policy_logprobs():
    """On real samples: gen_mask marks exactly the tokens the sampler chose, and the policy's
    teacher-forced log-probs at those tokens equal the sampler's (and an unpadded forward)."""
    model = _eos_pad_biased_model()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, 12)
    b = rng.integers(0, 10, 12)
    prompts, valid = tasks.render_prompts(a, b)
    G, max_new = 4, 4
    g = sampling.generate(model, prompts, valid, max_new, temperature=1.0, n_samples=G, seed=3)
    seq, sv, gm = rl.rollout_batch(prompts, valid, g.tokens)
    chosen = g.logprobs != 0  # the sampler logs 0 only on filler after a row stopped
    np.testing.assert_array_equal(gm.sum(1).numpy(), chosen.sum(1))
    np.testing.assert_array_equal(seq[gm].numpy(), g.tokens[chosen])  # same tokens, in order
    # every way of stopping occurs in this sample
    first = [next((t for t in r if t in (EOS, PAD)), None) for r in g.tokens.tolist()]
    assert first.count(EOS) > 3 and first.count(PAD) > 3 and first.count(None) > 0
    # teacher-forced log-probs through policy_loss's own indexing
    adv = torch.ones(len(seq))
    _, st = rl.policy_loss(model, None, seq, sv, gm, adv, beta=0.0)
    with torch.no_grad():
        lp = torch.log_softmax(model(seq[:, :-1], valid=sv[:, :-1]).float(), -1)
    lp_tok = lp.gather(2, seq[:, 1:, None]).squeeze(2)[gm[:, 1:]]
    torch.testing.assert_close(lp_tok, torch.from_numpy(g.logprobs[chosen]), atol=1e-4, rtol=0)
    assert st["pg"] == pytest.approx(-lp_tok.mean().item(), rel=1e-5)
    # an unpadded single-row forward gives the same numbers
    r = 5
    ids = list(prompts[r // G][valid[r // G]]) + list(g.tokens[r][chosen[r]])
    with torch.no_grad():
        lr_ = torch.log_softmax(model(torch.tensor([ids[:-1]])).float(), -1)[0]
    n = int(chosen[r].sum())
    want = [lr_[len(ids) - 1 - n + j, ids[len(ids) - n + j]].item() for j in range(n)]
    np.testing.assert_allclose(g.logprobs[r][chosen[r]], want, atol=1e-4)


# ---- policy_loss -----------------------------------------------------------------------
def _toy_rollouts():
    prompts, valid = tasks.render_prompts(np.array([12]), np.array([3]))
    gen = _pad_rows([encode("15") + [EOS], encode("97") + [EOS]], width=4)
    return rl.rollout_batch(prompts, valid, gen)


@pytest.mark.parametrize("rewarded", [0, 1])
def test_one_step_raises_rewarded_lowers_punished(rewarded):
    model = make_model(seed=4).train()
    seq, sv, gm = _toy_rollouts()
    r = torch.zeros(1, 2)
    r[0, rewarded] = 1.0
    adv, flat = rl.group_advantages(r)
    assert adv.reshape(-1).tolist() == ([0.5, -0.5] if rewarded == 0 else [-0.5, 0.5])
    assert flat == 0.0
    before = _row_logprob(model, seq, sv, gm)
    loss, st = rl.policy_loss(model, None, seq, sv, gm, adv.reshape(-1), beta=0.0)
    assert math.isnan(st["kl"]) and math.isnan(st["kl_k1"]) and math.isnan(st["kl_k3"])
    assert math.isfinite(st["entropy"]) and st["entropy"] > 0 and loss.item() == st["pg"]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = _row_logprob(model, seq, sv, gm)
    punished = 1 - rewarded
    assert after[rewarded] > before[rewarded] + 1e-4
    assert after[punished] < before[punished] - 1e-4


def test_policy_loss_kl_terms():
    policy = make_model(seed=4)
    other = make_model(seed=5)
    # two prompts of different lengths (the short one left-padded), two rollouts each
    prompts, valid = tasks.render_prompts(np.array([12, 3]), np.array([3, 4]))
    assert not valid.all()
    gen = _pad_rows([encode("15") + [EOS], encode("97") + [EOS], encode("7") + [EOS],
                     encode("123")], width=4)
    seq, sv, gm = rl.rollout_batch(prompts, valid, gen)
    adv = torch.tensor([0.5, -0.5, 0.25, -0.25])
    base, st0 = rl.policy_loss(policy, None, seq, sv, gm, adv, beta=0.0)
    # reference identical to the policy: every KL statistic is zero
    _, st = rl.policy_loss(policy, copy.deepcopy(policy), seq, sv, gm, adv, beta=1.0)
    assert abs(st["kl"]) <= 1e-7 and abs(st["kl_k1"]) <= 1e-7 and abs(st["kl_k3"]) <= 1e-7
    # a different reference: stats match a direct computation, loss = pg + beta * KL
    loss, st = rl.policy_loss(policy, other, seq, sv, gm, adv, beta=0.7)
    x, v, m = seq[:, :-1], sv[:, :-1], gm[:, 1:]
    with torch.no_grad():
        lp = torch.log_softmax(policy(x, valid=v), -1)[m]
        lq = torch.log_softmax(other(x, valid=v), -1)[m]
    tgt = seq[:, 1:][m]
    assert st["kl"] == pytest.approx(rl.exact_kl(lp, lq).mean().item(), rel=1e-5)
    k1 = (lp.gather(1, tgt[:, None]) - lq.gather(1, tgt[:, None])).mean().item()
    assert st["kl_k1"] == pytest.approx(k1, rel=1e-5)
    assert st["kl"] > 0 and st["kl_k3"] >= 0
    assert st["pg"] == pytest.approx(st0["pg"]) and st["entropy"] == pytest.approx(st0["entropy"])
    assert loss.item() == pytest.approx(base.item() + 0.7 * st["kl"], rel=1e-5)
    # beta = 0 with a reference: KL logged, not in the loss
    loss0, st_log = rl.policy_loss(policy, other, seq, sv, gm, adv, beta=0.0)
    assert loss0.item() == base.item() and st_log["kl"] == pytest.approx(st["kl"])
    # the reference gets no gradient
    loss.backward()
    assert all(p.grad is None for p in other.parameters())


# ---- the training loop -----------------------------------------------------------------
def test_train_rl_logs_exact_kl(sft_start):
    model, scfg = sft_start
    before = copy.deepcopy(model.state_dict())
    cfg = rl_config(beta=0.1)
    res = rl.train_rl(cfg, model, scfg, progress=False)
    h = res.history
    assert h["step"] == list(range(1, cfg.steps + 1))
    for k in ("reward", "kl", "kl_k1", "kl_k3", "entropy", "zero_signal", "grad_norm", "pg"):
        assert len(h[k]) == cfg.steps and all(math.isfinite(x) for x in h[k]), k
    assert all(x >= 0 for x in h["kl"]) and all(x >= 0 for x in h["kl_k3"])
    assert h["kl"][0] <= 1e-6 and abs(h["kl_k1"][0]) <= 1e-6  # policy == reference at step 1
    assert max(h["kl"]) > 1e-6  # ... and not after
    assert [e["step"] for e in h["val"]] == [2, 4, 6]
    assert set(h["val"][0]) == {"step", *tasks.BUCKETS} - {"d1"}   # d1 has no validation part
    assert all(0 <= x <= 1 for x in h["reward"] + h["zero_signal"] + h["ended"])
    # a step without any reward has no signal in any group
    assert 0.0 in h["reward"]
    assert all(z == 1.0 for r, z in zip(h["reward"], h["zero_signal"]) if r == 0)
    assert res.trained_now and not res.model.training and res.model is not model
    assert not _state_equal(res.model, model)
    # the starting model (the frozen reference) is left untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _record_ref_calls(monkeypatch):
    seen = []
    real = rl.policy_loss

    def spy(policy, ref, *args, **kw):
        seen.append(ref is None)
        return real(policy, ref, *args, **kw)

    monkeypatch.setattr(rl, "policy_loss", spy)
    return seen


def test_beta_zero_never_runs_the_reference(sft_start, monkeypatch):
    model, scfg = sft_start
    seen = _record_ref_calls(monkeypatch)
    plain = rl.train_rl(rl_config(beta=0.0), model, scfg, progress=False)
    assert seen == [True] * 6
    assert all(math.isnan(x) for x in plain.history["kl"] + plain.history["kl_k3"])
    seen.clear()
    logged = rl.train_rl(rl_config(beta=0.0, log_kl_at_zero_beta=True), model, scfg,
                         progress=False)
    assert seen == [False] * 6
    assert all(math.isfinite(x) and x >= 0 for x in logged.history["kl"])
    # logging the KL does not change the update
    assert _state_equal(plain.model, logged.model)
    assert plain.history["reward"] == logged.history["reward"]
    seen.clear()
    rl.train_rl(rl_config(beta=0.05), model, scfg, progress=False)
    assert seen == [False] * 6


def test_large_beta_stays_closer_to_reference(sft_start, monkeypatch):
    """A large beta keeps the policy near the reference. The reward is a toy one (answers
    that start with an even digit), so that the tiny model gets a policy-gradient signal."""
    model, scfg = sft_start
    real = reward.validate

    def toy(tokens, a, b, fmt):
        r = real(tokens, a, b, fmt)
        r.total = np.array([float(t[:1] in tuple("02468")) for t in r.texts])
        return r

    monkeypatch.setattr(reward, "validate", toy)
    a, b = tasks.enumerated("d1")
    toks, ans = tasks.render_examples(a, b, "plain")
    t, m = torch.from_numpy(toks), torch.from_numpy(ans)[:, 1:]

    def kl_to_ref(policy):
        with torch.no_grad():
            lp = torch.log_softmax(policy(t[:, :-1]), -1)[m]
            lq = torch.log_softmax(model(t[:, :-1]), -1)[m]
        return rl.exact_kl(lp, lq).mean().item()

    runs = {beta: rl.train_rl(rl_config(beta=beta, eval_every=100), model, scfg, progress=False)
            for beta in (0.0, 5.0)}
    z = runs[0.0].history["zero_signal"]
    assert sum(z) < 5 and any(0 < x < 1 for x in z)  # the toy reward does give a signal
    kl0, kl5 = kl_to_ref(runs[0.0].model), kl_to_ref(runs[5.0].model)
    assert kl0 > 1e-3
    assert kl5 < 0.3 * kl0, (kl0, kl5)


@pytest.mark.parametrize("k", [1, 4])
def test_resume_equals_uninterrupted(tmp_path, sft_start, k):
    model, scfg = sft_start
    cfg = rl_config()
    a = rl.train_rl(cfg, model, scfg, progress=False)
    path = tmp_path / "rl.pt"
    b1 = rl.train_rl(cfg, model, scfg, ckpt_path=path, progress=False, stop_after_step=k)
    assert b1.history["step"] == list(range(1, k + 1))
    ck = artifacts.load_checkpoint(path)
    assert ck["done"] is False and ck["step"] == k
    b = rl.train_rl(cfg, model, scfg, ckpt_path=path, progress=False)
    assert _state_equal(a.model, b.model)
    assert a.history == b.history  # beta > 0: every entry finite, so == is exact
    assert artifacts.load_checkpoint(path)["done"] is True
    assert b.history["step"] == list(range(1, cfg.steps + 1))


def test_resume_with_periodic_checkpoints(tmp_path, sft_start):
    model, scfg = sft_start
    cfg = rl_config(steps=5)
    a = rl.train_rl(cfg, model, scfg, progress=False)
    path = tmp_path / "p.pt"
    rl.train_rl(cfg, model, scfg, ckpt_path=path, ckpt_every=2, progress=False, stop_after_step=3)
    b = rl.train_rl(cfg, model, scfg, ckpt_path=path, ckpt_every=2, progress=False)
    assert _state_equal(a.model, b.model) and a.history == b.history


def test_resume_refuses_other_config(tmp_path, sft_start):
    model, scfg = sft_start
    path = tmp_path / "o.pt"
    rl.train_rl(rl_config(), model, scfg, ckpt_path=path, progress=False, stop_after_step=2)
    with pytest.raises(CheckpointError, match="beta"):
        rl.train_rl(rl_config(beta=0.3), model, scfg, ckpt_path=path, progress=False)


def test_get_or_train_trains_once(tmp_path, sft_start, monkeypatch):
    model, scfg = sft_start
    cfg = rl_config(steps=3)
    r1 = rl.get_or_train(cfg, model, scfg, tmp_path, progress=False)
    assert r1.trained_now
    d = rl.artifact_dir_for(cfg, tmp_path)
    assert r1.path == d / "ckpt.pt"
    key = artifacts.read_json(d / "key.json")
    assert key == rl.artifact_key(cfg) and key["config"] == cfg.to_dict()
    assert {"train.rl", "core.reward", "train.sft", "core.model"} <= set(key["code"])
    assert artifacts.load_checkpoint(r1.path)["provenance"] == r1.provenance

    def boom(*a, **kw):
        raise AssertionError("train_rl must not run again")

    monkeypatch.setattr(rl, "train_rl", boom)
    r2 = rl.get_or_train(cfg, model, scfg, tmp_path, progress=False)
    assert not r2.trained_now and not r2.model.training
    assert _state_equal(r1.model, r2.model)
    assert r2.history == r1.history
    assert r2.timing == r1.timing and r2.timing["loop_s"] > 0
    with pytest.raises(AssertionError, match="must not run"):
        rl.get_or_train(dataclasses.replace(cfg, seed=1), model, scfg, tmp_path, progress=False)


@pytest.mark.parametrize("bad_step", [1, 3])
def test_nan_loss_raises_naming_step(tmp_path, sft_start, monkeypatch, bad_step):
    model, scfg = sft_start
    real = rl.policy_loss
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        loss, st = real(*args, **kw)
        if calls["n"] == bad_step:
            loss = torch.tensor(float("nan"), requires_grad=True)
        return loss, st

    monkeypatch.setattr(rl, "policy_loss", flaky)
    path = tmp_path / "nan.pt"
    with pytest.raises(FloatingPointError, match=rf"nan at step {bad_step}\b") as e:
        rl.train_rl(rl_config(), model, scfg, ckpt_path=path, ckpt_every=1, progress=False)
    assert str(path) in str(e.value)
    if bad_step > 1:  # the last good checkpoint is intact
        assert artifacts.load_checkpoint(path)["step"] == bad_step - 1
    else:
        assert not path.exists()


@pytest.mark.parametrize("steps", [3, 0])
def test_unknown_bucket_raises(sft_start, steps):
    """Checked up front, before any step runs (steps=0: no bucket is ever sampled)."""
    model, scfg = sft_start
    with pytest.raises(ValueError, match="no_such_bucket"):
        rl.train_rl(rl_config(buckets=("d1", "no_such_bucket"), steps=steps), model, scfg,
                    progress=False)


def test_rollout_seeds_differ_per_step_and_run(sft_start, monkeypatch):
    model, scfg = sft_start
    seeds = []
    real = sampling.generate

    def spy(*args, **kw):
        if kw.get("temperature", 0) > 0:
            seeds.append(kw["seed"])
        return real(*args, **kw)

    monkeypatch.setattr(sampling, "generate", spy)
    rl.train_rl(rl_config(steps=4, eval_every=100), model, scfg, progress=False)
    rl.train_rl(rl_config(steps=4, eval_every=100, seed=1), model, scfg, progress=False)
    assert len(seeds) == 8 and len(set(seeds)) == 8


def test_config_to_dict_lists_buckets():
    d = rl_config(buckets=("d1", "mixed")).to_dict()
    assert d["buckets"] == ["d1", "mixed"] and d["beta"] == 0.1
    assert artifacts.config_hash(d) != artifacts.config_hash(rl_config(beta=0.2).to_dict())


# ---- dynamic sampling and the prompt mix ----------------------------------------------
def test_informative_hand_example():
    r = torch.tensor([[0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float)
    assert rl.informative(r).tolist() == [False, False, True, True]


def test_mix_weights_hand_example():
    # G = 4: p = 0.5 -> 1 - 2/16 = 0.875 informative; p in {0, 1} -> never; floor 0.05 each
    w = rl.mix_weights([1.0, 0.5, 0.0], 4, 0.05)
    np.testing.assert_allclose(w, [0.05, 0.9, 0.05])
    # weights follow the informative chance: p = 0.5 > p = 0.9 > p = 0.99, and they sum to 1
    w = rl.mix_weights([0.99, 0.5, 0.9], 8, 0.0)
    assert w[1] > w[2] > w[0] > 0 and abs(w.sum() - 1) < 1e-12
    # nothing informative anywhere: the uniform mix
    np.testing.assert_allclose(rl.mix_weights([1.0, 0.0], 4, 0.1), [0.5, 0.5])
    with pytest.raises(ValueError, match="floor 0.6 for 2 buckets"):
        rl.mix_weights([0.5, 0.5], 4, 0.6)


def test_mix_shares_follow_the_weights():
    rng = np.random.default_rng(0)
    excl = tasks.train_exclusions(2, 1234)
    _, _, which = rl.draw_mix(("d1", "d2_carry"), [0.9, 0.1], 4000, rng, 2, excl)
    assert abs((which == 0).mean() - 0.9) < 0.02


def _group_rewards(ro, G, fmt="plain"):
    rw = reward.validate(ro.tokens, np.repeat(ro.a, G), np.repeat(ro.b, G), fmt)
    return torch.from_numpy(rw.total).view(-1, G)


def _fake_generate(model, prompts, valid, max_new, temperature=0.0, n_samples=1, seed=0, **kw):
    """A stand-in sampler (plain format) that answers a + b correctly always when both are
    one digit (d1) and with probability 1/2 otherwise (greedy: wrong), else a + b + 1: a
    policy with groups of both kinds, whose pass rate differs by bucket."""
    rng = np.random.default_rng(seed)
    rows = []
    for p, v in zip(prompts, valid):
        a, b = (int(x) for x in bytes(int(t) for t in p[v][1:-1]).decode().split("+"))
        q = 1.0 if max(a, b) < 10 else 0.5
        for _ in range(n_samples):
            ok = rng.random() < q if temperature > 0 else q > 0.5
            rows.append(list(str(a + b if ok else a + b + 1).encode()) + [EOS])
    return sampling.Generation(_pad_rows(rows, max_new), np.zeros((len(rows), max_new)))


def test_dynamic_sampling_keeps_informative_groups_only(sft_start, monkeypatch):
    model, scfg = sft_start
    monkeypatch.setattr(sampling, "generate", _fake_generate)
    excl = tasks.train_exclusions(scfg.max_digits, scfg.eval_seed)
    max_new = tasks.max_answer_tokens(scfg.max_digits, scfg.fmt)
    kw = dict(prompts_per_step=12, group_size=4, buckets=("d1", "d2_nocarry"), weights=[0.5, 0.5],
              seed=3, max_digits=scfg.max_digits, exclude=excl, fmt=scfg.fmt, max_new=max_new)
    plain = rl.collect_groups(model, rng=np.random.default_rng(0), **kw)
    flags = rl.informative(_group_rewards(plain, 4))
    assert len(plain.a) == plain.drawn == 12 and plain.rounds == 1 and not plain.capped
    assert 0 < int(flags.sum()) < 12   # groups of both kinds
    assert plain.informative == int(flags.sum())
    dyn = rl.collect_groups(model, rng=np.random.default_rng(0), dynamic=True, max_draws=8, **kw)
    assert bool(rl.informative(_group_rewards(dyn, 4)).all())
    assert torch.equal(torch.from_numpy(dyn.rewards), _group_rewards(dyn, 4))
    assert len(dyn.a) == 12 and not dyn.capped
    assert dyn.rounds > 1 and 12 < dyn.drawn <= 8 * 12 and dyn.informative >= 12
    # the first round is the plain draw; its informative groups come first, in order
    np.testing.assert_array_equal(dyn.a[:int(flags.sum())], plain.a[flags.numpy()])


def test_dynamic_sampling_stops_at_its_cap_and_says_so(sft_start):
    _, scfg = sft_start
    model = make_model(seed=5)   # untrained: every reward 0, no group informative
    excl = tasks.train_exclusions(scfg.max_digits, scfg.eval_seed)
    ro = rl.collect_groups(model, 8, 4, ("d1",), [1.0], np.random.default_rng(0), 0,
                           scfg.max_digits, excl, scfg.fmt,
                           tasks.max_answer_tokens(scfg.max_digits, scfg.fmt),
                           dynamic=True, max_draws=3)
    assert ro.capped and len(ro.a) == 0 and ro.drawn == 24 and ro.informative == 0
    # in the loop: the step is logged as capped and the policy is not updated
    cfg = rl_config(steps=2, eval_every=100, dynamic=True, max_draws=3)
    res = rl.train_rl(cfg, model, scfg, progress=False)
    h = res.history
    assert h["capped"] == [True, True] and h["groups"] == [0, 0] and h["drawn"] == [24, 24]
    assert h["grad_tokens"] == [0, 0] and h["draws_per_group"] == [24, 24]
    assert _state_equal(res.model, model)


def test_dynamic_adaptive_run_logs_and_resumes(tmp_path, sft_start, monkeypatch):
    model, scfg = sft_start
    monkeypatch.setattr(sampling, "generate", _fake_generate)
    cfg = rl_config(steps=4, dynamic=True, max_draws=4, mix="adaptive", mix_floor=0.1,
                    buckets=("d1", "d2_nocarry"), beta=0.05)
    a = rl.train_rl(cfg, model, scfg, progress=False)
    h = a.history
    assert all(g <= cfg.prompts_per_step for g in h["groups"])
    assert all(d >= cfg.prompts_per_step for d in h["drawn"])
    assert h["mix"][0] == [0.5, 0.5]   # no pass rate seen yet
    assert all(abs(sum(m) - 1) < 1e-9 and min(m) >= 0.1 - 1e-12 for m in h["mix"])
    # the mix moved to d2_nocarry, the only bucket with informative groups (d1 keeps its floor)
    assert h["mix"][1] == pytest.approx([0.1, 0.9])
    assert all(g == cfg.prompts_per_step for g in h["groups"]) and not any(h["capped"])
    for g, t in zip(h["groups"], h["grad_tokens"]):
        assert (g > 0) == (t > 0)   # every kept group has a nonzero advantage somewhere
    path = tmp_path / "d.pt"
    rl.train_rl(cfg, model, scfg, ckpt_path=path, progress=False, stop_after_step=2)
    b = rl.train_rl(cfg, model, scfg, ckpt_path=path, progress=False)
    assert _state_equal(a.model, b.model)
    assert json.dumps(a.history) == json.dumps(b.history)   # NaN-safe equality


def test_rl_config_refuses_bad_mix():
    with pytest.raises(ValueError, match="mix='greedy'"):
        rl_config(mix="greedy")
    with pytest.raises(ValueError, match="mix_floor=0.6"):
        rl_config(mix_floor=0.6, buckets=("d1", "mixed"))
    with pytest.raises(ValueError, match="max_draws=0"):
        rl_config(max_draws=0)


# ---- where RL starts, and what it costs ---------------------------------------------------

def _history(probes):
    return {"val": [{"step": 100 * (i + 1), "general": v} for i, v in enumerate(probes)]}


def test_schedule_starts_hand_example():
    h = _history([0.0, 0.0, 0.0, 0.1, 0.3, 0.6, 0.9, 0.95, 0.97])
    assert rl.schedule_starts(h) == {"step 300 (before)": 300, "step 500 (>= 20%)": 500,
                                     "step 600 (>= 50%)": 600, "step 700 (>= 80%)": 700}
    assert rl.moving_start(h) == 600
    # one probe passing several levels is one start; the last probe (the finished model) is none
    h = _history([0.0, 0.0, 0.0, 0.9, 0.99])
    assert rl.schedule_starts(h) == {"step 200 (before)": 200, "step 400 (>= 20%)": 400}
    assert rl.moving_start(h) == 400
    assert rl.schedule_starts(_history([0.0, 0.0, 0.95])) == {"step 100 (best probe)": 100}


def test_moving_start_falls_back_to_the_best_probe():
    assert rl.moving_start(_history([0.02, 0.18, 0.05, 0.9])) == 200   # 0.9 is the end
    assert rl.moving_start(_history([0.0, 0.0, 0.0])) == 100           # the first of equals
    assert rl.moving_start(_history([0.7])) is None                    # only the end
    assert rl.schedule_starts(_history([0.02, 0.25, 0.05, 0.9])) == {"step 200 (>= 20%)": 200}


def test_sft_tokens_of_hand_example():
    h = {"sampled_tokens": [300, 300], "update_tokens": [150, 0]}
    assert rl.sft_tokens_of(h, reference=False) == 200 + 150
    assert rl.sft_tokens_of(h, reference=True) == 200 + 200


def test_rollout_and_update_tokens_are_the_real_tokens(sft_start, monkeypatch):
    model, scfg = sft_start
    monkeypatch.setattr(sampling, "generate", _fake_generate)
    excl = tasks.train_exclusions(scfg.max_digits, scfg.eval_seed)
    ro = rl.collect_groups(model, 6, 3, ("d1", "d2_nocarry"), [0.5, 0.5], np.random.default_rng(0), 1,
                           scfg.max_digits, excl, scfg.fmt, tasks.max_answer_tokens(scfg.max_digits, scfg.fmt))
    prompts, valid = tasks.render_prompts(ro.a, ro.b)
    # every sample: its prompt, then at least one digit and EOS
    assert ro.sampled_tokens >= int(valid.sum()) * 3 + 2 * 18
    seq, sv, gm = rl.rollout_batch(prompts, valid, ro.tokens)
    assert ro.sampled_tokens == int(sv.sum())   # what the sampler ran on is what the update runs on
    cfg = rl_config(steps=1, eval_every=100, buckets=("d1", "d2_nocarry"))
    h = rl.train_rl(cfg, model, scfg, progress=False).history
    assert h["update_tokens"][0] > 0 and h["sampled_tokens"][0] > 0


def test_a_snapshot_start_is_its_own_rl_key(sft_start):
    _, scfg = sft_start
    P = params.validate({})
    a = rl.config_from_params(P, scfg)
    b = rl.config_from_params(P, scfg, start_step=500)
    assert a.init == rl.init_key(scfg) and b.init == f"{rl.init_key(scfg)}@step-500"
    assert rl.artifact_key(a) != rl.artifact_key(b)


import numpy as np
import pytest
import torch

from reasonlib.core import sampling, tasks
from reasonlib.core.tokenizer import EOS, PAD


def _prompts(a=(3, 123, 45, 7), b=(4, 6, 678, 9999)):
    return tasks.render_prompts(np.array(a), np.array(b))


def _greedy_reference(model, prompt_row: np.ndarray, n_new: int) -> list[int]:
    """Plain argmax loop over full forwards of one unpadded prompt."""
    seq = torch.as_tensor(prompt_row)[None]
    out = []
    with torch.no_grad():
        for _ in range(n_new):
            nxt = int(model(seq)[0, -1].argmax())
            out.append(nxt)
            if nxt == EOS:
                break
            seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
    return out + [PAD] * (n_new - len(out))


@pytest.mark.parametrize("kw", [dict(temperature=0.0), dict(temperature=1.0, seed=3),
                                dict(temperature=0.7, top_k=5, seed=4, n_samples=3),
                                # chunks of 3 prompts and then 1: the second chunk's KV cache
                                # reuses part of the first one's memory
                                dict(temperature=1.0, seed=5, n_samples=3, batch_size=9)])
def test_cache_equals_full_recompute(peaked_model, kw):
    p, v = _prompts()
    g1 = sampling.generate(peaked_model, p, v, 12, **kw)
    g2 = sampling.generate(peaked_model, p, v, 12, use_cache=False, **kw)
    assert np.array_equal(g1.tokens, g2.tokens)
    np.testing.assert_allclose(g1.logprobs, g2.logprobs, atol=1e-5)
    assert g1.tokens.shape == (len(p) * kw.get("n_samples", 1), 12)


def test_cache_equals_full_recompute_flat_model(tiny_model):
    """Near-uniform distribution over the whole vocabulary at T=1."""
    p, v = _prompts()
    g1 = sampling.generate(tiny_model, p, v, 10, temperature=1.0, n_samples=4, seed=9)
    g2 = sampling.generate(tiny_model, p, v, 10, temperature=1.0, n_samples=4, seed=9,
                           use_cache=False)
    assert np.array_equal(g1.tokens, g2.tokens)


def test_seeding(tiny_model):
    p, v = _prompts()
    kw = dict(max_new_tokens=10, temperature=1.0, n_samples=4)
    a = sampling.generate(tiny_model, p, v, seed=1, **kw)
    b = sampling.generate(tiny_model, p, v, seed=1, **kw)
    c = sampling.generate(tiny_model, p, v, seed=2, **kw)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.logprobs, b.logprobs)
    assert not np.array_equal(a.tokens, c.tokens)
    # samples of one prompt differ from each other (they are not copies)
    assert len({tuple(r) for r in a.tokens[:4]}) > 1


def test_sampling_does_not_touch_global_rng(tiny_model):
    p, v = _prompts()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    sampling.generate(tiny_model, p, v, 5, temperature=1.0, seed=1)
    assert torch.equal(before, torch.get_rng_state())


def test_temperature_zero_is_greedy(peaked_model):
    p, v = _prompts()
    g0 = sampling.generate(peaked_model, p, v, 12, temperature=0.0, seed=1)
    g0b = sampling.generate(peaked_model, p, v, 12, temperature=0.0, seed=2)
    assert np.array_equal(g0.tokens, g0b.tokens), "greedy must not depend on the seed"
    for i in range(len(p)):
        assert g0.tokens[i].tolist() == _greedy_reference(peaked_model, p[i][v[i]], 12)
    gk = sampling.generate(peaked_model, p, v, 12, temperature=1.0, top_k=1, seed=5)
    assert np.array_equal(g0.tokens, gk.tokens)


def test_greedy_on_flat_model_matches_reference(tiny_model):
    p, v = _prompts()
    g = sampling.generate(tiny_model, p, v, 8)
    for i in range(len(p)):
        assert g.tokens[i].tolist() == _greedy_reference(tiny_model, p[i][v[i]], 8)


def test_logprobs_are_model_logprobs_of_chosen_tokens(peaked_model):
    p, v = _prompts(a=(12,), b=(34,))
    g = sampling.generate(peaked_model, p, v, 1, temperature=1.0, n_samples=50, seed=0)
    with torch.no_grad():
        lp = torch.log_softmax(peaked_model(torch.as_tensor(p))[0, -1], -1).numpy()
    np.testing.assert_allclose(g.logprobs[:, 0], lp[g.tokens[:, 0]], atol=1e-5)


def _rig_constant_output(model, eos_logit: float, pad_logit: float = -30.0):
    """Make every position output the same logits: 0-ish for ordinary tokens, ``eos_logit``
    for EOS and ``pad_logit`` for PAD (the final LayerNorm outputs a constant vector)."""
    with torch.no_grad():
        C = model.cfg.n_embd
        u = torch.zeros(C)
        u[0] = 1.0
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(u)
        model.tok.weight[:, 0] = 0.0  # tied head: logit of token i = tok.weight[i, 0]
        model.tok.weight[EOS, 0] = eos_logit
        model.tok.weight[PAD, 0] = pad_logit
    return model


@pytest.mark.parametrize("use_cache", [True, False])
def test_always_eos_stops_immediately(model_factory, use_cache):
    m = _rig_constant_output(model_factory(), eos_logit=30.0)
    p, v = _prompts()
    g = sampling.generate(m, p, v, 6, use_cache=use_cache)
    assert (g.tokens[:, 0] == EOS).all()
    assert (g.tokens[:, 1:] == PAD).all()
    assert (g.logprobs[:, 1:] == 0).all()


@pytest.mark.parametrize("use_cache", [True, False])
def test_rows_stop_at_eos_then_pad(model_factory, use_cache):
    # EOS has probability ~e^4 / (e^4 + 262) ~ 0.17 per step: rows stop at varied steps
    m = _rig_constant_output(model_factory(), eos_logit=4.0)
    p, v = _prompts()
    g = sampling.generate(m, p, v, 12, temperature=1.0, n_samples=50, seed=0,
                          use_cache=use_cache)
    stops = []
    for row, lp in zip(g.tokens, g.logprobs):
        eos = np.flatnonzero(row == EOS)
        if len(eos) == 0:
            assert (row != PAD).all() and (lp < 0).all()
            stops.append(None)
            continue
        e = int(eos[0])
        stops.append(e)
        assert (row[:e] != PAD).all() and (row[:e] != EOS).all()
        assert (row[e + 1:] == PAD).all()
        assert (lp[e + 1:] == 0).all() and (lp[: e + 1] < 0).all()
    stopped = [s for s in stops if s is not None]
    assert len(set(stopped)) >= 5, "EOS should occur at many different steps"
    assert None in stops, "some rows should run to max_new_tokens"


def test_mixed_lengths_batch_equals_alone(peaked_model):
    p, v = _prompts()
    batch = sampling.generate(peaked_model, p, v, 10)
    assert len({tuple(r) for r in batch.tokens}) == len(p), "outputs should differ per prompt"
    for i in range(len(p)):
        alone_p, alone_v = p[i][v[i]][None], v[i][v[i]][None]
        alone = sampling.generate(peaked_model, alone_p, alone_v, 10)
        assert np.array_equal(batch.tokens[i], alone.tokens[0])
        np.testing.assert_allclose(batch.logprobs[i], alone.logprobs[0], atol=1e-5)


def test_chunking_does_not_change_greedy_output(peaked_model):
    p, v = _prompts()
    a = sampling.generate(peaked_model, p, v, 8)
    b = sampling.generate(peaked_model, p, v, 8, batch_size=1)
    assert np.array_equal(a.tokens, b.tokens)


def _first_token_probs(model, prompt, temperature=1.0, top_k=0):
    with torch.no_grad():
        logits = model(torch.as_tensor(prompt)[None])[0, -1] / temperature
    if top_k:
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits.double(), -1).numpy()


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.6, 0), (1.5, 8)])
def test_first_token_frequencies_match_softmax(peaked_model, temperature, top_k):
    p, v = _prompts(a=(27,), b=(58,))
    n = 20_000
    g = sampling.generate(peaked_model, p, v, 1, temperature=temperature, top_k=top_k,
                          n_samples=n, seed=123)
    counts = np.bincount(g.tokens[:, 0], minlength=peaked_model.cfg.vocab_size)
    probs = _first_token_probs(peaked_model, p[0], temperature, top_k)
    assert probs.max() < 0.9 and (probs > 0.01).sum() >= 3, "distribution should be informative"
    sigma = np.sqrt(n * probs * (1 - probs))
    dev = np.abs(counts - n * probs)
    assert (dev <= 5 * sigma + 1).all(), np.argmax(dev / (sigma + 1))
    if top_k:
        assert (counts[probs == 0] == 0).all()
    # the test has teeth: T=1 frequencies would not fit the T=0.6 distribution (and back)
    wrong = _first_token_probs(peaked_model, p[0], 1.0 if temperature != 1.0 else 0.6, top_k)
    assert (np.abs(counts - n * wrong) > 5 * np.sqrt(n * wrong * (1 - wrong)) + 1).any()


@pytest.mark.parametrize("kw,name", [
    (dict(temperature=-0.1), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(n_samples=0), "n_samples"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=100), "block_size"),
])
def test_bad_arguments_raise(tiny_model, kw, name):
    p, v = _prompts()
    args = dict(max_new_tokens=4)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        sampling.generate(tiny_model, p, v, **args)


def test_generate_restores_training_mode(tiny_model):
    p, v = _prompts()
    tiny_model.train()
    sampling.generate(tiny_model, p, v, 3)
    assert tiny_model.training
    tiny_model.eval()
    sampling.generate(tiny_model, p, v, 3)
    assert not tiny_model.training

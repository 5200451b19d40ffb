import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reasonlib.core import engine
from reasonlib.core import model as model_mod
from reasonlib.core import packed
from reasonlib.core import tasks
from reasonlib.core.model import GPT, ModelConfig
from reasonlib.core.tokenizer import PAD, VOCAB_SIZE


def _rand_ids(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 259, (B, T), generator=g)


@pytest.mark.parametrize("t", [0, 3, 10])
def test_causal_masking(tiny_model, t):
    idx = _rand_ids(3, 16)
    changed = idx.clone()
    changed[:, t + 1:] = _rand_ids(3, 16, seed=1)[:, t + 1:]
    assert not torch.equal(idx[:, t + 1:], changed[:, t + 1:])
    with torch.no_grad():
        a, b = tiny_model(idx), tiny_model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)  # the test has teeth


def test_causal_masking_with_valid_mask(tiny_model):
    idx = _rand_ids(2, 12)
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, :4] = False
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 7) % 256
    with torch.no_grad():
        a = tiny_model(idx, valid=valid)
        b = tiny_model(changed, valid=valid)
    torch.testing.assert_close(a[:, :8], b[:, :8], rtol=0, atol=1e-6)


def test_padding_invariance(tiny_model):
    a = np.array([3, 123, 45, 7])
    b = np.array([4, 6, 678, 9999])
    toks, valid = tasks.render_prompts(a, b)
    assert (~valid).any(), "some rows must be padded"
    with torch.no_grad():
        batch = tiny_model(torch.as_tensor(toks), valid=torch.as_tensor(valid))[:, -1]
        for i in range(len(a)):
            alone = torch.as_tensor(toks[i][valid[i]])[None]
            ref = tiny_model(alone)[0, -1]
            torch.testing.assert_close(batch[i], ref, rtol=0, atol=1e-5)
            # also through the valid path without padding
            ref2 = tiny_model(alone, valid=torch.ones_like(alone, dtype=torch.bool))[0, -1]
            torch.testing.assert_close(batch[i], ref2, rtol=0, atol=1e-5)


def test_padding_content_is_ignored(tiny_model):
    a, b = np.array([3, 1234]), np.array([4, 5678])
    toks, valid = tasks.render_prompts(a, b)
    other = toks.copy()
    other[~valid] = 65  # garbage in the padded slots
    with torch.no_grad():
        x = tiny_model(torch.as_tensor(toks), valid=torch.as_tensor(valid))
        y = tiny_model(torch.as_tensor(other), valid=torch.as_tensor(valid))
    v = torch.as_tensor(valid)
    torch.testing.assert_close(x[v], y[v], rtol=0, atol=1e-6)
    assert torch.isfinite(x).all()


def test_kv_cache_matches_full_forward(tiny_model):
    a, b = np.array([3, 123, 45]), np.array([4, 6, 678])
    toks, valid = tasks.render_prompts(a, b)
    p, v = torch.as_tensor(toks), torch.as_tensor(valid)
    n_new = 10
    cache = engine.new_cache(tiny_model, len(a), p.shape[1] + n_new)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        logits = engine.prefill(tiny_model, p, v, cache)
        seq, val = p, v
        for step in range(n_new):
            full = tiny_model(seq, valid=val)[:, -1]
            torch.testing.assert_close(logits, full, rtol=0, atol=1e-5)
            nxt = torch.randint(0, 259, (len(a),), generator=g)
            seq = torch.cat([seq, nxt[:, None]], 1)
            val = torch.cat([val, torch.ones_like(val[:, :1])], 1)
            logits = engine.decode_step(tiny_model, nxt, cache)
        torch.testing.assert_close(logits, tiny_model(seq, valid=val)[:, -1], rtol=0, atol=1e-5)
        # and each row alone, without any padding
        for i in range(len(a)):
            alone = seq[i][val[i]][None]
            torch.testing.assert_close(logits[i], tiny_model(alone)[0, -1], rtol=0, atol=1e-5)


def test_kv_cache_full_raises(tiny_model):
    p = torch.tensor([[257, 49]])
    cache = engine.new_cache(tiny_model, 1, 3)
    with torch.no_grad():
        engine.prefill(tiny_model, p, torch.ones_like(p, dtype=torch.bool), cache)
        engine.decode_step(tiny_model, torch.tensor([50]), cache)
        with pytest.raises(ValueError, match="full"):
            engine.decode_step(tiny_model, torch.tensor([51]), cache)


def test_cache_store_reuses_memory_and_changes_no_value(tiny_model):
    """Caches made one after another from one store share the generated part's memory, and
    decode exactly as caches without a store do; a repeat after decoding began takes fresh
    memory (it copies the filled slots out of the old buffer)."""
    p = torch.tensor([[PAD, 257, 49], [257, 50, 51]])
    v = p != PAD
    store = {}

    def run(cache):
        out = [engine.prefill(tiny_model, p, v, cache)]
        cache.repeat_interleave(3)
        out.append(engine.decode_step(tiny_model, torch.tensor([52, 53]).repeat_interleave(3), cache))
        cache.repeat_interleave(2)
        out.append(engine.decode_step(tiny_model, torch.tensor([54, 55]).repeat_interleave(6), cache))
        return out

    with torch.no_grad():
        ref = run(engine.new_cache(tiny_model, 2, 6))
        first = engine.new_cache(tiny_model, 2, 6, store)
        assert all(torch.equal(a, b) for a, b in zip(run(first), ref))
        kept = store["k"].data_ptr()
        assert first.k.data_ptr() != kept      # the repeat after a decoded token: fresh memory
        second = engine.new_cache(tiny_model, 2, 6, store)
        engine.prefill(tiny_model, p, v, second)
        second.repeat_interleave(3)
        assert second.k.data_ptr() == kept and second.v.data_ptr() == store["v"].data_ptr()
        # the stale values the store's memory still holds change nothing
        assert all(torch.equal(a, b) for a, b in zip(run(engine.new_cache(tiny_model, 2, 6, store)), ref))


def test_cache_repeat_interleave(tiny_model):
    p = torch.tensor([[PAD, 257, 49], [257, 50, 51]])
    v = p != PAD
    c1, c2 = engine.new_cache(tiny_model, 2, 6), engine.new_cache(tiny_model, 2, 6)
    with torch.no_grad():
        engine.prefill(tiny_model, p, v, c1)
        engine.prefill(tiny_model, p, v, c2)
        c2.repeat_interleave(3)
        # 6 rows decode; the prompt's keys stay stored once per prompt
        assert c2.rows == 6 and c2.k.shape[2] == 6 and c2.key_valid.shape[1] == 6
        assert c2.pk[0].shape[0] == 2
        nxt = torch.tensor([52, 53])
        ref = engine.decode_step(tiny_model, nxt, c1)
        rep = engine.decode_step(tiny_model, nxt.repeat_interleave(3), c2)
        torch.testing.assert_close(rep, ref.repeat_interleave(3, dim=0), rtol=0, atol=1e-6)
        # repeated again after a decoded token: the filled slot goes with its rows
        c1.repeat_interleave(2)
        c2.repeat_interleave(2)
        nxt = torch.tensor([54, 55])
        ref = engine.decode_step(tiny_model, nxt.repeat_interleave(2), c1)
        rep = engine.decode_step(tiny_model, nxt.repeat_interleave(6), c2)
    torch.testing.assert_close(rep, ref.repeat_interleave(3, dim=0), rtol=0, atol=1e-6)


def test_decode_needs_prefill_and_prefill_an_empty_cache(tiny_model):
    p = torch.tensor([[257, 49]])
    v = torch.ones_like(p, dtype=torch.bool)
    with torch.no_grad():
        with pytest.raises(ValueError, match="prefill first"):
            engine.decode_step(tiny_model, torch.tensor([50]), engine.new_cache(tiny_model, 1, 4))
        with pytest.raises(ValueError, match="no room"):
            engine.prefill(tiny_model, p, v, engine.new_cache(tiny_model, 1, 2))
        cache = engine.new_cache(tiny_model, 1, 4)
        engine.prefill(tiny_model, p, v, cache)
        with pytest.raises(ValueError, match="empty KV cache"):
            engine.prefill(tiny_model, p, v, cache)


@pytest.mark.parametrize("L,H,C,mlp", [(1, 2, 32, 4), (2, 4, 64, 4), (3, 1, 8, 2)])
def test_num_params_hand_count(L, H, C, mlp):
    cfg = ModelConfig(n_layer=L, n_head=H, n_embd=C, block_size=16, pos="rope", mlp_ratio=mlp)
    V = VOCAB_SIZE
    per_block = (
        2 * C              # ln1
        + 3 * C * C        # qkv, no bias
        + C * C            # proj, no bias
        + 2 * C            # ln2
        + C * mlp * C + mlp * C   # fc
        + mlp * C * C + C         # out
    )
    want = V * C + L * per_block + 2 * C  # embedding (tied with head, counted once) + ln_f
    m = GPT(cfg)
    assert m.num_params() == want
    assert m.head.weight is m.tok.weight


@pytest.mark.parametrize("field", ["n_layer", "n_head", "n_embd", "block_size", "vocab_size",
                                   "mlp_ratio"])
@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_model_config_rejects_non_positive(field, bad):
    shape = dict(n_layer=2, n_head=4, n_embd=64, block_size=32, pos="rope")
    with pytest.raises(ValueError) as e:
        ModelConfig(**{**shape, field: bad})
    assert f"{field}={bad!r}" in str(e.value)


def test_model_config_rejects_indivisible_heads():
    with pytest.raises(ValueError) as e:
        ModelConfig(n_layer=2, n_embd=30, n_head=4, block_size=32, pos="rope")
    msg = str(e.value)
    assert "n_embd=30" in msg and "n_head=4" in msg and "divisible" in msg


def test_model_config_to_dict_round_trip():
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, pos="abacus")
    assert ModelConfig(**cfg.to_dict()) == cfg


def test_sequence_longer_than_block_raises(model_factory):
    m = model_factory(block_size=8)
    with torch.no_grad():
        m(torch.zeros(2, 8, dtype=torch.long))  # exactly block_size is fine
        with pytest.raises(ValueError, match="9.*block_size=8"):
            m(torch.zeros(2, 9, dtype=torch.long))
        with pytest.raises(ValueError, match="block_size"):
            m(torch.zeros(1, 9, dtype=torch.long), valid=torch.ones(1, 9, dtype=torch.bool))


def test_hidden_only_and_shapes(tiny_model):
    idx = _rand_ids(2, 5)
    with torch.no_grad():
        h = tiny_model(idx, hidden_only=True)
        logits = tiny_model(idx)
    assert h.shape == (2, 5, tiny_model.cfg.n_embd)
    assert logits.shape == (2, 5, VOCAB_SIZE)
    torch.testing.assert_close(tiny_model.head(h), logits)


def test_select_equals_full_forward_then_index():
    torch.manual_seed(0)
    m = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, pos="rope"))
    x = torch.randint(0, 256, (5, 12))
    sel = torch.rand(5, 12) < 0.4
    full = m(x)[sel]
    part = m(x, select=sel)
    assert part.shape == full.shape
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)


# ---- position schemes ------------------------------------------------------------------
from reasonlib.core.model import place_ids, place_window  # noqa: E402
from reasonlib.core.schemes import MAX_PLACE, PLACED, POS_SCHEMES, WINDOW  # noqa: E402
from reasonlib.core.sampling import generate  # noqa: E402
from reasonlib.core.tokenizer import BOS, EOS  # noqa: E402
from conftest import make_model  # noqa: E402


@pytest.fixture(params=POS_SCHEMES)
def scheme_model(request):
    m = make_model(pos=request.param, w_scale=3.0)
    if request.param == "abacus":   # place vectors as large as token vectors, so they matter
        with torch.no_grad():
            m.place.weight[1:].normal_(0, 0.5)
    return m


def _ids(text: str) -> list[int]:
    return [BOS] + list(text.encode()) + [EOS]


def test_place_ids_hand_computed():
    # operands count from the right of their number, the answer from the left of its run
    assert place_ids(torch.tensor([_ids("12+477=984")])).tolist() == \
        [[0, 2, 1, 0, 3, 2, 1, 0, 1, 2, 3, 0]]
    # scratchpad: every run after '=' counts from its own start; offsets shift digits only
    assert place_ids(torch.tensor([_ids("7+85=12;9>92")]), torch.tensor([4])).tolist() == \
        [[0, 5, 0, 6, 5, 0, 5, 6, 0, 5, 0, 5, 6, 0]]
    # coupled: from '=' on, each token carries the place of the digit it predicts
    assert place_ids(torch.tensor([_ids("12+477=984")]), coupled=True).tolist() == \
        [[0, 2, 1, 0, 3, 2, 1, 1, 2, 3, 4, 1]]
    # left padding (PAD is not a digit) changes nothing for the real tokens
    p, v = tasks.render_prompts(np.array([3, 123]), np.array([4, 6]))
    assert place_ids(torch.as_tensor(p)).tolist() == [[0, 0, 0, 1, 0, 1, 0], [0, 3, 2, 1, 0, 1, 0]]


def test_local_window_hand_computed():
    # local: coupled places; the '=' query (place 1) sees its own place (and the unplaced BOS,
    # '+'); in the first layer also the place below, which the units do not have
    t = torch.tensor([_ids("12+477=984")])
    pl = place_ids(t, coupled=True)          # 0 2 1 0 3 2 1 1 2 3 4 1
    first, later = (place_window(pl, pl, w)[0, 0] for w in WINDOW)
    assert first[7, :8].long().tolist() == [1, 0, 1, 1, 0, 0, 1, 1]
    # the token '8' predicts the hundreds (place 3): places 3 and 2 first, then 3 only
    assert first[9, :10].long().tolist() == [1, 1, 0, 1, 1, 1, 0, 0, 1, 1]
    assert later[9, :10].long().tolist() == [1, 0, 0, 1, 1, 0, 0, 0, 0, 1]
    # an offset shifts every place of a row alike, so it never changes the window
    po = place_ids(t, torch.tensor([5]), coupled=True)
    for w in WINDOW:
        assert torch.equal(place_window(po, po, w), place_window(pl, pl, w))


@pytest.mark.parametrize("pos,layers,far,seen", [
    ("local", 1, 1, True), ("local", 1, 2, False), ("local", 3, 1, True), ("local", 3, 2, False),
    ("coupled", 1, 3, True)])
def test_local_sees_one_place_below_at_most(pos, layers, far, seen):
    """The answer token that predicts place 2 learns about place 1 below it and nothing
    further, however many layers (coupled sees every place in one layer): changing the
    operand digits ``far`` places below changes its logits only within that reach."""
    m = make_model(pos=pos, w_scale=3.0, n_layer=layers, block_size=24)
    a, b = "4567", "8912"
    t = torch.tensor([[BOS] + list(f"{a}+{b}=".encode())])
    t = torch.cat([t, torch.tensor([[ord("9"), ord("9")]])], 1)   # predicts place 3
    changed = t.clone()
    for start in (1, 2 + len(a)):      # the digits of place 3 - far in both operands
        changed[0, start + len(a) - (3 - far)] = ord("0")
    with torch.no_grad():
        same = torch.allclose(m(t)[0, -1], m(changed)[0, -1], rtol=0, atol=1e-6)
    assert same != seen


def test_rope_positions_hand_computed():
    # rotary positions count each row's real tokens from 0; padding takes position 0
    p, v = tasks.render_prompts(np.array([3, 123]), np.array([4, 6]))
    pos = (torch.as_tensor(v).long().cumsum(1) - 1).clamp_min(0)
    assert pos.tolist() == [[0, 0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize("t", [0, 3, 10])
def test_causal_masking_every_scheme(scheme_model, t):
    """Logits at position t never depend on later tokens. For abacus this holds from the
    first '=' on (prompt digits count from the right of their number, and the prompt is
    given whole): every position the loss or the sampler reads."""
    idx = _rand_ids(3, 16)
    if scheme_model.cfg.pos in PLACED:
        idx[:, 0] = ord("=")   # every position is after the prompt
    changed = idx.clone()
    changed[:, t + 1:] = _rand_ids(3, 16, seed=1)[:, t + 1:]
    with torch.no_grad():
        a, b = scheme_model(idx), scheme_model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)


@pytest.mark.parametrize("pos", PLACED)
def test_answer_never_leaks_into_prompt_side(pos):
    """What the loss scores (positions from '=' on) depends only on tokens up to each one,
    also for real rendered rows whose prompt part has right-counted places."""
    m = make_model(pos=pos, w_scale=3.0)
    toks, ans = tasks.render_examples(np.array([47, 5]), np.array([85, 803]), "reversed")
    t = torch.as_tensor(toks)
    eq = int((t[0] == ord("=")).nonzero()[0])
    changed = t.clone()
    changed[:, eq + 1:] = torch.where(changed[:, eq + 1:] == PAD, PAD, ord("7"))
    with torch.no_grad():
        a, b = m(t), m(changed)
    torch.testing.assert_close(a[:, : eq + 1], b[:, : eq + 1], rtol=0, atol=1e-6)


def test_padding_invariance_every_scheme(scheme_model):
    a, b = np.array([3, 123, 45, 7]), np.array([4, 6, 678, 9999])
    toks, valid = tasks.render_prompts(a, b)
    with torch.no_grad():
        batch = scheme_model(torch.as_tensor(toks), valid=torch.as_tensor(valid))[:, -1]
        for i in range(len(a)):
            alone = torch.as_tensor(toks[i][valid[i]])[None]
            torch.testing.assert_close(batch[i], scheme_model(alone)[0, -1], rtol=0, atol=1e-5)


def test_kv_cache_matches_full_forward_every_scheme(scheme_model):
    a, b = np.array([3, 123, 45]), np.array([4, 6, 678])
    toks, valid = tasks.render_prompts(a, b)
    p, v = torch.as_tensor(toks), torch.as_tensor(valid)
    cache = engine.new_cache(scheme_model, len(a), p.shape[1] + 12)
    # digits, runs broken by ';' and '>', a second '=' (still "after the first")
    steps = [ord(c) for c in "12;3>45=678"] + [EOS]
    with torch.no_grad():
        logits = engine.prefill(scheme_model, p, v, cache)
        seq, val = p, v
        for i, tok in enumerate(steps):
            full = scheme_model(seq, valid=val)[:, -1]
            torch.testing.assert_close(logits, full, rtol=0, atol=1e-5)
            nxt = torch.tensor([tok, steps[(i + 3) % len(steps)], ord("9")])
            seq = torch.cat([seq, nxt[:, None]], 1)
            val = torch.cat([val, torch.ones_like(val[:, :1])], 1)
            logits = engine.decode_step(scheme_model, nxt, cache)
        torch.testing.assert_close(logits, scheme_model(seq, valid=val)[:, -1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampler_cache_equals_recompute_every_scheme(scheme_model, temperature):
    a, b = np.array([3, 123, 45, 9999]), np.array([4, 6, 678, 1])
    p, v = tasks.render_prompts(a, b)
    kw = dict(temperature=temperature, n_samples=3, seed=5)
    fast = generate(scheme_model, p, v, 9, **kw)
    slow = generate(scheme_model, p, v, 9, use_cache=False, **kw)
    np.testing.assert_array_equal(fast.tokens, slow.tokens)
    np.testing.assert_allclose(fast.logprobs, slow.logprobs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos", PLACED)
def test_placed_prompt_must_end_with_equals(pos):
    m = make_model(pos=pos)
    p = torch.tensor([[BOS, ord("1"), ord("+"), ord("2")]])
    with pytest.raises(ValueError, match="end with '='"):
        engine.prefill(m, p, torch.ones_like(p, dtype=torch.bool), engine.new_cache(m, 1, 8))


def test_abacus_offset_shifts_only_digits_and_stays_in_table():
    t = torch.tensor([_ids("999+999=8991")])
    off = torch.tensor([MAX_PLACE - 4])
    pl = place_ids(t, off)
    assert pl.max() == MAX_PLACE and (pl[t < ord("0")] == 0).all()
    m = make_model(pos="abacus", block_size=16)
    with torch.no_grad():
        assert torch.isfinite(m(t, place_offset=off)).all()


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="pos='alibi'.*rope, nope, abacus, coupled"):
        ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, pos="alibi")


# ---- rotary positions ----------------------------------------------------------------------
def test_rotary_scores_depend_on_offsets_only():
    g = torch.Generator().manual_seed(0)
    D = 8
    q, k = torch.randn(D, generator=g), torch.randn(D, generator=g)
    cos, sin = model_mod.rope_tables(torch.tensor([[0, 2, 3, 5]]), D)   # (1, 4, 1, 1, D/2)
    rq, rk = (model_mod.rotate(t.expand(1, 4, D), cos[:, :, 0, 0], sin[:, :, 0, 0])[0]
              for t in (q, k))
    # the same query and key at positions (3, 0) and (5, 2): the same score; (2, 0): another
    torch.testing.assert_close(rq[2] @ rk[0], rq[3] @ rk[1], rtol=0, atol=1e-5)
    assert not torch.allclose(rq[2] @ rk[0], rq[1] @ rk[0], atol=1e-3)


# ---- packed rows (the padding-free training step) ----------------------------------------
from reasonlib.train.curriculum import BatchMaker  # noqa: E402
from reasonlib.core.packed import (_bins, _distinct, _pair_order, _PackedAttention,  # noqa: E402
                             _ResidualMLP, bin_slots, pack_rows)
from reasonlib.train.sft import answer_loss  # noqa: E402


def test_pack_rows_hand_computed():
    # best-fit decreasing: 13 opens bin 0, 9 opens bin 1, 8 fits neither (3 and 7 free) and
    # opens bin 2, 5 goes to the fullest bin it fits (bin 1, 7 free); row 4 (keep 0) is left out
    T = 13
    p = pack_rows(torch.tensor([13, 5, 9, 8, 0]), T, 16)
    e = -1 - torch.arange(48).view(3, 16)   # empty slots: a segment of their own each
    src = torch.zeros(3, 16, dtype=torch.long)
    seg = e.clone()
    src[0, :13], seg[0, :13] = torch.arange(13), 0
    src[1, :9], seg[1, :9] = 2 * T + torch.arange(9), 2
    src[1, 9:14], seg[1, 9:14] = T + torch.arange(5), 1
    src[2, :8], seg[2, :8] = 3 * T + torch.arange(8), 3
    assert torch.equal(p.src, src) and torch.equal(p.seg, seg)
    m = p.mask()[1, 0]   # bin 1: row 2 (slots 0-8), row 1 (9-13), two empty slots
    assert m[10, 9] and m[10, 10] and not m[10, 8] and not m[10, 11]   # row 1 sees only row 1
    assert m[8, 0] and not m[0, 8]                                       # causal inside a row
    assert m[14, 14] and m[14].sum() == 1                                # empty: itself only


def test_pack_rows_places_every_kept_token_once():
    g = torch.Generator().manual_seed(0)
    for T, cap in ((13, 26), (9, 9), (20, 45)):
        keep = torch.randint(0, T + 1, (64,), generator=g)
        p = pack_rows(keep, T, cap)
        real = p.src[p.real]
        want = torch.cat([b * T + torch.arange(int(n)) for b, n in enumerate(keep)])
        assert torch.equal(real.sort().values, want.sort().values)      # each exactly once
        assert torch.equal(p.seg[p.real], real // T)                     # slots know their row
        assert p.src.shape[1] == cap
        assert torch.equal(p.src.reshape(-1)[p.slot], want)   # kept tokens in row-major order
        assert torch.equal(p.token[p.slot], torch.arange(len(want)))
        assert torch.equal(p.kept.reshape(-1).nonzero().flatten(), want)
        for b in range(p.src.shape[0]):   # a row's slots are consecutive and in order
            for r in p.seg[b][p.real[b]].unique():
                at = (p.seg[b] == r).nonzero().flatten()
                assert torch.equal(at, at[0] + torch.arange(len(at)))
                assert torch.equal(p.src[b, at], r * T + torch.arange(len(at)))


@pytest.mark.parametrize("keep,cap", [([3, 14], 20), ([3, -1], 20), ([5, 6], 4)])
def test_pack_rows_refuses_rows_that_cannot_fit(keep, cap):
    with pytest.raises(ValueError, match=r"keep must be in 0\.\.min\(T=13, cap=\d+\); got"):
        pack_rows(torch.tensor(keep), 13, cap)


def _curriculum_batch(B=48, seed=0):
    rng = np.random.default_rng(seed)
    toks, ans = BatchMaker("targeted", "reversed", 3, B, rng).next_batch(0.9)
    return torch.from_numpy(toks), torch.from_numpy(ans)


def test_packed_hidden_states_equal_the_padded_ones_every_scheme(scheme_model):
    """Every scored position's hidden state, run packed, is the padded run's (to float
    rounding): rows in one bin do not see each other, positions and places travel with
    their tokens."""
    toks, ans = _curriculum_batch()
    x, m = toks[:, :-1], ans[:, 1:]
    off = torch.randint(0, 5, (x.shape[0],)) if scheme_model.cfg.pos in PLACED else None
    T = x.shape[1]
    keep = (m * torch.arange(1, T + 1)).amax(1)
    p = pack_rows(keep, T, 2 * T)
    assert p.src.shape[0] < x.shape[0]      # rows really share bins
    with torch.no_grad():
        padded = scheme_model(x, hidden_only=True, place_offset=off)          # (B, T, C)
        packed_h = packed.hidden(scheme_model, x, m, p, off)
    torch.testing.assert_close(packed_h, padded[m], atol=2e-5, rtol=2e-5)   # in row-major order


def test_packed_loss_and_gradients_equal_the_padded_ones_every_scheme(scheme_model):
    toks, ans = _curriculum_batch(seed=1)
    off = torch.randint(0, 5, (toks.shape[0],)) if scheme_model.cfg.pos in PLACED else None
    grads = []
    for use_packed in (False, True):
        scheme_model.zero_grad(set_to_none=True)
        loss = answer_loss(scheme_model, toks, ans, off, packed=use_packed)
        loss.backward()
        grads.append((loss.detach(), [q.grad.clone() for q in scheme_model.parameters()]))
    (l0, g0), (l1, g1) = grads
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=1e-5)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, atol=1e-5 * float(a.abs().max()) + 1e-8, rtol=1e-4)


def test_distinct_hand_computed():
    # the packed step's first layer runs LayerNorm and qkv on rows first (one per distinct
    # key, in key order: 1, 2, 3) and hands token n row inv[n]
    first, inv = _distinct(torch.tensor([3, 1, 3, 2, 1]))
    assert first.tolist() == [1, 3, 0] and inv.tolist() == [2, 0, 2, 1, 0]


def test_pair_order_hand_computed():
    # C = 8, H = 2 (D = 4): each head's q and k channels (0, 1, 2, 3) -> (0, 2, 1, 3), the
    # rotary pairs (0, 2) and (1, 3) side by side; v unchanged
    want = [0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15] + list(range(16, 24))
    assert _pair_order(8, 2, torch.device("cpu")).tolist() == want


@pytest.mark.parametrize("rotary", [True, False])
def test_packed_attention_backward_is_the_gradient(rotary):
    """The hand-written backward of the packed attention against numerical differences
    (float64): bins holding two rows and an empty slot, rotation on and off."""
    T, H, D = 5, 2, 4
    p = pack_rows(torch.tensor([5, 3, 2, 4]), T, 2 * T)
    N, (nb, L) = int(p.kept.sum()), p.src.shape
    assert p.src.shape[0] < 4 and not p.real.all()          # rows share bins; one is empty
    bins = _bins(p.mask(), p.token, p.slot, H, torch.float64)
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(N, 3 * H * D, dtype=torch.float64, generator=g, requires_grad=True)
    rot = (torch.polar(torch.ones(nb, L, D // 2, dtype=torch.float64),
                       torch.rand(nb, L, D // 2, dtype=torch.float64, generator=g) * 6)
           if rotary else None)
    assert torch.autograd.gradcheck(
        lambda x: _PackedAttention.apply(x, rot, bins), (qkv,))


def test_bins_maps_hand_computed():
    # H = 2 heads, one bin of L = 3 slots: token 1 in slot 0, token 0 in slot 1, slot 2 empty
    # (token map 0); blocks are (3, H, S = 3) slot rows, q/k/v-major, then head, then slot
    token, slot = torch.tensor([1, 0, 0]), torch.tensor([1, 0])
    mask = torch.eye(3, dtype=torch.bool)[None, None]
    b = _bins(mask, token, slot, 2, torch.float32)
    # qkv.view(N * 3H, D): token n's q head h is row 6n + h, its k head h 6n + 2 + h, v 6n + 4 + h
    assert b.rows.tolist() == [6, 0, 0, 7, 1, 1, 8, 2, 2, 9, 3, 3, 10, 4, 4, 11, 5, 5]
    assert b.out.tolist() == [1, 4, 0, 3]             # (token, head) -> head * S + slot
    assert b.grad_rows.tolist() == [2, 0, 0, 3, 1, 1]  # (head, slot) -> token * H + head
    assert b.grad_out.tolist() == [1, 4, 7, 10, 13, 16, 0, 3, 6, 9, 12, 15]
    assert b.bias.shape == (2, 3, 3) and torch.equal(b.bias[0], b.bias[1])
    assert b.bias[0, 0, 0] == 0 and b.bias[0, 0, 1] == -math.inf


def test_bin_slots():
    assert [bin_slots(t) for t in (1, 13, 16, 17, 32, 33)] == [16, 16, 16, 32, 32, 48]


def test_residual_mlp_backward_is_the_gradient():
    g = torch.Generator().manual_seed(0)
    N, C = 5, 4
    args = [torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True)
            for s in ((N, C), (N, C), (4 * C, C), (4 * C,), (C, 4 * C), (C,))]
    assert torch.autograd.gradcheck(_ResidualMLP.apply, args)
    x, z, w1, b1, w2, b2 = args
    want = x + F.linear(F.gelu(F.linear(z, w1, b1)), w2, b2)
    torch.testing.assert_close(_ResidualMLP.apply(*args), want)


def test_packed_refuses_rows_longer_than_the_block(tiny_model):
    T = tiny_model.cfg.block_size + 1
    x = _rand_ids(2, T)
    p = pack_rows(torch.tensor([T, 4]), T, 2 * T)
    with pytest.raises(ValueError, match="exceeds block_size"):
        packed.hidden(tiny_model, x, x > 0, p)

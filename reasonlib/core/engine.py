"""Incremental decoding: the KV cache, prefill and the one-token decode step, over the
reference model's parameters (:mod:`reasonlib.core.model`), as nanochat keeps its engine apart.

``prefill`` runs left-padded prompts into an empty cache; ``decode_step`` appends one token
per row. The same maths as ``GPT.forward`` on the whole sequence, arranged for decoding
(``tests/test_model.py`` compares them for every scheme); :mod:`reasonlib.core.sampling` drives it.
"""
from __future__ import annotations

import math

import torch

from .model import _EQ, GPT, ModelConfig, attend, in_window, is_digit, rope_tables
from .schemes import PLACED, WINDOW


class KVCache:
    """Keys and values of a batch being decoded, in two parts.

    * The prompt part, written by ``prefill``: per layer (B, H, P, D) keys and values of the B
      prompts. It is stored once per prompt: after :meth:`repeat_interleave` (n), rows ``b * n``
      to ``b * n + n - 1`` (the n samples of prompt b) all read prompt b's keys, which are
      neither copied nor read n times.
    * The generated part: ``k``, ``v`` (L, G, R, H, D), one slot per decoded token of each of
      the R rows, time-major (see :func:`_decode_attention`).

    Per row, time-major like the scores (P + G, R): ``key_valid``, the keys a row may see (its
    prompt's real tokens, then every generated slot), and for ``local`` ``key_place``, the
    keys' places. ``t`` counts the generated slots filled; ``next_pos`` (R,) is each row's next
    rotary position and ``run`` (R,) the digits ending it (placed schemes).

    ``store``: a dict that keeps the generated part's memory for the next cache of the same
    caller (the sampler passes one per ``generate`` call, shared by its chunks). Writing a
    slot of freshly allocated memory costs a page fault per 4 KiB on first touch: the two
    slot writes of a decoding step took 0.14-0.21 ms each on a 2-core AMD EPYC with a new
    cache per chunk, 0.04-0.06 ms in reused memory. Only the generated part is kept, and a
    cache made from a store must be done with before the next one is made from it; the
    values a cache holds are the same either way."""

    def __init__(self, cfg: ModelConfig, batch: int, t_max: int, device, dtype,
                 store: dict | None = None):
        self.cfg, self.t_max, self.device, self.dtype = cfg, t_max, device, dtype
        self._store = store
        self.batch, self.n = batch, 1       # prompts, and rows (samples) per prompt
        self.pk: list = [None] * cfg.n_layer
        self.pv: list = [None] * cfg.n_layer
        self.prompt_len = 0                 # P once prefilled; 0 before
        self.t = 0
        self.next_pos = torch.zeros(batch, dtype=torch.long, device=device)
        self.run = torch.zeros(batch, dtype=torch.long, device=device)

    @property
    def rows(self) -> int:
        return self.batch * self.n

    def _set_prompt(self, valid: torch.Tensor, place: torch.Tensor | None):
        """After prefill: the prompts' (B, P) validity and (``local``) places."""
        self.prompt_len = valid.shape[1]
        self._valid, self._place = valid, place
        self._alloc_generated()

    def _alloc_generated(self):
        """Room for t_max - P generated tokens of every row; filled slots go with their rows."""
        c, P, R = self.cfg, self.prompt_len, self.rows
        G = self.t_max - P
        shape = (c.n_layer, G, R, c.n_head, c.n_embd // c.n_head)
        # after decoding began the filled slots are copied over: from memory not reused here
        k, v = (self._buffer(name, shape, reuse=not self.t) for name in ("k", "v"))
        if self.t:
            r = R // self.k.shape[2]   # repeated after decoding began
            k[:, : self.t] = self.k[:, : self.t].repeat_interleave(r, dim=2)
            v[:, : self.t] = self.v[:, : self.t].repeat_interleave(r, dim=2)
            self.key_place = (None if self.key_place is None
                              else self.key_place.repeat_interleave(r, dim=1))
        else:
            self.key_place = None if self._place is None else torch.cat([
                self._place.t().repeat_interleave(self.n, dim=1),
                torch.zeros(G, R, dtype=torch.long, device=self.device)])
        self.k, self.v = k, v
        self.key_valid = torch.cat([self._valid.t().repeat_interleave(self.n, dim=1),
                                    torch.ones(G, R, dtype=torch.bool, device=self.device)])

    def _buffer(self, name: str, shape: tuple, reuse: bool) -> torch.Tensor:
        """An uninitialised tensor of ``shape``: the store's memory when it is large enough."""
        n, store = math.prod(shape), (self._store if reuse else None)
        buf = None if store is None else store.get(name)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, device=self.device, dtype=self.dtype)
            if store is not None:
                store[name] = buf
        return buf[:n].view(shape)

    def repeat_interleave(self, n: int) -> "KVCache":
        """Each row repeated n times (n samples of one prompt share its prefill)."""
        if n > 1:
            self.n *= n
            self.next_pos = self.next_pos.repeat_interleave(n, dim=0)
            self.run = self.run.repeat_interleave(n, dim=0)
            if self.prompt_len:
                self._alloc_generated()
        return self


def new_cache(model: GPT, batch: int, t_max: int, store: dict | None = None) -> KVCache:
    p = model.tok.weight
    return KVCache(model.cfg, batch, t_max, p.device, p.dtype, store)


def prefill(model: GPT, idx, valid, cache: KVCache):
    """Run left-padded prompts (B, P) into an empty cache; return last-position logits (B, V)."""
    B, P = idx.shape
    cfg = model.cfg
    if cache.prompt_len or cache.n > 1:
        raise ValueError("prefill needs an empty KV cache (new_cache)")
    if P >= cache.t_max:
        raise ValueError(f"prompt length {P} leaves no room in a KV cache of {cache.t_max}")
    if cfg.pos in PLACED and not bool((idx[:, -1] == _EQ).all()):
        # a prompt's last number would get its places from the right, the continuation's
        # from the left: only a prompt that ends with '=' decodes as the full forward does
        raise ValueError(f"{cfg.pos} positions need every prompt to end with '='")
    pos, place = model.positions(idx, valid)
    x = model.embed(idx, place)                                              # (B, P, C)
    rope = None if pos is None else rope_tables(pos, model.head_dim)
    for i, (b, m) in enumerate(zip(model.blocks, model.masks(valid, pos))):
        q, k, v = b.attn.heads(b.ln1(x), rope)
        cache.pk[i], cache.pv[i] = k.contiguous(), v.contiguous()
        x = b.mlp(x + b.attn.proj(attend(q, k, v, m)))
    cache._set_prompt(valid, pos if cfg.pos == "local" else None)
    cache.next_pos = valid.long().sum(1)   # rope: the next token's position
    cache.run = torch.zeros_like(cache.next_pos)  # the prompt ends with a non-digit
    return model.head(model.ln_f(x)[:, -1])


def decode_step(model: GPT, tok, cache: KVCache):
    """Append one token per row (R,) and return the next logits (R, V)."""
    if not cache.prompt_len:
        raise ValueError("decode_step needs a prefilled KV cache (prefill first)")
    if cache.t >= cache.k.shape[1]:
        raise ValueError("KV cache is full")
    cfg = model.cfg
    s, t = cfg.pos, cache.prompt_len + cache.t + 1   # keys this step: prompt + generated
    if s in PLACED:  # after '=': a digit's place is its index in its run
        cache.run = torch.where(is_digit(tok), cache.run + 1, torch.zeros_like(cache.run))
    pos = {"rope": cache.next_pos, "coupled": cache.run + 1, "local": cache.run + 1}.get(s)
    place = cache.run[:, None] if s == "abacus" else None
    mask = cache.key_valid[:t, :, None]              # (t, R, 1), time-major like the scores
    masks = [mask] * cfg.n_layer
    if s == "local":
        cache.key_place[t - 1] = pos
        k_place = cache.key_place[:t]                               # (t, R)
        first, rest = (mask & in_window(pos, k_place, w)[:, :, None] for w in WINDOW)
        masks = [first] + [rest] * (cfg.n_layer - 1)
    x = model.embed(tok[:, None], place)                                     # (R, 1, C)
    rope = None if pos is None else rope_tables(pos[:, None], model.head_dim)
    R, _, C = x.shape
    for i, b in enumerate(model.blocks):
        q, k, v = b.attn.heads(b.ln1(x), rope)
        y = _decode_attention(q, k, v, cache, i, masks[i])
        x = b.mlp(x + b.attn.proj(y.reshape(R, 1, C)))
    cache.t += 1
    cache.next_pos = cache.next_pos + 1
    return model.head(model.ln_f(x)[:, -1])


def _decode_attention(q, k, v, cache: KVCache, layer: int, mask) -> torch.Tensor:
    """Attention of one new token per row: q, k, v (R, H, 1, D) -> (R, H, D); k and v are
    written to the cache's generated part first. ``mask`` (T, R, 1): the keys (prompt, then
    generated) each row may see.

    The same maths as the full forward's attention, arranged for decoding. Each prompt's keys
    are read once for its n samples: a batched product (B, H, n, D) @ (B, H, D, P). Scores
    are time-major (T, R, H), so the softmax runs over the leading dim and vectorises across
    the R * H rows. Measured with 2,048 rows and 13 keys: a softmax over the last dim is about
    20x slower, and the fused attention kernel, built for long sequences, takes about 3x
    this whole function."""
    R, H, _, D = q.shape
    B, n, P, g = cache.batch, cache.n, cache.prompt_len, cache.t + 1
    cache.k[layer, cache.t] = k[:, :, 0]
    cache.v[layer, cache.t] = v[:, :, 0]
    q = q[:, :, 0] * D ** -0.5                                             # (R, H, D)
    s_prompt = q.view(B, n, H, D).transpose(1, 2) @ cache.pk[layer].transpose(-1, -2)
    s_prompt = s_prompt.permute(3, 0, 2, 1).reshape(P, R, H)               # (B, H, n, P) -> (P, R, H)
    s_gen = torch.einsum("trhd,rhd->trh", cache.k[layer, :g], q)            # (g, R, H)
    w = torch.cat([s_prompt, s_gen]).masked_fill_(~mask, float("-inf")).softmax(0)
    w_prompt, w_gen = w.split((P, g))
    y = w_prompt.view(P, B, n, H).permute(1, 3, 2, 0) @ cache.pv[layer]     # (B, H, n, D)
    y = y.transpose(1, 2).reshape(R, H, D)
    for i in range(g):   # g <= max_new; faster than one product over a (g, R, H, D) temporary
        y.addcmul_(w_gen[i, :, :, None], cache.v[layer, i])
    return y


"""A small causal Transformer (GPT-style, pre-LayerNorm) with a KV cache.

Shapes: B batch, T time, C = n_embd, H = n_head, D = C // H (head size), V vocab.

Positions (``ModelConfig.pos``, one of :data:`POS_SCHEMES`):

* ``rope``: rotary attention (RoPE). A learned table would leave the positions of longer
  problems untrained until a curriculum reaches them (we measured loss spikes above 10 nats
  at every stage change); rotary scores depend on relative offsets, so what is learned on
  short problems carries over to longer ones -- within the trained lengths.
* ``nope``: no position signal at all; the causal mask alone orders the tokens (a token can
  count what precedes it).
* ``abacus``: digit-significance embeddings (McLeish et al. 2024) on top of ``nope``: each
  digit gets a learned vector for its place in its number, so the units of both operands
  and of the answer share one vector, the tens another, and so on. Operand digits (before
  the first ``=``) count from the right of their number (they are all in the prompt);
  digits after ``=`` count from the left of their run (known causally, and for the
  ``reversed`` format that *is* their place). Non-digits get place 0 (a zero vector).
  Training adds a random offset to every place of a row (:func:`place_ids`), so the
  vectors of places beyond the trained lengths are trained too.
* ``coupled``: position coupling (Cho et al. 2024) with rotary attention: a token's rotary
  position is its digit place, and from ``=`` on, the place of the digit it *predicts*. The
  query that writes the units digit sits at place 1 with the operands' units digits, so
  "read the digits of my place, and of the place below for the carry" is a fixed relative
  offset (0 and 1) for every length. Non-digits of the prompt sit at place 0; training
  shifts every other place of a row by the same random offset as ``abacus`` does, so the
  offsets between the digits and the prompt's ``BOS`` and ``+`` of longer numbers are
  trained too (the offsets between digits, which carry the procedure, never change).
* ``local``: ``coupled`` positions, and attention restricted by place: in the first layer a
  token with a place sees the tokens of its own place and of the place below, in every later
  layer those of its own place only (and always the prompt's non-digits, which have no
  place). Addition needs no more: the answer token of place p-1 that predicts digit p sees
  the operand digits of places p and p-1 and is itself s_{p-1}, which gives the carry into p
  (a_{p-1} + b_{p-1} + c_{p-1} >= 10, with c_{p-1} = s_{p-1} - a_{p-1} - b_{p-1} mod 10).
  Nothing reaches a token from further than one place below, so it cannot tell how far it is
  from the units: "the fifth answer digit ends the answer" fits every training example of up
  to 3 digits, and ``coupled`` models often learn it; a ``local`` model cannot express it.
  An inductive bias for digit-aligned tasks (it is addition's structure), said as such.

Ways in:
* ``model(idx)``: training path, right-padded ``(B, T)`` ids, plain causal attention
  (padding sits after the real tokens, so it can never leak into them).
* ``model(idx, valid=mask)``: left-padded prompts of mixed lengths; ``valid`` (B, T) marks
  real tokens. Positions count from each row's first real token, and padded keys are
  masked out, so a row's logits do not depend on how much padding it got.
* ``model(idx, select=..., packing=pack_rows(...))``: right-padded rows run without their
  padding: their kept tokens as one (N, C) list, and in attention several rows to a bin
  of slots, each attending only within its own row, and the first layer's LayerNorm and
  qkv once per distinct token (the packed training step, ``sft.answer_loss(packed=True)``):
  the same function, other float roundings.
* ``prefill`` / ``decode_step`` with a :class:`KVCache`: the same maths, one new token
  at a time, used by :mod:`reasonlib.sampling`.
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokenizer import VOCAB_SIZE

POS_SCHEMES = ("rope", "nope", "abacus", "coupled", "local")
PLACED = ("abacus", "coupled", "local")  # the schemes whose positions are digit places
WINDOW = (1, 0)  # local: how many places below its own a query sees, in layer 0 / later layers
MAX_PLACE = 32  # abacus table size: places 1..MAX_PLACE (training offset + longest number)
_ZERO, _NINE, _EQ = ord("0"), ord("9"), ord("=")


@dataclass(frozen=True)
class ModelConfig:
    # no defaults for the shape: it comes from the notebook parameters (reasonlib.params)
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    pos: str  # position scheme, one of POS_SCHEMES
    vocab_size: int = VOCAB_SIZE
    mlp_ratio: int = 4

    def __post_init__(self):
        for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "mlp_ratio"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"ModelConfig.{k}={v!r}: must be a positive integer")
        if self.pos not in POS_SCHEMES:
            raise ValueError(f"ModelConfig.pos={self.pos!r}: must be one of {', '.join(POS_SCHEMES)}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"ModelConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


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


def _run_index(digit: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B, T) long: each digit's 1-based index within its run of consecutive
    digits, counted from the left; 0 at non-digits."""
    c = digit.long().cumsum(1)
    start = torch.where(digit, torch.zeros_like(c), c).cummax(1).values  # digits before the run
    return torch.where(digit, c - start, torch.zeros_like(c))


def is_digit(idx: torch.Tensor) -> torch.Tensor:
    return (idx >= _ZERO) & (idx <= _NINE)


def place_ids(idx: torch.Tensor, offset: torch.Tensor | None = None,
              coupled: bool = False) -> torch.Tensor:
    """Place of every token (B, T) -> (B, T) long in 0..MAX_PLACE.

    Before the first ``=`` a digit's place counts from the right of its number (1 = units);
    0 marks a non-digit. After it (``abacus``) a digit's place counts from the left of its run.
    ``coupled``: from the first ``=`` on, a token gets the place of the digit it *predicts*
    (the digits of its run so far + 1), so the query that writes the units digit carries the
    units' place, like the operand digits it must read. ``offset`` (B,) is added to every
    nonzero place of its row (training only). ``BOS 1 2 + 4 7 7 = 9 8 4 EOS`` ->
    abacus ``0 2 1 0 3 2 1 0 1 2 3 0``, coupled ``0 2 1 0 3 2 1 1 2 3 4 1``."""
    d = is_digit(idx)
    eq = (idx == _EQ).long()
    first = eq.cumsum(1)
    after = (first - eq) > 0                 # strictly after the first '='
    left = _run_index(d)
    right = _run_index(d.flip(1)).flip(1)
    if coupled:
        place = torch.where(first > 0, left + 1, right)
    else:
        place = torch.where(after, left, right)
    if offset is not None:
        place = torch.where(place > 0, place + offset[:, None], place)
    return place


def _in_window(q, k, below: int) -> torch.Tensor:
    """Elementwise (broadcasting) rule of ``local`` attention: may a query at place q see a
    key at place k? Yes iff the key has no place (0: the prompt's non-digits), or both have
    one and the key's place is the query's or at most ``below`` places below it. (A query
    without a place sees no digit: otherwise a training offset, which moves the digits away
    from place 0, would change what it sees.)"""
    return (k == 0) | ((q > 0) & (k <= q) & (k >= q - below))


def place_window(q_place: torch.Tensor, k_place: torch.Tensor, below: int) -> torch.Tensor:
    """(B, Tq), (B, Tk) places -> (B, 1, Tq, Tk) bool: query i may attend to key j
    (``local``; the rule is :func:`_in_window`)."""
    return _in_window(q_place[:, None, :, None], k_place[:, None, None, :], below)


def local_masks(base: torch.Tensor, q_place, k_place, n_layer: int) -> list[torch.Tensor]:
    """One attention mask per layer: ``base`` (causal, real keys) and the place window of
    :data:`WINDOW` (the first layer's, then the later layers')."""
    first, rest = (base & place_window(q_place, k_place, w) for w in WINDOW)
    return [first] + [rest] * (n_layer - 1)


def rope_tables(pos: torch.Tensor, d: int, base: float = 10000.0):
    """cos/sin for positions ``pos`` (B, T) -> each (B, 1, T, d/2)."""
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=pos.device, dtype=torch.float32) / d))
    ang = pos[:, :, None, None, None].float() * inv  # (B, T, 1, 1, d/2)
    return ang.cos(), ang.sin()


def rope_rotation(pos: torch.Tensor, d: int) -> torch.Tensor:
    """The rotary angles of positions ``pos`` (B, T) as unit complex numbers (B, T, d/2): the
    packed path rotates a channel pair by one complex product (:class:`_PackedAttention`)."""
    cos, sin = rope_tables(pos, d)
    return torch.complex(cos, sin).view(*pos.shape, d // 2)


def _rotate(x, cos, sin):
    """Rotate channel pairs (x[i], x[i + D/2]) of (B, H, T, D) by the position angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.h = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, rope, mask=None, cache: KVCache | None = None, layer: int = 0, select=None,
                dense: bool = False, rows=None):
        if dense:   # packed (training): x (N, C), rope (nb, L, D/2) or None, mask a _Bins
            C = x.shape[-1]
            w = self.qkv.weight
            if rope is not None:
                w = w.index_select(0, _pair_order(C, self.h, x.device))
            qkv = F.linear(x, w)
            if rows is not None:    # x (U, C): one row per distinct input; token n's is rows[n]
                qkv = qkv.index_select(0, rows)
            y = _PackedAttention.apply(qkv, rope, mask)
            return self.proj(y if select is None else y[select])
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.h, C // self.h)
        # split / unbind (not slicing): their backward concatenates the gradients instead of
        # zero-filling a full-size buffer per slice and adding them up (same numbers)
        qk, v = qkv.split((2, 1), dim=2)
        if rope is not None:
            qk = _rotate(qk, *rope)
        q, k = (t.transpose(1, 2) for t in qk.unbind(2))
        v = v.squeeze(2).transpose(1, 2)
        if cache is not None and cache.prompt_len:     # decoding: one token per row
            y = _decode_attention(q, k, v, cache, layer, mask)
            return self.proj(y.reshape(B, T, C))
        if cache is not None:                          # prefill: the prompt part of the cache
            cache.pk[layer], cache.pv[layer] = k.contiguous(), v.contiguous()
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y if select is None else y[select])


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd)
        self.out = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd)

    def forward(self, x, rope, mask=None, cache=None, layer=0, select=None, dense=False,
                distinct=None):
        # packed, first layer: LayerNorm and qkv once per distinct input (GPT._packed)
        first, inv = (None, None) if distinct is None else distinct
        z = self.ln1(x if first is None else x.index_select(0, first))
        a = self.attn(z, rope, mask, cache, layer, select, dense, rows=inv)
        x = (x if select is None else x[select]) + a
        if dense:   # packed (training)
            return _ResidualMLP.apply(x, self.ln2(x), self.fc.weight, self.fc.bias,
                                      self.out.weight, self.out.bias)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.pos == "abacus":
            self.place = nn.Embedding(MAX_PLACE + 1, cfg.n_embd, padding_idx=0)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied input/output embeddings
        self.apply(self._init)
        for b in self.blocks:  # GPT-2 scaled init of residual projections
            for w in (b.attn.proj.weight, b.out.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.pos == "abacus":
            with torch.no_grad():
                self.place.weight[0].zero_()  # non-digits: no place vector (and no gradient)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def _trunk(self, idx, pos, mask=None, cache=None, select=None, place=None, dense=False,
               distinct=None):
        x = self.tok(idx)
        if place is not None:
            x = x + self.place(place)
        d = self.cfg.n_embd // self.cfg.n_head
        rope = None if pos is None else (rope_rotation if dense else rope_tables)(pos, d)
        last = len(self.blocks) - 1
        for i, b in enumerate(self.blocks):   # mask: None, one for every layer, or one per layer
            m = mask[i] if isinstance(mask, list) else mask
            x = b(x, rope, m, cache, i, select if i == last else None, dense,
                  distinct if i == 0 else None)
        return self.ln_f(x)

    def _positions(self, idx, valid=None, offset=None):
        """(rotary positions or None, place-embedding ids or None) of whole sequences (B, T)."""
        s = self.cfg.pos
        if s == "rope":
            if valid is None:   # (1, T): the rotary tables broadcast over the batch
                return torch.arange(idx.shape[1], device=idx.device)[None], None
            return (valid.long().cumsum(1) - 1).clamp_min(0), None
        if s in ("coupled", "local"):
            return place_ids(idx, offset, coupled=True), None
        if s == "abacus":
            return None, place_ids(idx, offset)
        return None, None

    def forward(self, idx, valid=None, hidden_only: bool = False, select=None,
                place_offset: torch.Tensor | None = None, packing: "Packing | None" = None):
        """Logits (B, T, V). ``valid`` (B, T) bool marks real tokens of left-padded rows.

        ``select`` (B, T) bool (right-padded path only): return logits (N, V) for the N
        selected positions only; the last block then runs its projection and MLP on those
        rows alone (training scores answer tokens only, so the rest is wasted work).
        ``place_offset`` (B,) long: the abacus training offset of each row (see place_ids).
        ``packing`` (right-padded path, with ``select``): run the rows' kept prefixes without
        padding (:func:`pack_rows`); the N selected positions come in the same order."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}")
        pos, place = self._positions(idx, valid, place_offset)
        if packing is not None:
            if valid is not None or select is None:
                raise ValueError("packing needs right-padded rows (valid=None) and a select mask")
            h = self._packed(idx, pos, place, select, packing)
        elif valid is None:
            h = self._trunk(idx, pos, self._mask(None, pos, T), select=select, place=place)
        else:
            h = self._trunk(idx, pos, self._mask(valid, pos), place=place)
        return h if hidden_only else self.head(h)

    def _packed(self, idx, pos, place, select, p: "Packing"):
        """The selected hidden states (S, C) of right-padded rows (B, T) run packed: the kept
        tokens run as one list, every token keeps its row's ids, rotary positions and places,
        and in attention's bins (:class:`_PackedAttention`) it sees its own row causally
        (``local``: within its place window too).

        The first layer's input is a token's embedding (``abacus``: plus its place vector), so
        its LayerNorm and qkv product run once per distinct (id, place) (:func:`_distinct`):
        13 rows for the 1,360 tokens of a bench batch (positions enter later, in the rotation).
        That is 9.5% of the step's matrix-product FLOPs; the gradients of equal rows are summed
        before the weight gradient's product instead of inside it (other roundings)."""
        B, T = idx.shape
        ids, place = (None if t is None else t[p.kept] for t in (idx, place))    # (N,)
        pos = None if pos is None else p.take(pos.expand(B, T))                  # (nb, L)
        dtype, mask = self.tok.weight.dtype, p.mask()
        # what every layer's attention needs (_Bins); local: two masks (WINDOW)
        H = self.cfg.n_head
        if self.cfg.pos == "local":   # the same maps, another bias
            m0, m1 = local_masks(mask, pos, pos, 2)
            first = _bins(m0, p.token, p.slot, H, dtype)
            bins = [first] + [replace(first, bias=_bin_bias(m1, H, dtype))] * (self.cfg.n_layer - 1)
        else:
            bins = _bins(mask, p.token, p.slot, H, dtype)
        key = ids if place is None else ids * (MAX_PLACE + 1) + place
        return self._trunk(ids, pos, bins, select=select[p.kept], place=place, dense=True,
                           distinct=_distinct(key))

    def _mask(self, valid, pos, T: int = 0):
        """The attention mask of whole sequences: causal over real keys (``valid`` (B, T) of
        left-padded rows; None: right-padded rows of length T, where None means plain causal
        attention, the fast path), and for ``local`` the place window of every layer."""
        if self.cfg.pos != "local":
            return None if valid is None else _padded_causal_mask(valid)
        base = (torch.ones(T, T, dtype=torch.bool, device=pos.device).tril() if valid is None
                else _padded_causal_mask(valid))   # every query sees itself: no all-masked row
        return local_masks(base, pos, pos, self.cfg.n_layer)

    # ---- incremental decoding -------------------------------------------------------
    def new_cache(self, batch: int, t_max: int, store: dict | None = None) -> KVCache:
        p = self.tok.weight
        return KVCache(self.cfg, batch, t_max, p.device, p.dtype, store)

    def prefill(self, idx, valid, cache: KVCache):
        """Run left-padded prompts (B, P) into an empty cache; return last-position logits (B, V)."""
        B, P = idx.shape
        if cache.prompt_len or cache.n > 1:
            raise ValueError("prefill needs an empty KV cache (new_cache)")
        if P >= cache.t_max:
            raise ValueError(f"prompt length {P} leaves no room in a KV cache of {cache.t_max}")
        if self.cfg.pos in PLACED and not bool((idx[:, -1] == _EQ).all()):
            # a prompt's last number would get its places from the right, the continuation's
            # from the left: only a prompt that ends with '=' decodes as the full forward does
            raise ValueError(f"{self.cfg.pos} positions need every prompt to end with '='")
        pos, place = self._positions(idx, valid)
        h = self._trunk(idx, pos, self._mask(valid, pos), cache, place=place)
        cache._set_prompt(valid, pos if self.cfg.pos == "local" else None)
        cache.next_pos = valid.long().sum(1)   # rope: the next token's position
        cache.run = torch.zeros_like(cache.next_pos)  # the prompt ends with a non-digit
        return self.head(h[:, -1])

    def decode_step(self, tok, cache: KVCache):
        """Append one token per row (R,) and return the next logits (R, V)."""
        if not cache.prompt_len:
            raise ValueError("decode_step needs a prefilled KV cache (prefill first)")
        if cache.t >= cache.k.shape[1]:
            raise ValueError("KV cache is full")
        s, t = self.cfg.pos, cache.prompt_len + cache.t + 1   # keys this step: prompt + generated
        if s in PLACED:  # after '=': a digit's place is its index in its run
            cache.run = torch.where(is_digit(tok), cache.run + 1, torch.zeros_like(cache.run))
        pos = {"rope": cache.next_pos, "coupled": cache.run + 1, "local": cache.run + 1}.get(s)
        place = cache.run[:, None] if s == "abacus" else None
        mask = cache.key_valid[:t, :, None]              # (t, R, 1), time-major like the scores
        if s == "local":
            cache.key_place[t - 1] = pos
            k_place = cache.key_place[:t]                               # (t, R)
            first, rest = (mask & _in_window(pos, k_place, w)[:, :, None] for w in WINDOW)
            mask = [first] + [rest] * (self.cfg.n_layer - 1)
        h = self._trunk(tok[:, None], None if pos is None else pos[:, None], mask, cache, place=place)
        cache.t += 1
        cache.next_pos = cache.next_pos + 1
        return self.head(h[:, -1])


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


def _distinct(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) keys -> (first, inv): ``first`` (U,) the first row holding each distinct key, in
    key order; ``inv`` (N,) each row's index into ``first``, so ``key[first][inv] == key``.
    ``[3, 1, 3, 2]`` -> first ``[1, 3, 0]``, inv ``[2, 0, 2, 1]``."""
    uniq, inv = torch.unique(key, return_inverse=True)
    rows = torch.arange(len(key), device=key.device)
    first = torch.full_like(uniq, len(key)).scatter_reduce_(0, inv, rows, "amin")
    return first, inv


@functools.lru_cache(maxsize=None)
def _pair_order(C: int, H: int, device) -> torch.Tensor:
    """(3C,) long: the qkv output channels in the order the packed path computes them. In each
    head of q and k, rotary pair i (channels i and i + D/2, :func:`_rotate`) becomes channels
    2i and 2i + 1, so the pair is one complex number; v keeps its order. Taken from the weight
    (a 3C x C gather, cheap), not from the activations, where an interleaving copy is slow.
    Scores are sums over a head's channels, the same in any order both q and k share."""
    D = C // H
    within = torch.arange(D).view(2, D // 2).t().reshape(-1)    # 0, D/2, 1, D/2 + 1, ...
    qk = (torch.arange(2 * H)[:, None] * D + within).reshape(-1)
    return torch.cat([qk, torch.arange(2 * C, 3 * C)]).to(device)


@dataclass(frozen=True)
class _Bins:
    """What every packed attention call of a step needs, made once a step (:func:`_bins`).

    Attention runs on a (3, H * nb, L, D) block: q, k and v, each head of each bin an (L, D)
    matrix, so one batched product covers every head and bin. ``bias`` (H * nb, L, L): 0
    where a slot may see a key, -inf elsewhere (the additive mask, every head's). The rest
    are row maps of ``index_select`` on D-float rows: ``rows`` (3 * H * nb * L,) the row of
    ``qkv.view(N * 3H, D)`` each slot of the block reads (an empty slot: token 0's, which it
    never shows anyone); ``out`` (N * H,) the row of ``y.view(H * nb * L, D)`` each kept
    token's head takes its output from; ``grad_rows`` (H * nb * L,) the row of
    ``gy.view(N * H, D)`` each slot's head reads its output gradient from; ``grad_out``
    (N * 3H,) the row of the (3 * H * nb * L, D) gradient block each token's q, k, v head
    takes its gradient from (never an empty slot's)."""
    bias: torch.Tensor
    rows: torch.Tensor
    out: torch.Tensor
    grad_rows: torch.Tensor
    grad_out: torch.Tensor
    H: int


def _bins(mask: torch.Tensor, token: torch.Tensor, slot: torch.Tensor, H: int, dtype) -> _Bins:
    """``mask`` (nb, 1, L, L) bool (query may see key), ``token`` (nb * L,) and ``slot`` (N,)
    from :class:`Packing` -> the :class:`_Bins` of a head count H (``tests/test_model.py``
    checks the maps against a hand-computed case)."""
    S = mask.shape[0] * mask.shape[2]
    h = torch.arange(H, device=token.device)
    qkv = torch.arange(3, device=token.device)
    return _Bins(
        bias=_bin_bias(mask, H, dtype),
        rows=(token * 3 * H + (qkv[:, None] * H + h)[:, :, None]).reshape(-1),   # (3, H, S)
        out=(h * S + slot[:, None]).reshape(-1),                                 # (N, H)
        grad_rows=(token * H + h[:, None]).reshape(-1),                          # (H, S)
        grad_out=((qkv[:, None] * H + h) * S + slot[:, None, None]).reshape(-1),  # (N, 3, H)
        H=H)


def _bin_bias(mask: torch.Tensor, H: int, dtype) -> torch.Tensor:
    """(nb, 1, L, L) bool (query may see key) -> (H * nb, L, L): 0 where seen, -inf elsewhere,
    repeated for every head (:class:`_Bins`' ``bias``)."""
    nb, _, L, _ = mask.shape
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, -math.inf)
    return bias.transpose(0, 1).expand(H, nb, L, L).reshape(H * nb, L, L)


class _PackedAttention(torch.autograd.Function):
    """The packed training path's attention, rotation included, written out forward and
    backward. ``qkv`` (N, 3C) of the N kept tokens, from the ``_pair_order`` weight when
    ``rot`` is given (rotary pairs side by side) -> (N, C): per head, softmax(q k^T / sqrt(D)
    + bias) v within attention's bins. ``rot`` (nb, L, D/2) unit complex numbers of the slots,
    or None (no rotary positions); ``bins`` from :func:`_bins`.

    At the packed shapes (bins of 16 to 26 slots, heads of 24 channels) autograd's form spent
    most of its time outside the products: the rotation on half-head slices (12-float runs),
    the layout copies of the q, k, v views, the scaling and masking of the scores, a product
    per head. Here one gather of D-float rows (``index_select``) puts q, k and v of every head and
    bin into one contiguous block, so each product is one batched call over heads and bins;
    one gather takes the output back. The rotation is one complex product in place (its
    backward the conjugate product: it is a rotation); scale and mask ride on the score
    product (``baddbmm``), the backward's scale on the dQ and dK products. The backward is
    the textbook one: dV = P^T dY, dS = P * (dP - rowsum(dP * P)), dQ = dS K, dK = dS^T Q
    (scaled); ``tests/test_model.py`` checks it with gradcheck. An empty slot sees only itself
    and is never read back, so what it holds reaches no gradient. The same function as the
    padded path's; other float roundings."""

    @staticmethod
    def forward(ctx, qkv, rot, bins: _Bins):
        N, C3 = qkv.shape
        H, (HB, L, _) = bins.H, bins.bias.shape
        D = C3 // (3 * H)
        blk = qkv.view(N * 3 * H, D).index_select(0, bins.rows).view(3, HB, L, D)
        if rot is not None:    # q and k; rot broadcasts over the heads
            torch.view_as_complex(blk[:2].view(2, H, HB // H, L, D // 2, 2)).mul_(rot)
        q, k, v = blk.unbind(0)                                                # (HB, L, D)
        p = torch.baddbmm(bins.bias, q, k.transpose(1, 2), alpha=D ** -0.5).softmax(-1)
        y = torch.bmm(p, v).view(HB * L, D).index_select(0, bins.out)          # (N * H, D)
        ctx.save_for_backward(blk, p, rot)
        ctx.bins = bins
        return y.view(N, H * D)

    @staticmethod
    def backward(ctx, gy):
        blk, p, rot = ctx.saved_tensors
        bins = ctx.bins
        _, HB, L, D = blk.shape
        H, N = bins.H, gy.shape[0]
        q, k, v = blk.unbind(0)
        g = gy.reshape(N * H, D).index_select(0, bins.grad_rows).view(HB, L, D)
        ds = torch.bmm(g, v.transpose(1, 2))                                   # dP
        grad = torch.empty_like(blk)
        torch.bmm(p.transpose(1, 2), g, out=grad[2])                           # dV
        ds.sub_((ds * p).sum(-1, keepdim=True)).mul_(p)                        # dS (unscaled)
        grad[0].baddbmm_(ds, k, beta=0, alpha=D ** -0.5)                       # dQ
        grad[1].baddbmm_(ds.transpose(1, 2), q, beta=0, alpha=D ** -0.5)       # dK
        if rot is not None:
            torch.view_as_complex(grad[:2].view(2, H, HB // H, L, D // 2, 2)).mul_(rot.conj())
        out = grad.view(3 * HB * L, D).index_select(0, bins.grad_out)          # (N * 3H, D)
        return out.view(N, 3 * H * D), None, None


class _ResidualMLP(torch.autograd.Function):
    """``x + out(gelu(fc(z)))`` of the packed training path, forward and backward written out:
    x (N, C) the residual stream, z (N, C) its LayerNorm; w1 (4C, C), b1, w2 (C, 4C), b2 the
    two linear layers. The same products autograd runs; what it saves is the rest: one
    autograd node instead of four, no transposed-weight nodes, and the GELU's gradient
    written over the (N, 4C) gradient it comes from (no new buffer). ``tests/test_model.py``
    checks the backward with gradcheck. The same function as the padded path's; other float
    roundings (the residual is added first)."""

    @staticmethod
    def forward(ctx, x, z, w1, b1, w2, b2):
        h = torch.addmm(b1, z, w1.t())                                       # (N, 4C)
        a = F.gelu(h)
        ctx.save_for_backward(z, h, a, w1, w2)
        return torch.addmm(x, a, w2.t()).add_(b2)

    @staticmethod
    def backward(ctx, g):
        z, h, a, w1, w2 = ctx.saved_tensors
        ga = g.mm(w2)                                                        # (N, 4C)
        dw2, db2 = g.t().mm(a), g.sum(0)
        gh = torch.ops.aten.gelu_backward.grad_input(ga, h, grad_input=ga)   # in place
        return g, gh.mm(w1), gh.t().mm(z), gh.sum(0), dw2, db2


# ---- packed rows (training) --------------------------------------------------------------
@dataclass(frozen=True)
class Packing:
    """Where each right-padded row's kept prefix sits when rows share bins of L slots.

    The packed path runs the N kept tokens as one (N, C) list, in row-major order (the order
    ``t[kept]`` gives): only attention needs bins. ``src`` (nb, L) long: each slot's flat
    index ``row * T + t`` into the (B, T) batch (an empty slot reads index 0 and is not
    real). ``seg`` (nb, L) long: each slot's row; an empty slot gets ``-1 - slot``, a segment
    of its own, so it sees only itself. ``kept`` (B, T) bool: the tokens that run. ``slot``
    (N,) long: each kept token's slot (flat over bins); ``token`` (nb * L,) long: each slot's
    kept token (an empty slot: token 0, which it never sees)."""
    src: torch.Tensor
    seg: torch.Tensor
    kept: torch.Tensor
    slot: torch.Tensor
    token: torch.Tensor

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (nb, L): the value of every slot's token."""
        return t.reshape(-1)[self.src]

    @property
    def real(self) -> torch.Tensor:
        return self.seg >= 0

    def mask(self) -> torch.Tensor:
        """(nb, 1, L, L) bool: slot i may see slot j iff j <= i in the same row."""
        L = self.seg.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=self.seg.device).tril()
        return ((self.seg[:, :, None] == self.seg[:, None, :]) & causal)[:, None]


def bin_slots(T: int) -> int:
    """Slots of a packed-attention bin for rows of up to T tokens: T rounded up to a multiple
    of 16. The bins' scores are (L, L) blocks, most of them masked; 16 is a whole AVX-512
    vector for the softmax (13 is not: scalar tails), and leaves room for two short rows.
    Measured on the bench's batches (T = 13; README, "The packed step since 5f078b4"): bins
    of 16 ran attention 10-20% faster than bins of 26 (fewer masked scores), although they
    hold fewer rows each; 20, 24, 32, 40 and 48 were slower too."""
    return -(-T // 16) * 16


def pack_rows(keep: torch.Tensor, T: int, cap: int) -> Packing:
    """Pack the first ``keep[b]`` tokens of every row b of a (B, T) batch into bins of
    ``cap`` slots (best-fit decreasing): a row stays whole and in order, rows of a bin follow
    each other, and a row with ``keep`` 0 is left out. Deterministic: ties go by row index.

    ``keep`` = [13, 5, 9, 8], cap 16 -> bins [row 0, empty x 3], [row 2, row 1, empty x 2],
    [row 3, empty x 8] (src of bin 1: row 2's indices 2T .. 2T + 8, then row 1's T .. T + 4)."""
    k = [int(n) for n in keep.tolist()]
    if any(n < 0 or n > min(T, cap) for n in k):
        raise ValueError(f"pack_rows: keep must be in 0..min(T={T}, cap={cap}); got {sorted(set(k))}")
    by_free = [[] for _ in range(cap + 1)]    # by_free[f]: the bins with f free slots
    used: list[int] = []                      # slots used in each bin
    where = [(0, 0)] * len(k)                 # (bin, first slot) of each row
    for r in sorted(range(len(k)), key=lambda r: -k[r]):   # stable: ties by row index
        n = k[r]
        if n == 0:
            continue
        f = next((f for f in range(n, cap + 1) if by_free[f]), None)
        if f is None:
            b = len(used)
            used.append(0)
        else:
            b = by_free[f].pop(0)
        where[r] = (b, used[b])
        used[b] += n
        bisect.insort(by_free[cap - used[b]], b)
    dev = keep.device
    kt = torch.tensor(k, dtype=torch.long, device=dev)
    rows = torch.repeat_interleave(torch.arange(len(k), device=dev), kt)      # (N,) each token's row
    t = torch.arange(len(rows), device=dev) - torch.repeat_interleave(kt.cumsum(0) - kt, kt)
    first = torch.tensor([b * cap + s for b, s in where], dtype=torch.long, device=dev)
    slot = first[rows] + t
    nb = max(1, len(used))
    src = torch.zeros(nb * cap, dtype=torch.long, device=dev)
    seg = -1 - torch.arange(nb * cap, device=dev)
    token = torch.zeros(nb * cap, dtype=torch.long, device=dev)
    src[slot], seg[slot], token[slot] = rows * T + t, rows, torch.arange(len(rows), device=dev)
    kept = torch.arange(T, device=dev) < kt[:, None]
    return Packing(src.view(nb, cap), seg.view(nb, cap), kept, slot, token)


def _padded_causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query i may see key j iff j <= i and key j is real.
    Every query also sees itself, so padded query rows never become all-masked (NaN)."""
    T = valid.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye)[:, None]

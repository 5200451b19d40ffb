"""The reference model: a small causal Transformer (GPT-style, pre-LayerNorm), top to bottom.

Shapes: B batch, T time, C = n_embd, H = n_head, D = C // H (head size), V vocab.

Positions (``ModelConfig.pos``, one of :data:`POS_SCHEMES`; docs/positions.md has the why):

* ``rope``: rotary attention, positions counted from each row's first real token.
* ``nope``: no position signal; the causal mask alone orders the tokens.
* ``abacus``: a learned vector per digit place (McLeish et al. 2024) added to the embedding.
* ``coupled``: rotary attention whose position is a token's digit place (Cho et al. 2024);
  from ``=`` on, the place of the digit the token *predicts*.
* ``local``: ``coupled``, and attention restricted to a digit's own place and the one below
  (:data:`WINDOW`): an inductive bias for digit-aligned tasks, said as such.

This file is the one definition of what the model computes. Two fast paths compute the same
function from the same parameters with other float roundings, and tests compare them with
this forward: :mod:`reasonlib.core.packed` (the padding-free training step) and
:mod:`reasonlib.core.engine` (the KV cache, prefill and one-token decode step).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .schemes import MAX_PLACE, POS_SCHEMES, WINDOW
from .tokenizer import VOCAB_SIZE

_ZERO, _NINE, _EQ = ord("0"), ord("9"), ord("=")


@dataclass(frozen=True)
class ModelConfig:
    # no defaults for the shape: it comes from the notebook parameters (reasonlib.train.params)
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


# ---- positions ---------------------------------------------------------------------------
def is_digit(idx: torch.Tensor) -> torch.Tensor:
    return (idx >= _ZERO) & (idx <= _NINE)


def _run_index(digit: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B, T) long: each digit's 1-based index in its run of digits; 0 elsewhere."""
    c = digit.long().cumsum(1)
    start = torch.where(digit, torch.zeros_like(c), c).cummax(1).values  # digits before the run
    return torch.where(digit, c - start, torch.zeros_like(c))


def place_ids(idx: torch.Tensor, offset: torch.Tensor | None = None,
              coupled: bool = False) -> torch.Tensor:
    """Place of every token (B, T) -> (B, T) long in 0..MAX_PLACE.

    Before the first ``=`` a digit's place counts from the right of its number (1 = units);
    0 marks a non-digit. After it (``abacus``) a digit's place counts from the left of its run.
    ``coupled``: from the first ``=`` on, a token gets the place of the digit it *predicts*.
    ``offset`` (B,) is added to every nonzero place of its row (training only).
    ``BOS 1 2 + 4 7 7 = 9 8 4 EOS`` -> abacus ``0 2 1 0 3 2 1 0 1 2 3 0``,
    coupled ``0 2 1 0 3 2 1 1 2 3 4 1``."""
    d = is_digit(idx)
    eq = (idx == _EQ).long()
    first = eq.cumsum(1)
    after = (first - eq) > 0                 # strictly after the first '='
    left = _run_index(d)
    right = _run_index(d.flip(1)).flip(1)
    place = torch.where(first > 0, left + 1, right) if coupled else torch.where(after, left, right)
    if offset is not None:
        place = torch.where(place > 0, place + offset[:, None], place)
    return place


def in_window(q, k, below: int) -> torch.Tensor:
    """``local``'s rule, elementwise: may a query at place q see a key at place k? Yes iff the
    key has no place (0: the prompt's non-digits), or the query has one and the key's place is
    the query's or at most ``below`` below it."""
    return (k == 0) | ((q > 0) & (k <= q) & (k >= q - below))


def place_window(q_place: torch.Tensor, k_place: torch.Tensor, below: int) -> torch.Tensor:
    """(B, Tq), (B, Tk) places -> (B, 1, Tq, Tk) bool: query i may attend to key j."""
    return in_window(q_place[:, None, :, None], k_place[:, None, None, :], below)


def local_masks(base: torch.Tensor, q_place, k_place, n_layer: int) -> list[torch.Tensor]:
    """One mask per layer: ``base`` (causal, real keys) and :data:`WINDOW`'s place window."""
    first, rest = (base & place_window(q_place, k_place, w) for w in WINDOW)
    return [first] + [rest] * (n_layer - 1)


def padded_causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query i may see key j iff j <= i and key j is real. Every query also
    sees itself, so padded query rows never become all-masked (NaN)."""
    T = valid.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye)[:, None]


def rope_tables(pos: torch.Tensor, d: int, base: float = 10000.0):
    """cos/sin for positions ``pos`` (B, T) -> each (B, T, 1, 1, d/2)."""
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=pos.device, dtype=torch.float32) / d))
    ang = pos[:, :, None, None, None].float() * inv
    return ang.cos(), ang.sin()


def rotate(x, cos, sin):
    """Rotate channel pairs (x[i], x[i + D/2]) of x (..., D) by the position angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


# ---- the network -------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.h = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def heads(self, x, rope):
        """x (B, T, C) -> q, k, v, each (B, H, T, D); q and k rotated when ``rope`` is given."""
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.h, C // self.h)
        # split / unbind (not slicing): their backward concatenates the gradients instead of
        # zero-filling a full-size buffer per slice and adding them up (same numbers)
        qk, v = qkv.split((2, 1), dim=2)
        if rope is not None:
            qk = rotate(qk, *rope)
        q, k = (t.transpose(1, 2) for t in qk.unbind(2))
        return q, k, v.squeeze(2).transpose(1, 2)

    def forward(self, x, rope, mask=None, select=None):
        """x (B, T, C) -> (B, T, C), or (N, C) for the N positions ``select`` (B, T) marks."""
        y = attend(*self.heads(x, rope), mask)
        return self.proj(y if select is None else y[select])


def attend(q, k, v, mask=None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + mask) v, heads joined: (B, H, T, D) each -> (B, T, C).
    ``mask`` (B, 1, T, T) bool, or None for plain causal attention (the fast path)."""
    if mask is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    B, H, T, D = y.shape
    return y.transpose(1, 2).reshape(B, T, H * D)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd)
        self.out = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd)

    def mlp(self, x):
        """The second half of the block, residual included: x + MLP(LN(x))."""
        return x + self.out(F.gelu(self.fc(self.ln2(x))))

    def forward(self, x, rope, mask=None, select=None):
        a = self.attn(self.ln1(x), rope, mask, select)
        return self.mlp((x if select is None else x[select]) + a)


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

    @property
    def head_dim(self) -> int:
        return self.cfg.n_embd // self.cfg.n_head

    def embed(self, idx, place=None):
        """(B, T) ids (and abacus place ids) -> (B, T, C)."""
        x = self.tok(idx)
        return x if place is None else x + self.place(place)

    def positions(self, idx, valid=None, offset=None):
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

    def masks(self, valid, pos, T: int = 0) -> list:
        """Each layer's attention mask: causal over real keys (``valid`` (B, T) of left-padded
        rows; None: right-padded rows of length T, plain causal attention), and for ``local``
        the place window."""
        if self.cfg.pos != "local":
            return [None if valid is None else padded_causal_mask(valid)] * self.cfg.n_layer
        base = (torch.ones(T, T, dtype=torch.bool, device=pos.device).tril() if valid is None
                else padded_causal_mask(valid))   # every query sees itself: no all-masked row
        return local_masks(base, pos, pos, self.cfg.n_layer)

    def forward(self, idx, valid=None, hidden_only: bool = False, select=None,
                place_offset: torch.Tensor | None = None):
        """Logits (B, T, V) of ``idx`` (B, T).

        ``valid`` (B, T) bool marks the real tokens of left-padded rows: positions count from
        each row's first real token and padded keys are masked out. Without it, rows are
        right-padded and attention is plain causal (padding follows every real token).
        ``select`` (B, T) bool: logits (N, V) of the N selected positions only; the last block
        runs its projection and MLP on those rows alone (training scores answers only).
        ``place_offset`` (B,) long: the placed schemes' training offset (:func:`place_ids`)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}")
        pos, place = self.positions(idx, valid, place_offset)
        x = self.embed(idx, place)                                        # (B, T, C)
        rope = None if pos is None else rope_tables(pos, self.head_dim)
        masks, last = self.masks(valid, pos, T), len(self.blocks) - 1
        for i, b in enumerate(self.blocks):
            x = b(x, rope, masks[i], select if i == last else None)
        h = self.ln_f(x)                                                  # (B, T, C) or (N, C)
        return h if hidden_only else self.head(h)

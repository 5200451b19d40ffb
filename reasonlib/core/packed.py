"""The packed training step: the reference model's function (:mod:`reasonlib.core.model`) on
right-padded rows without their padding, forward and backward.

* The kept tokens of every row (up to its last scored position) run as one (N, C) list: no
  empty slots in the linear layers, LayerNorm or GELU.
* Attention runs in bins of :func:`bin_slots` slots, several rows to a bin, each token seeing
  only its own row causally (``local``: within its place window too), through a hand-written
  autograd function (:class:`_PackedAttention`): row gathers, one batched product per step of
  the textbook backward, rotation as one complex product from a pair-ordered qkv weight.
* The MLP and its residual are one autograd function (:class:`_ResidualMLP`).
* The first layer's LayerNorm and qkv run once per distinct input (token id; abacus: id and
  place): 13 rows for the 1,360 tokens of a bench batch, 9.5% of the step's product FLOPs.

It reads the reference model's parameters and nothing else: the same function, other float
roundings. ``tests/test_model.py`` compares it with ``GPT.forward`` (hidden states, loss and
every gradient, every scheme) and checks both autograd functions with gradcheck. Used by
``sft.answer_loss(packed=True)``; docs/performance.md has its measured speed.
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .model import GPT, local_masks, rope_tables
from .schemes import MAX_PLACE


def hidden(model: GPT, idx: torch.Tensor, select: torch.Tensor, packing: "Packing",
           place_offset: torch.Tensor | None = None) -> torch.Tensor:
    """The hidden states (S, C) of ``model`` at the S positions ``select`` (B, T) marks of
    right-padded rows ``idx`` (B, T), run packed (:func:`pack_rows`): the values of
    ``model(idx, hidden_only=True, select=select, place_offset=place_offset)``, in the same
    order, to float rounding."""
    B, T = idx.shape
    cfg = model.cfg
    if T > cfg.block_size:
        raise ValueError(f"sequence length {T} exceeds block_size={cfg.block_size}")
    p = packing
    pos, place = model.positions(idx, None, place_offset)
    ids, place = (None if t is None else t[p.kept] for t in (idx, place))    # (N,)
    pos = None if pos is None else p.take(pos.expand(B, T))                  # (nb, L)
    dtype, mask, H = model.tok.weight.dtype, p.mask(), cfg.n_head
    if cfg.pos == "local":   # the same maps, another bias for the later layers
        m0, m1 = local_masks(mask, pos, pos, 2)
        first = _bins(m0, p.token, p.slot, H, dtype)
        bins = [first] + [replace(first, bias=_bin_bias(m1, H, dtype))] * (cfg.n_layer - 1)
    else:
        bins = [_bins(mask, p.token, p.slot, H, dtype)] * cfg.n_layer
    rot = None if pos is None else rope_rotation(pos, model.head_dim)        # (nb, L, D/2)
    sel = select[p.kept]
    # the first layer's input is a token's embedding (abacus: plus its place vector), so its
    # LayerNorm and qkv run once per distinct (id, place); positions enter later, in rotation
    distinct = _distinct(ids if place is None else ids * (MAX_PLACE + 1) + place)
    x = model.embed(ids, place)                                              # (N, C)
    last = len(model.blocks) - 1
    for i, b in enumerate(model.blocks):
        s = sel if i == last else None
        first, inv = distinct if i == 0 else (None, None)
        z = b.ln1(x if first is None else x.index_select(0, first))
        w = b.attn.qkv.weight
        if rot is not None:
            w = w.index_select(0, _pair_order(cfg.n_embd, H, x.device))
        qkv = F.linear(z, w)
        if inv is not None:    # z (U, C): one row per distinct input; token n's is inv[n]
            qkv = qkv.index_select(0, inv)
        y = _PackedAttention.apply(qkv, rot, bins[i])
        a = b.attn.proj(y if s is None else y[s])
        x = (x if s is None else x[s]) + a
        x = _ResidualMLP.apply(x, b.ln2(x), b.fc.weight, b.fc.bias, b.out.weight, b.out.bias)
    return model.ln_f(x)


def rope_rotation(pos: torch.Tensor, d: int) -> torch.Tensor:
    """The rotary angles of positions ``pos`` (B, T) as unit complex numbers (B, T, d/2): the
    packed path rotates a channel pair by one complex product (:class:`_PackedAttention`)."""
    cos, sin = rope_tables(pos, d)
    return torch.complex(cos, sin).view(*pos.shape, d // 2)


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
    head of q and k, rotary pair i (channels i and i + D/2, ``model.rotate``) becomes channels
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
    Measured on the bench's batches (T = 13; docs/performance.md): bins
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



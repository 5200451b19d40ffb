"""Addition problems: evaluation buckets, answer formats, vectorized rendering, one parser.

Buckets (DESIGN.md §3), for ``max_digits = D``:

============  =========================================================================
d1            both operands 0-9 (all 100 problems)
d2_nocarry    both operands 10-99, no column produces a carry
d2_carry      both operands 10-99, at least one column carries
mixed         one operand 0-9, the other 10-99, either order
low_sum       ``mixed`` problems whose sum is below 30
general       both operands uniform in [0, 10^D)
ood_long      both operands with exactly D+1 digits (never trained on)
============  =========================================================================

Formats of the answer that follows ``a+b=``:

* ``plain``: the sum, most significant digit first: ``47+85=132``
* ``reversed``: the sum's digits least significant first: ``47+85=231``
* ``scratchpad``: per column (least significant first) the column total as two digits
  (carry-out, digit) and ``;``, then ``>`` and the plain sum: ``47+85=12;13;>132``

Rendering is vectorized: every row is laid out in fixed-width fields with holes, then the
holes are squeezed out with one stable argsort, so no Python loop runs per sample.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .tokenizer import BOS, EOS, PAD

BUCKETS = ("d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "general", "ood_long")
TRAIN_BUCKETS = ("d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "general")
FORMATS = ("plain", "reversed", "scratchpad")
LARGE_BUCKET = 10_000  # buckets with more problems than this keep eval out of training
_HOLE = -1
_ZERO = ord("0")


# ---- problem sets --------------------------------------------------------------------
def _carries(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True where adding a and b produces a carry in any column."""
    a, b = a.copy(), b.copy()
    carry = np.zeros(a.shape, dtype=bool)
    while np.any((a > 0) | (b > 0)):
        carry |= (a % 10 + b % 10) >= 10
        a //= 10
        b //= 10
    return carry


def _enumerate(bucket: str) -> tuple[np.ndarray, np.ndarray] | None:
    """All problems of a small bucket (None for the large ones, sampled instead)."""
    one = np.arange(10)
    two = np.arange(10, 100)
    if bucket == "d1":
        a, b = np.meshgrid(one, one, indexing="ij")
    elif bucket in ("d2_nocarry", "d2_carry"):
        a, b = np.meshgrid(two, two, indexing="ij")
    elif bucket in ("mixed", "low_sum"):
        x, y = np.meshgrid(one, two, indexing="ij")
        a = np.concatenate([x.ravel(), y.ravel()])
        b = np.concatenate([y.ravel(), x.ravel()])
    else:
        return None
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    if bucket == "d2_nocarry":
        keep = ~_carries(a, b)
    elif bucket == "d2_carry":
        keep = _carries(a, b)
    elif bucket == "low_sum":
        keep = (a + b) < 30
    else:
        keep = np.ones(a.shape, dtype=bool)
    return a[keep], b[keep]


_ENUM_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def enumerated(bucket: str) -> tuple[np.ndarray, np.ndarray] | None:
    if bucket not in _ENUM_CACHE:
        e = _enumerate(bucket)
        if e is None:
            return None
        _ENUM_CACHE[bucket] = e
    return _ENUM_CACHE[bucket]


def _operand_range(bucket: str, max_digits: int) -> tuple[int, int]:
    if bucket == "general":
        return 0, 10 ** max_digits
    if bucket == "ood_long":
        return 10 ** max_digits, 10 ** (max_digits + 1)
    raise ValueError(f"bucket {bucket!r} is not a sampled bucket")


def bucket_size(bucket: str, max_digits: int) -> int:
    """Number of distinct problems in a bucket."""
    check_bucket(bucket)
    e = enumerated(bucket)
    if e is not None:
        return len(e[0])
    lo, hi = _operand_range(bucket, max_digits)
    return (hi - lo) ** 2


def problem_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A unique int64 per (a, b) pair (operands below 10^9)."""
    return np.asarray(a, dtype=np.int64) * 1_000_000_000 + np.asarray(b, dtype=np.int64)


def sample_bucket(bucket: str, n: int, rng: np.random.Generator, max_digits: int,
                  exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n problems drawn uniformly (with replacement) from a bucket; problems whose
    :func:`problem_key` is in ``exclude`` are redrawn (vectorized rejection)."""
    check_bucket(bucket)
    e = enumerated(bucket)
    if e is not None:
        idx = rng.integers(0, len(e[0]), size=n)
        return e[0][idx], e[1][idx]
    lo, hi = _operand_range(bucket, max_digits)
    a = rng.integers(lo, hi, size=n, dtype=np.int64)
    b = rng.integers(lo, hi, size=n, dtype=np.int64)
    if exclude is not None and len(exclude):
        bad = np.isin(problem_key(a, b), exclude)
        while bad.any():
            k = int(bad.sum())
            a[bad] = rng.integers(lo, hi, size=k, dtype=np.int64)
            b[bad] = rng.integers(lo, hi, size=k, dtype=np.int64)
            bad = np.isin(problem_key(a, b), exclude)
    return a, b


def check_bucket(bucket: str) -> None:
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; allowed: {', '.join(BUCKETS)}")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; allowed: {', '.join(FORMATS)}")


@dataclass
class EvalSet:
    """Fixed evaluation problems per bucket, drawn from their own seed."""
    problems: dict[str, tuple[np.ndarray, np.ndarray]]
    max_digits: int
    seed: int

    def keys(self, bucket: str) -> np.ndarray:
        return problem_key(*self.problems[bucket])

    def train_exclusions(self) -> np.ndarray:
        """Keys that training must never draw: eval problems of the large buckets."""
        ks = [self.keys(b) for b in self.problems
              if bucket_size(b, self.max_digits) > LARGE_BUCKET]
        return np.unique(np.concatenate(ks)) if ks else np.zeros(0, dtype=np.int64)

    @property
    def buckets(self) -> list[str]:
        return list(self.problems)

    def subset(self, n: int) -> "EvalSet":
        """The first n problems of every bucket (a cheap, fixed probe set)."""
        return EvalSet({b: (x[:n], y[:n]) for b, (x, y) in self.problems.items()},
                       self.max_digits, self.seed)


LARGE_EVAL_SHARE = 10  # a large bucket lends at most 1/10 of its problems to evaluation


def eval_capacity(bucket: str, max_digits: int) -> int:
    """The most evaluation problems ``bucket`` can supply: all of a small bucket, a tenth of a
    large one (training must redraw every eval problem it meets, so it keeps at least 90% of
    the bucket and a draw costs at most 1.11 tries). A request above it is capped to it."""
    size = bucket_size(bucket, max_digits)
    return size if size <= LARGE_BUCKET else size // LARGE_EVAL_SHARE


def _first_distinct(rng: np.random.Generator, lo: int, hi: int, n: int,
                    chunk: int = 4096) -> np.ndarray:
    """The first ``n`` distinct problem keys of a stream of (a, b) draws, ``chunk`` pairs at a
    time, in the order they first appear (so the result for n is a prefix of the result for
    any larger n). The stream is extended until it holds n distinct keys, then deduplicated
    once: O(draws log draws). With n at most a tenth of the bucket, about 1.06 n draws."""
    parts, distinct = [], np.zeros(0, dtype=np.int64)
    want = n
    while len(distinct) < n:
        for _ in range(max(1, -(-int(want * 1.1) // chunk))):
            a = rng.integers(lo, hi, size=chunk, dtype=np.int64)
            b = rng.integers(lo, hi, size=chunk, dtype=np.int64)
            parts.append(problem_key(a, b))
        keys = np.concatenate(parts)
        _, first = np.unique(keys, return_index=True)
        distinct = keys[np.sort(first)]
        want = n - len(distinct)
    return distinct[:n]


def make_eval_set(max_digits: int, n_per_bucket: int, seed: int,
                  buckets=BUCKETS) -> EvalSet:
    """Up to ``n_per_bucket`` distinct problems per bucket: at most :func:`eval_capacity` of
    it (all of a small bucket). Independent of the training seed, and nested: the set for n
    problems is the first n of the set for any larger n, so evaluating on more problems than
    SFT excluded can only add problems, never swap them."""
    if not isinstance(n_per_bucket, (int, np.integer)) or n_per_bucket < 1:
        raise ValueError(f"n_per_bucket={n_per_bucket!r}: must be an integer >= 1")
    out = {}
    for bucket in buckets:
        check_bucket(bucket)
        # seeded by the bucket's fixed index, so a bucket's problems do not depend on which
        # other buckets are requested (training excludes those of the full set)
        rng = np.random.default_rng([seed, BUCKETS.index(bucket)])
        n = min(int(n_per_bucket), eval_capacity(bucket, max_digits))
        e = enumerated(bucket)
        if e is not None:
            sel = rng.permutation(len(e[0]))[:n]
            out[bucket] = (e[0][sel], e[1][sel])
            continue
        lo, hi = _operand_range(bucket, max_digits)
        keys = _first_distinct(rng, lo, hi, n)
        out[bucket] = (keys // 1_000_000_000, keys % 1_000_000_000)
    return EvalSet(out, max_digits, seed)


def capped_sizes(n_per_bucket: int, max_digits: int, buckets=BUCKETS) -> dict[str, int]:
    """``{bucket: what it supplies}`` for the buckets that cannot supply ``n_per_bucket``."""
    caps = {b: eval_capacity(b, max_digits) for b in buckets}
    return {b: c for b, c in caps.items() if c < n_per_bucket}


# ---- rendering -----------------------------------------------------------------------
def _ndigits(x: np.ndarray) -> np.ndarray:
    n = np.ones(x.shape, dtype=np.int64)
    p = 10
    while np.any(x >= p):
        n += x >= p
        p *= 10
    return n


def _digits(x: np.ndarray, width: int, reverse: bool = False) -> np.ndarray:
    """(N, width) byte codes of x's digits, left-aligned, holes after the last digit."""
    nd = _ndigits(x)[:, None]
    j = np.arange(width)[None, :]
    power = j if reverse else (nd - 1 - j)
    d = (x[:, None] // 10 ** np.clip(power, 0, None)) % 10 + _ZERO
    return np.where(j < nd, d, _HOLE)


def _const(n: int, tok: int) -> np.ndarray:
    return np.full((n, 1), tok, dtype=np.int64)


def _scratch(a: np.ndarray, b: np.ndarray, width: int) -> np.ndarray:
    """(N, 3*width) per-column totals 'cd;' (carry, digit), least significant column first."""
    cols = np.maximum(_ndigits(a), _ndigits(b))
    carry = np.zeros(a.shape, dtype=np.int64)
    fields = []
    for i in range(width):
        t = (a // 10 ** i) % 10 + (b // 10 ** i) % 10 + carry
        carry = t // 10
        f = np.stack([t // 10 + _ZERO, t % 10 + _ZERO, np.full_like(t, ord(";"))], axis=1)
        fields.append(np.where((i < cols)[:, None], f, _HOLE))
    return np.concatenate(fields, axis=1)


def _answer_fields(a, b, fmt: str, width: int) -> list[np.ndarray]:
    c = a + b
    if fmt == "plain":
        return [_digits(c, width + 1)]
    if fmt == "reversed":
        return [_digits(c, width + 1, reverse=True)]
    if fmt == "scratchpad":
        return [_scratch(a, b, width), _const(len(a), ord(">")), _digits(c, width + 1)]
    check_format(fmt)
    raise AssertionError


def _squeeze(fields: list[np.ndarray], roles: list[int], left_pad: bool = False):
    """Concatenate fields, squeeze holes out (stable), return (tokens, role) with PAD/-1 fill."""
    toks = np.concatenate(fields, axis=1)
    role = np.concatenate([np.full(f.shape, r, dtype=np.int8) for f, r in zip(fields, roles)], axis=1)
    hole = toks == _HOLE
    order = np.argsort(~hole if left_pad else hole, axis=1, kind="stable")
    toks = np.take_along_axis(toks, order, axis=1)
    role = np.take_along_axis(role, order, axis=1)
    hole = np.take_along_axis(hole, order, axis=1)
    toks[hole] = PAD
    role[hole] = -1
    keep = ~hole.all(axis=0)  # drop all-padding columns
    return toks[:, keep], role[:, keep]


def _width(a, b) -> int:
    return int(max(_ndigits(a).max(initial=1), _ndigits(b).max(initial=1)))


def render_examples(a: np.ndarray, b: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Training rows ``BOS a+b=ANSWER EOS`` right-padded with PAD.

    Returns ``tokens`` (N, T) int64 and ``answer`` (N, T) bool marking the answer tokens
    (including EOS): the only positions that carry loss.
    """
    check_format(fmt)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    n, w = len(a), _width(a, b)
    fields = [_const(n, BOS), _digits(a, w), _const(n, ord("+")), _digits(b, w),
              _const(n, ord("="))]
    roles = [0] * len(fields)
    ans = _answer_fields(a, b, fmt, w) + [_const(n, EOS)]
    toks, role = _squeeze(fields + ans, roles + [1] * len(ans))
    return toks, role == 1


def render_prompts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prompts ``BOS a+b=`` left-padded: ``tokens`` (N, P) and ``valid`` (N, P) bool."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    n, w = len(a), _width(a, b)
    fields = [_const(n, BOS), _digits(a, w), _const(n, ord("+")), _digits(b, w),
              _const(n, ord("="))]
    toks, role = _squeeze(fields, [0] * 5, left_pad=True)
    return toks, role == 0


def answer_text(a: int, b: int, fmt: str) -> str:
    """The target answer string of one problem (for display and tests)."""
    toks, ans = render_examples(np.array([a]), np.array([b]), fmt)
    return bytes(int(t) for t, m in zip(toks[0], ans[0]) if m and t < 256).decode()


def max_answer_tokens(max_digits: int, fmt: str) -> int:
    """Answer tokens (with EOS) for operands of up to ``max_digits + 1`` digits (ood_long)."""
    w = max_digits + 1
    n = {"plain": w + 1, "reversed": w + 1, "scratchpad": 3 * w + 1 + w + 1}[fmt]
    return n + 1


def block_size_for(max_digits: int, fmt: str) -> int:
    """Context length that holds the longest prompt + answer, ood_long included."""
    w = max_digits + 1
    return 1 + w + 1 + w + 1 + max_answer_tokens(max_digits, fmt)


# ---- parsing -------------------------------------------------------------------------
_DIGITS = re.compile(r"[0-9]{1,30}")
_SCRATCH = re.compile(r"(?:[0-9]{2};){0,30}>([0-9]{1,30})")


def parse_answer(text: str, fmt: str) -> int | None:
    """The integer an answer states, or None when it does not parse in ``fmt``.

    plain: only digits; reversed: only digits, read back to front; scratchpad:
    ``(dd;)*>`` followed by digits. Anything else (empty, stray characters) is a
    format failure. Accepts any string without raising.
    """
    if not isinstance(text, str):
        return None
    if fmt == "plain":
        return int(text) if _DIGITS.fullmatch(text) else None
    if fmt == "reversed":
        return int(text[::-1]) if _DIGITS.fullmatch(text) else None
    if fmt == "scratchpad":
        m = _SCRATCH.fullmatch(text)
        return int(m.group(1)) if m else None
    check_format(fmt)
    raise AssertionError

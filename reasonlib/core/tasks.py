"""Addition problems: evaluation buckets, answer formats, vectorized rendering, one parser.

Buckets (DESIGN.md §3), for ``max_digits = D``:

============  =========================================================================
d1            both operands 0-9 (all 100 problems)
d2_nocarry    both operands 10-99, no column produces a carry
d2_carry      both operands 10-99, at least one column carries
mixed         one operand 0-9, the other 10-99, either order
low_sum       ``mixed`` problems whose sum is below 30
mixed3        operands of different lengths, the longer with D digits (``12+477``, ``5+803``)
general       both operands uniform in [0, 10^D)
ood_long      both operands with exactly D+1 digits (never trained on)
============  =========================================================================

Training draws also a bucket of their own, ``pairs`` (curriculum ``targeted_v2``): an operand
length pair (i, j), i, j <= D, uniform over the pairs, then each operand uniform over its
length. One pair, :func:`withheld_cell` ((1, D) for D >= 3), is drawn by **no** training
path: :func:`sample_bucket` (every curriculum's batches and RL's prompts) rejects it, so the
length-pair grid (reasonlib.study.grid) tests composition to a pair never seen.

Train and test (DESIGN.md §3): a bucket with at most 10,000 problems is *small* and
enumerated; a fixed, seeded 30% of every small bucket but ``d1`` is **held out**: no
training path draws it, and every metric on the bucket is computed on it. A *large* bucket
is sampled; its eval problems (up to 20,000, all an eval set may use) are reserved and never
drawn for training either. A third part, **validation** (:func:`make_val_set`: a fixed 10% of
every stratum, and up to 2,000 problems of each large bucket outside its eval problems), is
neither trained nor scored: the probe during training reads it, and with it every choice made
from data (transition steps, RL starts, recipes). :func:`train_exclusions` is the union of all
three, the one set every training draw (:func:`sample_bucket`) avoids. ``d1`` (100 problems)
is trained and evaluated in full, and has no validation part.

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
from dataclasses import dataclass, field

import numpy as np

from .tokenizer import BOS, EOS, PAD

BUCKETS = ("d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "mixed3", "general", "ood_long")
# each bucket's eval problems are drawn from its own seed [eval_seed, this index], so adding a
# bucket leaves the others' problems as they were
_SEED_INDEX = {"d1": 0, "d2_nocarry": 1, "d2_carry": 2, "mixed": 3, "low_sum": 4, "general": 5,
               "ood_long": 6, "mixed3": 7}
FORMATS = ("plain", "reversed", "scratchpad")
LARGE_BUCKET = 10_000  # a bucket with more problems is sampled; with at most this many, enumerated
HOLDOUT_SHARE = 0.3    # of every small bucket but d1: never drawn for training, evaluated on
# the strata the held-out share is drawn from, each separately, so low_sum (inside mixed) gets
# exactly its 30% too; every small bucket is a union of d1 and these
HOLDOUT_STRATA = ("d2_nocarry", "d2_carry", "low_sum", "mixed_high")
MAX_RESERVED = 20_000  # eval problems reserved (never trained) per large bucket: params.MAX_EVAL
TRAIN_BUCKETS = BUCKETS + ("pairs",)   # what a training draw may name (pairs: training only)
VAL_SHARE = 0.1        # of every stratum: validation problems, neither trained nor evaluated
MAX_VAL = 2_000        # validation problems per large bucket (the probe's eval_n at most)
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


def _grid(x: np.ndarray, y: np.ndarray, both_orders: bool = False):
    a, b = np.meshgrid(x, y, indexing="ij")
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    return (np.concatenate([a, b]), np.concatenate([b, a])) if both_orders else (a, b)


def _enumerate(bucket: str, max_digits: int) -> tuple[np.ndarray, np.ndarray] | None:
    """All problems of a small bucket (None for a large one, which is sampled instead)."""
    if bucket_size(bucket, max_digits) > LARGE_BUCKET:
        return None
    one, two = np.arange(10), np.arange(10, 100)
    if bucket == "d1":
        return _grid(one, one)
    if bucket in ("d2_nocarry", "d2_carry"):
        a, b = _grid(two, two)
        keep = _carries(a, b) == (bucket == "d2_carry")
        return a[keep], b[keep]
    if bucket in ("mixed", "low_sum", "mixed_high"):
        a, b = _grid(one, two, both_orders=True)
        keep = {"mixed": a >= 0, "low_sum": a + b < 30, "mixed_high": a + b >= 30}[bucket]
        return a[keep], b[keep]
    lo, hi = _operand_range(bucket, max_digits)
    if bucket == "mixed3":
        if max_digits == 1:   # no operand is shorter than one digit
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return _grid(np.arange(10 ** (max_digits - 1), 10 ** max_digits),
                     np.arange(0, 10 ** (max_digits - 1)), both_orders=True)
    return _grid(np.arange(lo, hi), np.arange(lo, hi))


_ENUM_CACHE: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}


def enumerated(bucket: str, max_digits: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """Every problem of ``bucket`` when it is small (at most LARGE_BUCKET), else None."""
    key = (bucket, max_digits if bucket in ("general", "ood_long", "mixed3") else 0)
    if key not in _ENUM_CACHE:
        e = _enumerate(bucket, max_digits)
        if e is None:
            return None
        _ENUM_CACHE[key] = e
    return _ENUM_CACHE[key]


def _operand_range(bucket: str, max_digits: int) -> tuple[int, int]:
    if bucket == "general":
        return 0, 10 ** max_digits
    if bucket == "ood_long":
        return 10 ** max_digits, 10 ** (max_digits + 1)
    if bucket == "mixed3":   # the longer operand's range; the shorter is below 10^(D-1)
        return 10 ** (max_digits - 1), 10 ** max_digits
    raise ValueError(f"bucket {bucket!r} is not a sampled bucket")


_FIXED_SIZES = {"d1": 100, "d2_nocarry": 1980, "d2_carry": 6120, "mixed": 1800, "low_sum": 310,
                "mixed_high": 1490}


def bucket_size(bucket: str, max_digits: int) -> int:
    """Number of distinct problems in a bucket (0 for ``mixed3`` at max_digits = 1)."""
    if bucket in _FIXED_SIZES:
        return _FIXED_SIZES[bucket]
    check_bucket(bucket)
    lo, hi = _operand_range(bucket, max_digits)
    if bucket == "mixed3":
        return 2 * (hi - lo) * lo if max_digits > 1 else 0
    return (hi - lo) ** 2


def buckets_for(max_digits: int, buckets=BUCKETS) -> list[str]:
    """The buckets that hold problems at ``max_digits`` (``mixed3`` needs at least 2)."""
    return [b for b in buckets if bucket_size(b, max_digits) > 0]


def problem_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A unique int64 per (a, b) pair (operands below 10^9)."""
    return np.asarray(a, dtype=np.int64) * 1_000_000_000 + np.asarray(b, dtype=np.int64)


def in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """``np.isin(keys, sorted_keys)`` for an already sorted, unique second array:
    a binary search per key, so a batch costs O(batch log |sorted_keys|)."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    i = np.searchsorted(sorted_keys, keys).clip(max=len(sorted_keys) - 1)
    return sorted_keys[i] == keys


def withheld_cell(max_digits: int) -> tuple[int, int] | None:
    """The operand-length pair (len a, len b) no training path draws: (1, D) for D >= 3, None
    below (at D = 2 it would be half of ``mixed``, the stage the study is about)."""
    return (1, max_digits) if max_digits >= 3 else None


def in_cell(a: np.ndarray, b: np.ndarray, cell: tuple[int, int]) -> np.ndarray:
    """True where (digits of a, digits of b) is ``cell``."""
    return (_ndigits(np.asarray(a)) == cell[0]) & (_ndigits(np.asarray(b)) == cell[1])


def pair_cells(max_digits: int) -> list[tuple[int, int]]:
    """The length pairs ``pairs`` draws: every (i, j) with i, j <= D but the withheld one."""
    out = [(i, j) for i in range(1, max_digits + 1) for j in range(1, max_digits + 1)]
    return [c for c in out if c != withheld_cell(max_digits)]


def _length_range(n: int) -> tuple[int, int]:
    return (0 if n == 1 else 10 ** (n - 1)), 10 ** n


def draw_cell(cell: tuple[int, int], n: int, rng: np.random.Generator):
    """n problems uniform over one length pair (with replacement)."""
    (lo_a, hi_a), (lo_b, hi_b) = _length_range(cell[0]), _length_range(cell[1])
    return (rng.integers(lo_a, hi_a, size=n, dtype=np.int64),
            rng.integers(lo_b, hi_b, size=n, dtype=np.int64))


def _draw(bucket: str, n: int, rng: np.random.Generator, max_digits: int):
    """n problems uniform over a large bucket (with replacement)."""
    lo, hi = _operand_range(bucket, max_digits)
    if bucket == "mixed3":   # (longer, shorter) then a coin for the order: uniform over the set
        x = rng.integers(lo, hi, size=n, dtype=np.int64)
        y = rng.integers(0, lo, size=n, dtype=np.int64)
        swap = rng.integers(0, 2, size=n).astype(bool)
        return np.where(swap, y, x), np.where(swap, x, y)
    return (rng.integers(lo, hi, size=n, dtype=np.int64), rng.integers(lo, hi, size=n, dtype=np.int64))


_POOL_CACHE: dict = {}


def _allowed(bucket: str, max_digits: int, exclude: np.ndarray):
    """A small bucket's problems outside ``exclude`` (cached per bucket and exclusion set)."""
    key = (bucket, max_digits, len(exclude), hash(exclude.tobytes()))
    if key not in _POOL_CACHE:
        if len(_POOL_CACHE) > 64:
            _POOL_CACHE.clear()
        a, b = enumerated(bucket, max_digits)
        ok = ~in_sorted(problem_key(a, b), exclude)
        _POOL_CACHE[key] = (a[ok], b[ok])
    return _POOL_CACHE[key]


def sample_bucket(bucket: str, n: int, rng: np.random.Generator, max_digits: int,
                  exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n training problems drawn uniformly (with replacement) from a bucket (or ``pairs``),
    never one whose :func:`problem_key` is in ``exclude`` (a sorted key array, e.g.
    :func:`train_exclusions`) and never one of the :func:`withheld_cell`: a small bucket is
    drawn from its allowed problems (none lies in the withheld cell), a large one by
    vectorized rejection (its exclusion is a small share, so a draw costs few tries)."""
    if bucket not in TRAIN_BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; allowed: {', '.join(TRAIN_BUCKETS)}")
    exclude = np.zeros(0, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    if len(exclude) > 1 and not (exclude[1:] > exclude[:-1]).all():
        exclude = np.unique(exclude)   # the binary search needs sorted, unique keys
    e = None if bucket == "pairs" else enumerated(bucket, max_digits)
    if e is not None:
        a, b = _allowed(bucket, max_digits, exclude) if len(exclude) else e
        if len(a) == 0:
            raise ValueError(f"bucket {bucket!r} has no problem left to train on at "
                             f"max_digits={max_digits}")
        idx = rng.integers(0, len(a), size=n)
        return a[idx], b[idx]
    cell = withheld_cell(max_digits)

    def rejected(a, b):
        bad = in_sorted(problem_key(a, b), exclude)
        return bad | in_cell(a, b, cell) if cell else bad

    def redrawn(draw, n):   # n draws, each rejected one redrawn from the same ``draw``
        a, b = draw(n)
        bad = rejected(a, b)
        while bad.any():
            a[bad], b[bad] = draw(int(bad.sum()))
            bad = rejected(a, b)
        return a, b

    if bucket != "pairs":
        return redrawn(lambda k: _draw(bucket, k, rng, max_digits), n)
    # pairs: a length pair uniform over pair_cells, redrawn inside its own pair, so every
    # pair keeps its share whatever part of it is excluded
    cells = pair_cells(max_digits)
    which = rng.integers(0, len(cells), size=n)
    a, b = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for k, c in enumerate(cells):
        m = which == k
        if m.any():
            a[m], b[m] = redrawn(lambda j, c=c: draw_cell(c, j, rng), int(m.sum()))
    return a, b


# ---- held-out problems and reserved eval problems --------------------------------------
_SPLIT_CACHE: dict[int, np.ndarray] = {}


def heldout_keys(seed: int) -> np.ndarray:
    """The held-out problems (sorted keys): a fixed 30% of each stratum of the small buckets
    but d1, drawn from ``seed`` (the eval seed). No training path ever draws one; every
    metric on a small bucket is computed on its held-out part. ``low_sum``'s held-out part is
    exactly the held-out ``mixed`` problems with a sum below 30."""
    if seed not in _SPLIT_CACHE:
        parts = []
        for i, st in enumerate(HOLDOUT_STRATA):
            keys = problem_key(*enumerated(st))
            rng = np.random.default_rng([seed, 7919, i])
            parts.append(keys[rng.permutation(len(keys))[:round(HOLDOUT_SHARE * len(keys))]])
        _SPLIT_CACHE[seed] = np.sort(np.concatenate(parts))
    return _SPLIT_CACHE[seed]


def reserved_keys(max_digits: int, seed: int) -> np.ndarray:
    """The eval problems of every large bucket (sorted keys), up to MAX_RESERVED each (what
    the largest allowed eval set can use), d1 problems left out (d1 is trained in full)."""
    parts = []
    for b in BUCKETS:
        if bucket_size(b, max_digits) > LARGE_BUCKET:
            a, c = _eval_problems(b, max_digits, min(eval_capacity(b, max_digits), MAX_RESERVED), seed)
            parts.append(problem_key(a, c)[(a >= 10) | (c >= 10)])
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


_VAL_CACHE: dict = {}


def _val_small(max_digits: int, seed: int) -> np.ndarray:
    """The validation problems of the small buckets (sorted keys): a fixed VAL_SHARE of each
    stratum, drawn from what neither the held-out share nor a large bucket's eval problems
    (``general`` draws 2-digit problems too) took."""
    if ("small", max_digits, seed) not in _VAL_CACHE:
        held = np.union1d(heldout_keys(seed), reserved_keys(max_digits, seed))
        parts = []
        for i, st in enumerate(HOLDOUT_STRATA):
            keys = problem_key(*enumerated(st))
            free = keys[~in_sorted(keys, held)]
            rng = np.random.default_rng([seed, 7927, i])
            parts.append(free[rng.permutation(len(free))[:round(VAL_SHARE * len(keys))]])
        _VAL_CACHE[("small", max_digits, seed)] = np.sort(np.concatenate(parts))
    return _VAL_CACHE[("small", max_digits, seed)]


def _val_large(bucket: str, max_digits: int, seed: int) -> np.ndarray:
    """A large bucket's validation problems (keys, in their fixed order): the first MAX_VAL
    distinct draws of their own stream that are no eval problem (of a large bucket, or held out
    of a small one)."""
    k = ("large", bucket, max_digits, seed)
    if k not in _VAL_CACHE:
        rng = np.random.default_rng([seed, _SEED_INDEX[bucket], 1])
        want = min(MAX_VAL, eval_capacity(bucket, max_digits, seed))
        keys = _first_distinct(bucket, max_digits, rng, 2 * want)
        keys = keys[~in_sorted(keys, np.union1d(reserved_keys(max_digits, seed), heldout_keys(seed)))]
        keys = keys[(keys // 1_000_000_000 >= 10) | (keys % 1_000_000_000 >= 10)]   # d1 is trained
        _VAL_CACHE[k] = keys[:want]
    return _VAL_CACHE[k]


def validation_keys(max_digits: int, seed: int) -> np.ndarray:
    """Every validation problem (sorted keys): the small buckets' share, the large ones'
    draws (d1 problems left out: d1 is trained in full)."""
    parts = [_val_small(max_digits, seed)]
    parts += [_val_large(b, max_digits, seed) for b in BUCKETS
              if bucket_size(b, max_digits) > LARGE_BUCKET]
    return np.unique(np.concatenate(parts))


_EXCL_CACHE: dict[tuple[int, int], np.ndarray] = {}


def train_exclusions(max_digits: int, seed: int) -> np.ndarray:
    """Everything training must never draw, as sorted keys: the held-out share of the small
    buckets, the reserved eval problems of the large ones and the validation problems of
    both. It depends on nothing but
    ``max_digits`` and the eval seed, so every arm, format, curriculum and RL run of a study
    excludes the same problems, whatever its eval sizes."""
    k = (max_digits, seed)
    if k not in _EXCL_CACHE:
        _EXCL_CACHE[k] = np.union1d(np.union1d(heldout_keys(seed), reserved_keys(max_digits, seed)),
                                    validation_keys(max_digits, seed))
    return _EXCL_CACHE[k]


def check_bucket(bucket: str) -> None:
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; allowed: {', '.join(BUCKETS)}")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; allowed: {', '.join(FORMATS)}")


@dataclass
class EvalSet:
    """Fixed evaluation problems per bucket, drawn from their own seed.

    ``problems`` is what every metric is computed on: a small bucket's held-out part (all of
    ``d1``, which is trained and evaluated in full), a sample of a large bucket (never trained
    either). ``seen`` holds, for the small buckets with a held-out part, problems that
    training may draw, for a comparison labelled as such (empty unless asked for)."""
    problems: dict[str, tuple[np.ndarray, np.ndarray]]
    max_digits: int
    seed: int
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def keys(self, bucket: str) -> np.ndarray:
        return problem_key(*self.problems[bucket])

    def train_exclusions(self) -> np.ndarray:
        """Keys that training must never draw (:func:`train_exclusions`)."""
        return train_exclusions(self.max_digits, self.seed)

    def held_out(self, bucket: str) -> np.ndarray:
        """Per eval problem of ``bucket``: True when no training path can draw it."""
        return in_sorted(self.keys(bucket), self.train_exclusions())

    @property
    def buckets(self) -> list[str]:
        return list(self.problems)

    def subset(self, n: int) -> "EvalSet":
        """The first n problems of every bucket (a cheap, fixed probe set)."""
        return EvalSet({b: (x[:n], y[:n]) for b, (x, y) in self.problems.items()},
                       self.max_digits, self.seed,
                       {b: (x[:n], y[:n]) for b, (x, y) in self.seen.items()})


LARGE_EVAL_SHARE = 10  # a large bucket lends at most 1/10 of its problems to evaluation


def _split(bucket: str, max_digits: int, seed: int):
    """(held-out, seen) problems of a small bucket, each in its fixed seeded order; a bucket
    made of d1 problems only has no held-out part and is evaluated in full."""
    a, b = enumerated(bucket, max_digits)
    held = in_sorted(problem_key(a, b), heldout_keys(seed))
    if not held.any():
        held = np.ones(len(a), dtype=bool)
    rng = np.random.default_rng([seed, _SEED_INDEX[bucket]])
    order = rng.permutation(len(a))
    h, s = order[held[order]], order[~held[order]]
    return (a[h], b[h]), (a[s], b[s])


def eval_capacity(bucket: str, max_digits: int, seed: int = 1234) -> int:
    """The most evaluation problems ``bucket`` can supply: its held-out part when small (all
    of d1), a tenth of it when large (training redraws every reserved problem it meets, so it
    keeps at least 90% of the bucket). A request above it is capped to it."""
    size = bucket_size(bucket, max_digits)
    if size > LARGE_BUCKET:
        return size // LARGE_EVAL_SHARE
    return len(_split(bucket, max_digits, seed)[0][0])


def _first_distinct(bucket: str, max_digits: int, rng: np.random.Generator, n: int,
                    chunk: int = 4096) -> np.ndarray:
    """The first ``n`` distinct problem keys of a stream of draws from a large bucket,
    ``chunk`` at a time, in the order they first appear (so the result for n is a prefix of
    the result for any larger n). The stream is extended until it holds n distinct keys, then
    deduplicated once: O(draws log draws). With n at most a tenth of the bucket, about
    1.06 n draws."""
    parts, distinct = [], np.zeros(0, dtype=np.int64)
    want = n
    while len(distinct) < n:
        for _ in range(max(1, -(-int(want * 1.1) // chunk))):
            parts.append(problem_key(*_draw(bucket, chunk, rng, max_digits)))
        keys = np.concatenate(parts)
        _, first = np.unique(keys, return_index=True)
        distinct = keys[np.sort(first)]
        want = n - len(distinct)
    return distinct[:n]


def _eval_problems(bucket: str, max_digits: int, n: int, seed: int):
    if bucket_size(bucket, max_digits) <= LARGE_BUCKET:
        (a, b), _ = _split(bucket, max_digits, seed)
        return a[:n], b[:n]
    rng = np.random.default_rng([seed, _SEED_INDEX[bucket]])
    keys = _first_distinct(bucket, max_digits, rng, n)
    return keys // 1_000_000_000, keys % 1_000_000_000


def make_eval_set(max_digits: int, n_per_bucket: int, seed: int, buckets=None,
                  seen: bool = False) -> EvalSet:
    """Up to ``n_per_bucket`` distinct problems per bucket, at most :func:`eval_capacity` of
    it: the held-out part of a small bucket, a sample of a large one (default buckets: every
    one that has problems at ``max_digits``). Independent of the training seed, and nested:
    the set for n problems is the first n of the set for any larger n. ``seen`` adds up to
    ``n_per_bucket`` trainable problems of each small bucket that has a held-out part."""
    if isinstance(n_per_bucket, bool) or not isinstance(n_per_bucket, (int, np.integer)) \
            or n_per_bucket < 1:
        raise ValueError(f"n_per_bucket={n_per_bucket!r}: must be an integer >= 1")
    buckets = buckets_for(max_digits) if buckets is None else list(buckets)
    out, extra = {}, {}
    for bucket in buckets:
        check_bucket(bucket)
        if bucket_size(bucket, max_digits) == 0:
            raise ValueError(f"bucket {bucket!r} has no problems at max_digits={max_digits}")
        n = min(int(n_per_bucket), eval_capacity(bucket, max_digits, seed))
        out[bucket] = _eval_problems(bucket, max_digits, n, seed)
        if seen and bucket_size(bucket, max_digits) <= LARGE_BUCKET:
            _, (a, b) = _split(bucket, max_digits, seed)
            if len(a):
                extra[bucket] = (a[:n_per_bucket], b[:n_per_bucket])
    return EvalSet(out, max_digits, seed, extra)


def _val_problems(bucket: str, max_digits: int, seed: int):
    """A bucket's validation problems in their fixed order (empty for d1 and d1-only buckets)."""
    if bucket_size(bucket, max_digits) > LARGE_BUCKET:
        keys = _val_large(bucket, max_digits, seed)
    else:
        a, b = enumerated(bucket, max_digits)
        keys = problem_key(a, b)
        keys = keys[in_sorted(keys, _val_small(max_digits, seed))]
        keys = keys[np.random.default_rng([seed, _SEED_INDEX[bucket], 1]).permutation(len(keys))]
    return keys // 1_000_000_000, keys % 1_000_000_000


def make_val_set(max_digits: int, n_per_bucket: int, seed: int, buckets=None) -> EvalSet:
    """Up to ``n_per_bucket`` validation problems per bucket (every bucket that has some at
    ``max_digits``; d1 has none): disjoint from training and from every eval set, nested like
    :func:`make_eval_set`. What the probe during training reads, and every choice made from
    data with it; eval problems are only scored."""
    if isinstance(n_per_bucket, bool) or not isinstance(n_per_bucket, (int, np.integer)) \
            or n_per_bucket < 1:
        raise ValueError(f"n_per_bucket={n_per_bucket!r}: must be an integer >= 1")
    buckets = buckets_for(max_digits) if buckets is None else list(buckets)
    out = {}
    for bucket in buckets:
        check_bucket(bucket)
        a, b = _val_problems(bucket, max_digits, seed)
        if len(a):
            out[bucket] = (a[:n_per_bucket], b[:n_per_bucket])
    return EvalSet(out, max_digits, seed)


def capped_sizes(n_per_bucket: int, max_digits: int, buckets=None, seed: int = 1234) -> dict[str, int]:
    """``{bucket: what it supplies}`` for the buckets that cannot supply ``n_per_bucket``."""
    buckets = buckets_for(max_digits) if buckets is None else buckets
    caps = {b: eval_capacity(b, max_digits, seed) for b in buckets if bucket_size(b, max_digits)}
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


LENGTH_EXTRA = 3  # the length-pair grid (reasonlib.study.grid) tests operands of up to D + 3 digits
LENGTH_FACTOR = 3  # ... and the length study (reasonlib.study.lengths) up to 3D (at least D + 3)
MAX_OPERAND_DIGITS = 9   # problem_key holds operands below 10^9


def longest_tested(max_digits: int) -> int:
    """The most digits an operand of any evaluation has: max(D + LENGTH_EXTRA, 3D), at most
    MAX_OPERAND_DIGITS (9, what a problem key holds; D + 3 is at most 9 for D <= 6)."""
    return min(max(max_digits + LENGTH_EXTRA, LENGTH_FACTOR * max_digits), MAX_OPERAND_DIGITS)


def answer_len(width: int, fmt: str) -> int:
    """Answer tokens (with EOS) for operands of up to ``width`` digits."""
    check_format(fmt)
    n = {"plain": width + 1, "reversed": width + 1, "scratchpad": 3 * width + 1 + width + 1}[fmt]
    return n + 1


def max_row_tokens(max_digits: int, fmt: str) -> int:
    """Tokens of the longest training row, ``BOS a+b=ANSWER EOS`` with operands of up to
    ``max_digits`` digits (what bounds the real tokens of a batch)."""
    return 1 + max_digits + 1 + max_digits + 1 + answer_len(max_digits, fmt)


def max_answer_tokens(max_digits: int, fmt: str) -> int:
    """Answer tokens (with EOS) for operands of up to ``max_digits + 1`` digits (ood_long)."""
    return answer_len(max_digits + 1, fmt)


def answer_budget(a: np.ndarray, b: np.ndarray, max_digits: int, fmt: str) -> int:
    """Tokens to generate for problems a+b: enough for ood_long, more for longer operands."""
    return max(max_answer_tokens(max_digits, fmt), answer_len(_width(a, b), fmt))


def block_size_for(max_digits: int, fmt: str) -> int:
    """Context length that holds the longest prompt + answer: operands of
    :func:`longest_tested` digits (the length study's longest). No position scheme has a table
    of this size, so the context only bounds what a model may be asked."""
    w = longest_tested(max_digits)
    return 1 + w + 1 + w + 1 + answer_len(w, fmt)


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

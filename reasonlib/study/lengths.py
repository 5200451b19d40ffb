"""Length generalisation: problems whose two operands have exactly n digits, n = 1..3D
(at least D + 3: :func:`reasonlib.core.tasks.longest_tested`).

The train/test rule: every training path draws from the curricula's buckets, whose operands
have at most T = :func:`longest_trained` digits (T = D = ``max_digits`` for D >= 2; the
``d2_*`` stages make it 2 at D = 1; ``ood_long`` is evaluation only), so no problem with a
longer operand is ever trained on. Within the trained range each length is evaluated on
eval problems training never draws (validation problems, which choices are made on, left
out): the held-out ``d2_*`` problems for 2 digits, the reserved ``general`` eval problems for
3..D digits. Length 1 is ``d1``, trained and evaluated in
full, and labelled seen.
"""
from __future__ import annotations

import numpy as np

from ..core import tasks


def longest_trained(max_digits: int) -> int:
    """The most digits an operand of any training bucket (every curriculum's stages) has."""
    from ..train.curriculum import CURRICULA, stages
    most = 0
    for c in CURRICULA:
        for st in stages(c):
            for bucket, _ in st.weights:
                if bucket == "pairs":   # length pairs up to D (tasks.pair_cells)
                    most = max(most, max(max(c) for c in tasks.pair_cells(max_digits)))
                    continue
                e = tasks.enumerated(bucket, max_digits)
                hi = int(max(e[0].max(), e[1].max())) if e is not None \
                    else tasks._operand_range(bucket, max_digits)[1] - 1
                most = max(most, len(str(hi)))
    return most


def lengths_for(max_digits: int) -> list[int]:
    return list(range(1, tasks.longest_tested(max_digits) + 1))


def name(n: int) -> str:
    return f"len{n}"


def _exact(x: np.ndarray, n: int) -> np.ndarray:
    return (x >= (10 ** (n - 1) if n > 1 else 0)) & (x < 10 ** n)


def problems(n: int, max_digits: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Up to ``count`` distinct problems with two n-digit operands, in a fixed seeded order,
    and whether training may have drawn them (True for n = 1 only)."""
    top = tasks.longest_tested(max_digits)
    if not 1 <= n <= top:
        raise ValueError(f"n={n}: operand length must be in 1..{top} (max(max_digits + "
                         f"{tasks.LENGTH_EXTRA}, {tasks.LENGTH_FACTOR} x max_digits))")
    if n == 1:
        a, b = tasks.enumerated("d1")
        return a[:count], b[:count], True
    rng = np.random.default_rng([seed, 4049, n])
    if n <= longest_trained(max_digits):   # never-trained problems of this length
        keys = np.union1d(tasks.heldout_keys(seed), tasks.reserved_keys(max_digits, seed))
        a, b = keys // 1_000_000_000, keys % 1_000_000_000
        keep = _exact(a, n) & _exact(b, n)
        a, b = a[keep], b[keep]
        order = rng.permutation(len(a))[:count]
        return a[order], b[order], False
    lo, hi = 10 ** (n - 1), 10 ** n
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < count:   # distinct pairs, first appearance order
        draw = tasks.problem_key(rng.integers(lo, hi, 2 * count), rng.integers(lo, hi, 2 * count))
        keys = np.concatenate([keys, draw])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
    keys = keys[:count]
    return keys // 1_000_000_000, keys % 1_000_000_000, False


def eval_set(max_digits: int, count: int, seed: int) -> tasks.EvalSet:
    """One "bucket" per length (``len1`` .. ``len{D+3}``), for reasonlib.core.metrics."""
    out = {}
    for n in lengths_for(max_digits):
        a, b, _ = problems(n, max_digits, count, seed)
        out[name(n)] = (a, b)
    return tasks.EvalSet(out, max_digits, seed)

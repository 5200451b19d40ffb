"""Curricula: which buckets a training batch is drawn from, as training proceeds.

A curriculum is a list of stages. Stage *k* introduces one new bucket and spends a fixed
share of the **token budget** (not of the steps: rows have different lengths per bucket,
and both arms must see the same number of tokens). Inside a stage, a batch is drawn
``1 - replay`` from the new bucket and ``replay`` evenly from the buckets already seen, so
early skills are not forgotten.

* ``control`` (the seed's old curriculum): d1 -> d2_nocarry -> d2_carry -> general
* ``targeted``: d1 -> d2_nocarry -> d2_carry -> **mixed** -> general, and once ``mixed``
  has been introduced it keeps its own replay share ``mixed_replay`` in every later stage.
* ``targeted_v2`` (the study's remedy, explicit mixed-digit training, generalised to D):
  targeted's stages with a **pairs** stage before ``general``: every operand-length pair
  (i, j <= D) equally often but the withheld one (:func:`reasonlib.core.tasks.withheld_cell`),
  and ``pairs`` then keeps the ``mixed_replay`` share. It runs beside ``targeted`` rather than
  replacing it: ``targeted`` is the study's curriculum, whose claims the suite tests.

Every curriculum spends the same token budget; the shares below only split it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import tasks

CURRICULA = ("control", "targeted", "targeted_v2")
_ORDER = {
    "control": ("d1", "d2_nocarry", "d2_carry", "general"),
    "targeted": ("d1", "d2_nocarry", "d2_carry", "mixed", "general"),
    "targeted_v2": ("d1", "d2_nocarry", "d2_carry", "mixed", "pairs", "general"),
}
_SHARES = {  # share of the token budget per stage; the last stage is the longest
    "control": (0.05, 0.10, 0.15, 0.70),
    "targeted": (0.05, 0.10, 0.15, 0.10, 0.60),
    "targeted_v2": (0.05, 0.10, 0.15, 0.10, 0.15, 0.45),
}
_KEPT = {"targeted": "mixed", "targeted_v2": "pairs"}   # keeps mixed_replay once introduced


@dataclass(frozen=True)
class Stage:
    name: str
    start: float  # fraction of the token budget where the stage begins
    end: float
    weights: tuple[tuple[str, float], ...]  # (bucket, probability), summing to 1


def check_curriculum(name: str) -> None:
    if name not in CURRICULA:
        raise ValueError(f"unknown curriculum {name!r}; allowed: {', '.join(CURRICULA)}")


def stages(name: str, replay: float = 0.2, mixed_replay: float = 0.15) -> list[Stage]:
    """The stage schedule of a curriculum (what 02 plots)."""
    check_curriculum(name)
    if not (0 <= replay < 1 and 0 <= mixed_replay < 1 and replay + mixed_replay < 1):
        raise ValueError(f"replay={replay}, mixed_replay={mixed_replay}: each must be in [0, 1) "
                         "and their sum below 1")
    out, start = [], 0.0
    order, shares = _ORDER[name], _SHARES[name]
    for k, (new, share) in enumerate(zip(order, shares)):
        seen = list(order[:k])
        w = {new: 1.0}
        kept = _KEPT.get(name)
        if kept in seen:
            w[kept] = mixed_replay
            w[new] -= mixed_replay
            seen.remove(kept)
        if seen:
            for s in seen:
                w[s] = w.get(s, 0.0) + replay / len(seen)
            w[new] -= replay
        end = 1.0 if k == len(order) - 1 else start + share
        out.append(Stage(new, start, end, tuple(w.items())))
        start = end
    return out


def stage_at(sched: list[Stage], frac: float) -> Stage:
    for s in sched:
        if frac < s.end:
            return s
    return sched[-1]


class BatchMaker:
    """Draws training batches for a curriculum; all randomness comes from ``rng``.

    ``next_batch(frac)`` picks the stage for ``frac`` (share of the token budget already
    used), draws each row's bucket, draws problems per bucket (vectorized), renders them
    and returns ``(tokens, answer_mask)`` as numpy arrays.
    """

    def __init__(self, curriculum: str, fmt: str, max_digits: int, batch_size: int,
                 rng: np.random.Generator, exclude: np.ndarray | None = None,
                 replay: float = 0.2, mixed_replay: float = 0.15):
        tasks.check_format(fmt)
        self.sched = stages(curriculum, replay, mixed_replay)
        self.fmt, self.max_digits, self.batch_size = fmt, max_digits, batch_size
        self.rng, self.exclude = rng, exclude
        self.last_stage = 0  # index of the stage the last batch came from

    def next_batch(self, frac: float):
        st = stage_at(self.sched, frac)
        self.last_stage = self.sched.index(st)
        names = [b for b, _ in st.weights]
        p = np.array([w for _, w in st.weights])
        counts = self.rng.multinomial(self.batch_size, p / p.sum())
        a_parts, b_parts = [], []
        for name, n in zip(names, counts):
            if n:
                a, b = tasks.sample_bucket(name, int(n), self.rng, self.max_digits, self.exclude)
                a_parts.append(a)
                b_parts.append(b)
        a, b = np.concatenate(a_parts), np.concatenate(b_parts)
        self.last_problems = (a, b)  # what was drawn, for checks (02 replays the stream)
        self.last_buckets = np.repeat(np.array(names), counts)
        return tasks.render_examples(a, b, self.fmt)

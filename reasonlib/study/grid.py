"""The length-pair grid: accuracy on every pair (digits of a, digits of b), each 1..D+3.

Where :mod:`reasonlib.study.lengths` asks "how long can both operands be?", the grid asks
where in the plane of operand lengths a model fails: ``12+477`` (cell (2, 3)) and ``477+12``
(cell (3, 2)) are different cells. Every cell is scored on problems no training path draws:

* **trained** cells (both lengths <= T = :func:`lengths.longest_trained`): the held-out and
  reserved eval problems of that cell (``tasks.heldout_keys`` / ``tasks.reserved_keys``),
  never validation problems, which choices are made on;
* the **withheld** cell (:func:`tasks.withheld_cell`, (1, D)): inside the trained lengths but
  drawn by no training path, so it tests composition (the model saw (D, 1) and (1, D-1)),
  not memory; problems drawn at random from the cell, validation problems left out;
* **untrained** cells (a length above T): problems drawn at random from the cell;
* (1, 1) is ``d1``, trained and evaluated in full, and labelled **seen**.

A cell's result holds n, greedy accuracy with its exact (Clopper-Pearson) 95% interval, the
taxonomy's error classes of its greedy answers (reasonlib.core.failures) and, when sampled,
pass@k.
"""
from __future__ import annotations

import numpy as np

from ..core import failures, metrics, stats, tasks
from . import lengths


def side(max_digits: int) -> int:
    """Lengths 1..side on each axis: D + LENGTH_EXTRA."""
    return max_digits + tasks.LENGTH_EXTRA


def cells(max_digits: int) -> list[tuple[int, int]]:
    n = side(max_digits)
    return [(i, j) for i in range(1, n + 1) for j in range(1, n + 1)]


def name(cell: tuple[int, int]) -> str:
    return f"{cell[0]}x{cell[1]}"


def kind(cell: tuple[int, int], max_digits: int) -> str:
    """"seen", "trained", "withheld" or "untrained" (module docstring)."""
    if cell == tasks.withheld_cell(max_digits):
        return "withheld"
    if cell == (1, 1):
        return "seen"
    return "trained" if max(cell) <= lengths.longest_trained(max_digits) else "untrained"


def _eval_keys(max_digits: int, seed: int) -> np.ndarray:
    return np.union1d(tasks.heldout_keys(seed), tasks.reserved_keys(max_digits, seed))


SOURCES = ("eval", "val")


def problems(cell: tuple[int, int], max_digits: int, count: int, seed: int, source: str = "eval"):
    """Up to ``count`` distinct never-trained problems of one cell (all of d1 for (1, 1)), in
    a fixed seeded order. ``source="val"``: validation problems instead (what calibration
    and every choice made from data read): a trained cell's validation problems, and random
    draws elsewhere that are no eval problem of the cell."""
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: allowed: {', '.join(SOURCES)}")
    i, j = cell
    if not (1 <= i <= side(max_digits) and 1 <= j <= side(max_digits)):
        raise ValueError(f"cell {cell}: lengths must be in 1..{side(max_digits)} "
                         f"(max_digits + {tasks.LENGTH_EXTRA})")
    k = kind(cell, max_digits)
    rng = np.random.default_rng([seed, 4051 if source == "eval" else 4057, i, j])
    if k == "seen":
        a, b = tasks.enumerated("d1")
        order = rng.permutation(len(a))[:count]
        return a[order], b[order]
    if k == "trained":
        keys = _eval_keys(max_digits, seed) if source == "eval" else tasks.validation_keys(max_digits, seed)
        keys = keys[tasks.in_cell(keys // 1_000_000_000, keys % 1_000_000_000, cell)]
        keys = keys[rng.permutation(len(keys))[:count]]
        return keys // 1_000_000_000, keys % 1_000_000_000
    lo_a, hi_a = tasks._length_range(i)
    lo_b, hi_b = tasks._length_range(j)
    want = min(count, (hi_a - lo_a) * (hi_b - lo_b) // 2)   # the other source keeps half
    if source == "eval":
        avoid = tasks.validation_keys(max_digits, seed)
    else:
        avoid = np.union1d(_eval_keys(max_digits, seed),
                           tasks.problem_key(*problems(cell, max_digits, count, seed)))
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < want:   # distinct, in first-appearance order, none of the other source
        draw = tasks.problem_key(*tasks.draw_cell(cell, 2 * want, rng))
        keys = np.concatenate([keys, draw[~tasks.in_sorted(draw, avoid)]])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]
    keys = keys[:want]
    return keys // 1_000_000_000, keys % 1_000_000_000


def eval_set(max_digits: int, count: int, seed: int, source: str = "eval") -> tasks.EvalSet:
    """One "bucket" per cell, named ``"<i>x<j>"``, for reasonlib.core.metrics."""
    return tasks.EvalSet({name(c): problems(c, max_digits, count, seed, source)
                          for c in cells(max_digits)}, max_digits, seed)


def score(model, max_digits: int, fmt: str, count: int, seed: int, n_samples: int = 0,
          k: int = 8, temperature: float = 1.0, sample_seed: int = 0, source: str = "eval") -> dict:
    """Per cell name: kind, n, acc, (lo, hi) exact 95%, error-class counts of the greedy
    answers, and pass@k from ``n_samples`` samples per problem (when n_samples >= k)."""
    ev = eval_set(max_digits, count, seed, source)
    g = metrics.greedy_eval(model, ev, fmt)
    s = (metrics.sampled_eval(model, ev, fmt, n_samples, temperature, 0, sample_seed, [k])
         if n_samples >= k else {})
    out = {}
    for c in cells(max_digits):
        r, (a, b) = g[name(c)], ev.problems[name(c)]
        n, right = r["n"], int(np.sum(r["correct"]))
        classes = dict.fromkeys(failures.ALL, 0)
        for x, y, t in zip(a, b, r["answers"]):
            classes[failures.classify(x, y, tasks.parse_answer(t, fmt))] += 1
        out[name(c)] = {"cell": list(c), "kind": kind(c, max_digits), "n": n,
                        "acc": right / n if n else float("nan"),
                        "ci": list(stats.clopper_pearson(right, n)) if n else [float("nan")] * 2,
                        "classes": classes}
        if name(c) in s:
            out[name(c)][f"pass{k}"] = s[name(c)]["pass"][k]["value"]
    return out


def matrix(result: dict, max_digits: int, key: str = "acc") -> np.ndarray:
    """(side, side) array of one value per cell, row = digits of a, column = digits of b;
    ``key`` may be a class name (its share of the cell's problems)."""
    n = side(max_digits)
    m = np.full((n, n), np.nan)
    for c in cells(max_digits):
        r = result.get(name(c))
        if r is None or not r["n"]:
            continue
        m[c[0] - 1, c[1] - 1] = r["classes"][key] / r["n"] if key in failures.ALL else r.get(key, np.nan)
    return m


def mean_matrix(per_seed: dict[str, list[float]]) -> np.ndarray:
    """(side, side) array of the mean over seeds per cell, from ``{"ixj": [value per seed]}``
    (the side is the largest length named; NaN where no seed has the cell): the grid over
    seeds that 09 and the calibration tables draw."""
    side_ = max(max(map(int, c.split("x"))) for c in per_seed)
    m = np.full((side_, side_), np.nan)
    for c, v in per_seed.items():
        if v:
            i, j = map(int, c.split("x"))
            m[i - 1, j - 1] = float(np.mean(v))
    return m


def summary(result: dict) -> dict:
    """The grid in three numbers: the lowest trained cell, the withheld cell, the mean of the
    untrained cells (greedy accuracy), with the trained cell that is lowest."""
    trained = {k: v["acc"] for k, v in result.items() if v["kind"] == "trained"}
    withheld = [v["acc"] for v in result.values() if v["kind"] == "withheld"]
    untrained = [v["acc"] for v in result.values() if v["kind"] == "untrained"]
    worst = min(trained, key=trained.get) if trained else None
    return {"trained_min": trained[worst] if worst else float("nan"), "trained_min_cell": worst,
            "withheld": withheld[0] if withheld else float("nan"),
            "untrained_mean": float(np.mean(untrained)) if untrained else float("nan")}

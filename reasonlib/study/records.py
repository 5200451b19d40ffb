"""Flat metric records: what one notebook measured for one seed, as ``name -> value``.

Every notebook writes ``<run_dir>/<notebook>/metrics.json``::

    {"notebook": "03_sft", "seed": 0, "params": {...the parameters it ran with...},
     "records": {"sft/targeted/low_sum/acc": 0.97, "sft/targeted/low_sum/acc@problems": "0111...",
                 ...},
     "timing": {...}, "checkpoint": {...}}

* A record is a number, a string or a list. Names are paths (``kind/arm/bucket/measure``);
  the cross-seed summary (:mod:`reasonlib.report.findings`) reads them by name, and a name it
  expects but a present notebook did not write is an error, never a silent "missing".
* ``<name>@problems`` is the per-problem vector behind a mean: the scalar record is its mean
  over the eval problems (same order for every model of a notebook, so two models can be
  compared problem by problem). 0/1 flags are stored as a string of ``0``/``1`` (one byte a
  problem), other values as a list of rounded floats.
* ``timing`` (wall clock) and ``checkpoint`` (artifact paths) sit outside ``records``: they
  differ between reruns of the same seed and are not compared (``scripts/compare_runs.py``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..train.artifacts import _jsonable, write_bytes

PER_PROBLEM = "@problems"
PATH_PARAMS = ("run_dir", "artifacts_dir", "run_root")


class RecordError(ValueError):
    """A metrics file that is not a notebook's records, or a record that should be there."""


def bits(flags) -> str:
    """0/1 flags as a compact string, e.g. ``"0110"``."""
    return "".join("1" if f else "0" for f in np.asarray(flags, dtype=bool))


def floats(values, digits: int = 4) -> list[float]:
    """Per-problem floats rounded to ``digits`` significant digits (None where not finite)."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None
            for v in np.asarray(values, dtype=np.float64)]


def vector(value) -> np.ndarray:
    """A per-problem record as a float array (a ``0``/``1`` string or a list)."""
    if isinstance(value, str):
        if value and set(value) - {"0", "1"}:
            raise RecordError(f"a per-problem flag string holds characters other than 0/1: {value[:20]!r}")
        return np.frombuffer(value.encode(), dtype=np.uint8).astype(np.float64) - ord("0")
    return np.array([np.nan if v is None else v for v in value], dtype=np.float64)


def mean_with_problems(name: str, flags_or_values, out: dict, as_bits: bool | None = None) -> dict:
    """Add ``name`` (the mean) and ``name@problems`` (the vector) to ``out``; returns ``out``."""
    v = np.asarray(flags_or_values)
    is_bits = v.dtype == bool if as_bits is None else as_bits
    out[name] = float(np.mean(v)) if len(v) else None
    out[name + PER_PROBLEM] = bits(v) if is_bits else floats(v)
    return out


def _clean(v):
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def dumps(obj: dict) -> str:
    """JSON with one record per line (values compact): readable, and small for vectors."""
    lines = ["{"]
    items = sorted(obj.items())
    for i, (k, v) in enumerate(items):
        end = "," if i < len(items) - 1 else ""
        if k == "records":
            rec = sorted(v.items())
            lines.append('  "records": {')
            for j, (rk, rv) in enumerate(rec):
                lines.append(f"    {json.dumps(rk)}: "
                             f"{json.dumps(_clean(rv), separators=(',', ':'), default=_jsonable)}"
                             + ("," if j < len(rec) - 1 else ""))
            lines.append("  }" + end)
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True, default=_jsonable)}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(path, notebook: str, seed: int, records: dict, params: dict | None = None,
          **extra) -> Path:
    """Write a notebook's records atomically (``extra``: ``timing``, ``checkpoint``, ...)."""
    bad = [k for k in records if not isinstance(k, str) or not k or k != k.strip()]
    if bad:
        raise RecordError(f"record names must be non-empty strings: {bad[:3]}")
    # folders are where this machine put the run, not what was measured
    params = {k: v for k, v in (params or {}).items() if k not in PATH_PARAMS}
    obj = {"notebook": notebook, "seed": seed, "params": params,
           "records": {k: _clean(v) for k, v in records.items()}, **extra}
    return write_bytes(path, dumps(obj).encode())


def read(path) -> dict:
    """A notebook's metrics file, checked to hold records."""
    p = Path(path)
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise RecordError(f"cannot read {p}: {e}") from None
    if not isinstance(m, dict) or not isinstance(m.get("records"), dict) or "notebook" not in m:
        raise RecordError(f"{p} holds no notebook records (written by an older reasonlib?)")
    return m

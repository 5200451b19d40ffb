"""Compare the metrics of two runs of the same seed, e.g. a published seed and a rerun:

    python -m reasonlib run --profile paper --seeds 0 --workers 1 --threads 1 \\
        --notebooks 01 02 03 04 05 06 07 --out /tmp/rerun --artifacts /tmp/rerun/artifacts
    python scripts/compare_runs.py reports/paper/seed-0 /tmp/rerun/paper/seed-0

Every ``NN_name/metrics.json`` of the first folder must exist in the second with exactly the
same values (floats compared bit for bit), apart from wall-clock and CPU-time entries (keys
named ``timing``, ``seconds``, ``ms_per_batch`` and ``cpu_s``, also as the last part of a flat
record name such as ``rl_vs_sft/RL/cpu_s``) and checkpoint paths (they name the artifact
folder). Exit 0 when equal,
1 with the differing paths otherwise, 2 on bad input.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

# wall-clock and CPU-time measurements (timing, 04 sampling seconds, 02 batch making, 05's
# RL vs more SFT CPU seconds) and the artifact folders (checkpoint); everything else is compared
SKIP = {"timing", "seconds", "ms_per_batch", "cpu_s", "checkpoint"}


def skipped(key: str) -> bool:
    """A key in :data:`SKIP`, or a flat record name ending in one (``rl_vs_sft/RL/cpu_s``)."""
    return key.rsplit("/", 1)[-1] in SKIP


def diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if skipped(k):
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'second' if k not in a else 'first'}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []   # an undefined value (e.g. KL never measured at beta = 0) on both sides
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} vs {b!r}"]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    first, second = map(Path, argv)
    files = sorted(first.glob("*/metrics.json"))
    if not files:
        print(f"error: {first} holds no NN_name/metrics.json", file=sys.stderr)
        return 2
    bad = 0
    for f in files:
        g = second / f.parent.name / "metrics.json"
        if not g.is_file():
            print(f"{f.parent.name}: missing in {second}")
            bad += 1
            continue
        d = diff(json.loads(f.read_text()), json.loads(g.read_text()))
        n = sum(1 for _ in _leaves(json.loads(f.read_text())))
        print(f"{f.parent.name}: {'identical' if not d else f'{len(d)} differences'} "
              f"({n} values compared)")
        for line in d[:20]:
            print("   ", line)
        bad += bool(d)
    return 1 if bad else 0


def _leaves(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if not skipped(k):
                yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


if __name__ == "__main__":
    sys.exit(main())

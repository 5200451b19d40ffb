"""Write (or check) the generated results blocks from the published summaries' metrics.

    python scripts/results_table.py                     # every block: docs/results.md and README.md's headline
    python scripts/results_table.py --profile paper     # only the blocks of reports/paper/summary/metrics.json
    python scripts/results_table.py --check             # exit 1 if README.md or docs/results.md is out of date
    python scripts/results_table.py --summary runs/quick/summary/metrics.json --file /tmp/R.md

The blocks are ``reasonlib.report.results_md.BLOCKS``: each profile's full results in docs/results.md,
the paper profile's headline in README.md. ``--summary`` renders that summary instead of the
published one of ``--profile`` (default quick); ``--file`` writes into that one file, into the
blocks (of the chosen profiles) it holds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reasonlib.report.results_md import BLOCKS, SUMMARIES, ResultsError, load, markers, render, replace_block  # noqa: E402


def _path(p: str) -> Path:
    return Path(p) if Path(p).is_absolute() else ROOT / p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(SUMMARIES), action="append",
                    help="the published profile(s) whose blocks to write (default: all; quick "
                         "with --summary)")
    ap.add_argument("--summary", help="a summary's metrics.json instead of the published one")
    ap.add_argument("--file", help="write into this file only (the blocks it holds)")
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    a = ap.parse_args(argv)
    if a.summary and a.profile and len(a.profile) > 1:
        ap.error("--summary fills one profile's blocks: give at most one --profile")
    profiles = a.profile or (["quick"] if a.summary else sorted(SUMMARIES))
    try:
        # file -> the blocks to write into it
        targets: dict[Path, list] = {}
        if a.file:
            f = _path(a.file)
            text = f.read_text()
            held = [b for b in BLOCKS if b.profile in profiles and markers(b.name)[0] in text]
            for prof in a.profile or []:
                if not any(b.profile == prof for b in held):
                    names = " or ".join(repr(markers(b.name)[0]) for b in BLOCKS if b.profile == prof)
                    raise ResultsError(f"{f} holds no block of the {prof} profile ({names})")
            if not held:
                raise ResultsError(f"{f} holds no results block")
            targets[f] = held
        else:
            for b in BLOCKS:
                if b.profile in profiles:
                    targets.setdefault(_path(b.file), []).append(b)
        summaries = {}
        stale = []
        for f, blocks in targets.items():
            text = new = f.read_text()
            for b in blocks:
                shown = a.summary or SUMMARIES[b.profile]
                if b.profile not in summaries:
                    summaries[b.profile] = load(_path(shown))
                new = replace_block(new, render(b.name, summaries[b.profile], shown), b.name)
            if new != text:
                stale.append(f)
                if not a.check:
                    f.write_text(new)
    except (OSError, ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = ", ".join(profiles)
    for f in targets:
        if f in stale:
            print(f"{f} is out of date with the {what} summary: run python scripts/results_table.py"
                  if a.check else f"updated the results ({what}) in {f}",
                  file=sys.stderr if a.check else sys.stdout)
        else:
            print(f"{f} matches the {what} summary" if a.check else f"{f} already up to date ({what})")
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

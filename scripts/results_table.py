"""Write (or check) the README's results tables from the published summaries' metrics.

    python scripts/results_table.py                     # every profile whose block README.md holds
    python scripts/results_table.py --profile paper     # reports/paper/summary/metrics.json only
    python scripts/results_table.py --check             # exit 1 if README.md is out of date
    python scripts/results_table.py --summary runs/quick/summary/metrics.json --readme /tmp/R.md

Each profile has its block of README.md (``reasonlib.results_md.BLOCKS``); ``--summary``
writes one summary into the block of ``--profile`` (default quick).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reasonlib.results_md import BLOCKS, ResultsError, load, markdown, markers, replace_block  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(BLOCKS), action="append",
                    help="the published profile(s) whose block to write (default: each whose block "
                         "README.md holds; quick with --summary)")
    ap.add_argument("--summary", help="a summary's metrics.json instead of the published one")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    a = ap.parse_args(argv)
    if a.summary and a.profile and len(a.profile) > 1:
        ap.error("--summary fills one block: give at most one --profile")
    readme = Path(a.readme) if Path(a.readme).is_absolute() else ROOT / a.readme
    try:
        text = new = readme.read_text()
        # by default every profile whose block README.md holds (reports/paper's is added when
        # it is republished on the held-out protocol); a profile named explicitly must have one
        profiles = a.profile or (["quick"] if a.summary else
                                 [p for p in sorted(BLOCKS) if markers(BLOCKS[p][1])[0] in text])
        if not profiles:
            raise ResultsError(f"{readme} holds no results block")
        for prof in profiles:
            shown, name = BLOCKS[prof]
            shown = a.summary or shown
            summary = Path(shown) if Path(shown).is_absolute() else ROOT / shown
            new = replace_block(new, markdown(load(summary), shown), name)
    except (OSError, ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = ", ".join(profiles)
    if a.check:
        if new != text:
            print(f"{readme} is out of date with the {what} summary: run python scripts/results_table.py",
                  file=sys.stderr)
            return 1
        print(f"{readme} matches the {what} summary")
        return 0
    if new != text:
        readme.write_text(new)
        print(f"updated the results ({what}) in {readme}")
    else:
        print(f"{readme} already up to date ({what})")
    return 0

if __name__ == "__main__":
    sys.exit(main())

"""Write (or check) the README's results table from a summary's metrics.

    python scripts/results_table.py                     # reports/quick/summary/metrics.json -> README.md
    python scripts/results_table.py --check             # exit 1 if README.md is out of date
    python scripts/results_table.py --summary runs/quick/summary/metrics.json --readme /tmp/R.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reasonlib.results_md import ResultsError, load, markdown, replace_block  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", default="reports/quick/summary/metrics.json")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    a = ap.parse_args(argv)
    summary = Path(a.summary) if Path(a.summary).is_absolute() else ROOT / a.summary
    readme = Path(a.readme) if Path(a.readme).is_absolute() else ROOT / a.readme
    try:
        text = readme.read_text()
        new = replace_block(text, markdown(load(summary), a.summary))
    except (OSError, ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.check:
        if new != text:
            print(f"{readme} is out of date with {summary}: run python scripts/results_table.py",
                  file=sys.stderr)
            return 1
        print(f"{readme} matches {summary}")
        return 0
    if new != text:
        readme.write_text(new)
        print(f"updated the results table in {readme}")
    else:
        print(f"{readme} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the test command under float settings that imitate other CPUs (issue: portable tests).

    python scripts/test_numerics.py                  # the whole suite, four settings (~15 min)
    python scripts/test_numerics.py --notebooks-only # the notebook checks only (~3 min)
    python scripts/test_numerics.py --settings scalar threads1

Each setting changes float results the way another machine does:

* ``default``: this machine as it is;
* ``scalar``: ``ATEN_CPU_CAPABILITY=default``, torch's scalar kernels instead of AVX2/AVX-512;
* ``avx2``: ``ATEN_CPU_CAPABILITY=avx2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2``, an AVX2-only CPU
  (AMD EPYC Zen 2/3 or an older Intel) for both torch's and MKL's kernels;
* ``threads1``: 1 torch thread in every notebook kernel instead of 2 (other summation order).

Before each setting the nbval model cache ``runs/notebooks/`` is emptied, so the notebooks
train their models anew under that setting (artifact keys cover config and code, not the
CPU: a cached model would hide the difference). Prints one line per setting (pytest's result
line and the wall time) and exits 1 when any setting fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "default": {},
    "scalar": {"ATEN_CPU_CAPABILITY": "default"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "threads1": {"REASONLIB_THREADS": "1"},
}
NOTEBOOK_CHECKS = ["notebooks", "tests/test_notebooks.py"]


def result_line(out: str) -> str:
    """pytest's last summary line, e.g. '873 passed in 214.20s (0:03:34)'."""
    for line in reversed(out.splitlines()):
        s = line.strip("= ").strip()
        if " in " in s and any(w in s for w in ("passed", "failed", "error")):
            return s
    return "no pytest summary line (see the log)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebooks-only", action="store_true",
                    help="run only the notebook checks (papermill runs and nbval)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--log-dir", default=str(ROOT / "runs" / "numerics"),
                    help="where each setting's full pytest output goes")
    a = ap.parse_args(argv)
    logs = Path(a.log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    rows, failed = [], False
    for name in a.settings:
        shutil.rmtree(ROOT / "runs" / "notebooks", ignore_errors=True)
        env = {**os.environ, **SETTINGS[name]}
        cmd = [sys.executable, "-m", "pytest", "-q", *(NOTEBOOK_CHECKS if a.notebooks_only else [])]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        (logs / f"{name}.log").write_text(p.stdout + p.stderr)
        line = result_line(p.stdout)
        failed |= p.returncode != 0
        what = " ".join(f"{k}={v}" for k, v in SETTINGS[name].items()) or "(environment as is)"
        rows.append(f"{name:<9} {what:<55} rc={p.returncode}  {line}  [wall {dt / 60:.1f} min]")
        print(rows[-1], flush=True)
    print(f"\nlogs in {logs}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

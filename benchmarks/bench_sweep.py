"""Wall time of a multi-seed sweep on 2 Dask workers against 1 worker.

    python benchmarks/bench_sweep.py [--seeds 0 1 2 3] [--notebooks 01 02 03] [--profile smoke]

Runs ``python -m reasonlib run`` twice with the same sweep (default: smoke profile, seeds
0-3, notebooks 01-03; no 09), each time in fresh output and artifact folders (nothing
reused, every SFT model trained), once with ``--workers 1`` (one kernel at a time with
cores torch threads) and once with ``--workers W`` (W kernels with cores // W threads each).
Prints both wall times and their ratio; on 2 cores the target is <= 0.65.

The load average before and after each run is printed: on a shared machine other processes
take cores and the ratio is not comparable.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep(workers: int, a) -> float:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-sweep-w{workers}-"))
    cmd = [sys.executable, "-m", "reasonlib", "run", "--profile", a.profile,
           "--seeds", *map(str, a.seeds), "--workers", str(workers),
           "--notebooks", *a.notebooks, "--out", str(tmp / "runs"),
           "--artifacts", str(tmp / "artifacts")]
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t
    load1 = os.getloadavg()[0]
    if r.returncode != 0:
        sys.exit(f"workers={workers}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    kept = f"; outputs {tmp}" if a.keep else ""
    print(f"workers={workers}: {dt:7.1f} s   (1-min load average {load0:.1f} before, "
          f"{load1:.1f} after{kept})", flush=True)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--notebooks", nargs="+", default=["01", "02", "03"])
    ap.add_argument("--workers", type=int, default=2, help="the parallel side (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the output folders")
    a = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"sweep: profile {a.profile}, seeds {' '.join(map(str, a.seeds))}, notebooks "
          f"{' '.join(a.notebooks)}; {cores} cores", flush=True)
    t1 = sweep(1, a)
    tw = sweep(a.workers, a)
    print(f"ratio workers={a.workers} / workers=1: {tw / t1:.2f}  (target <= 0.65)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

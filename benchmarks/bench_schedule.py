"""How close the sweep's Dask schedule comes to full cores, with and without stage priority.

    python benchmarks/bench_schedule.py [--seeds 5] [--workers 2] [--scale 0.004]

``python -m reasonlib run`` submits one chain of notebooks per seed, each notebook waiting
for the one before it. This replays that graph with sleeps in place of notebooks, on a
``LocalCluster`` of ``--workers`` one-thread workers: each notebook sleeps its share of a
paper seed's core-seconds (``COST``, measured from the published paper run's notebooks and
the SFT calibration; one notebook, one core) times ``--scale``. It runs twice, with Dask's
default order and with the runner's ``notebook_priority`` (earlier notebooks first, whichever
seed), and prints each makespan as a ratio to the ideal (all sleeps / workers, the anchor,
computed in the same run). Sleeps take no CPU, so the ratios say what the order costs, not
what the machine does.
"""
from __future__ import annotations

import argparse
import time

# core-seconds of one paper seed's notebooks (01..08): 03 is six SFT arms one after the other
# at about 190 s each (runtime.processes_for with one core per kernel), 05 and 06 the RL
# notebooks at one thread (the published seed-0 run, docs/results.md)
COST = {"01": 4, "02": 24, "03": 1140, "04": 40, "05": 380, "06": 500, "07": 24, "08": 29}


def _nap(name: str, prev, seconds: float) -> float:
    time.sleep(seconds)
    return time.time()


def makespan(seeds: int, workers: int, scale: float, priority: bool) -> float:
    from distributed import Client, LocalCluster

    from reasonlib.study.runner import notebook_priority

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cl, Client(cl) as client:
        client.submit(_nap, "warm-up", None, 0.0, pure=False).result()
        t0, futs = time.time(), []
        for s in range(seeds):
            prev = None
            for nb, cost in COST.items():
                kw = {"priority": notebook_priority(nb)} if priority else {}
                prev = client.submit(_nap, f"{nb}-{s}", prev, cost * scale, pure=False, **kw)
                futs.append(prev)
        return max(f.result() for f in futs) - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.004, help="wall seconds per core-second")
    a = ap.parse_args()
    if a.seeds < 1 or a.workers < 1 or a.scale <= 0:
        raise SystemExit(f"--seeds {a.seeds} --workers {a.workers} --scale {a.scale}: "
                         "seeds and workers must be >= 1, scale > 0")
    ideal = a.seeds * sum(COST.values()) * a.scale / a.workers
    chain = sum(COST.values()) * a.scale
    print(f"{a.seeds} seeds x {len(COST)} notebooks on {a.workers} workers; ideal "
          f"{ideal:.1f} s (anchor), one chain {chain:.1f} s")
    for priority in (False, True):
        t = makespan(a.seeds, a.workers, a.scale, priority)
        print(f"  {'stage priority' if priority else 'Dask default  '}: {t:6.1f} s = "
              f"{t / ideal:.2f}x ideal")


if __name__ == "__main__":
    main()

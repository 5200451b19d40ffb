"""Device resolution, done once per notebook: ``auto`` picks cuda > mps > cpu; the thread
count of training runs, and several of them at once in worker processes.

Importing this module applies ``REASONLIB_THREADS`` (set by ``python -m reasonlib run`` for
each notebook kernel, so parallel workers do not oversubscribe the cores) to torch.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager

import torch

# The committed notebooks' outputs are made (``make notebooks``) and checked (nbval, through
# tests/conftest.py) with this many torch threads: results depend on the thread count
# (docs/reproducibility.md), so both sides pin it whatever the machine's core count.
NOTEBOOK_THREADS = 2

if os.environ.get("REASONLIB_THREADS", "").isdigit() and int(os.environ["REASONLIB_THREADS"]) > 0:
    torch.set_num_threads(int(os.environ["REASONLIB_THREADS"]))


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is available; "
                         "allowed here: auto, cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but MPS is not available; allowed here: auto, cpu")
    return name


# ---- training at one thread, several runs at once ------------------------------------------
TRAIN_THREADS = 1   # torch threads of every SFT run on CPU (docs/reproducibility.md)


@contextmanager
def train_threads(device: str):
    """:data:`TRAIN_THREADS` torch threads on CPU for the block, the process's own after it:
    one number per SFT run whichever way it is trained (alone in a kernel, or beside others
    in :func:`in_processes`), and the setting the recipe was calibrated at."""
    before = torch.get_num_threads()
    if str(device) == "cpu":
        torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


MAX_PROCESSES = 8   # worker processes of one in_processes call (each holds torch, ~0.5 GB)


def processes_for(n_jobs: int, share: int) -> int:
    """How many of ``n_jobs`` equal one-thread runs :func:`in_processes` starts at once, given
    ``share``, the cores this process may use (its torch thread count: ``python -m reasonlib
    run`` gives each notebook kernel cores // workers). When the runs divide evenly into
    rounds of ``share``, that many: the cores stay full and no process waits on another's
    core (six or twelve one-thread processes on two cores cost 1.19x CPU a step,
    ``benchmarks/bench_arms.py``). Otherwise all at once (at most :data:`MAX_PROCESSES`):
    three runs on two cores then take 1.5 runs' time, not the 2 of two rounds, one of them
    half idle. Scheduling only: an arm's numbers do not depend on it."""
    if n_jobs < 1 or share < 1:
        raise ValueError(f"processes_for({n_jobs}, {share}): both must be >= 1")
    if n_jobs % share == 0:
        return min(share, MAX_PROCESSES)
    return min(n_jobs, MAX_PROCESSES)


def in_processes(fn, jobs: dict, desc: str, progress: bool = True) -> dict:
    """``{name: fn(*args)}`` for ``jobs = {name: args}``, each call in its own spawned worker
    process, :func:`processes_for` of them at a time (this process's torch threads are its
    share of the cores). Training runs at one thread each, so single-thread processes share
    the cores without the spin-waits of oversubscribed thread pools: three runs on two cores
    finish sooner than one after the other. ``fn`` must be
    importable (a module-level function) and its arguments picklable. A failure is re-raised
    as the worker raised it (type and message), with a note naming the job."""
    out = {}
    if not jobs:
        return out
    n = processes_for(len(jobs), torch.get_num_threads())
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc=f"{desc}, {n} at once", unit="run")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx) as ex:
        futs = {ex.submit(fn, *args): name for name, args in jobs.items()}
        for f in as_completed(futs):
            name = futs[f]
            try:
                out[name] = f.result()
            except Exception as e:   # the worker's own exception (its type and message), named
                e.add_note(f"raised in the worker process of {desc} {name}")
                raise
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(str(name), refresh=True)
    if bar is not None:
        bar.close()
    return out

"""What an SFT step costs when N single-thread training processes share the cores.

    python benchmarks/bench_arms.py [--procs 2 1 6 12] [--seconds 15] [--profile paper]

``runtime.in_processes`` used to start every SFT arm of a notebook at once (up to
``MAX_PROCESSES``), one torch thread each; with two sweep workers on two cores the paper
profile put twelve such processes on two cores (``runtime.processes_for`` now caps them at
the kernel's share when the arms divide evenly). This starts N processes that each train the
``--profile``'s targeted SFT arm (paper: 3 x 96, rotary, batch 128, reversed answers) at one thread, lets them
all warm up, then counts for ``--seconds`` of wall time, all N at once, each process's
steps and CPU time. Printed per N: CPU ms per step (median over the processes), total steps
per second of all N, and both as ratios to the first N of ``--procs`` (the anchor, measured
in the same run). CPU per step above the anchor is what oversubscription costs (caches,
context switches); total steps per second is what a sweep gets done.

The load average is printed before each N: other work on the machine makes the ratios
incomparable.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing


def _train(profile: str, start_at: float, seconds: float) -> tuple[int, float, float]:
    """(steps, CPU seconds, seconds late) of one process training the targeted arm of
    ``profile`` from ``start_at`` for ``seconds``, at one thread (as an SFT arm does); late:
    how long after ``start_at`` its warm-up ended."""
    import numpy as np
    import torch

    from reasonlib.train import params, sft
    from reasonlib.train.curriculum import BatchMaker
    from reasonlib.core.model import GPT

    torch.set_num_threads(1)
    raw = params.load_profile(profile)
    cfg = sft.config_from_params(params.validate({k: v for k, v in raw.items() if k in params.SCHEMA}),
                                 "targeted")
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config())
    opt = sft.make_optimizer(model, cfg)
    maker = BatchMaker(cfg.curriculum, cfg.fmt, cfg.max_digits, cfg.batch_size,
                       np.random.default_rng([cfg.seed, 7]))
    batches = [tuple(torch.from_numpy(x) for x in maker.next_batch(0.9)) for _ in range(16)]

    def step(i: int) -> None:   # the SFT loop's step (rotary: no position offsets)
        x, y = batches[i % len(batches)]
        loss = sft.answer_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    for i in range(5):   # warm up, then wait for the others
        step(i)
    late = max(0.0, time.time() - start_at)
    while time.time() < start_at:
        time.sleep(0.01)
    steps, cpu0, end = 0, time.process_time(), start_at + seconds
    while time.time() < end:
        step(steps)
        steps += 1
    return steps, time.process_time() - cpu0, late


def measure(profile: str, n: int, seconds: float) -> tuple[float, float]:
    """(median CPU ms per step, total steps per second) with ``n`` processes at once."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx) as ex:
        # time for every process to import torch and warm up (about 4 CPU s each) before counting
        start_at = time.time() + 5 + 4 * n / (os.cpu_count() or 1)
        res = list(ex.map(_train, [profile] * n, [start_at] * n, [seconds] * n))
    late = max(r[2] for r in res)
    if late > 0.5:
        print(f"  warning: a process finished warming up {late:.1f} s after the count began")
    ms = statistics.median(1e3 * cpu / max(steps, 1) for steps, cpu, _ in res)
    return ms, sum(r[0] for r in res) / seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[2, 1, 6, 12])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--profile", default="paper", help="the profile whose targeted SFT arm is trained")
    a = ap.parse_args(argv)
    if any(n < 1 or n > 64 for n in a.procs) or not 1 <= a.seconds <= 600:
        ap.error(f"--procs must be in 1..64 (got {a.procs}) and --seconds in 1..600 (got {a.seconds})")
    from reasonlib.train import params
    try:
        params.load_profile(a.profile)
    except params.ParamError as e:
        ap.error(str(e))
    print(f"{os.cpu_count()} CPUs; the anchor is {a.procs[0]} process(es); profile {a.profile}")
    print(f"{'procs':>5} {'load':>5} {'CPU ms/step':>12} {'ratio':>6} {'steps/s':>8} {'ratio':>6}")
    anchor = None
    for n in a.procs:
        load = os.getloadavg()[0]
        ms, rate = measure(a.profile, n, a.seconds)
        anchor = anchor or (ms, rate)
        print(f"{n:>5} {load:>5.2f} {ms:>12.1f} {ms / anchor[0]:>6.2f} {rate:>8.1f} {rate / anchor[1]:>6.2f}",
              flush=True)


if __name__ == "__main__":
    main()

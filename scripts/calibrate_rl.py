#!/usr/bin/env python
"""RL from a start with headroom, against more SFT at equal wall time (calibration seeds).

Per seed (100 and up; never the report seeds 0-4):

1. **The start.** Targeted SFT with the ``--profile``'s parameters (``paper``: rotary positions),
   stopped at the first probe step from ``--start-step`` on (every ``eval_every`` steps)
   whose probe puts ``general`` greedy at or above ``--start-min``: a model in the middle of
   its 3-digit transition. The stop is a checkpoint, so the same run can be continued.
2. **Arms from that start**, each measured on the same reserved problems:

   * ``rl``: RL as the notebooks run it (``rl_*`` parameters of the profile), every group
     trained on, the uniform bucket mix;
   * ``rl-dyn``: the same with dynamic sampling and the adaptive mix (``--max-draws``,
     ``--floor``);
   * ``sft``: the SFT run continued (the same schedule, data stream and optimizer state) for
     the wall time ``rl-dyn`` took, measured on this machine at this thread count;
   * ``final-rl``, ``final-rl-dyn`` (``--converged``): both RL arms again from the end of the
     SFT schedule, a start with (almost) no headroom, for what RL costs there.

Records per arm: greedy accuracy on every bucket (``--n-eval`` reserved problems each),
``general`` pass@1 and pass@8 (``--n-passk`` problems x 16 samples), the exact KL to the
start on ``general`` (RL arms), wall time, and for RL the mean informative-group share,
draws per group and capped updates. One JSON line per seed to ``<out>/<tag>.jsonl``; a rerun
skips the seeds already there.

    python scripts/calibrate_rl.py --seeds 100-104 --workers 2
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from calibrate_sft import profile_params, resume_sweep, seeds_arg  # noqa: E402


def _eval(model, cfg, n_eval, n_passk, seed):
    from reasonlib.core import metrics, tasks
    ev = tasks.make_val_set(cfg.max_digits, n_eval, cfg.eval_seed)
    g = metrics.greedy_eval(model, ev, cfg.fmt)
    gen = tasks.make_val_set(cfg.max_digits, n_passk, cfg.eval_seed, buckets=["general"])
    s = metrics.sampled_eval(model, gen, cfg.fmt, 16, 1.0, 0, seed, [1, 8])["general"]
    return {**{b: r["acc"] for b, r in g.items()}, "general_pass1": s["pass"][1]["value"],
            "general_pass8": s["pass"][8]["value"], "general_parse": g["general"]["parse"]}


def one_seed(job):
    seed, a = job
    import numpy as np
    import torch
    torch.set_num_threads(a["threads"])
    from reasonlib.train import rl, sft
    from reasonlib.core import tasks
    P = profile_params(a["profile"], seed, a["packed"])
    cfg = sft.config_from_params(P, "targeted")
    out = {"seed": seed, "threads": a["threads"], "packed": P.packed}
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "sft.pt"
        t0 = time.perf_counter()
        step = a["start_step"]
        while True:   # the first probe at or above start_min, from start_step on
            res = sft.train_sft(cfg, ckpt_path=ck, progress=False, stop_after_step=step)
            probe = res.history["val"][-1]["general"]
            if probe >= a["start_min"] or step >= a["start_last"]:
                break
            step += cfg.eval_every
        sft_s = time.perf_counter() - t0
        out.update(start_step=step, start_probe=probe, sft_s_to_start=round(sft_s, 1))
        start = res.model.eval()
        out["start"] = _eval(start, cfg, a["n_eval"], a["n_passk"], seed)
        kl_set = tasks.make_val_set(cfg.max_digits, 200, cfg.eval_seed, buckets=["general"])
        # the plain arm says its settings: the profile may itself run dynamic sampling
        arms = (("rl", {"dynamic": False, "mix": "uniform"}),
                ("rl-dyn", {"dynamic": True, "max_draws": a["max_draws"],
                            "mix": "adaptive", "mix_floor": a["floor"]}))

        def rl_arms(model, prefix):
            for arm, extra in arms:
                rcfg = dataclasses.replace(rl.config_from_params(P, cfg), **extra)
                t0 = time.perf_counter()
                r = rl.train_rl(rcfg, model, cfg, progress=False)
                wall = time.perf_counter() - t0
                h = r.history
                out[prefix + arm] = {
                    **_eval(r.model, cfg, a["n_eval"], a["n_passk"], seed),
                    "kl_general": rl.measure_kl(r.model, model, kl_set, cfg.fmt),
                    "wall_s": round(wall, 1), "informative": 1 - float(np.mean(h["zero_signal"])),
                    "draws_per_group": float(np.mean(h["draws_per_group"])),
                    "capped": int(sum(h["capped"])), "timing": r.timing}

        rl_arms(start, "")
        # more SFT for the wall time rl-dyn took: a first chunk measures this machine's SFT
        # speed now, the rest is sized from it (one step is ~0.05 s: the match is that close)
        budget, t0, done = out["rl-dyn"]["wall_s"], time.perf_counter(), step
        first = max(1, min(100, round(budget * step / sft_s / 4)))
        more = sft.train_sft(cfg, ckpt_path=ck, progress=False, stop_after_step=done + first)
        done += first
        rate = first / (time.perf_counter() - t0)
        rest = round((budget - (time.perf_counter() - t0)) * rate)
        if rest > 0:
            more = sft.train_sft(cfg, ckpt_path=ck, progress=False, stop_after_step=done + rest)
            done += rest
        out["sft"] = {**_eval(more.model.eval(), cfg, a["n_eval"], a["n_passk"], seed),
                      "steps": done - step, "wall_s": round(time.perf_counter() - t0, 1)}
        if a["converged"]:   # the schedule's end: a start with no headroom on general
            final = sft.train_sft(cfg, ckpt_path=ck, progress=False).model.eval()
            out["final"] = _eval(final, cfg, a["n_eval"], a["n_passk"], seed)
            rl_arms(final, "final-")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("100-104"))
    ap.add_argument("--profile", default="paper", help="the profile whose parameters the arms use")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--start-step", type=int, default=2000)
    ap.add_argument("--start-last", type=int, default=2750, help="the latest start step")
    ap.add_argument("--start-min", type=float, default=0.2)
    ap.add_argument("--max-draws", type=int, default=4)
    ap.add_argument("--floor", type=float, default=0.05)
    ap.add_argument("--converged", action=argparse.BooleanOptionalAction, default=True,
                    help="also RL from the end of the SFT schedule (arms final-rl, final-rl-dyn)")
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--n-passk", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "runs" / "calibration"))
    ap.add_argument("--packed", action="store_true",
                    help="SFT with the packed step (SFTConfig.packed) whatever the profile says; "
                         "the default tag becomes rl-packed")
    ap.add_argument("--tag", default=None, help="the output file's name (default rl, or "
                                                 "rl-packed with --packed)")
    a = ap.parse_args(argv)
    a.tag = a.tag or ("rl-packed" if a.packed else "rl")
    out = Path(a.out) / f"{a.tag}.jsonl"
    resume_sweep(one_seed, a, out,
          lambda r: f"seed {r['seed']} start step {r['start_step']}: general " + ", ".join(
              f"{k} {100 * r[k]['general']:.1f}%" for k in ("start", "rl", "rl-dyn", "sft")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

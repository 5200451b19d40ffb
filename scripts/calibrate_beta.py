#!/usr/bin/env python
"""Beta against forgetting on calibration seeds: does a larger beta keep RL closer to its
start, and does it shrink what RL unlearns on the buckets it never practises?

Per seed (100 and up; never the report seeds 0-4), with the ``--profile``'s parameters:

1. **Two starts.** The targeted SFT arm at its moving start (``rl.moving_start``: the first
   probe with greedy ``general`` >= 50%, the start of 06's beta scan; where RL gains), and
   the finished control arm (the study's "early RL" model: where RL was seen to unlearn
   ``d1`` and ``d2_*``).
2. **One RL run per beta in** ``--betas`` from each start, with the profile's RL budget and
   one seed for every beta (common random numbers, as in 06).

Records per run: greedy accuracy on every bucket (``--n-eval`` reserved problems each), the
pooled greedy accuracy of the RL buckets and of the unpractised ones (``d1``, ``d2_*``), and
the exact KL to the start per answer token on the policy's own samples, on ``general`` and
on the unpractised buckets (``rl.measure_kl``). One JSON line per seed to
``<out>/<tag>.jsonl``; a rerun skips the seeds already there.

    python scripts/calibrate_beta.py --seeds 100-104 --workers 2
    python scripts/calibrate_beta.py --summary    # the table of docs/calibration.md, from the JSON lines
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from calibrate_sft import profile_params, resume_sweep, seeds_arg  # noqa: E402

UNPRACTISED = ("d1", "d2_nocarry", "d2_carry")


def _pooled(g, buckets):
    import numpy as np
    # validation problems: d1 has none (it is trained in full), so it is left out here
    return float(np.concatenate([g[b]["correct"] for b in buckets if b in g]).mean())


def one_seed(job):
    seed, a = job
    import torch
    torch.set_num_threads(a["threads"])
    from reasonlib.core import metrics, tasks
    from reasonlib.train import rl, sft
    P = profile_params(a["profile"], seed, a["packed"])
    rl_b = [b for b in P.rl_buckets if b in P.buckets]
    unp = [b for b in UNPRACTISED if b in P.buckets and b not in P.rl_buckets]
    ev = tasks.make_val_set(P.max_digits, a["n_eval"], P.eval_seed)
    kl_sets = {"general": tasks.make_val_set(P.max_digits, 200, P.eval_seed, buckets=["general"]),
               "unpractised": tasks.make_val_set(P.max_digits, 200, P.eval_seed, buckets=unp)}
    out = {"seed": seed, "threads": a["threads"], "packed": P.packed, "betas": a["betas"],
           "rl_buckets": rl_b, "unpractised": unp}
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        tcfg, ccfg = sft.config_from_params(P, "targeted"), sft.config_from_params(P, "control")
        trun, crun = sft.get_or_train(tcfg, root, progress=False), sft.get_or_train(ccfg, root, progress=False)
        at = rl.moving_start(trun.history)
        starts = {"targeted-mid": (sft.load_snapshot(tcfg, root, at), tcfg, at),
                  "control-end": (crun.model, ccfg, None)}
        out.update(targeted_start_step=at, sft_s=round(time.perf_counter() - t0, 1))
        for name, (model, scfg, st) in starts.items():
            g0 = metrics.greedy_eval(model, ev, scfg.fmt)
            arm = {"start": {**{b: r["acc"] for b, r in g0.items()}, "rl_buckets": _pooled(g0, rl_b),
                             "unpractised": _pooled(g0, unp)}}
            for beta in a["betas"]:
                t1 = time.perf_counter()
                cfg = rl.config_from_params(P, scfg, beta, start_step=st)
                r = rl.train_rl(cfg, model, scfg, progress=False)
                g = metrics.greedy_eval(r.model, ev, scfg.fmt)
                arm[f"{beta:g}"] = {**{b: v["acc"] for b, v in g.items()},
                                    "rl_buckets": _pooled(g, rl_b), "unpractised": _pooled(g, unp),
                                    **{f"kl_{k}": rl.measure_kl(r.model, model, s, scfg.fmt, seed=seed)
                                       for k, s in kl_sets.items()},
                                    "wall_s": round(time.perf_counter() - t1, 1)}
            out[name] = arm
    return out


def summary(rows) -> str:
    """Per start and beta: the mean (and per-seed) change on the RL buckets and on the
    unpractised ones, the exact KL, and on how many seeds the KL is below beta = 0's."""
    import numpy as np
    rows = sorted(rows, key=lambda r: r["seed"])
    betas = rows[0]["betas"]
    out = [f"seeds {', '.join(str(r['seed']) for r in rows)}; greedy points against the start, "
           "exact KL per answer token on `general` (per seed in brackets)", "",
           "| start | beta | RL buckets | unpractised (`d1`, `d2_*`) | KL on `general` | KL on unpractised | KL below beta = 0's |",
           "|---|---|---|---|---|---|---|"]
    for name in ("targeted-mid", "control-end"):
        for b in betas:
            k = f"{b:g}"
            g = [100 * (r[name][k]["rl_buckets"] - r[name]["start"]["rl_buckets"]) for r in rows]
            u = [100 * (r[name][k]["unpractised"] - r[name]["start"]["unpractised"]) for r in rows]
            kl = [r[name][k]["kl_general"] for r in rows]
            ku = [r[name][k]["kl_unpractised"] for r in rows]
            below = "" if b == 0 else f"{sum(r[name][k]['kl_general'] < r[name]['0']['kl_general'] for r in rows)} of {len(rows)}"
            out.append(f"| {name} | {k} | {np.mean(g):+.1f} ({', '.join(f'{x:+.1f}' for x in g)}) "
                       f"| {np.mean(u):+.1f} ({', '.join(f'{x:+.1f}' for x in u)}) "
                       f"| {np.mean(kl):.3f} ({', '.join(f'{x:.3f}' for x in kl)}) "
                       f"| {np.mean(ku):.3f} ({', '.join(f'{x:.3f}' for x in ku)}) | {below} |")
    return "\n".join(out + ["", razor(rows)])


def razor(rows) -> str:
    """Forgetting against KL (RL's Razor) over every run of the rows: the change on the
    unpractised buckets (points) fitted by a line on each measured KL, over both starts
    and per start, with R² on the data and held out one seed at a time."""
    from reasonlib.core import stats
    from reasonlib.report.tables import table
    pts = [(r["seed"], name, r[name][f"{b:g}"], r[name]["start"]) for r in rows
           for name in ("targeted-mid", "control-end") for b in r["betas"]]
    out = []
    for kl in ("kl_general", "kl_unpractised"):
        for scope in ("both", "targeted-mid", "control-end"):
            q = [p for p in pts if scope == "both" or p[1] == scope]
            f = stats.polyfit([p[2][kl] for p in q], [100 * (p[2]["unpractised"] - p[3]["unpractised"]) for p in q],
                              1, [p[0] for p in q] if len({p[0] for p in q}) >= 3 else None)
            out.append([kl.replace("kl_", "KL on "), scope, f["n"], f"{f['coef'][0]:+.1f}",
                        f"{f['r2']:.2f}", f"{f.get('r2_held_out', float('nan')):.2f}", f"{f['r']:+.2f}"])
    return ("forgetting (change on the unpractised buckets, points) against the exact KL, a "
            "line per row:\n\n" + table(out, ["KL measured", "starts", "runs", "slope (points per nat)",
                                               "R²", "R² held out by seed", "Pearson r"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("100-104"))
    ap.add_argument("--profile", default="paper", help="the profile whose parameters the runs use")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.05, 0.5])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "runs" / "calibration"))
    ap.add_argument("--packed", action="store_true",
                    help="SFT with the packed step (SFTConfig.packed) whatever the profile says; "
                         "the default tag becomes beta-packed")
    ap.add_argument("--tag", default=None, help="the output file's name (default beta, or "
                                                 "beta-packed with --packed)")
    ap.add_argument("--summary", action="store_true", help="print the table of <out>/<tag>.jsonl and stop")
    a = ap.parse_args(argv)
    a.tag = a.tag or ("beta-packed" if a.packed else "beta")
    if a.summary:
        import json
        path = Path(a.out) / f"{a.tag}.jsonl"
        print(summary([json.loads(x) for x in path.read_text().splitlines() if x.strip()]))
        return 0
    bad = [b for b in a.betas if b < 0]
    if bad:
        ap.error(f"--betas {' '.join(map(str, a.betas))}: beta {bad[0]} is negative; betas must be >= 0")
    out = Path(a.out) / f"{a.tag}.jsonl"

    def line(r):
        return f"seed {r['seed']}: " + "; ".join(
            f"{n} " + ", ".join(f"b={b:g} unp {100 * (r[n][f'{b:g}']['unpractised'] - r[n]['start']['unpractised']):+.1f} "
                                f"kl {r[n][f'{b:g}']['kl_general']:.3f}" for b in r["betas"])
            for n in ("targeted-mid", "control-end"))

    resume_sweep(one_seed, a, out, line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

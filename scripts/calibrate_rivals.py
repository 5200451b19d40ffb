#!/usr/bin/env python
"""RL against its two rivals at equal compute, learning rates tuned on validation problems
(issue 42's comparators; calibration seeds only).

Per seed (100 and up; never the report seeds):

1. **The start** (``--start``): targeted SFT with the ``--profile``'s parameters, and
   ``--total-tokens`` in place of the profile's budget where given (a shorter schedule whose
   *finished* model ends near 80% on ``general``: the study's own starting point);

   * ``finished``: the end of that schedule;
   * ``moving``: its first probe step from ``--start-step`` on whose probe puts ``general``
     at or above ``--start-min`` (a model mid-transition).
2. **The budget**: RL at the profile's ``rl_lr``, with dynamic sampling (GRPO-style, the
   adaptive mix); its compute in SFT tokens (``rl.sft_tokens_of``) is every arm's budget.
3. **The arms**, each at every learning rate of its list:

   * ``rl``: that RL (``--rl-lrs``; the budget run is one of them when its lr is listed);
   * ``sft``: continued SFT, re-warmed and annealed over the budget, on labelled problems
     from RL's prompt pool (``rivals``, ``--sft-lrs``);
   * ``rft``: rejection-sampling fine-tuning on the model's own accepted samples from the
     same pool (``--rft-lrs``).

Every model is scored on validation problems only (``tasks.make_val_set``: greedy on every
bucket, pass@1 and pass@8 on ``general``), so the learning rate each arm keeps is chosen
without touching an eval problem. One JSON line per seed to ``<out>/<start>-<tag>.jsonl``; a
rerun skips the seeds already there. ``--table`` prints the mean over seeds per arm and
learning rate, and each arm's chosen rate.

    python scripts/calibrate_rivals.py --profile quick --start moving --seeds 100-109 --workers 2
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from calibrate_sft import profile_params, resume_sweep, seeds_arg  # noqa: E402

ARMS = ("rl", "sft", "rft")


def _eval(model, cfg, n_eval, n_passk, seed) -> dict:
    from reasonlib.core import metrics, tasks
    ev = tasks.make_val_set(cfg.max_digits, n_eval, cfg.eval_seed)
    g = metrics.greedy_eval(model, ev, cfg.fmt)
    gen = tasks.make_val_set(cfg.max_digits, n_passk, cfg.eval_seed, buckets=["general"])
    s = metrics.sampled_eval(model, gen, cfg.fmt, 16, 1.0, 0, seed, [1, 8])["general"]
    return {**{b: r["acc"] for b, r in g.items()}, "general_pass1": s["pass"][1]["value"],
            "general_pass8": s["pass"][8]["value"]}


def one_seed(job) -> dict:
    seed, a = job
    import torch
    torch.set_num_threads(a["threads"])
    from reasonlib.train import rivals, rl, sft
    P = profile_params(a["profile"], seed, a["packed"],
                       **({"total_tokens": a["total_tokens"]} if a["total_tokens"] else {}))
    cfg = sft.config_from_params(P, "targeted")
    out = {"seed": seed, "start_kind": a["start"], "profile": a["profile"],
           "total_tokens": cfg.total_tokens, "threads": a["threads"], "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "sft.pt"
        if a["start"] == "finished":
            res = sft.train_sft(cfg, ckpt_path=ck, progress=False)
            step = res.history["step"][-1]
        else:
            step = a["start_step"]
            while True:   # the first probe at or above start_min, from start_step on
                res = sft.train_sft(cfg, ckpt_path=ck, progress=False, stop_after_step=step)
                if res.history["val"][-1]["general"] >= a["start_min"] or step >= a["start_last"]:
                    break
                step += cfg.eval_every
        start = res.model.eval()
        out.update(start_step=step, start=_eval(start, cfg, a["n_eval"], a["n_passk"], seed))
        rl_base = dataclasses.replace(rl.config_from_params(P, cfg), dynamic=True, mix="adaptive")
        ref = rl.train_rl(rl_base, start, cfg, progress=False)
        budget = rl.sft_tokens_of(ref.history, reference=rl_base.beta > 0)
        out["budget_tokens"] = budget

        def arm(name, lr, train):
            t0 = time.perf_counter()
            model = train()
            out["arms"][f"{name}@{lr:g}"] = {"arm": name, "lr": lr,
                                             **_eval(model, cfg, a["n_eval"], a["n_passk"], seed),
                                             "wall_s": round(time.perf_counter() - t0, 1)}

        for lr in a["rl_lrs"]:
            arm("rl", lr, lambda: (ref if lr == rl_base.lr else rl.train_rl(
                dataclasses.replace(rl_base, lr=lr), start, cfg, progress=False)).model)
        for kind, lrs in (("sft", a["sft_lrs"]), ("rft", a["rft_lrs"])):
            for lr in lrs:
                rcfg = rivals.RivalConfig(
                    init=rl_base.init, kind=kind, budget=budget, lr=lr, seed=seed,
                    buckets=rl_base.buckets, batch_size=cfg.batch_size,
                    prompts_per_step=rl_base.prompts_per_step, group_size=rl_base.group_size,
                    warmup_frac=cfg.warmup_frac, min_lr_frac=cfg.min_lr_frac,
                    weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
                arm(kind, lr, lambda: rivals.train_rival(rcfg, start, cfg, progress=False).model)
    return out


def chosen(rows: list[dict], bucket: str = "general") -> dict[str, float]:
    """Each arm's learning rate: the best mean validation accuracy on ``bucket`` over seeds."""
    means = {}
    for r in rows:
        for v in r["arms"].values():
            means.setdefault((v["arm"], v["lr"]), []).append(v[bucket])
    best = {}
    for (name, lr), vals in means.items():
        m = sum(vals) / len(vals)
        if name not in best or m > best[name][1]:
            best[name] = (lr, m)
    return {k: v[0] for k, v in best.items()}


def table(rows: list[dict]) -> str:
    from reasonlib.report.tables import table as text_table
    keep = chosen(rows)
    out = []
    for name in ARMS:
        lrs = sorted({v["lr"] for r in rows for v in r["arms"].values() if v["arm"] == name})
        for lr in lrs:
            vals = [r["arms"][f"{name}@{lr:g}"] for r in rows if f"{name}@{lr:g}" in r["arms"]]
            per = [100 * (v["general"] - r["start"]["general"]) for v, r in zip(
                vals, [r for r in rows if f"{name}@{lr:g}" in r["arms"]])]
            out.append([name, f"{lr:g}" + (" (kept)" if keep.get(name) == lr else ""), len(vals),
                        f"{100 * sum(v['general'] for v in vals) / len(vals):.1f}",
                        " ".join(f"{x:+.1f}" for x in per)])
    head = (f"start {rows[0]['start_kind']}, {len(rows)} seeds, validation general: start "
            f"{100 * sum(r['start']['general'] for r in rows) / len(rows):.1f}% (mean)")
    return head + "\n" + text_table(out, ["arm", "lr", "seeds", "general %", "gain per seed (points)"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("100-109"))
    ap.add_argument("--profile", default="quick", help="the profile whose parameters the arms use")
    ap.add_argument("--start", choices=("moving", "finished"), default="moving")
    ap.add_argument("--total-tokens", type=int, default=0,
                    help="the SFT budget in place of the profile's (0: the profile's)")
    ap.add_argument("--start-step", type=int, default=500)
    ap.add_argument("--start-last", type=int, default=3000, help="the latest moving start step")
    ap.add_argument("--start-min", type=float, default=0.5)
    ap.add_argument("--rl-lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    ap.add_argument("--sft-lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--rft-lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=300)
    ap.add_argument("--n-passk", type=int, default=200)
    ap.add_argument("--packed", action="store_true", help="SFT with the packed step")
    ap.add_argument("--out", default=str(ROOT / "reports" / "calibration" / "rivals"))
    ap.add_argument("--tag", default=None, help="the output file's tag (default: the profile)")
    ap.add_argument("--table", action="store_true", help="print the table of the rows there; train nothing")
    a = ap.parse_args(argv)
    for name in ("rl_lrs", "sft_lrs", "rft_lrs"):
        if any(not x > 0 for x in getattr(a, name)):
            raise SystemExit(f"--{name.replace('_', '-')} {getattr(a, name)}: every rate must be > 0")
    tag = a.tag or a.profile + (f"-{a.total_tokens}" if a.total_tokens else "")
    out = Path(a.out) / f"{a.start}-{tag}.jsonl"
    if a.table:
        if not out.is_file():
            raise SystemExit(f"no rows at {out}")
        print(table([json.loads(x) for x in out.read_text().splitlines() if x.strip()]))
        return 0
    resume_sweep(one_seed, a, out,
          lambda r: f"seed {r['seed']} start {100 * r['start']['general']:.1f}%: " + ", ".join(
              f"{k} {100 * v['general']:.1f}%" for k, v in r["arms"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

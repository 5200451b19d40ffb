#!/usr/bin/env python
"""Calibrate the SFT recipe on calibration seeds (100 and up; never the report seeds 0-4).

Each run trains the targeted curriculum of one recipe (the ``paper`` profile's SFT
parameters with the recipe's overrides) from one seed, then records:

* ``t50`` / ``t90``: the first training step at which the probe's ``general`` greedy
  accuracy reaches 50% / 90% (the 3-digit transition), None if never;
* ``general``: final greedy accuracy on ``n_eval`` reserved ``general`` problems;
* ``len<n>``: greedy accuracy on two n-digit operands, n = 1..3D (reasonlib.study.lengths);
* ``buckets``: greedy accuracy (and n) on every bucket's validation problems;
* ``grid``: greedy accuracy on each length-pair cell's validation problems (GRID_N a cell,
  reasonlib.study.grid), with the cell's kind and its operand_dup / digit_sub answers;
* wall time, steps, torch threads, the provenance of the run.

One JSON line per (recipe, seed) goes to ``<out>/<recipe>.jsonl``; a rerun skips what is
there, so a sweep can be stopped and continued. Runs go to ``--workers`` processes with
``--threads`` torch threads each.

    python scripts/calibrate_sft.py --recipe abacus --seeds 100-119 --workers 2
    python scripts/calibrate_sft.py --recipe local --packed   # -> local-packed.jsonl
    python scripts/calibrate_sft.py --recipe rope local --curriculum targeted_v2 --packed \
        --seeds 100-119   # targeted v2, with per-bucket and length-pair-grid results
    python scripts/calibrate_sft.py --recipe rope coupled local --curriculum control \
        targeted targeted_v2 --packed --seeds 100-109   # the factorial, seed by seed
    python scripts/calibrate_sft.py --table runs/calibration/abacus.jsonl
    python scripts/calibrate_sft.py --compare reports/calibration/steps/rope-padded-amd.jsonl \
        reports/calibration/steps/rope-packed.jsonl   # the same seeds, two steps
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from reasonlib.study import calibration  # noqa: E402  (no torch: the table prints fast)

# recipes: overrides of the paper profile's SFT parameters (data, so a table row names one)
RECIPES = {
    "rope": {"pos": "rope"},
    "nope": {"pos": "nope"},
    "abacus": {"pos": "abacus", "pos_offset": 8},
    "coupled": {"pos": "coupled", "pos_offset": 8},
    "coupled0": {"pos": "coupled", "pos_offset": 0},
    "local": {"pos": "local", "pos_offset": 8},
}


def seeds_arg(s: str) -> list[int]:
    out = []
    for part in s.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    if any(x < 100 for x in out):
        raise SystemExit(f"seeds {s!r}: calibration seeds are 100 and up (0-4 are the report seeds)")
    return out


def done_seeds(out: Path) -> set[int]:
    """The seeds a sweep's output file already holds (a rerun skips them)."""
    if not out.exists():
        return set()
    return {json.loads(line)["seed"] for line in out.read_text().splitlines() if line.strip()}


def sweep(worker, jobs, out: Path, workers: int, threads: int, show) -> None:
    """Run ``jobs`` on ``workers`` spawned processes of ``threads`` torch threads each,
    appending each result to ``out`` (a path, or {recipe: path}) as one JSON line as it arrives and printing
    ``show(result)``. Stop a sweep with Ctrl-C or by killing its process group (killing the
    parent alone leaves its workers running)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    with mp.get_context("spawn").Pool(workers) as pool:
        for r in pool.imap_unordered(worker, jobs):
            with (out[r["recipe"]] if isinstance(out, dict) else out).open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(show(r), flush=True)


def resume_sweep(worker, a, out: Path, show) -> None:
    """:func:`sweep` over the seeds of ``a.seeds`` that ``out`` does not hold yet (a rerun
    resumes), each job ``(seed, vars(a))``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_seeds(out)
    jobs = [(s, vars(a)) for s in a.seeds if s not in done]
    print(f"{len(jobs)} seeds -> {out} ({len(done)} already there)", flush=True)
    sweep(worker, jobs, out, a.workers, a.threads, show)


def profile_params(profile: str, seed: int, packed: bool = False, **extra):
    """A profile's validated parameters for one calibration seed; ``packed`` trains SFT with the
    packed step whatever the profile says (calibrate_rl.py, calibrate_beta.py); ``extra``
    overrides other parameters (calibrate_rivals.py's ``total_tokens``)."""
    from reasonlib.train import params
    raw = params.load_profile(profile)
    return params.validate({**{k: v for k, v in raw.items() if k in params.SCHEMA}, "seed": seed,
                            **({"packed": True} if packed else {}), **extra})


def recipe_config(recipe: str, seed: int, extra: dict, packed: bool = False,
                  curriculum: str = "targeted"):
    from reasonlib.train import params, sft
    raw = params.load_profile("paper")
    P = params.validate({**{k: v for k, v in raw.items() if k in params.SCHEMA},
                         **RECIPES[recipe], **extra, "seed": seed, "packed": packed})
    return sft.config_from_params(P, curriculum), P


def recipe_name(recipe: str, packed: bool, curriculum: str | None = None) -> str:
    """A row's recipe: the packed training step is another recipe (its own table rows), and
    so is a curriculum named with ``--curriculum`` (``targeted_v2-rope-packed``); without it
    the curriculum is ``targeted`` and the name has no prefix (the older rows)."""
    return (f"{curriculum}-" if curriculum else "") + (f"{recipe}-packed" if packed else recipe)


GRID_N = 200   # validation problems per length-pair cell


def one_run(job):
    recipe, seed, extra, threads, n_eval, n_len, packed, curriculum = job
    import torch
    torch.set_num_threads(threads)
    from reasonlib.train import artifacts, sft
    from reasonlib.study import grid, lengths
    from reasonlib.core import metrics, tasks
    cfg, P = recipe_config(recipe, seed, extra, packed, curriculum or "targeted")
    t0 = time.perf_counter()
    res = sft.train_sft(cfg, progress=False)
    train_s = time.perf_counter() - t0
    ev = tasks.make_val_set(cfg.max_digits, n_eval, cfg.eval_seed)
    g = metrics.greedy_eval(res.model, ev, cfg.fmt)
    lg = metrics.greedy_eval(res.model, lengths.eval_set(cfg.max_digits, n_len, cfg.eval_seed), cfg.fmt)
    cells = grid.score(res.model, cfg.max_digits, cfg.fmt, GRID_N, cfg.eval_seed, source="val")
    return {"recipe": recipe_name(recipe, packed, curriculum), "seed": seed,
            "curriculum": curriculum or "targeted",
            "buckets": {b: {"acc": v["acc"], "n": v["n"], "k": int(v["correct"].sum())}
                        for b, v in g.items()},
            "grid": {c: {"acc": v["acc"], "n": v["n"], "kind": v["kind"],
                         **{k: v["classes"][k] for k in ("operand_dup", "digit_sub")}}
                     for c, v in cells.items()},
            "overrides": {**RECIPES[recipe], **extra, **({"packed": True} if packed else {})},
            "t50": sft.transition_step(res.history, 0.5), "t90": sft.transition_step(res.history, 0.9),
            "steps": res.history["step"][-1], "general": g["general"]["acc"],
            "n_general": g["general"]["n"],
            **{k: v["acc"] for k, v in lg.items()},
            "probe": [(e["step"], e.get("general")) for e in res.history["val"]],
            "train_s": round(train_s, 1), "total_s": round(time.perf_counter() - t0, 1),
            "threads": threads, "provenance": artifacts.provenance(str(P.device))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), nargs="+",
                    help="one or more; several run seed by seed (each seed's recipes first)")
    ap.add_argument("--curriculum", nargs="+", metavar="NAME",
                    help="curricula to train (default: targeted, rows without a prefix); "
                         "named, each row's recipe is <curriculum>-<recipe> (the factorial)")
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("100-119"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra parameter overrides (YAML values), recorded in each row")
    ap.add_argument("--packed", action="store_true",
                    help="train with the packed, padding-free step (SFTConfig.packed); rows "
                         "go to <recipe>-packed.jsonl as recipe <recipe>-packed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--n-len", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "runs" / "calibration"))
    ap.add_argument("--tag", default="", help="suffix of the output file (for --set sweeps)")
    ap.add_argument("--docs", action="store_true",
                    help="write the table of reports/calibration/ into docs/calibration.md and exit")
    ap.add_argument("--table", nargs="*", help="print the table of these .jsonl files (or "
                    "folders) and exit")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="two .jsonl files of one recipe each: per seed side by side, k of n "
                         "and the exact sign test on the seeds both hold; then exit")
    a = ap.parse_args(argv)
    if a.docs:
        page = ROOT / calibration.PAGE
        text = calibration.replace_block(page.read_text(), calibration.load(calibration.COMMITTED))
        grid_rows = calibration.load(calibration.GRID) if calibration.GRID.is_dir() else []
        page.write_text(calibration.replace_grid_block(text, grid_rows))
        print(f"wrote the calibration tables of {calibration.COMMITTED} and {calibration.GRID} "
              f"into {page}")
        return 0
    if a.compare:
        (fa, fb), names = a.compare, [Path(f).stem for f in a.compare]
        if names[0] == names[1]:
            names = list(a.compare)
        missing = [f for f in a.compare if not Path(f).is_file()]
        if missing:
            ap.error(f"--compare: no such file {', '.join(missing)} (two .jsonl files of rows)")
        try:
            print(calibration.compare(calibration.load(fa), calibration.load(fb), *names))
        except ValueError as e:
            ap.error(f"--compare: {e}")
        return 0
    if a.table is not None:
        rows = [r for f in a.table for r in calibration.load(f)]
        grid_rows = [r for r in rows if "grid" in r]
        print(calibration.markdown(rows))
        if grid_rows:   # targeted v2 and the factorial: the goals and the paired differences
            print("\n" + calibration.grid_markdown(grid_rows) + "\n\n"
                  + calibration.factorial_markdown(grid_rows))
        return 0
    if not a.recipe:
        ap.error("--recipe is required (or --table)")
    import yaml
    extra = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        extra[k] = yaml.safe_load(v)
    if "packed" in extra:   # the packed step is its own recipe name, so one way to ask for it
        ap.error("--set packed=...: use --packed (its rows are recipe <recipe>-packed)")
    from reasonlib.train.curriculum import check_curriculum
    try:
        for c in a.curriculum or []:
            check_curriculum(c)
        recipe_config(a.recipe[0], a.seeds[0], extra)   # bad values fail here, before any training
    except ValueError as e:
        ap.error(str(e))
    outs, jobs = {}, []
    for c in a.curriculum or [None]:
        for r in a.recipe:
            out = Path(a.out) / f"{recipe_name(r, a.packed, c)}{a.tag}.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            outs[recipe_name(r, a.packed, c)] = out
    for s in a.seeds:   # seed-major: a sweep stopped early has every arm on its first seeds
        for c in a.curriculum or [None]:
            for r in a.recipe:
                if s not in done_seeds(outs[recipe_name(r, a.packed, c)]):
                    jobs.append((r, s, extra, a.threads, a.n_eval, a.n_len, a.packed, c))
    print(f"{len(jobs)} runs of {', '.join(outs)} {extra or ''} -> {a.out}", flush=True)
    sweep(one_run, jobs, outs, a.workers, a.threads,
          lambda r: f"{r['recipe']} seed {r['seed']}: t90 {r['t90']} general {100*r['general']:.1f}% "
                    f"mixed3 {100 * r['buckets'].get('mixed3', {}).get('acc', float('nan')):.1f}% "
                    f"withheld {_withheld(r)} len{_len1(r)} ({r['train_s']:.0f} s)")
    print(calibration.markdown([row for o in outs.values() for row in calibration.load(o)]))
    return 0


def _withheld(r) -> str:
    w = [v["acc"] for v in r.get("grid", {}).values() if v["kind"] == "withheld"]
    return f"{100 * w[0]:.1f}%" if w else "-"


def _len1(r) -> str:
    """The first untrained length's accuracy, as 'N x%'."""
    n = max(int(k[3:]) for k in r if k.startswith("len") and k[3:].isdigit())
    k = f"len{min(n, 4)}"
    return f"{k[3:]} {100 * r.get(k, float('nan')):.1f}%"


if __name__ == "__main__":
    sys.exit(main())

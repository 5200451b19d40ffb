# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Length generalisation: position schemes
#
# **Question.** A model trained on operands of at most D digits: can it add longer numbers?
# Rotary positions (the default) tie what is learned to the trained lengths; do schemes that
# tell the model each digit's place do better?
#
# **Method.** The targeted curriculum of 03, the same seed, the same token budget, once per
# position scheme in `positions` (`reasonlib.core.model`): `rope` (rotary), `nope` (no position
# signal; the causal mask alone orders tokens), `abacus` (a learned vector per digit
# place, the digit's own place), `coupled` (digit places as rotary positions; from `=` on
# each token sits at the place of the digit it *predicts*) and `local` (coupled positions,
# and attention kept to a token's own place and, in the first layer, the place below:
# nothing tells a token how far it is from the units). The placed schemes shift every
# training row's places by a random offset in 0..`pos_offset`, so places beyond the trained
# lengths are trained too. Each model answers problems whose two operands have
# exactly n digits, n = 1..3D (9 at D = 3): greedy exact match, and pass@k from `n_samples`
# samples. Then the **length-pair grid**: every SFT arm of 03 (each curriculum, format and
# scheme) on every pair (digits of a, digits of b) up to D+3, with one pair, (1, D), withheld
# from every training path.
#
# **The train/test rule.** Every training path draws from buckets with operands of at most D
# digits, so no problem with a longer operand is ever trained on. Inside the trained range
# each length is scored on problems training never draws (the held-out `d2_*` problems for 2
# digits, reserved `general` problems for 3..D); length 1 is `d1`, trained in full.

# %% tags=["parameters"]
seed = 0
fmt = "reversed"
max_digits = 3
buckets = ["d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "mixed3", "general", "ood_long"]
n_layer = 2
n_head = 4
n_embd = 64
pos = "rope"
pos_offset = 0
positions = ["rope", "nope", "abacus", "coupled", "local"]
total_tokens = 150000
batch_size = 128
lr = 0.002
min_lr_frac = 0.1
warmup_frac = 0.05
weight_decay = 0.1
grad_clip = 1.0
packed = False
replay = 0.2
mixed_replay = 0.15
eval_every = 50
eval_n = 30
n_eval = 100
eval_seed = 1234
n_len = 100
n_grid = 20
curricula = ["control", "targeted"]
formats = ["plain", "reversed", "scratchpad"]
n_samples = 16
ks = [1, 2, 4, 8, 16]
temperature = 1.0
top_k = 0
run_dir = "runs/notebooks/seed-0"
artifacts_dir = "runs/notebooks/artifacts"
device = "cpu"

# %%
from reasonlib.train import params

P = params.collect(globals())

# %%

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown

from reasonlib.train import artifacts, sft
from reasonlib.report import findings, plots
from reasonlib.study import grid, lengths, records
from reasonlib.core import failures, metrics, schemes, tasks
from reasonlib.core.runtime import resolve_device
from reasonlib.report.tables import checks, ci, pct, table

out_dir = artifacts.resolve(P.run_dir) / "08_lengths"
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(P.device)
arms = sft.study_arms(P)   # 03 trained them all (the same configs)
cfgs = {s: arms["targeted"] if s == P.pos else arms[f"pos {s}"] for s in P.positions}
lens = lengths.lengths_for(P.max_digits)
trained = lengths.longest_trained(P.max_digits)   # max_digits (2 at max_digits = 1: the d2 stages)
len_set = lengths.eval_set(P.max_digits, P.n_len, P.eval_seed)
gen_set = tasks.make_eval_set(P.max_digits, P.n_eval, P.eval_seed, buckets=["general"])
k_top = min(8, P.n_samples)   # pass@8 (pass@n_samples when fewer samples are drawn)

# %% [markdown]
# ## The length test set
#
# One "bucket" per operand length. `never trained` says whether any training path can draw
# the problems; `trained range` marks the lengths training draws from.

# %% tags=["nbval-check-output"]
held = {lengths.name(n): len_set.held_out(lengths.name(n)) for n in lens}
print(table([[n, len(len_set.problems[lengths.name(n)][0]),
              "yes" if n <= trained else "no",
              "no (d1 is trained in full)" if n == 1 else "yes",
              "{}+{}".format(*(int(x[0]) for x in len_set.problems[lengths.name(n)]))]
             for n in lens],
            ["operand digits", "problems", "trained range", "never trained", "first problem"]))
print(f"context: block_size {tasks.block_size_for(P.max_digits, P.fmt)} tokens holds the "
      f"longest prompt and answer ({tasks.longest_tested(P.max_digits)}-digit operands, {P.fmt})")

# %% [markdown]
# ## Training: one targeted model per position scheme
#
# 03 trained these arms with its own (they are loaded from the cache); the arm whose scheme
# is this run's `pos` is 03's targeted model. Arms missing from the cache train here, at
# the same time, one process each.

# %% tags=["nbval-ignore-output"]
runs = dict(zip(cfgs, sft.get_or_train_many(cfgs.values(), artifacts.resolve(P.artifacts_dir),
                                            device=dev)))
for s, r in runs.items():
    print(f"{s}: {'trained now' if r.trained_now else 'loaded from cache'} -> {artifacts.shown(r.path)}")
    print("   " + artifacts.describe_provenance(r.provenance).replace("\n", "\n   "))
    if r.timing:
        print(f"   {r.history['step'][-1]} steps, {r.timing['loop_s']:.1f} s in the loop "
              f"({r.timing.get('cpu_s', float('nan')):.1f} CPU s)")

# %% tags=["nbval-check-output"]
print(table([[s, c.pos_offset, f"{runs[s].history['tokens'][-1]:,}", runs[s].history["step"][-1],
              f"{runs[s].model.num_params():,}"] for s, c in cfgs.items()],
            ["scheme", "training offset", "tokens", "steps", "parameters"]))

# %% [markdown]
# ## Accuracy against length
#
# Greedy exact match and pass@k per operand length, for this seed. Brackets: Wilson 95%
# intervals over problems.

# %%
greedy = {s: metrics.greedy_eval(r.model, len_set, P.fmt) for s, r in runs.items()}
sampled = {s: metrics.sampled_eval(r.model, len_set, P.fmt, P.n_samples, P.temperature, P.top_k,
                                   P.seed, [k_top]) for s, r in runs.items()}
general = {s: metrics.greedy_eval(r.model, gen_set, P.fmt)["general"] for s, r in runs.items()}

# %%
print(f"greedy % [95% CI] | pass@{k_top} %, seed {P.seed}, operands of n digits "
      f"(trained: 1..{trained})")
print(table([[n, len(len_set.problems[lengths.name(n)][0])]
             + [f"{ci(greedy[s][lengths.name(n)]['acc'], greedy[s][lengths.name(n)]['acc_ci'])} | "
                f"{pct(sampled[s][lengths.name(n)]['pass'][k_top]['value'])}" for s in P.positions]
             for n in lens],
            ["digits", "n", *P.positions]))
print(table([[s, ci(general[s]["acc"], general[s]["acc_ci"]), general[s]["n"]] for s in P.positions],
            ["scheme", "general greedy % [95% CI]", "n"]))

# %%
curves = {s: [(n, greedy[s][lengths.name(n)]["acc"], *greedy[s][lengths.name(n)]["acc_ci"],
               sampled[s][lengths.name(n)]["pass"][k_top]["value"]) for n in lens]
          for s in P.positions}
fig = plots.length_curves(curves, trained, k_top,
                          f"targeted SFT per position scheme, seed {P.seed} "
                          f"({P.n_len} problems per length)")
fig.savefig(out_dir / "lengths.png", dpi=120)
plt.show()

# %% [markdown]
# Inside the shaded range every scheme should do what 03's model does; the question is the
# curve's right side. A scheme that falls to zero one digit past the shade has learnt the
# trained lengths; one that stays up has learnt a procedure that places digits by their
# significance. What each scheme builds in decides how much of that procedure is found and
# how much is given: read every number of a placed scheme beside its structure.

# %% tags=["nbval-check-output"]
for s in P.positions:
    print(f"- {schemes.STRUCTURE[s]}")

# %% [markdown]
# ## The length-pair grid
#
# A cell (i, j) holds problems whose first operand has i digits and whose second has j, both
# 1..D+3 (`reasonlib.study.grid`). Trained cells (both lengths at most D, outlined) are
# scored on held-out and reserved eval problems; the **withheld cell** (1, D), boxed in red,
# is drawn by no training path (not SFT, not RL's prompts), so a model that adds there has
# composed what it learnt on (D, 1) and (1, D-1); the other cells hold random problems of
# lengths never trained. One grid per SFT arm 03 trained: each curriculum, each answer
# format, each position scheme. Numbers are greedy exact match in %; `n_grid` problems a
# cell (fewer where a cell has fewer never-trained problems).

# %%
grid_arms = {**{f"{c}, {P.pos}, {P.fmt}": c for c in P.curricula},
             **{f"targeted, {P.pos}, {f}": f"format {f}" for f in P.formats if f != P.fmt},
             **{f"targeted, {s}, {P.fmt}": f"pos {s}" for s in P.positions if s != P.pos}}
grid_runs = dict(zip(grid_arms, sft.get_or_train_many([arms[a] for a in grid_arms.values()],
                                                      artifacts.resolve(P.artifacts_dir),
                                                      device=dev)))
grids = {label: grid.score(r.model, P.max_digits, arms[grid_arms[label]].fmt, P.n_grid,
                           P.eval_seed, n_samples=k_top, k=k_top, temperature=P.temperature,
                           sample_seed=P.seed)
         for label, r in grid_runs.items()}
withheld = tasks.withheld_cell(P.max_digits)

# %%
fig = plots.length_grids({k: grid.matrix(g, P.max_digits) for k, g in grids.items()}, trained,
                         withheld, f"greedy exact match per length pair, seed {P.seed}")
fig.savefig(out_dir / "grid.png", dpi=110)
plt.show()

# %%
print(f"per arm, seed {P.seed}: the lowest trained cell, the withheld cell {withheld}, the "
      f"untrained cells' mean (greedy %), and pass@{k_top} on the withheld cell")
rows = []
for label, g in grids.items():
    sm = grid.summary(g)
    w = g.get(grid.name(withheld)) if withheld else None
    rows.append([label, f"{pct(sm['trained_min'])} ({sm['trained_min_cell']})",
                 ci(w["acc"], w["ci"]) if w else "-", pct(w.get(f"pass{k_top}")) if w else "-",
                 pct(sm["untrained_mean"])])
print(table(rows, ["arm", "lowest trained cell", "withheld [95% CI]", f"withheld pass@{k_top}",
                   "untrained mean"]))

# %% [markdown]
# ### Where the study's two errors occur
#
# The same grids, coloured by the share of a cell's greedy answers in one error class of the
# taxonomy (`reasonlib.core.failures`): **operand duplication** (`12+3 -> 123`) and **digit
# substitution** (`12+3 -> 18`). A class that appears under one format or curriculum only
# shows as a lit region in that arm's grid alone.

# %%
for cls in failures.STUDY_CLASSES:
    shares = {k: grid.matrix(g, P.max_digits, cls) for k, g in grids.items()}
    top = max(0.05, max(float(m[np.isfinite(m)].max()) for m in shares.values()))
    fig = plots.length_grids(shares, trained, withheld,
                             f"share of greedy answers that are {cls}, seed {P.seed}",
                             label=f"{cls} share", vmax=top, cmap="magma")
    fig.savefig(out_dir / f"grid_{cls}.png", dpi=110)
    plt.show()

# %%
dup = {k: sum(v["classes"]["operand_dup"] for v in g.values()) for k, g in grids.items()}
sub = {k: sum(v["classes"]["digit_sub"] for v in g.values()) for k, g in grids.items()}
n_all = {k: sum(v["n"] for v in g.values()) for k, g in grids.items()}
print(table([[k, n_all[k], dup[k], sub[k]] for k in grids],
            ["arm", "grid problems", "operand_dup answers", "digit_sub answers"]))
only = [k for k in grids if dup[k]]
fmts_with = sorted({k.split(", ")[2] for k in only})
print("operand duplication: " + ("in no arm's grid" if not only else
      f"in {', '.join(only)}; formats with it: {', '.join(fmts_with)}"))

# %% [markdown]
# ### Does the curriculum matter once positions align digits?
#
# The factorial of position scheme (rope, coupled, local) against curriculum (control,
# targeted, targeted v2) on calibration seeds (`scripts/calibrate_sft.py --curriculum ...`,
# docs/calibration.md), on validation problems: per arm the mean over seeds with its interval
# and each seed's value, then each curriculum minus control of the same scheme, paired by
# seed. The withheld column is the grid's cell (1, D).

# %%
from reasonlib.study import calibration

fact_rows = calibration.load(calibration.GRID) if calibration.GRID.is_dir() else []
print(calibration.factorial_markdown(fact_rows) if fact_rows else
      "no factorial runs committed under reports/calibration/grid/")

# %%
if fact_rows:
    fa = calibration.factorial_arms(fact_rows)
    fig = plots.bucket_bars(calibration.bucket_table(fact_rows), "greedy, validation problems",
                            "scheme x curriculum on calibration seeds: mean and interval over "
                            "seeds per bucket (withheld: the grid's cell (1, D))")
    fig.savefig(out_dir / "factorial_buckets.png", dpi=110)
    plt.show()
    fig = plots.length_grids({f"{k} ({len(v)} seeds)": calibration.mean_grid(v) for k, v in fa.items()},
                             trained, withheld, "scheme x curriculum: mean greedy accuracy per "
                             "length pair over calibration seeds (validation problems)")
    fig.savefig(out_dir / "factorial_grid.png", dpi=100)
    plt.show()

# %% tags=["nbval-ignore-output"]
rec = {}
for s in P.positions:
    for n in lens:
        b = lengths.name(n)
        records.mean_with_problems(f"length/{s}/{b}/acc", greedy[s][b]["correct"], rec)
        rec[f"length/{s}/{b}/parse"] = greedy[s][b]["parse"]
        rec[f"length/{s}/{b}/pass{k_top}"] = sampled[s][b]["pass"][k_top]["value"]
        rec[f"length/{s}/{b}/n"] = greedy[s][b]["n"]
    records.mean_with_problems(f"length/{s}/general/acc", general[s]["correct"], rec)
    rec[f"length/{s}/steps"] = runs[s].history["step"][-1]
    rec[f"length/{s}/tokens"] = runs[s].history["tokens"][-1]
for label, g in grids.items():
    arm = grid_arms[label]
    for cell, v in g.items():
        for key in ("acc", "n", f"pass{k_top}"):
            rec[f"grid/{arm}/{cell}/{key}"] = v.get(key)
        for cls in failures.STUDY_CLASSES:
            rec[f"grid/{arm}/{cell}/{cls}"] = v["classes"][cls]
metrics_08 = {"notebook": "08_lengths", "seed": P.seed, "params": vars(P), "records": rec}
records.write(out_dir / "metrics.json", "08_lengths", P.seed, rec, vars(P),
              timing={s: r.timing for s, r in runs.items()},
              checkpoint={s: r.path.parent.name for s, r in runs.items()},
              provenance={s: r.provenance for s, r in runs.items()})
print("wrote", artifacts.shown(out_dir / "metrics.json"))

# %% tags=["nbval-check-output"]
longest = max(lens)
print(checks([
    (f"no training bucket of any curriculum has an operand longer than {trained} digits",
     trained == max(P.max_digits, 2)),
    ("every length of the trained range but 1 is scored on never-trained problems only",
     all(held[lengths.name(n)].all() for n in lens if 2 <= n <= trained)),
    ("every scheme trained on the same budget, to within one batch",
     all(abs(r.history["tokens"][-1] - P.total_tokens) <= P.batch_size * tasks.block_size_for(P.max_digits, P.fmt)
         for r in runs.values())),
    ("accuracy <= parse rate <= 1 at every length, pass@k >= 0",
     all(0 <= greedy[s][b]["acc"] <= greedy[s][b]["parse"] <= 1 and sampled[s][b]["pass"][k_top]["value"] >= 0
         for s in P.positions for b in len_set.problems)),
    ("the withheld cell is drawn by no training path and every grid cell holds its lengths",
     withheld is None or (grid.kind(withheld, P.max_digits) == "withheld" and all(
         (tasks._ndigits(a) == c[0]).all() and (tasks._ndigits(b) == c[1]).all()
         for c in grid.cells(P.max_digits) for a, b in [grid.problems(c, P.max_digits, 5, P.eval_seed)]))),
    ("every grid cell's error classes count each of its answers once",
     all(sum(v["classes"].values()) == v["n"] for g in grids.values() for v in g.values())),
    (f"the context holds the longest test problem ({longest}-digit operands)",
     all(r.model.cfg.block_size >= tasks.render_examples(*len_set.problems[lengths.name(longest)], P.fmt)[0].shape[1]
         for r in runs.values())),
]))

# %% [markdown]
# ## What this run shows
#
# Generated from this notebook's records by the cross-seed summary's evaluator, for this
# seed only (95% bootstrap interval over the problems).

# %%
Markdown(findings.story_markdown(findings.this_run("08_lengths", metrics_08)))

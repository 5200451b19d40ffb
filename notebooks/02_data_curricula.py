# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Data and curricula
#
# **Question.** What exactly do the two SFT arms see, and is the comparison fair?
#
# **Method.** Show examples of every evaluation bucket in every answer format; draw the
# stage schedule of the `control` and `targeted` curricula; count bucket sizes; then draw
# training batches across the whole schedule and check that (1) no `general` evaluation
# problem ever appears in training and (2) both arms spend the same token budget.

# %% tags=["parameters"]
seed = 0
fmt = "reversed"
max_digits = 3
curricula = ["control", "targeted"]
total_tokens = 150000
batch_size = 128
replay = 0.2
mixed_replay = 0.15
n_eval = 100
eval_seed = 1234
run_dir = "runs/notebooks/seed-0"

# %%
from reasonlib import params

P = params.collect(globals())

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from reasonlib import artifacts, plots, tasks
from reasonlib.curriculum import BatchMaker, stages
from reasonlib.tables import checks, table
from reasonlib.tokenizer import PAD, decode

out_dir = artifacts.resolve(P.run_dir) / "02_data_curricula"

# %% [markdown]
# ## The buckets, in every format
#
# The evaluation set is fixed by its own seed (`eval_seed`), not by the training seed, so
# every arm and every seed is scored on the same problems.

# %% tags=["nbval-check-output"]
eval_set = tasks.make_eval_set(P.max_digits, P.n_eval, P.eval_seed)
rows = []
for b in tasks.BUCKETS:
    a, c = eval_set.problems[b]
    i = 0
    rows.append([b, tasks.bucket_size(b, P.max_digits), len(a)]
                + [f"{a[i]}+{c[i]}={tasks.answer_text(int(a[i]), int(c[i]), f)}" for f in tasks.FORMATS])
print(table(rows, ["bucket", "problems", "in eval set", *tasks.FORMATS]))

# %% [markdown]
# ## The two curricula
#
# Each stage introduces one bucket and owns a share of the **token budget**; inside a stage
# a batch is `1 - replay` new bucket and `replay` earlier buckets. The targeted curriculum
# inserts the `mixed` stage (one-digit with two-digit operands) before `general` and keeps a
# `mixed_replay` share of it afterwards.

# %% tags=["nbval-check-output"]
scheds = {c: stages(c, P.replay, P.mixed_replay) for c in P.curricula}
for c, st in scheds.items():
    print(c)
    print(table([[s.name, f"{s.start:.2f}-{s.end:.2f}",
                  ", ".join(f"{b} {w:.2f}" for b, w in s.weights)] for s in st],
                ["stage", "budget share", "batch mix"]))

# %%
fig = plots.stage_schedule(scheds)
out_dir.mkdir(parents=True, exist_ok=True)
fig.savefig(out_dir / "stage_schedule.png", dpi=120)
plt.show()

# %% [markdown]
# ## Train/eval disjointness and equal budgets
#
# We replay each arm's batch stream over its full token budget (the same generator the SFT
# loop uses) and record every problem drawn from the `general` bucket. Buckets with more
# than 10,000 problems keep their evaluation problems out of training; the small buckets
# (`d1` has 100 problems in all) are necessarily shared between training and evaluation,
# by design. A few `general` evaluation problems (say `3+45`) also belong to a small
# bucket and can be met there; we count them separately.

# %%
excl = eval_set.train_exclusions()
stream = {}
for c in P.curricula:
    maker = BatchMaker(c, P.fmt, P.max_digits, P.batch_size, np.random.default_rng([P.seed, 7]),
                       exclude=excl, replay=P.replay, mixed_replay=P.mixed_replay)
    seen, steps, t_batches, keys, per_stage = 0, 0, 0.0, [], {}
    while seen < P.total_tokens:
        t0 = time.perf_counter()
        toks, ans = maker.next_batch(seen / P.total_tokens)
        t_batches += time.perf_counter() - t0
        n = int((toks != PAD).sum())
        name = maker.sched[maker.last_stage].name
        per_stage[name] = per_stage.get(name, 0) + n
        seen += n
        steps += 1
        keys.append(tasks.problem_key(*maker.last_problems)[maker.last_buckets == "general"])
        if steps == 1:  # the rendered text says the same problems the maker reports
            texts = [decode(r).split("=")[0].split("+") for r in toks]
            assert [int(x) for x, _ in texts] == maker.last_problems[0].tolist()
    stream[c] = {"tokens": seen, "steps": steps, "batch_s": t_batches, "per_stage": per_stage,
                 "keys": np.concatenate(keys)}

# %% tags=["nbval-check-output"]
general_eval = eval_set.keys("general")
rows = []
for c, s in stream.items():
    overlap = int(np.isin(s["keys"], general_eval).sum())
    rows.append([c, f"{s['tokens']:,}", s["steps"], overlap,
                 ", ".join(f"{k} {v / s['tokens']:.2f}" for k, v in s["per_stage"].items())])
print(table(rows, ["curriculum", "tokens", "steps", "general eval problems drawn from general",
                   "token share per stage"]))
small = np.concatenate([tasks.problem_key(*tasks.enumerated(b))
                        for b in ("d1", "d2_nocarry", "d2_carry", "mixed")])
print(f"general eval problems that also belong to a small bucket: "
      f"{int(np.isin(general_eval, small).sum())} of {len(general_eval)}")
budget_gap = max(s["tokens"] for s in stream.values()) - min(s["tokens"] for s in stream.values())
print(f"largest budget gap between arms: {budget_gap} tokens "
      f"({budget_gap / P.total_tokens:.2%} of the budget; at most one batch)")

# %% tags=["nbval-ignore-output"]
for c, s in stream.items():
    per = s["batch_s"] / s["steps"] * 1e3
    print(f"{c}: {per:.2f} ms per batch of {P.batch_size} rows (numpy, vectorized)")

# %% tags=["nbval-ignore-output"]
metrics = {
    "bucket_sizes": {b: tasks.bucket_size(b, P.max_digits) for b in tasks.BUCKETS},
    "eval_sizes": {b: len(v[0]) for b, v in eval_set.problems.items()},
    "tokens": {c: s["tokens"] for c, s in stream.items()},
    "general_eval_overlap": {c: int(np.isin(s["keys"], general_eval).sum()) for c, s in stream.items()},
    "ms_per_batch": {c: 1e3 * s["batch_s"] / s["steps"] for c, s in stream.items()},
}
artifacts.write_json(out_dir / "metrics.json", metrics)

# %% tags=["nbval-check-output"]
max_row = tasks.block_size_for(P.max_digits, P.fmt)
print(checks([
    ("no general eval problem is drawn from general by either arm",
     all(v == 0 for v in metrics["general_eval_overlap"].values())),
    ("the arms' token budgets differ by at most one batch of the longest rows",
     budget_gap <= P.batch_size * max_row),
    ("every schedule covers the whole budget, from 0 to 1",
     all(abs(st[0].start) < 1e-12 and abs(st[-1].end - 1) < 1e-12 for st in scheds.values())),
    ("every stage's batch mix sums to 1",
     all(abs(sum(w for _, w in s.weights) - 1) < 1e-9 for st in scheds.values() for s in st)),
    ("every bucket supplies at most its eval capacity",
     all(len(v[0]) <= tasks.eval_capacity(b, P.max_digits) for b, v in eval_set.problems.items())),
]))

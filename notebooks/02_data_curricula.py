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
# # 02 · Data, curricula, and what is never trained on
#
# **Question.** What exactly do the SFT arms and RL see, what is held out for testing, and is
# the comparison fair?
#
# **Method.** Show examples of every evaluation bucket in every answer format; show the
# train/test split of every bucket; draw the stage schedule of the `control` and `targeted`
# curricula; then replay every training path (both curricula, every format arm, the RL
# prompts) over its whole budget and check that (1) no held-out or reserved evaluation
# problem is ever drawn and (2) the SFT arms spend the same token budget.

# %% tags=["parameters"]
seed = 0
fmt = "reversed"
formats = ["plain", "reversed", "scratchpad"]
max_digits = 3
curricula = ["control", "targeted"]
buckets = ["d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "mixed3", "general", "ood_long"]
total_tokens = 150000
batch_size = 128
replay = 0.2
mixed_replay = 0.15
n_eval = 100
eval_seed = 1234
rl_steps = 12
rl_prompts = 16
rl_buckets = ["general", "mixed", "low_sum"]
run_dir = "runs/notebooks/seed-0"

# %%
from reasonlib.train import params

P = params.collect(globals())

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown

from reasonlib.train import artifacts, rl
from reasonlib.report import plots
from reasonlib.study import records
from reasonlib.core import tasks
from reasonlib.train.curriculum import BatchMaker, stages
from reasonlib.report.tables import checks, table
from reasonlib.core.tokenizer import PAD, decode

out_dir = artifacts.resolve(P.run_dir) / "02_data_curricula"
eval_set = tasks.make_eval_set(P.max_digits, P.n_eval, P.eval_seed, buckets=P.buckets, seen=True)
excl = tasks.train_exclusions(P.max_digits, P.eval_seed)

# %% [markdown]
# ## The buckets, in every format
#
# The evaluation set is fixed by its own seed (`eval_seed`), not by the training seed, so
# every arm and every seed is scored on the same problems.

# %% tags=["nbval-check-output"]
rows = []
for b in P.buckets:
    a, c = eval_set.problems[b]
    rows.append([b, f"{tasks.bucket_size(b, P.max_digits):,}"]
                + [f"{a[0]}+{c[0]}={tasks.answer_text(int(a[0]), int(c[0]), f)}" for f in tasks.FORMATS])
print(table(rows, ["bucket", "problems", *tasks.FORMATS]))

# %% [markdown]
# ## Train and test: what no training path ever draws
#
# A bucket with at most 10,000 problems is *small*. A fixed 30% of every small bucket but
# `d1` is **held out** (drawn from `eval_seed`, per stratum, so `low_sum` gets exactly the
# held-out `mixed` problems with a sum below 30): no curriculum stage, replay, format arm or
# RL prompt ever draws it, and every metric on the bucket is computed on it. A *large* bucket
# (`general`, `mixed3`, `ood_long` at 3 digits) is sampled; its evaluation problems (up to
# 20,000, all an eval set may use) are **reserved** and never drawn for training either.
# `d1` (100 problems) is trained and evaluated in full: it is the base skill, and the table
# says so. The *seen* column counts problems training may draw; 03 scores a sample of them
# beside the held-out ones, labelled, to separate skill from memory.

# %% tags=["nbval-check-output"]
split = {}
for b in P.buckets:
    size = tasks.bucket_size(b, P.max_digits)
    small = size <= tasks.LARGE_BUCKET
    if small:
        keys = tasks.problem_key(*tasks.enumerated(b, P.max_digits))
        never = int(tasks.in_sorted(keys, excl).sum())
    else:
        never = int(tasks.in_sorted(tasks.problem_key(*tasks._eval_problems(
            b, P.max_digits, min(tasks.eval_capacity(b, P.max_digits), tasks.MAX_RESERVED),
            P.eval_seed)), excl).sum())
    held = eval_set.held_out(b)
    split[b] = {"problems": size, "held_out": never, "eval": len(held),
                "eval_held_out": int(held.sum()), "seen": len(eval_set.seen.get(b, ([], []))[0])}
    rule = ("trained and evaluated in full" if never == 0 else
            "30% held out, 10% validation" if small else "eval and validation problems reserved")
    rows_ = [b, f"{size:,}", rule, f"{never:,}", f"{size - never:,}" if small else "rest",
             f"{len(held):,}", f"{int(held.sum()):,}", f"{split[b]['seen']:,}" if split[b]['seen'] else ""]
    split[b]["row"] = rows_
print(table([v.pop("row") for v in split.values()],
            ["bucket", "problems", "rule", "never trained", "trainable", "eval set",
             "of them held out", "seen sample"]))

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
# ## Every training path, replayed: nothing held out is drawn, budgets are equal
#
# Each SFT arm's batch stream is replayed over its full token budget with the generator the
# SFT loop uses (`[seed, 7]`): both curricula in this run's format, and the targeted
# curriculum in every other format (03's format arms). The RL prompts are drawn as the RL
# loop draws them (05 and 06 use the same stream), for `rl_steps` updates. Every drawn
# problem is checked against the held-out and reserved sets.

# %%
paths = [(c, P.fmt) for c in P.curricula]
if "targeted" in P.curricula:
    paths += [("targeted", f) for f in P.formats if f != P.fmt]
stream = {}
for c, f in paths:
    maker = BatchMaker(c, f, P.max_digits, P.batch_size, np.random.default_rng([P.seed, 7]),
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
        keys.append(tasks.problem_key(*maker.last_problems))
        if steps == 1:  # the rendered text says the same problems the maker reports
            texts = [decode(r).split("=")[0].split("+") for r in toks]
            assert [int(x) for x, _ in texts] == maker.last_problems[0].tolist()
    k = np.concatenate(keys)
    stream[f"SFT {c}, {f}"] = {"tokens": seen, "steps": steps, "batch_s": t_batches,
                               "per_stage": per_stage, "draws": len(k),
                               "forbidden": int(tasks.in_sorted(k, excl).sum())}
rng = np.random.default_rng([P.seed, 11])   # the RL loop's prompt generator
k = np.concatenate([tasks.problem_key(*rl.draw_prompts(P.rl_buckets, P.rl_prompts, rng, P.max_digits, excl))
                    for _ in range(P.rl_steps)])
stream["RL prompts"] = {"draws": len(k), "forbidden": int(tasks.in_sorted(k, excl).sum())}

# %% tags=["nbval-check-output"]
print(table([[p, f"{s['draws']:,}", s["forbidden"], f"{s['tokens']:,}" if "tokens" in s else "",
              s.get("steps", ""),
              ", ".join(f"{k} {v / s['tokens']:.2f}" for k, v in s["per_stage"].items()) if "per_stage" in s else ""]
             for p, s in stream.items()],
            ["training path", "problems drawn", "held-out or reserved drawn", "tokens", "steps",
             "token share per stage"]))
sft_paths = [s for p, s in stream.items() if p.startswith("SFT") and p.endswith(P.fmt)]
budget_gap = max(s["tokens"] for s in sft_paths) - min(s["tokens"] for s in sft_paths)
print(f"largest budget gap between the curricula: {budget_gap} tokens "
      f"({budget_gap / P.total_tokens:.2%} of the budget; at most one batch)")

# %% tags=["nbval-ignore-output"]
for p, s in stream.items():
    if "steps" in s:
        print(f"{p}: {s['batch_s'] / s['steps'] * 1e3:.2f} ms per batch of {P.batch_size} rows (numpy, vectorized)")

# %% tags=["nbval-ignore-output"]
rec = {}
for b, v in split.items():
    for k_, x in v.items():
        rec[f"split/{b}/{k_}"] = x
for p, s in stream.items():
    rec[f"stream/{p}/draws"] = s["draws"]
    rec[f"stream/{p}/forbidden"] = s["forbidden"]
    if "tokens" in s:
        rec[f"stream/{p}/tokens"] = s["tokens"]
records.write(out_dir / "metrics.json", "02_data_curricula", P.seed, rec, vars(P),
              timing={"ms_per_batch": {p: 1e3 * s["batch_s"] / s["steps"] for p, s in stream.items() if "steps" in s}})
print("wrote", artifacts.shown(out_dir / "metrics.json"))

# %% tags=["nbval-check-output"]
max_row = tasks.block_size_for(P.max_digits, P.fmt)
print(checks([
    ("no training path drew a held-out or reserved problem", all(s["forbidden"] == 0 for s in stream.values())),
    ("every small bucket but d1 has a held-out part",
     all(split[b]["held_out"] > 0 for b in P.buckets if b != "d1" and split[b]["problems"] <= tasks.LARGE_BUCKET
         and not (b == "general" and P.max_digits == 1))),
    ("every eval problem outside d1 is held out or reserved",
     all(split[b]["eval_held_out"] == split[b]["eval"] for b in P.buckets if split[b]["held_out"])),
    ("low_sum's held-out part is the held-out mixed problems with a sum below 30",
     "low_sum" not in P.buckets or np.array_equal(
         np.sort(tasks.problem_key(*tasks._split("low_sum", P.max_digits, P.eval_seed)[0])),
         np.sort([k for k in tasks.problem_key(*tasks._split("mixed", P.max_digits, P.eval_seed)[0])
                  if k // 10**9 + k % 10**9 < 30]))),
    ("the curricula's token budgets differ by at most one batch of the longest rows",
     budget_gap <= P.batch_size * max_row),
    ("every schedule covers the whole budget, from 0 to 1",
     all(abs(st[0].start) < 1e-12 and abs(st[-1].end - 1) < 1e-12 for st in scheds.values())),
    ("every stage's batch mix sums to 1",
     all(abs(sum(w for _, w in s.weights) - 1) < 1e-9 for st in scheds.values() for s in st)),
]))

# %% [markdown]
# ## What this run shows

# %%
n_draws = sum(s["draws"] for s in stream.values())
held_text = ", ".join(f"{b} {v['held_out']:,}" for b, v in split.items()
                      if v["held_out"] and v["problems"] <= tasks.LARGE_BUCKET)
Markdown(f"Over {len(stream)} training paths ({', '.join(stream)}), {n_draws:,} problems were drawn "
         f"and none of the {len(excl):,} held-out or reserved problems was among them. Every "
         f"metric on a small bucket is computed on its held-out part ({held_text} problems); "
         f"d1's 100 problems are trained and evaluated in full. The two curricula spend the same "
         f"token budget to within {budget_gap} tokens.")

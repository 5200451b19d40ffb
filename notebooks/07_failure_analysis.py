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
# # 07 · Failure analysis
#
# **Question.** When the models are wrong, *how* are they wrong? The seed study reports
# digit substitution (`12+3 -> 18`) and operand duplication (`12+3 -> 123`) on mixed-digit
# prompts. Which failures does the targeted curriculum remove, and which survive RL?
#
# **Method.** Answer every problem of a fixed slice of the evaluation set (`n_fail` per
# bucket) greedily with four checkpoints, before and after the RL stage for each
# curriculum: SFT control, SFT+RL control (the "early RL" arm of 05), SFT targeted and
# SFT+RL targeted. Every wrong answer is classified by a pure function
# (`reasonlib.core.failures.classify`): format failure, operand duplication, carry error,
# dropped or extra digit, digit substitution, other. Counts per bucket and checkpoint are
# shown as a heatmap; a static table lists concrete examples; an interactive explorer
# (needs a live kernel) shows samples and per-token probabilities. The static views carry
# the story when the notebook is read without a kernel.

# %% tags=["parameters"]
seed = 0
fmt = "reversed"
max_digits = 3
curricula = ["control", "targeted"]
buckets = ["d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "mixed3", "general", "ood_long"]
n_layer = 2
n_head = 4
n_embd = 64
pos = "rope"
pos_offset = 0
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
eval_seed = 1234
n_samples = 16
ks = [1, 2, 4, 8, 16]
temperature = 1.0
top_k = 0
n_passk = 50
rl_steps = 12
rl_prompts = 16
rl_group = 4
rl_lr = 0.0003
rl_std_normalize = False
rl_buckets = ["general", "mixed", "low_sum"]
rl_dynamic = False
rl_max_draws = 4
rl_mix = "uniform"
rl_mix_floor = 0.05
rl_eval_every = 5
beta = 0.05
n_fail = 40
fail_samples = 4
run_dir = "runs/notebooks/seed-0"
artifacts_dir = "runs/notebooks/artifacts"
device = "cpu"

# %%
from reasonlib.train import params

P = params.collect(globals())

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from IPython.display import Markdown

from pathlib import Path

from reasonlib.train import artifacts, rl, sft
from reasonlib.report import serve, explorer, findings, summary
from reasonlib.core import failures, tasks
from reasonlib.study import records as metric_records  # `records` below are the explorer's
from reasonlib.core.runtime import resolve_device
from reasonlib.report.tables import checks, table

out_dir = artifacts.resolve(P.run_dir) / "07_failure_analysis"
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(P.device)
root = artifacts.resolve(P.artifacts_dir)
eval_set = tasks.make_eval_set(P.max_digits, P.n_fail, P.eval_seed, buckets=P.buckets)
n_per = {b: len(v[0]) for b, v in eval_set.problems.items()}

# %% [markdown]
# ## The taxonomy
#
# Checked in this order; the first rule that fits names the failure:

# %% tags=["nbval-check-output"]
examples = [(12, 3, None), (12, 3, 123), (47, 85, 122), (12, 3, 5), (12, 3, 18), (12, 3, 40),
            (12, 3, 15)]
print(table([[f"{a}+{b}", "(unparsable)" if p is None else p, failures.classify(a, b, p)]
             for a, b, p in examples], ["problem", "answer", "class"]))

# %% tags=["nbval-ignore-output"]
models = {}
for c in P.curricula:       # before and after the RL stage, for each SFT curriculum
    cfg = sft.config_from_params(P, c)
    r = sft.get_or_train(cfg, root, device=dev)
    q = rl.get_or_train(rl.config_from_params(P, cfg), r.model, cfg, root, device=dev)
    models[f"SFT {c}"], models[f"SFT+RL {c}"] = r.model, q.model
    for name, run in ((f"SFT {c}", r), (f"SFT+RL {c}", q)):
        print(f"{name}: " + artifacts.describe_provenance(run.provenance).replace("\n", "\n   "))
records = explorer.collect_records(models, eval_set, P.fmt, n_samples=P.fail_samples,
                                   temperature=P.temperature, seed=P.seed)
print(len(records), "records")

# %% [markdown]
# ## Wrong answers per bucket and checkpoint
#
# Counts of greedy answers in each failure class (`n_fail` problems per bucket).

# %%
counts, rows = explorer.count_table(records)
print(table([[ck, b, sum(counts[(ck, b)].values())] + [counts[(ck, b)][c] for c in failures.CLASSES]
             for ck, b in rows], ["checkpoint", "bucket", "wrong", *failures.CLASSES]))

# %%
mat = np.array([[counts[k][c] for c in failures.CLASSES] for k in rows])
fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.5))
sns.heatmap(mat, annot=True, fmt="d", cmap="rocket_r", cbar=False, ax=ax,
            xticklabels=failures.CLASSES, yticklabels=[f"{ck} · {b} (n={n_per[b]})" for ck, b in rows])
ax.set_title(f"wrong greedy answers by class on held-out problems, seed {P.seed} "
             f"(up to {P.n_fail} per bucket)")
fig.tight_layout()
fig.savefig(out_dir / "failure_heatmap.png", dpi=120)
plt.show()

# %% [markdown]
# ## Concrete examples
#
# Up to two wrong answers per checkpoint and class, preferring the mixed-digit buckets
# where the seed saw `12+3 -> 18` and `12+3 -> 123`.

# %%
order = {b: i for i, b in enumerate(["low_sum", "mixed", "general", "d2_carry", "d2_nocarry",
                                     "d1", "ood_long"])}
ex_rows = []
for ck in models:
    for cls in failures.CLASSES:
        hits = sorted((r for r in records if r["checkpoint"] == ck and r["class"] == cls),
                      key=lambda r: order.get(r["bucket"], 99))[:2]
        for r in hits:
            ex_rows.append([ck, cls, r["bucket"], f"{r['a']}+{r['b']}={r['greedy']!r}",
                            tasks.parse_answer(r["greedy"], P.fmt), r["a"] + r["b"],
                            ", ".join(repr(t) for t in r["samples"][:3])])
print(f"answers as generated (format {P.fmt}); 'reads as' is the parsed integer")
print(table(ex_rows, ["checkpoint", "class", "bucket", "greedy answer", "reads as", "sum",
                      "first samples"]) if ex_rows else "no wrong answers")

# %% [markdown]
# ## Explorer (live kernel)
#
# Filter by checkpoint, bucket and error class, then step through the matching problems:
# the prompt, the greedy answer and its class, the per-token probability of that answer
# (red = unlikely) as numbers and as a bar strip, the model's top alternatives at the first
# wrong token, whether training could have seen the problem, the sampled answers with their
# classes, and the line that reruns this analysis. Without a kernel this cell shows nothing;
# the tables and the heatmap above carry the same information, and `python -m reasonlib
# explore` serves this explorer for a finished run as a web page.

# %% tags=["nbval-ignore-output"]
profile = Path(P.run_dir).parent.name   # runs/<profile>/seed-<s>: the rerun line names it
ex = explorer.Explorer(records, models, fmt=P.fmt,
                       command=lambda rec: serve.rerun_command(profile, P.seed, rec))
serve.save_records(out_dir / serve.RECORDS, records)   # what `python -m reasonlib explore` serves
ex.widget

# %% tags=["nbval-ignore-output"]
slug = {"SFT control": "sft-control", "SFT+RL control": "rl-control", "SFT targeted": "sft-targeted",
        "SFT+RL targeted": "rl-targeted"}
rec = {}
study_buckets = [b for b in summary.TAXONOMY_BUCKETS if b in P.buckets]
for ck, name in slug.items():
    if ck not in models:
        continue
    for (c_, b), row in counts.items():
        if c_ != ck:
            continue
        for cls, k in row.items():
            rec[f"fail/{name}/{b}/{cls}"] = k
        rec[f"fail/{name}/{b}/wrong"] = sum(row.values())
        rec[f"fail/{name}/{b}/n"] = n_per[b]
    mine = [r for r in records if r["checkpoint"] == ck]
    # finding 7a: each distinct problem once, only where operands differ in length
    metric_records.mean_with_problems(f"fail/{name}/study_errors",
                                      failures.study_error_flags(mine, study_buckets), rec)
    metric_records.mean_with_problems(f"fail/{name}/format", [r["class"] == "format" for r in mine], rec)
metrics_07 = {"notebook": "07_failure_analysis", "seed": P.seed, "params": vars(P), "records": rec}
metric_records.write(out_dir / "metrics.json", "07_failure_analysis", P.seed, rec, vars(P),
              checkpoints=list(models))
print("wrote", artifacts.shown(out_dir / "metrics.json"))

# %% tags=["nbval-check-output"]
print(checks([
    ("every record has a known class", all(r["class"] in failures.ALL for r in records)),
    ("one record per checkpoint and eval problem",
     len(records) == len(models) * sum(len(v[0]) for v in eval_set.problems.values())),
    ("the class counts add up to the wrong answers of each checkpoint and bucket",
     all(sum(counts[(ck, b)].values()) == sum(r["class"] != "correct" for r in records
                                              if r["checkpoint"] == ck and r["bucket"] == b)
         for ck, b in rows)),
]))

# %% [markdown]
# ## What this run shows
#
# Generated from this notebook's records by the cross-seed summary's evaluator, for this
# seed only (95% bootstrap over the held-out problems).

# %%
Markdown(findings.story_markdown(findings.this_run("07_failure_analysis", metrics_07)))

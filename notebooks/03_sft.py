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
# # 03 · Supervised fine-tuning on two curricula
#
# **Question.** Does the targeted curriculum (with an explicit `mixed` stage) teach a small
# Transformer addition better than the control curriculum, for the same token budget?
#
# **Method.** Train one model per curriculum from the same seed and the same token budget:
# loss on answer tokens only, AdamW, linear warmup then cosine decay, gradient clipping.
# A fixed slice of the evaluation set is probed with greedy decoding during training; at the
# end, every bucket of the full evaluation set is scored by greedy exact match and parse
# rate, with Wilson 95% intervals over problems. Models are stored under a hash of their
# config: a rerun with the same parameters loads them instead of training again.

# %% tags=["parameters"]
seed = 0
fmt = "reversed"
formats = ["plain", "reversed", "scratchpad"]
max_digits = 3
curricula = ["control", "targeted"]
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
run_dir = "runs/notebooks/seed-0"
artifacts_dir = "runs/notebooks/artifacts"
device = "cpu"

# %%
from reasonlib.train import params

P = params.collect(globals())

# %%

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from reasonlib.train import artifacts, sft
from reasonlib.report import findings, plots
from reasonlib.core import metrics, tasks
from reasonlib.study import records
from reasonlib.core.runtime import resolve_device
from reasonlib.train.curriculum import stages
from reasonlib.report.tables import checks, ci, pct, table

out_dir = artifacts.resolve(P.run_dir) / "03_sft"
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(P.device)
cfgs = {c: sft.config_from_params(P, c) for c in P.curricula}
eval_set = tasks.make_eval_set(P.max_digits, P.n_eval, P.eval_seed, buckets=P.buckets, seen=True)
n_per = {b: len(v[0]) for b, v in eval_set.problems.items()}

# %% [markdown]
# ## Training
#
# Each arm is loaded from the artifact cache when a finished checkpoint of exactly this
# config exists, trained otherwise (an unfinished checkpoint is resumed). This notebook
# trains every SFT arm of the seed: the two curricula, and the targeted curriculum once per
# other answer format (below) and per other position scheme (08). The arms not in the cache
# train at the same time, one process and one torch thread each (the thread count the
# recipe was calibrated at); an arm's numbers do not depend on which others train beside it.
# The curriculum arms keep a checkpoint at every probe step: 05 starts RL from them.

# %% tags=["nbval-ignore-output"]
arms = sft.study_arms(P)
trained = dict(zip(arms, sft.get_or_train_many(arms.values(), artifacts.resolve(P.artifacts_dir),
                                               device=dev)))
runs = {c: trained[c] for c in P.curricula}
print(f"{sum(r.trained_now for r in trained.values())} of {len(arms)} SFT arms trained now "
      f"({', '.join(arms)}), with the {'packed' if P.packed else 'padded'} training step")
for c, r in runs.items():
    t = r.timing
    print(f"{c}: {'trained now' if r.trained_now else 'loaded from cache'} -> {artifacts.shown(r.path)}")
    print("   " + artifacts.describe_provenance(r.provenance).replace("\n", "\n   "))
    if t:
        print(f"   {r.history['step'][-1]} steps, {r.history['tokens'][-1]:,} tokens, "
              f"{t['loop_s']:.1f} s in the loop ({t.get('cpu_s', float('nan')):.1f} CPU s: less when arms "
              f"shared the cores), {r.history['tokens'][-1] / t['loop_s']:,.0f} tokens/s; "
              f"batch making {t['data_s']:.2f} s = {t['data_share']:.1%} of the SFT wall time")

# %% [markdown]
# Batch making (sampling problems and rendering tokens, all vectorized numpy) is a small
# share of the loop: the model's forward and backward passes dominate.

# %% tags=["nbval-check-output"]
print(table([[c, f"{r.history['tokens'][-1]:,}", r.history["step"][-1],
              ", ".join(f"{s.name} {s.end - s.start:.2f}" for s in stages(c, P.replay, P.mixed_replay))]
             for c, r in runs.items()],
            ["curriculum", "tokens", "steps", "stages (share of the budget)"]))

# %% [markdown]
# Tokens and steps follow from the data stream alone (numpy, seeded), so they are the same
# on every machine. The losses below come out of training: their last digits depend on the
# CPU's float kernels and the thread count (docs/reproducibility.md).

# %%
print(table([[c, f"{r.history['loss'][0]:.3f}", f"{np.mean(r.history['loss'][-20:]):.4f}"]
             for c, r in runs.items()],
            ["curriculum", "first loss", "final loss (mean of last 20)"]))

# %%
hists = {c: r.history for c, r in runs.items()}
fig = plots.loss_curves(hists)
fig.savefig(out_dir / "loss.png", dpi=120)
plt.show()

# %% [markdown]
# The loss jumps when a stage introduces a new bucket, then falls again. The probe below
# shows what each stage teaches and whether earlier skills survive later stages. It reads
# **validation** problems (`tasks.make_val_set`), disjoint from training and from every eval
# bucket, so the choices made from it (the transition steps below, 05's RL starts) never read
# a problem that is scored.

# %%
fig = plots.probe_curves(hists, P.buckets, P.eval_n)
fig.savefig(out_dir / "probe_accuracy.png", dpi=120)
plt.show()

# %% [markdown]
# ## When did the 3-digit transition happen?
#
# The first training step whose validation probe put `general` (greedy) at 50% and at 90%: when the
# model began and finished learning 3-digit carries. "never" is a run that missed it.

# %%
trans = {c: (sft.transition_step(r.history, 0.5), sft.transition_step(r.history, 0.9))
         for c, r in runs.items()}
print(table([[c, t50 if t50 is not None else "never", t90 if t90 is not None else "never",
              runs[c].history["step"][-1]] for c, (t50, t90) in trans.items()],
            ["curriculum", "step general >= 50%", "step general >= 90%", "steps in all"]))

# %% [markdown]
# ### The recipe on calibration seeds
#
# One seed cannot say how often the transition fails. `scripts/calibrate_sft.py` trains the
# targeted curriculum of a recipe (the `paper` profile's SFT parameters and its overrides) on
# calibration seeds 100 and up, never on the report seeds, and records the same two steps,
# the final `general` and the lengths past the trained ones. The committed runs
# (`reports/calibration/`), with each seed's probe curve:

# %%
from reasonlib.study import calibration

cal_rows = calibration.load(calibration.COMMITTED) if calibration.COMMITTED.is_dir() else []
if cal_rows:
    display(Markdown(calibration.markdown(cal_rows, P.max_digits)))
    for recipe in sorted({r["recipe"] for r in cal_rows}):
        rs = [r for r in cal_rows if r["recipe"] == recipe]
        fig = plots.transition_curves(rs, f"recipe {recipe}: general during targeted SFT, "
                                          f"{len(rs)} calibration seeds")
        fig.savefig(out_dir / f"calibration_{recipe}.png", dpi=120)
        plt.show()
else:
    print("no calibration runs committed under reports/calibration/")

# %% [markdown]
# ### Targeted v2 on calibration seeds
#
# `targeted_v2` adds a stage of balanced operand-length pairs up to D (the study's remedy,
# explicit mixed-digit training, generalised), with the pair (1, D) withheld from every
# training path. Its goal per seed, on validation problems: >= 99% on every trained cell of the
# length-pair grid (08), >= 97% on the withheld cell, >= 99% on `mixed3` and `general`. The
# committed runs (`reports/calibration/grid/`, docs/calibration.md):

# %%
grid_rows = calibration.load(calibration.GRID) if calibration.GRID.is_dir() else []
v2_rows = [r for r in grid_rows if r["curriculum"] == "targeted_v2"]
print(calibration.grid_markdown(v2_rows) if v2_rows else
      "no targeted v2 runs committed under reports/calibration/grid/")

# %% [markdown]
# ## Final evaluation: greedy exact match per bucket, on held-out problems
#
# Every bucket is scored on problems no training path could draw (02): the held-out 30% of
# a small bucket, the reserved eval problems of a large one; `d1` alone is trained and scored
# in full. `n` problems per bucket (up to `n_eval`). Brackets are Wilson 95% intervals over
# problems, for this seed only.

# %%
final = {c: metrics.greedy_eval(r.model, eval_set, P.fmt) for c, r in runs.items()}
seen_set = tasks.EvalSet(eval_set.seen, P.max_digits, P.eval_seed)
seen_final = {c: metrics.greedy_eval(r.model, seen_set, P.fmt) for c, r in runs.items()}

# %%
rows = []
for b in P.buckets:
    rows.append([b, final[P.curricula[0]][b]["n"]]
                + [ci(final[c][b]["acc"], final[c][b]["acc_ci"]) for c in P.curricula]
                + [pct(final[c][b]["parse"]) for c in P.curricula])
print(f"greedy accuracy % [95% CI], seed {P.seed}, format {P.fmt}")
print(table(rows, ["bucket", "n", *[f"acc {c}" for c in P.curricula],
                   *[f"parse {c}" for c in P.curricula]]))

# %%
fig = plots.bucket_bars({c: {b: (final[c][b]["acc"], *final[c][b]["acc_ci"]) for b in P.buckets}
                         for c in P.curricula},
                        "greedy exact match", f"SFT on held-out problems, seed {P.seed} (Wilson 95%)",
                        n=n_per)
fig.savefig(out_dir / "final_accuracy.png", dpi=120)
plt.show()

# %% [markdown]
# ## Skill or memory? Held-out against seen problems
#
# The same models on problems training could draw (a sample of each small bucket's other
# 70%), beside the held-out ones. A model that memorised its training problems scores well
# on *seen* and worse on *held-out*; a learned skill scores alike on both.

# %%
print(table([[b, c, f"{pct(final[c][b]['acc'])} (n={n_per[b]})",
              f"{pct(seen_final[c][b]['acc'])} (n={len(eval_set.seen[b][0])})",
              f"{100 * (seen_final[c][b]['acc'] - final[c][b]['acc']):+.1f}"]
             for b in P.buckets if b in eval_set.seen for c in P.curricula],
            ["bucket", "curriculum", "held-out %", "seen %", "seen - held-out (points)"]))

# %% [markdown]
# ## What the mistakes look like
#
# A few wrong answers per arm on the hardest in-distribution buckets, with the correct sum.

# %%
for c in P.curricula:
    for b in [x for x in ("low_sum", "general") if x in P.buckets]:
        a, bb = eval_set.problems[b]
        ans = final[c][b]["answers"]
        wrong = [(int(x), int(y), t) for x, y, t in zip(a, bb, ans)
                 if tasks.parse_answer(t, P.fmt) != x + y][:4]
        shown = ", ".join(f"{x}+{y}={t!r} (parsed {tasks.parse_answer(t, P.fmt)}, want {x + y})"
                          for x, y, t in wrong)
        print(f"{c:<9} {b:<8} {shown or 'no mistakes'}")

# %% [markdown]
# ## The foundation targets
#
# For the `quick` profile the targeted model must reach ≥ 95% on `d1`, `d2_nocarry` and
# `d2_carry`, ≥ 80% on `general`, and a parse rate ≥ 99% over the in-distribution buckets
# (all but `ood_long`). The smoke profile is far too small to meet them; the check is
# printed either way.

# %%
arm = "targeted" if "targeted" in P.curricula else P.curricula[-1]
in_dist = [b for b in P.buckets if b != "ood_long"]
parse_all = (sum(final[arm][b]["parse"] * final[arm][b]["n"] for b in in_dist)
             / sum(final[arm][b]["n"] for b in in_dist))
targets = [(b, final[arm][b]["acc"], 0.95) for b in ("d1", "d2_nocarry", "d2_carry") if b in P.buckets]
if "general" in P.buckets:
    targets.append(("general", final[arm]["general"]["acc"], 0.80))
targets.append(("parse rate", parse_all, 0.99))
print(f"{arm} SFT model:")
print(table([[k, pct(v), pct(t, 0), "met" if v >= t else "NOT met"] for k, v, t in targets],
            ["measure", "value %", "target %", ""]))

# %% [markdown]
# ## Beyond the study: does the answer format matter?
#
# **Question.** Is what the model learns an addition procedure, or an answer format fitted
# to the lengths it saw? **Method.** The targeted curriculum, the same seed and the same
# token budget, once per answer format in `formats`: `plain` writes the sum
# most-significant digit first (a carry must be known before the digit it changes is
# written); `reversed` writes it least-significant first (each digit needs only the carry
# from the digit already written); `scratchpad` writes each column's digit sum and carry,
# then the sum. Longer answers mean fewer problems for the same tokens. `ood_long` has
# operands one digit longer than any training problem: a learned procedure would carry
# over, a memorised format would not. The arm in this run's own format (`fmt`) is the
# targeted model above, not trained again.

# %% tags=["nbval-ignore-output"]
fmt_arm = "targeted"
fmt_runs = {}
for f in P.formats:
    if f == P.fmt:
        fmt_runs[f] = trained[fmt_arm]
        continue
    fmt_runs[f] = trained[f"format {f}"]
    print(f"{fmt_arm}, format {f}: {'trained now' if fmt_runs[f].trained_now else 'loaded from cache'}"
          f" -> {artifacts.shown(fmt_runs[f].path)}")
fmt_final = {f: final[fmt_arm] if f == P.fmt and fmt_arm in final else metrics.greedy_eval(r.model, eval_set, f)
             for f, r in fmt_runs.items()}

# %% tags=["nbval-check-output"]
print(table([[f, f"{fmt_runs[f].history['tokens'][-1]:,}", fmt_runs[f].history["step"][-1],
              tasks.answer_text(47, 85, f)] for f in P.formats],
            ["format", "tokens", "steps", "answer to 47+85"]))

# %%
print(f"{fmt_arm} curriculum, {P.total_tokens:,} tokens per format, seed {P.seed}: "
      f"greedy accuracy % [95% CI] (parse %)")
print(table([[b, fmt_final[P.formats[0]][b]["n"]]
             + [f"{ci(fmt_final[f][b]['acc'], fmt_final[f][b]['acc_ci'])} ({pct(fmt_final[f][b]['parse'])})"
                for f in P.formats] for b in P.buckets],
            ["bucket", "n", *P.formats]))

# %%
fig = plots.bucket_bars({f: {b: (fmt_final[f][b]["acc"], *fmt_final[f][b]["acc_ci"]) for b in P.buckets}
                         for f in P.formats},
                        "greedy exact match", f"{fmt_arm} curriculum per answer format, same token "
                        f"budget, seed {P.seed} (Wilson 95%)", n=n_per)
fig.savefig(out_dir / "formats.png", dpi=120)
plt.show()

# %% [markdown]
# Read `general` (in-distribution, carries across three columns) against `ood_long` (one
# digit longer than anything trained). A format that scores well on `general` but near zero
# on `ood_long` has learned the trained lengths, not a procedure that extends; parse rates
# show whether longer operands break the format itself.

# %% tags=["nbval-ignore-output"]
rec = {}
for c in P.curricula:
    for b in P.buckets:
        records.mean_with_problems(f"sft/{c}/{b}/acc", final[c][b]["correct"], rec)
        rec[f"sft/{c}/{b}/parse"] = final[c][b]["parse"]
        rec[f"sft/{c}/{b}/n"] = final[c][b]["n"]
        if b in seen_final[c]:
            rec[f"sft/{c}/{b}/seen_acc"] = seen_final[c][b]["acc"]
            rec[f"sft/{c}/{b}/seen_n"] = seen_final[c][b]["n"]
    h = runs[c].history
    rec[f"sft/{c}/step_general50"], rec[f"sft/{c}/step_general90"] = trans[c]
    rec.update({f"sft/{c}/tokens": h["tokens"][-1], f"sft/{c}/steps": h["step"][-1],
                f"sft/{c}/final_loss": float(np.mean(h["loss"][-20:]))})
for f in P.formats:
    for b in P.buckets:
        records.mean_with_problems(f"format/{f}/{b}/acc", fmt_final[f][b]["correct"], rec)
        rec[f"format/{f}/{b}/parse"] = fmt_final[f][b]["parse"]
    rec[f"format/{f}/tokens"] = fmt_runs[f].history["tokens"][-1]
    rec[f"format/{f}/steps"] = fmt_runs[f].history["step"][-1]
for k, v, t in targets:
    rec[f"targets/{k}/met"] = bool(v >= t)
metrics_03 = {"notebook": "03_sft", "seed": P.seed, "params": vars(P), "records": rec}
records.write(out_dir / "metrics.json", "03_sft", P.seed, rec, vars(P),
              timing={c: r.timing for c, r in runs.items()},
              checkpoint={c: r.path.parent.name for c, r in {**runs, **{f"format {f}": r for f, r in fmt_runs.items()}}.items()},
              provenance={c: r.provenance for c, r in runs.items()})
print("wrote", artifacts.shown(out_dir / "metrics.json"))

# %% tags=["nbval-check-output"]
toks = [r.history["tokens"][-1] for r in runs.values()]
print(checks([
    ("both curricula trained on the same budget, to within one batch",
     max(toks) - min(toks) <= P.batch_size * tasks.block_size_for(P.max_digits, P.fmt)),
    ("every format trained on the budget, to within one batch",
     all(abs(r.history["tokens"][-1] - P.total_tokens) <= P.batch_size * tasks.block_size_for(P.max_digits, f)
         for f, r in fmt_runs.items())),
    ("every arm's loss fell (mean of the last 20 steps below the first)",
     all(np.mean(r.history["loss"][-20:]) < r.history["loss"][0] for r in [*runs.values(), *fmt_runs.values()])),
    ("accuracy <= parse rate <= 1 in every bucket of every model",
     all(0 <= d[b]["acc"] <= d[b]["parse"] <= 1 for d in [*final.values(), *fmt_final.values()] for b in P.buckets)),
    ("every bucket scored on its eval problems",
     all(final[c][b]["n"] == len(eval_set.problems[b][0]) for c in P.curricula for b in P.buckets)),
]))

# %% [markdown]
# ## What this run shows
#
# Generated from this notebook's records by the same evaluator as the cross-seed summary (09),
# for this seed only: each verdict comes from a 95% bootstrap interval over the held-out
# problems (the two arms are scored on the same problems, so the difference is paired).

# %%
Markdown(findings.story_markdown(findings.this_run("03_sft", metrics_03)))

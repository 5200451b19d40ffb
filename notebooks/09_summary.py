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
# # 09 · Summary across seeds: which findings reproduce?
#
# **Question.** Over every seed of one profile, which of the seven claims of the study we
# re-create (`../shared/seed/`) hold up, on direction and on size, and what do the suite's own
# questions (headroom, RL against more SFT, forgetting, length, the transition) say?
#
# **Method.** Read the records notebooks 02-07 wrote for each seed folder
# `<run_root>/seed-*/` (nothing is scraped from cell outputs; a missing notebook is
# reported, a missing record of a present notebook is an error). Each finding is a small
# declarative record (`reasonlib.report.findings.FINDINGS`): the records it reads, how they make one
# quantity per seed, and the claim's threshold. One evaluator computes, for every finding,
#
# * the per-seed quantity (e.g. targeted minus control accuracy on held-out `low_sum`);
# * a 95% interval that never leaves the quantity's range, whose coverage is measured
#   (tests/test_stats.py): Student's t over seeds, widened where the studentized bootstrap
#   asks for more, or for "k of n seeds got there" the exact binomial interval; with a single
#   seed, the same interval over that seed's held-out problems, labelled *this seed only*;
# * the verdict, by the rule printed beside it. A study claim with a published effect is
#   **reproduced** when the interval lies above 0 and reaches into the band within a factor of
#   two of the study's effect, **smaller** (or **larger**) than the study's when it lies above 0
#   but below (above) that band, **not reproduced** when it lies below the band without lying
#   above 0, else **inconclusive**; a claim of no change is an equivalence test with a stated
#   margin. The suite's own questions are **supported** or **not supported**, never
#   "reproduced";
# * Holm's adjustment within each family, beside the raw verdict; the scoreboards count Holm's.
#
# Every metric on a small bucket is measured on its held-out problems (02); every choice
# made from data (transition steps, RL starts) read validation problems only.

# %% tags=["parameters"]
run_root = "runs/notebooks"

# %%
from reasonlib.train import params

P = params.collect(globals())

# %%
import csv
import json

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown

from reasonlib.train import artifacts
from reasonlib.report import findings, summary
from reasonlib.report import plots
from reasonlib.report.tables import checks

root = artifacts.resolve(P.run_root)
out_dir = root / "summary"
out_dir.mkdir(parents=True, exist_ok=True)
S = summary.summarize(root)

# %% [markdown]
# ## What was read
#
# The seed folders found, and any notebook whose metrics are missing (that seed is then
# left out of the findings that need them).

# %% tags=["nbval-check-output"]
print(summary.format_missing(S))

# %% [markdown]
# ## The answer first
#
# The two scoreboards, and what RL did from each kind of start (generated from the records).

# %% tags=["nbval-ignore-output"]
print("\n".join(S["story"]))

# %% [markdown]
# ## The study's claims, then our questions
#
# Each family with its own scoreboard: the study's number (its effect where it published
# one), ours with its 95% interval, the raw verdict and Holm's (with the adjusted p).

# %% tags=["nbval-ignore-output"]
from reasonlib.report.tables import table  # noqa: E402

for fam, head in (("study", "The study's claims"), ("suite", "Our questions")):
    print(f"{head}: {findings.scoreboard(S['findings'], fam)} (Holm)")
    print(table(summary.claim_rows(S, fam), summary.CLAIM_HEADERS))
    print()

# %% [markdown]
# ## Limitations
#
# Generated from the records: what this n cannot decide, where our starts differ from the
# study's, which position schemes build in structure, which machines trained the models.

# %% tags=["nbval-ignore-output"]
print("\n".join(f"* {x}" for x in S["limitations"]))

# %% [markdown]
# ## The findings
#
# One block per finding: the verdict, the claim, the study's number, ours (the per-seed
# quantity, its mean and 95% interval, every seed's value), the goal this re-creation set
# itself where it set one, and the rule that made the verdict.

# %%
print(summary.format_findings(S))

# %% [markdown]
# ## What the seeds say
#
# Generated from the same results: per finding, what was measured, how it compares with
# the study, and what the verdict means.

# %%
Markdown(findings.story_markdown(S["findings"]))

# %% [markdown]
# ## Headline measures beside the published ones
#
# Accuracies in percent (greedy exact match on held-out problems unless the row says
# otherwise), KL in nats per answer token. The study does not say whether its accuracies are
# greedy or sampled; we set them beside greedy accuracy. `n` is the number of seeds; every
# seed's value is listed, so a split outcome shows.

# %%
print(f"intervals: {summary.interval_word(S['n_seeds'])}")
print(summary.format_measures(S))

# %% [markdown]
# ## Failure taxonomy before and after each stage
#
# Wrong greedy answers of notebook 07 per checkpoint (each SFT curriculum, then the same
# model after RL), summed over the held-out `mixed`, `low_sum`, `mixed3` and `general`
# problems, mean over seeds: where the study saw `12+3 -> 18` (digit substitution) and
# `12+3 -> 123` (operand duplication).

# %%
print(summary.format_taxonomy(S))

# %%
classes = [c for c in summary.FAILURE_CLASSES
           if any((row[c] or 0) > 0 for row in S["taxonomy"].values())]   # all-zero classes dropped
if classes:
    cks = [ck for ck in summary.CHECKPOINTS if ck in S["taxonomy"]]
    mat = np.array([[np.nan if S["taxonomy"][ck][c] is None else S["taxonomy"][ck][c] for c in classes]
                    for ck in cks])
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 3, 2.8))
    ax.imshow(mat, cmap="Reds", aspect="auto")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(mat)), [summary.CHECKPOINT_NAMES[ck] for ck in cks])
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.1f}", ha="center", va="center", fontsize=8)
    dropped = [c for c in summary.FAILURE_CLASSES if c not in classes]
    ax.set_title(f"wrong greedy answers on held-out mixed, low_sum, mixed3, general, mean over "
                 f"{S['n_seeds']} seed{'s' * (S['n_seeds'] != 1)}"
                 + (f"\n(never seen: {', '.join(dropped)})" if dropped else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "taxonomy.png", dpi=110)
    plt.show()

# %% [markdown]
# ## The headroom curve over seeds
#
# Every RL start of 05 on every seed: RL's gain in greedy `general` against what the start
# could already do. Colours tell the start's type: a snapshot along the targeted SFT
# schedule, a finished curriculum arm, or a finished answer-format arm. The shaded band
# holds the starts with headroom that finding 3b pools; RL's reward can only carry signal
# where the start's pass@k is above 0.
#
# **Which predictor works?** Each panel fits a quadratic to the gain (black). Its R² on the
# data flatters it, with 3 coefficients and points that share seeds. The R² "held out by
# seed" predicts every seed's starts from a fit to the other seeds, and below 0 it predicts
# worse than the mean. The start's type, as a predictor on its own (its mean gain), is the
# yardstick.

# %%
hp = S["headroom"]
if hp:
    lo_b, hi_b = findings.HEADROOM
    inside = [p for p in hp if lo_b <= p["greedy"] <= hi_b]
    print(f"{len(hp)} RL starts over {len({p['seed'] for p in hp})} seeds; {len(inside)} with greedy "
          f"general in [{lo_b:.0%}, {hi_b:.0%}]"
          + (f": RL gain {100 * min(p['gain_greedy'] for p in inside):+.1f} to "
             f"{100 * max(p['gain_greedy'] for p in inside):+.1f} points, "
             f"{sum(p['gain_greedy'] >= findings.HEADROOM_GAIN for p in inside)} of {len(inside)} "
             f">= {100 * findings.HEADROOM_GAIN:.0f}" if inside else ""))
    by_type = {t: [100 * p["gain_greedy"] for p in hp if p["type"] == t] for t in summary.START_TYPES}
    print(table([[t, len(g), f"{np.mean(g):+.1f}", f"{min(g):+.1f} to {max(g):+.1f}"]
                 for t, g in by_type.items() if g],
                ["start type", "starts", "mean RL gain (points)", "range"]))
    fits = S["headroom_fits"]
    names = {"greedy": "greedy", "pass@k": f"pass@{hp[0]['k']}", "gap": f"pass@{hp[0]['k']} - greedy",
             "type": "the start's type"}
    rows = [[scope, names[x], f["n"], f"{f['r2']:.2f}", f"{f['r2_held_out']:.2f}",
             f"{f['r']:+.2f}" if "r" in f else ""]
            for scope, fs in fits.items() for x, f in fs.items()]
    if rows:
        print(table(rows, ["starts", "predictor", "n", "R²", "R² held out by seed", "Pearson r"]))
        for scope, fs in fits.items():
            best = max(fs, key=lambda x: fs[x]["r2_held_out"])
            rest = max((fs[x]["r2_held_out"] for x in fs if x != best), default=float("nan"))
            print(f"{'every start' if scope == 'all' else 'the snapshots alone'}: the best predictor "
                  f"held out by seed is {names[best]} (R² {fs[best]['r2_held_out']:.2f}, the next "
                  f"{rest:.2f})")
    else:
        print("too few starts or seeds to fit the gain (at least 3 seeds)")
    fig = plots.headroom_seeds(hp, findings.HEADROOM, f"the headroom curve, {S['n_seeds']} "
                               f"seed{'s' * (S['n_seeds'] != 1)}, every RL start of 05",
                               fits.get("all"))
    fig.savefig(out_dir / "headroom.png", dpi=110)
    plt.show()
else:
    print("no seed has 05's headroom records")

# %% [markdown]
# ## Does KL predict forgetting? (RL's Razor)
#
# Every RL run of 06 on every seed (the mid-transition start at every beta, and the
# finished control model at beta 0, 05's beta and the largest): the change in greedy
# accuracy on the buckets RL never practises, against the exact KL to the start on RL's
# own prompt buckets. Shenfeld et al. (2025) find that this KL predicts forgetting; the
# line's R², held out one seed at a time from 3 seeds, says how well it does here.

# %%
rz, rf = S["razor"], S["razor_fit"]
if rz and rf:
    for st in dict.fromkeys(p["start"] for p in rz):
        mine = [p for p in rz if p["start"] == st]
        print(f"{st}: {len(mine)} runs, KL {min(p['kl'] for p in mine):.4f}-{max(p['kl'] for p in mine):.4f}, "
              f"change {min(p['forget'] for p in mine):+.1f} to {max(p['forget'] for p in mine):+.1f} points")
    print(f"line: slope {rf['coef'][0]:+.1f} points per nat, intercept {rf['coef'][1]:+.1f} points; "
          f"R² {rf['r2']:.2f}"
          + (f", held out by seed {rf['r2_held_out']:.2f}" if "r2_held_out" in rf else
             " (fewer than 3 seeds: nothing held out)") + f"; Pearson r {rf['r']:+.2f}, n = {rf['n']} runs")
    fig = plots.razor(rz, rf, f"forgetting against KL on RL's prompts, {S['n_seeds']} "
                      f"seed{'s' * (S['n_seeds'] != 1)}, every RL run of 06")
    fig.savefig(out_dir / "razor.png", dpi=110)
    plt.show()
else:
    print("no seed has 06's razor records, or too few runs for a line")

# %% [markdown]
# ## The length-pair grid over seeds
#
# 08's grids (every SFT arm on every pair of operand lengths up to D+3), the mean greedy
# accuracy over seeds per cell: the trained lengths outlined, the withheld cell (1, D) boxed.

# %%
if S["grids"]:
    from reasonlib.core import tasks
    from reasonlib.study import grid, lengths
    D = S["setup"].get("max_digits") or 3
    mats = {}
    for arm, cells in S["grids"].items():
        n = max(len(v) for v in cells.values())
        mats[f"{arm} ({n} seed{'s' * (n != 1)})"] = grid.mean_matrix(cells)
    fig = plots.length_grids(mats, lengths.longest_trained(D), tasks.withheld_cell(D),
                             f"greedy exact match per length pair, mean over {S['n_seeds']} "
                             f"seed{'s' * (S['n_seeds'] != 1)} (08)")
    fig.savefig(out_dir / "grid.png", dpi=100)
    plt.show()
else:
    print("no seed has 08's grid records")

# %% [markdown]
# ## One figure per finding
#
# Each dot is one seed's value of a record the finding reads; lines join the same seed
# across them, so a paired effect shows as lines sloping the same way. Black: the mean over
# seeds with its 95% interval (with one seed: the value, and its interval over
# problems). Red stars: the study's numbers where it published one. A series that is zero
# in every seed is left out and named in the title.

# %%
for r in S["findings"]:
    if r["measured"] and r["parts"]:
        fig = plots.finding(r, S["seeds"], S["measures"])
        fig.savefig(out_dir / f"finding_{r['id']}.png", dpi=110)
        plt.show()

# %% [markdown]
# ## Every measure
#
# Every scalar record of every seed, one row per record, is in `summary/measures.csv`
# (too long to print: it holds each bucket of each model of each notebook).

# %% tags=["nbval-ignore-output"]
rows = []
for s_dir in summary.find_seeds(root):
    got, _ = summary.load_seed(s_dir)
    for nb, m in got.items():
        for name, v in m["records"].items():
            if not name.endswith("@problems") and isinstance(v, (int, float)) and not isinstance(v, bool):
                rows.append([s_dir.name, nb, name, v])
with open(out_dir / "measures.csv", "w", newline="") as fh:
    csv.writer(fh).writerows([["seed", "notebook", "record", "value"], *rows])
artifacts.write_json(out_dir / "metrics.json", S)
print(f"wrote {len(rows):,} measures to {artifacts.shown(out_dir / 'measures.csv')} and the summary "
      f"to {artifacts.shown(out_dir / 'metrics.json')}")

# %% tags=["nbval-check-output"]
print(checks([
    ("at least one seed was read", S["n_seeds"] == len(S["seeds"]) >= 1),
    ("every verdict is one its family allows (the study's claims: reproduced, smaller, larger, "
     "not reproduced, inconclusive; our questions: supported, not supported, inconclusive)",
     all(r["verdict"] in findings.VERDICTS[r["family"]] for r in S["findings"])),
    ("no finding counts more seeds than were read", all(r["n"] <= S["n_seeds"] for r in S["findings"])),
    ("every interval lies inside the range of its quantity", summary.intervals_in_range(S) == []),
    ("every measured finding has its figure",
     all((out_dir / f"finding_{r['id']}.png").is_file() for r in S["findings"] if r["measured"] and r["parts"])),
    ("metrics.json holds the summary as printed",
     artifacts.read_json(out_dir / "metrics.json") == json.loads(json.dumps(S))),
]))

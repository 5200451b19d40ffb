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
# # 08 · Summary across seeds: which findings reproduce?
#
# **Question.** Over every seed of one profile, which findings of the study we re-create
# (`../shared/seed/`) hold up, which do not, and which are still open?
#
# **Method.** Read the `metrics.json` that notebooks 01-07 wrote for each seed folder
# `<run_root>/seed-*/` (no cell outputs are scraped; a missing file is reported, not
# fatal). Per seed, collect the headline numbers; across seeds, give the mean and a 95%
# Student-t interval, `mean ± t(0.975, n-1) · sd / sqrt(n)`. The interval is over seeds,
# the unit of replication: it shows how much a number moves when everything is retrained
# with another seed (the per-notebook Wilson intervals cover eval problems for one seed).
# With a single seed it is undefined and shown as `n/a`.
#
# Each finding is reduced to one number per seed (a paired difference, a spread, or a
# count) and gets a verdict (full rules in `reasonlib.summary`):
#
# * **reproduced**: the 95% t-interval of that number lies on the finding's side
#   (e.g. targeted − control > 0);
# * **not reproduced**: it lies on the other side, or, with at least 3 seeds, the mean
#   points the other way;
# * **inconclusive**: anything else, and always with fewer than 2 seeds.
#
# Verdicts test the *direction* of each finding; how large our numbers are next to the
# published ones is in the table beside them.

# %% tags=["parameters"]
run_root = "runs/notebooks"

# %%
from reasonlib import params

P = params.collect(globals())

# %%
import json
import textwrap

import matplotlib.pyplot as plt
import numpy as np

from reasonlib import artifacts, summary
from reasonlib import plots  # noqa: F401  (the suite's figure style)
from reasonlib.tables import checks

root = artifacts.resolve(P.run_root)
out_dir = root / "summary"
out_dir.mkdir(parents=True, exist_ok=True)
S = summary.summarize(root)

# %% [markdown]
# ## What was read
#
# The seed folders found, and any notebook whose metrics are missing (that seed is then
# left out of the numbers that need them).

# %% tags=["nbval-check-output"]
print(summary.format_missing(S))

# %% [markdown]
# ## Headline numbers beside the published ones
#
# Accuracies in percent (greedy exact match unless the row says sampled or pass@8), failure
# counts as wrong greedy answers in the named buckets, KL in nats per answer token. The
# study does not say whether its accuracies are greedy or sampled; we set them beside
# greedy accuracy. `n` is the number of seeds that measured the row.

# %%
print(summary.format_headline(S))

# %% [markdown]
# ## Verdicts
#
# One line per finding: the verdict, the published numbers, and ours (the per-seed
# quantity the verdict is computed from, its mean, its 95% t-interval and every seed's value).

# %%
print(summary.format_findings(S))

# %% [markdown]
# ## The findings at a glance
#
# Numbered as in the study's list (5 has one row per bucket, 7 has the error classes and
# the format failures). "ours" gives means with their 95% t-intervals over seeds; "goal"
# is what this re-creation set out to reach beyond the direction of each finding, and
# "beats the study" means our mean's interval lies above the published number.

# %%
print(summary.format_findings_table(S))

# %% [markdown]
# ## Failure taxonomy before and after each stage
#
# Wrong greedy answers of notebook 07 per checkpoint (each SFT curriculum, then the same
# model after RL), mean over seeds. The class columns count the mixed-digit buckets
# (`mixed` + `low_sum`), where the study saw `12+3 -> 18` (digit substitution) and
# `12+3 -> 123` (operand duplication); the first column counts every bucket.

# %%
print(summary.format_taxonomy(S))

# %%
tax = summary.taxonomy_means(S)   # per checkpoint: wrong (all), wrong (mixed+low_sum), classes
mat = np.array([[np.nan if v is None else v for v in vals[2:]] for _, vals in tax])
fig, ax = plt.subplots(figsize=(8, 2.8))
ax.imshow(mat, cmap="Reds", aspect="auto")
ax.set_xticks(range(len(summary.FAILURE_CLASSES)), summary.FAILURE_CLASSES)
ax.set_yticks(range(len(tax)), [ck for ck, _ in tax])
for i in range(mat.shape[0]):
    for j in range(mat.shape[1]):
        if np.isfinite(mat[i, j]):
            ax.text(j, i, f"{mat[i, j]:.1f}", ha="center", va="center", fontsize=8)
ax.set_title(f"wrong greedy answers in mixed + low_sum by class, mean over {S['n_seeds']} "
             f"seed{'s' * (S['n_seeds'] != 1)}", fontsize=9)
fig.tight_layout()
fig.savefig(out_dir / "taxonomy.png", dpi=110)
plt.show()

# %% [markdown]
# ## One figure per finding
#
# Each dot is one seed; lines join the same seed across the arms being compared, so a
# paired effect shows as lines sloping the same way. Black bars are the mean with its 95%
# t-interval over seeds (only a mean when there is one seed); red stars are the study's
# published numbers (a red bar where it published a range). The title carries the verdict.

# %%
def finding_figure(f, S):
    arms = [S["metrics"][k] for k in f["arms"] if k in S["metrics"]]
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 1.7 * len(arms) + 1.5)), 3.8))
    scale = 100 if f["unit"] == "%" else 1
    for seed in S["seeds"]:
        ys = [m["per_seed"].get(seed) for m in arms]
        xs = [i for i, y in enumerate(ys) if y is not None]
        ax.plot(xs, [scale * ys[i] for i in xs], "o-", color="tab:grey", alpha=0.6, lw=0.8,
                ms=5)
    for i, m in enumerate(arms):
        if m["mean"] is not None:
            err = None if m["lo"] is None else [[scale * (m["mean"] - m["lo"])],
                                                [scale * (m["hi"] - m["mean"])]]
            ax.errorbar(i + 0.12, scale * m["mean"], yerr=err, fmt="s", color="black", capsize=4)
        pub = m["published"]
        if isinstance(pub, list):
            ax.errorbar(i - 0.12, scale * np.mean(pub), yerr=scale * (pub[1] - pub[0]) / 2,
                        fmt="*", color="tab:red", ms=10, capsize=4)
        elif pub is not None:
            ax.plot(i - 0.12, scale * pub, "*", color="tab:red", ms=12)
    handles = [plt.Line2D([], [], marker="o", color="tab:grey", lw=0.8, label="one seed"),
               plt.Line2D([], [], marker="s", color="black", ls="", label="mean, 95% t")]
    if any(m["published"] is not None for m in arms):
        handles.append(plt.Line2D([], [], marker="*", color="tab:red", ls="", ms=10, label="published"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    if f["unit"] == "%":
        ax.set_ylim(-3, 103)
    else:
        ax.set_ylim(-0.5, max(ax.get_ylim()[1], 1.0))
    ax.set_xticks(range(len(arms)), [textwrap.fill(m["label"], 22) for m in arms],
                  fontsize=8 if len(arms) <= 4 else 6.5)
    ax.set_xlim(-0.5, len(arms) - 0.5)
    ax.set_ylabel({"%": "percent", "count": "wrong answers", "nats": "nats"}[f["unit"]])
    ax.set_title(textwrap.fill(f"{f['verdict'].upper()}: {f['claim']}", 80) + "\n"
                 + textwrap.fill(f"n={f['n']} seed{'s' * (f['n'] != 1)}; published: "
                                 f"{f['published']}", 90), fontsize=8.5)
    fig.tight_layout()
    return fig


for f in S["findings"]:
    fig = finding_figure(f, S)
    fig.savefig(out_dir / f"finding_{f['id']}.png", dpi=110)
    plt.show()

# %% [markdown]
# ## Every measure
#
# The full list the headline table is cut from: every arm of notebook 05 before and after
# RL, pass@8 and KL for every beta of 06, and every failure count of 07 used above.

# %%
print(summary.format_headline(S, only_headline=False))

# %% tags=["nbval-ignore-output"]
artifacts.write_json(out_dir / "metrics.json", S)
print("wrote", out_dir / "metrics.json")

# %% tags=["nbval-check-output"]
print(checks([
    ("at least one seed was read", S["n_seeds"] == len(S["seeds"]) >= 1),
    ("every verdict is one of " + ", ".join(summary.VERDICTS),
     all(f["verdict"] in summary.VERDICTS for f in S["findings"])),
    ("no finding counts more seeds than were read", all(f["n"] <= S["n_seeds"] for f in S["findings"])),
    ("a finding measured on fewer than 2 seeds is inconclusive, with no interval",
     all(f["verdict"] == "inconclusive" and f["lo"] is None for f in S["findings"] if f["n"] < 2)),
    ("every finding has its figure", all((out_dir / f"finding_{f['id']}.png").is_file() for f in S["findings"])),
    ("every mean lies inside its interval", all(m["lo"] - 1e-12 <= m["mean"] <= m["hi"] + 1e-12
                                                for m in S["metrics"].values() if m["lo"] is not None)),
    ("every measure counts its seeds", all(m["n"] == len(m["per_seed"]) <= S["n_seeds"]
                                           for m in S["metrics"].values())),
    ("metrics.json holds the summary as printed",
     artifacts.read_json(out_dir / "metrics.json") == json.loads(json.dumps(S))),
]))

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
# # 06 · The beta scan
#
# **Question.** How much does the KL weight beta matter? The seed study found accuracy on
# `general` stable between 91.4% and 91.6% for beta in {0.02, 0.05, 0.10}. Is the KL term
# actually constraining the policy at those values, or is the policy staying close to its
# start for other reasons (few steps, a small learning rate)?
#
# **Method.** From one targeted SFT checkpoint, run the RL of 05 once per beta in `betas`
# (beta = 0 included: no reference forward at all), with the same budget and the same seed.
# The start is where RL moves the policy: the checkpoint of the targeted schedule where the
# probe's greedy `general` first reached 50% (`rl.moving_start`, 05's RL-vs-SFT start; its
# best probe in a run that never got there). From a finished model that already
# solves `general`, RL has nothing to do, every beta gives the same number and the KL term
# never binds. Every arm uses the same RL seed, so its prompts and sampling randomness
# come from the same streams (common random numbers): at the first step every arm draws
# the same prompts and, its policy being the start, the same samples; afterwards the
# prompts stay the same (with the uniform mix and without dynamic sampling, whose draws
# follow the policy) and the samples differ only where the policies do. The arms differ
# only in beta, which makes the comparison paired: a difference between two betas is not
# the luck of different draws. For each arm we measure greedy accuracy on every bucket
# (on the buckets RL never practises: forgetting), sampled accuracy and pass@8 on `general`,
# and the exact KL to the start on the policy's own samples. The KL term *binds* when, at a beta, the policy ends measurably
# closer to its start than at beta = 0: the 95% interval of KL(beta = 0) - KL(beta) lies
# above 0 (`reasonlib.report.findings.BINDS`, the same rule 09 applies across seeds).

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
betas = [0.0, 0.02, 0.05, 0.1, 0.5]
run_dir = "runs/notebooks/seed-0"
artifacts_dir = "runs/notebooks/artifacts"
device = "cpu"

# %%
from reasonlib.train import params

P = params.collect(globals())

# %%
import matplotlib.pyplot as plt
import numpy as np

import dataclasses

from IPython.display import Markdown

from reasonlib.train import artifacts, rl, sft
from reasonlib.report import findings, plots
from reasonlib.core import metrics, stats, tasks
from reasonlib.study import records
from reasonlib.core.runtime import resolve_device
from reasonlib.report.tables import checks, ci, pct, table

out_dir = artifacts.resolve(P.run_dir) / "06_beta_scan"
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(P.device)
root = artifacts.resolve(P.artifacts_dir)
eval_set = tasks.make_eval_set(P.max_digits, P.n_passk, P.eval_seed, buckets=P.buckets)
n_per = {b: len(v[0]) for b, v in eval_set.problems.items()}
unpractised = [b for b in ("d1", "d2_nocarry", "d2_carry") if b in P.buckets and b not in P.rl_buckets]

# %% tags=["nbval-ignore-output"]
jobs, info = rl.beta_scan_jobs(P, root, dev)   # beta = 0.05 is 05's RL-vs-SFT run (cached)
sft_run, at, arm = info["sft"], info["step"], info["arm"]
start = next(iter(jobs.values()))[1]
where = "the finished model" if at is None else f"its checkpoint at step {at} of {sft_run.history['step'][-1]}"
runs = {b: rl.get_or_train(cfg, m, scfg, root, device=dev) for b, (cfg, m, scfg) in jobs.items()}
print(f"SFT start ({arm}, {where}): " + artifacts.describe_provenance(sft_run.provenance))
for beta, r in runs.items():
    print(f"beta={beta:g}: {artifacts.shown(r.path)}\n   " + artifacts.describe_provenance(r.provenance).replace("\n", "\n   "))

# %% tags=["nbval-check-output"]
print(table([[f"{beta:g}", len(r.history["step"]), P.rl_prompts, P.rl_group] for beta, r in runs.items()],
            ["beta", "updates", "prompts per update", "samples each"]))

# %%
hb = "general" if "general" in P.buckets else P.buckets[-1]   # sampled there; greedy everywhere
ev = {beta: metrics.full_eval(r.model, eval_set, P.fmt, P.n_samples, P.temperature, P.top_k,
                              P.seed, P.ks, sampled=[hb]) for beta, r in runs.items()}
ev0 = metrics.full_eval(start, eval_set, P.fmt, P.n_samples, P.temperature, P.top_k,
                        P.seed, P.ks, sampled=[hb])
kl_by = {beta: rl.kl_per_problem(r.model, start, eval_set, P.fmt, seed=P.seed)
         for beta, r in runs.items()}   # per bucket and problem, same problems for every beta: paired
kl_pp = {beta: np.concatenate(list(v.values())) for beta, v in kl_by.items()}
kl = {beta: float(v.mean()) for beta, v in kl_pp.items()}
forget = {key: np.concatenate([e[b]["correct"] for b in unpractised]) if unpractised else np.zeros(0, bool)
          for key, e in [("start", ev0), *ev.items()]}

# records: what 09 reads, and what the binding rule below is evaluated on
rec = {}
for key, e in [("start", ev0), *ev.items()]:
    name = key if key == "start" else f"{key:g}"
    for b in P.buckets:
        records.mean_with_problems(f"beta/{name}/{b}/acc", e[b]["correct"], rec)
    rec[f"beta/{name}/{hb}/sampled_acc"] = e[hb]["sampled_acc"]
    if 8 in P.ks:
        rec[f"beta/{name}/{hb}/pass@8"] = e[hb]["pass"][8]["value"]
    if unpractised:
        records.mean_with_problems(f"beta/{name}/unpractised/acc", forget[key], rec)
for beta in P.betas:
    rec[f"beta/{beta:g}/kl"] = kl[beta]
    rec[f"beta/{beta:g}/kl@problems"] = records.floats(kl_pp[beta])
metrics_06 = {"notebook": "06_beta_scan", "seed": P.seed, "params": vars(P), "records": rec}


def binds(beta) -> dict:
    """The one rule for "the KL term binds at beta" (findings.BINDS), on this seed's problems."""
    f = dataclasses.replace(findings.BINDS, terms=(("beta/0/kl", 1.0), (f"beta/{beta:g}/kl", -1.0)))
    return findings.evaluate(f, {f"seed-{P.seed}": metrics_06})

# %% [markdown]
# ## Accuracy, pass@8 and KL per beta
#
# `general` bucket, `n_passk` problems; brackets are Wilson 95% intervals over problems.
# KL is nats per generated answer token, on the policy's own samples.

# %%
k8 = 8 if 8 in P.ks else max(P.ks)
rows = [["SFT start", ci(ev0[hb]["acc"], ev0[hb]["acc_ci"]),
         ci(ev0[hb]["sampled_acc"], ev0[hb]["sampled_acc_ci"]),
         pct(ev0[hb]["pass"][k8]["value"]), pct(forget["start"].mean()) if unpractised else "", "0", ""]]
verdicts = {}
for beta in P.betas:
    e = ev[beta][hb]
    if beta == 0 or 0.0 not in P.betas:
        verdicts[beta] = "reference arm" if beta == 0 else "n/a (no beta = 0 arm)"
    else:
        r = binds(beta)
        verdicts[beta] = ("binds" if r["verdict"] == "supported" else
                          "does not bind" if r["verdict"] == "not supported" else "unclear") + \
            f" ({findings.fmt_value(r['point'], 'nats', True)} {findings.fmt_interval(r['lo'], r['hi'], 'nats', True)})"
    rows.append([f"beta={beta:g}", ci(e["acc"], e["acc_ci"]),
                 ci(e["sampled_acc"], e["sampled_acc_ci"]), pct(e["pass"][k8]["value"]),
                 pct(forget[beta].mean()) if unpractised else "", f"{kl[beta]:.4f}", verdicts[beta]])
print(f"{arm} SFT + RL, {hb} (n={n_per.get(hb)}), seed {P.seed}")
print(table(rows, ["arm", "greedy %", f"sampled % (T={P.temperature})", f"pass@{k8} %",
                   f"unpractised % ({', '.join(unpractised)})", "KL to start",
                   "does the KL term bind? KL(0) - KL(beta) [95%]"]))
print("binds: " + findings.rule_text(findings.BINDS, 1))

# %% [markdown]
# ## Reward against KL: the frontier
#
# Each point is one beta: sampled accuracy on `general` (what RL optimises) against the
# KL it paid to get there. A binding KL term moves points left (and usually down).

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
xs = [kl[b] for b in P.betas]
ys = [ev[b][hb]["sampled_acc"] for b in P.betas]
lo = [ev[b][hb]["sampled_acc_ci"][0] for b in P.betas]
hi = [ev[b][hb]["sampled_acc_ci"][1] for b in P.betas]
axes[0].errorbar(xs, ys, yerr=[np.subtract(ys, lo), np.subtract(hi, ys)], fmt="o", capsize=3)
for i, (b, x, y) in enumerate(zip(P.betas, xs, ys)):   # alternate sides so labels never overprint
    axes[0].annotate(f"beta={b:g}", (x, y), fontsize=8, xytext=(6, 10 if i % 2 else -14),
                     textcoords="offset points", arrowprops=dict(arrowstyle="-", lw=0.5, color="grey"))
axes[0].set_xscale("symlog", linthresh=1e-3)
axes[0].axhline(ev0[hb]["sampled_acc"], color="grey", ls="--", lw=0.8, label="SFT start")
axes[0].set(xlabel="KL to the SFT start (nats/token)", ylabel=f"sampled accuracy on {hb}",
            title="reward vs KL")
axes[0].legend()
for beta, r in runs.items():
    axes[1].plot(r.history["step"], plots.smooth(r.history["reward"], 5), label=f"beta={beta:g}")
axes[1].set(xlabel="RL step", ylabel="mean batch reward (5-step mean)", title="learning curves")
axes[1].legend(fontsize=8)
fig.suptitle(f"beta scan from the {arm} SFT model, seed {P.seed}, {hb}: n={n_per.get(hb)} held-out problems")
fig.tight_layout()
fig.savefig(out_dir / "beta_frontier.png", dpi=120)
plt.show()

# %% [markdown]
# ## Forgetting per beta
#
# Greedy accuracy on the buckets RL never practises (pooled), against the KL each arm paid:
# if the KL term guards against forgetting, larger beta should keep this near the start.

# %%
if unpractised:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    fx = [kl[b] for b in P.betas]
    fy = [forget[b].mean() for b in P.betas]
    ax.plot(fx, fy, "o")
    for i, (b, x, y) in enumerate(zip(P.betas, fx, fy)):
        ax.annotate(f"beta={b:g}", (x, y), fontsize=8, xytext=(6, 10 if i % 2 else -14), textcoords="offset points")
    ax.axhline(forget["start"].mean(), color="grey", ls="--", lw=0.8, label="SFT start")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set(xlabel="KL to the SFT start (nats/token)", ylim=(-0.03, 1.03),
           ylabel=f"greedy accuracy, {'+'.join(unpractised)}",
           title=f"forgetting per beta, seed {P.seed}, n={len(forget['start'])} problems")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "forgetting.png", dpi=120)
    plt.show()

# %% [markdown]
# ## Beta against forgetting
#
# Per beta, in points of greedy accuracy against the start: the gain on the buckets RL
# practises (`rl_buckets`, pooled over their problems), the change on the buckets it never
# practises (pooled), and the exact KL to the start. Two starts: the mid-transition one
# above, and the finished control model, the study's "early RL" arm, where RL was seen to
# unlearn `d1` and `d2_*` (`rl.forgetting_jobs`: beta 0, this run's beta, whose run is 05's,
# and the largest). A KL term that guards against forgetting shrinks the second as beta
# grows, at some cost to the first.

# %% tags=["nbval-ignore-output"]
f_jobs, f_info = rl.forgetting_jobs(P, root, dev)   # empty when the control arm is not run
f_runs = {b: rl.get_or_train(c, m, s, root, device=dev) for b, (c, m, s) in f_jobs.items()}

# %%
rl_b = [b for b in P.rl_buckets if b in P.buckets]


def pooled(e, bs):
    return float(np.concatenate([e[b]["correct"] for b in bs]).mean()) if bs else float("nan")


scans = {f"{arm}, {where}": (ev0, ev, kl, list(P.betas))}
if f_runs:
    c_start = next(iter(f_jobs.values()))[1]
    f_ev0 = metrics.greedy_eval(c_start, eval_set, P.fmt)
    f_ev = {b: metrics.greedy_eval(r.model, eval_set, P.fmt) for b, r in f_runs.items()}
    f_kl_by = {b: rl.kl_per_problem(r.model, c_start, eval_set, P.fmt, seed=P.seed)
               for b, r in f_runs.items()}
    f_kl = {b: float(np.concatenate(list(v.values())).mean()) for b, v in f_kl_by.items()}
    scans["control, finished (early RL)"] = (f_ev0, f_ev, f_kl, list(f_runs))
change = {}   # (start, beta) -> (gain on the RL buckets, change on the unpractised ones), points
for name, (e0, es, kls, bs) in scans.items():
    for b in bs:
        change[(name, b)] = (100 * (pooled(es[b], rl_b) - pooled(e0, rl_b)),
                             100 * (pooled(es[b], unpractised) - pooled(e0, unpractised)))
print(f"seed {P.seed}: greedy points against each start (n={sum(n_per[b] for b in rl_b)} RL-bucket "
      f"and {sum(n_per[b] for b in unpractised)} unpractised problems)")
print(table([[name, f"{b:g}", f"{change[(name, b)][0]:+.1f}", f"{change[(name, b)][1]:+.1f}",
              f"{kls[b]:.4f}"] for name, (_, _, kls, bs) in scans.items() for b in bs],
            ["start", "beta", f"gain on {', '.join(rl_b)}", f"change on {', '.join(unpractised)}",
             "exact KL to start"]))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
xb = {b: i for i, b in enumerate(P.betas)}
for k, (name, (_, _, kls, bs)) in enumerate(scans.items()):
    x = np.array([xb[b] for b in bs]) + (k - 0.5 * (len(scans) - 1)) * 0.35
    for ax, vals in zip(axes, [[change[(name, b)][0] for b in bs], [change[(name, b)][1] for b in bs],
                               [kls[b] for b in bs]]):
        ax.bar(x, vals, 0.35, label=name, color=("tab:purple", "tab:grey")[k % 2])
for ax, title in zip(axes, ["gain on the RL buckets (points)", "change on the unpractised buckets (points)",
                            "exact KL to the start (nats/token)"]):
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(P.betas)), [f"{b:g}" for b in P.betas])
    ax.set(xlabel="beta", title=title)
axes[0].legend(fontsize=7)
fig.suptitle(f"beta against forgetting, two starts, seed {P.seed}")
fig.tight_layout()
fig.savefig(out_dir / "beta_forgetting.png", dpi=120)
plt.show()
rec["beta/start_step"] = at if at is not None else sft_run.history["step"][-1]
for b in P.betas:
    if rl_b:
        rec[f"beta/{b:g}/rl_buckets_gain"] = change[(next(iter(scans)), b)][0] / 100
if f_runs:
    records.mean_with_problems("forget/start/unpractised/acc",
                               np.concatenate([f_ev0[b]["correct"] for b in unpractised]), rec)
    for b in f_runs:
        records.mean_with_problems(f"forget/{b:g}/unpractised/acc",
                                   np.concatenate([f_ev[b][u]["correct"] for u in unpractised]), rec)
        rec[f"forget/{b:g}/kl"] = f_kl[b]
    for key, e in [("start", f_ev0), *f_ev.items()]:   # every bucket, at every beta run
        for u in P.buckets:
            rec[f"forget/{key if key == 'start' else f'{key:g}'}/{u}/acc"] = float(e[u]["correct"].mean())

# %% [markdown]
# ## Does KL predict forgetting? (RL's Razor)
#
# Shenfeld et al. (2025) find that how far RL moves a model, measured by the KL on the
# task's own inputs, predicts how much it forgets elsewhere. **Method.** Every RL run above,
# from both starts and at every beta: the change in greedy accuracy on the buckets RL never
# practises (points), against the exact KL to its start on RL's own prompt buckets
# (`rl_buckets`, the model's samples at T = 1). A line is fitted, with its R². Over one
# seed's few runs, R² is a description, not a test; 09 fits every seed's runs, holding out
# one seed at a time.

# %%
kl_rl = {}   # (start, beta) -> exact KL on RL's prompt buckets
for name, (_, _, _, bs) in scans.items():
    by = kl_by if name == next(iter(scans)) else f_kl_by
    for b in bs:
        kl_rl[(name, b)] = float(np.concatenate([by[b][u] for u in rl_b]).mean()) if rl_b else float("nan")
razor = [(name, b, kl_rl[(name, b)], change[(name, b)][1]) for (name, b) in kl_rl]
if unpractised and rl_b:
    try:
        fit = stats.polyfit([r[2] for r in razor], [r[3] for r in razor])
    except ValueError as err:   # too few runs, or no spread in KL
        fit = None
        print(f"no line: {err}")
    print(table([[n, f"{b:g}", f"{k:.4f}", f"{f:+.1f}"] for n, b, k, f in razor],
                ["start", "beta", f"exact KL on {', '.join(rl_b)}", f"change on {', '.join(unpractised)} (points)"]))
    if fit:
        r2 = f"R² {fit['r2']:.2f}" if fit["r2"] == fit["r2"] else "R² undefined (the change never varies)"
        print(f"line: slope {fit['coef'][0]:+.1f} points per nat, intercept {fit['coef'][1]:+.1f} "
              f"points; {r2}, n = {fit['n']} runs, seed {P.seed}")
    fig = plots.razor([{"start": n, "beta": b, "kl": k, "forget": f, "seed": f"seed-{P.seed}"}
                       for n, b, k, f in razor], fit,
                      f"forgetting against KL on RL's prompts, seed {P.seed}")
    fig.savefig(out_dir / "razor.png", dpi=120)
    plt.show()
    starts_key = {name: ("moving" if i == 0 else "control") for i, name in enumerate(scans)}
    for n, b, k, f in razor:
        rec[f"razor/{starts_key[n]}/{b:g}/kl"] = k
        rec[f"razor/{starts_key[n]}/{b:g}/forget"] = f / 100
else:
    print("no unpractised or no RL bucket in this run: nothing to fit")

# %% tags=["nbval-ignore-output"]
records.write(out_dir / "metrics.json", "06_beta_scan", P.seed, rec, vars(P),
              verdicts={f"{b:g}": v for b, v in verdicts.items()},
              checkpoint={f"{b:g}": r.path.parent.name for b, r in runs.items()})
print("wrote", artifacts.shown(out_dir / "metrics.json"))

# %% tags=["nbval-check-output"]
print(checks([
    ("the measured KL to the start is finite and >= 0 for every beta",
     all(np.isfinite(v) and v >= -1e-6 for v in kl.values())),
    ("every arm took rl_steps updates", all(len(r.history["reward"]) == P.rl_steps for r in runs.values())),
    ("beta = 0 never ran the reference during training",
     all(np.isnan(r.history["kl"]).all() for b, r in runs.items() if b == 0)),
    ("every arm is a different artifact", len({r.path for r in runs.values()}) == len(runs)),
]))

# %% [markdown]
# ## What this run shows
#
# Generated from this notebook's records by the cross-seed summary's evaluator, for this
# seed only (95% bootstrap over the held-out problems, paired between the arms).

# %%
Markdown(findings.story_markdown(findings.this_run("06_beta_scan", metrics_06)))

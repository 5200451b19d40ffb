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
# # 05 · KL-regularized RL
#
# **Question.** Starting from an SFT model, does RL against an answer validator make it a
# better adder, and does it matter which SFT model we start from?
#
# **Method.** From each SFT checkpoint of 03 (targeted and control, the latter being the
# seed's "early RL" arm) we run the same RL budget: per update, `rl_prompts` prompts from
# the `rl_buckets` mix, `rl_group` samples each at T = 1 from the current policy, reward 1
# for a correct answer and 0 otherwise (unparsable or truncated answers included), a
# group-mean baseline, and one AdamW step on
#
# $$\mathcal{L} = -\frac{1}{N}\sum_{i,t} A_i \log \pi_\theta(y_{i,t}\mid y_{i,<t}, x_i)
#   + \beta\,\frac{1}{N}\sum_{i,t} \mathrm{KL}\big(\pi_\theta(\cdot\mid\ldots)\,\|\,\pi_{\mathrm{ref}}(\cdot\mid\ldots)\big)$$
#
# over the N generated answer tokens. The reference is the starting SFT model, frozen; the
# KL is computed exactly over the 264-token vocabulary at every generated position (the k1
# and k3 sample estimators are logged beside it). Before and after, every bucket is scored
# by greedy accuracy, sampled accuracy at T = `temperature`, parse rate and pass@k.
#
# A group whose samples all got the same reward has a zero advantage and teaches nothing.
# `rl_dynamic` trains on informative groups only (DAPO's dynamic sampling): it draws prompts
# again until `rl_prompts` informative groups are found or `rl_max_draws` x `rl_prompts`
# prompts were drawn (then the update uses what it found, none at all if nothing). `rl_mix:
# adaptive` draws each bucket with a weight from the policy's own pass rate p on it (a
# running mean over its samples): the chance 1 - p^G - (1-p)^G that a group of G samples is
# informative, each bucket keeping at least `rl_mix_floor`.

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

from reasonlib.train import artifacts, rl, sft
from reasonlib.report import findings, plots
from reasonlib.core import metrics, tasks
from reasonlib.study import records
from reasonlib.core.runtime import resolve_device
from reasonlib.report.tables import checks, ci, pct, table

out_dir = artifacts.resolve(P.run_dir) / "05_kl_rl"
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(P.device)
root = artifacts.resolve(P.artifacts_dir)
eval_set = tasks.make_eval_set(P.max_digits, P.n_passk, P.eval_seed, buckets=P.buckets)
n_per = {b: len(v[0]) for b, v in eval_set.problems.items()}
# the buckets no RL prompt comes from: what RL can forget (d1 and d2_*, pooled)
unpractised = [b for b in ("d1", "d2_nocarry", "d2_carry") if b in P.buckets and b not in P.rl_buckets]

# %% [markdown]
# ## RL from each SFT checkpoint
#
# SFT models come from the artifact cache (03 trained them; they are trained here if
# missing). RL runs are cached the same way, keyed by their config and their start. This
# cell trains every RL run of this notebook: from each finished curriculum arm (this
# section) and from the starts of the headroom curve (below).

# %% tags=["nbval-ignore-output"]
sft_cfgs = {c: sft.config_from_params(P, c) for c in P.curricula}
sfts = {c: sft.get_or_train(cfg, root, device=dev) for c, cfg in sft_cfgs.items()}
arms = sft.study_arms(P)
tcfg = arms["targeted"]
t_run = sfts["targeted"] if "targeted" in sfts else sft.get_or_train(tcfg, root, device=dev)
starts, label = {}, {}   # key -> (start model, its SFT config, snapshot step or None: finished)
for what, step in rl.schedule_starts(t_run.history).items():
    starts[f"targeted@{step}"] = (sft.load_snapshot(tcfg, root, step, dev), tcfg, step)
    label[f"targeted@{step}"] = f"targeted, {what}"
for c in P.curricula:
    starts[f"{c}@end"] = (sfts[c].model, sft_cfgs[c], None)
    label[f"{c}@end"] = f"{c}, finished"
for f in P.formats:
    if f != P.fmt:
        starts[f"{f}@end"] = (sft.get_or_train(arms[f"format {f}"], root, device=dev).model,
                              arms[f"format {f}"], None)
        label[f"{f}@end"] = f"targeted, {f} format, finished"
head = {k: rl.get_or_train(rl.config_from_params(P, c, start_step=st), m, c, root, device=dev)
        for k, (m, c, st) in starts.items()}
rls = {c: head[f"{c}@end"] for c in P.curricula}
print(f"{len(head)} RL runs ({sum(r.trained_now for r in head.values())} trained now)")
for c, r in rls.items():
    print(f"{c}: RL -> {artifacts.shown(r.path)}")
    for what, run in (("SFT start", sfts[c]), ("RL", r)):
        print(f"   {what}: " + artifacts.describe_provenance(run.provenance).replace("\n", "\n   "))

# %% tags=["nbval-check-output"]
print(table([[c, len(r.history["step"]), P.rl_prompts, P.rl_group, P.rl_prompts * P.rl_group,
              ", ".join(P.rl_buckets), f"{P.beta:g}"] for c, r in rls.items()],
            ["start", "updates", "prompts", "samples each", "rollouts per update", "prompt buckets",
             "beta"]))
print(f"dynamic sampling: {'on, at most ' + str(P.rl_max_draws) + ' x rl_prompts prompts drawn per update' if P.rl_dynamic else 'off (every group is trained on)'}; "
      f"prompt mix: {P.rl_mix}" + (f" (each bucket >= {P.rl_mix_floor:g})" if P.rl_mix == "adaptive" else ""))

# %% [markdown]
# Where each update's signal and time went. A group whose samples all got the same reward
# has no gradient: *informative* is the share of drawn groups that had one, *tokens with
# gradient* the generated tokens of rollouts with a nonzero advantage. With dynamic sampling
# only informative groups are trained on, and *draws per group* says how many prompts it
# took to find one. RL's time splits into the sampler (rollouts), the validator (scoring),
# the probes and the update (the policy's and the reference's forward and backward passes).

# %% tags=["nbval-ignore-output"]
def _split(t):   # the timing of the process that trained the run (a cached run keeps it)
    return [f"{t[k]:.1f} s ({t[k] / t['loop_s']:.0%})" for k in ("rollout_s", "score_s", "update_s", "probe_s")]


print(table([[c, pct(1 - np.mean(r.history["zero_signal"])), f"{np.mean(r.history['grad_tokens']):,.0f}",
              f"{np.mean(r.history['draws_per_group']):.2f}", f"{sum(r.history['capped'])} of {len(r.history['capped'])}",
              *_split(r.timing)] for c, r in rls.items()],
            ["start", "informative", "tokens with gradient / update", "draws per group",
             "updates capped", "rollouts", "scoring", "update", "probes"]))

# %% [markdown]
# ## Learning curves
#
# Reward is the share of correct samples in each update's batch (T = 1). The exact KL is
# measured against the frozen start; the zero-signal share counts groups whose samples all
# got the same reward (they contribute no gradient).

# %%
keys = [("reward", "mean reward (batch)"), ("kl", "KL(policy || SFT start), exact"),
        ("entropy", "entropy per answer token (nats)"), ("zero_signal", "groups with no signal"),
        ("grad_tokens", "tokens with gradient")]
fig, axes = plt.subplots(1, 5, figsize=(19, 3.3))
for ax, (k, title) in zip(axes, keys):
    for c, r in rls.items():
        h = r.history
        ax.plot(h["step"], plots.smooth(h[k], 5), color=plots.PALETTE[c], label=c)
        if k == "kl" and P.beta > 0:
            ax.plot(h["step"], plots.smooth(h["kl_k3"], 5), color=plots.PALETTE[c], ls=":",
                    label=f"{c} (k3 estimate)")
    ax.set(title=title, xlabel="RL step")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=7)
fig.suptitle(f"RL, beta={P.beta}, {P.rl_prompts} prompts x {P.rl_group} samples per step, "
             f"seed {P.seed} (5-step means)")
fig.tight_layout()
fig.savefig(out_dir / "rl_curves.png", dpi=120)
plt.show()

# %% [markdown]
# ## Before and after, per bucket
#
# `n` problems per bucket, `n_samples` samples each; brackets are Wilson 95% intervals over
# problems (this seed only).

# %%
ev = {}
for c in P.curricula:
    ev[(c, "SFT")] = metrics.full_eval(sfts[c].model, eval_set, P.fmt, P.n_samples,
                                       P.temperature, P.top_k, P.seed, P.ks)
    ev[(c, "SFT+RL")] = metrics.full_eval(rls[c].model, eval_set, P.fmt, P.n_samples,
                                          P.temperature, P.top_k, P.seed, P.ks)

# %%
k8 = 8 if 8 in P.ks else max(P.ks)
for c in P.curricula:
    rows = []
    for b in P.buckets:
        s0, s1 = ev[(c, "SFT")][b], ev[(c, "SFT+RL")][b]
        rows.append([b, ci(s0["acc"], s0["acc_ci"]), ci(s1["acc"], s1["acc_ci"]),
                     ci(s0["sampled_acc"], s0["sampled_acc_ci"]),
                     ci(s1["sampled_acc"], s1["sampled_acc_ci"]),
                     f"{pct(s0['sampled_parse'])} -> {pct(s1['sampled_parse'])}",
                     f"{pct(s0['pass'][k8]['value'])} -> {pct(s1['pass'][k8]['value'])}"])
    print(f"{c}: SFT -> SFT+RL (%)")
    print(table(rows, ["bucket", "greedy SFT", "greedy RL", f"sampled SFT (T={P.temperature})",
                       "sampled RL", "parse", f"pass@{k8}"]))

# %% [markdown]
# ## The 2 x 2: curriculum x RL
#
# Sampled (T = 1) and greedy accuracy on `general` and `low_sum` for the four models.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
show = [b for b in ("general", "low_sum") if b in P.buckets] or P.buckets[:2]
for ax, metric in zip(axes, [("sampled_acc", f"sampled accuracy, T={P.temperature}"),
                             ("acc", "greedy accuracy")]):
    x = np.arange(len(show))
    for i, (c, stage) in enumerate([(c, s) for c in P.curricula for s in ("SFT", "SFT+RL")]):
        v = np.array([ev[(c, stage)][b][metric[0]] for b in show])
        lo = np.array([ev[(c, stage)][b][metric[0] + "_ci"][0] for b in show])
        hi = np.array([ev[(c, stage)][b][metric[0] + "_ci"][1] for b in show])
        ax.bar(x + (i - 1.5) * 0.2, v, 0.2, yerr=np.vstack([v - lo, hi - v]), capsize=3,
               color=plots.PALETTE[c], alpha=0.5 if stage == "SFT" else 1.0, label=f"{c} {stage}")
    ax.set_xticks(x, plots.with_n(show, n_per))
    ax.set(title=metric[1], ylim=(0, 1.08))
axes[0].legend(fontsize=8)
fig.suptitle(f"curriculum x RL on held-out problems, seed {P.seed} (Wilson 95%)")
fig.tight_layout()
fig.savefig(out_dir / "two_by_two.png", dpi=120)
plt.show()

# %% [markdown]
# ## Headline
#
# The seed study reports `general` accuracy going from 80.7% (targeted SFT) to 90.7% after
# KL-RL, with a 100% parse rate. Our measurement for this seed:

# %%
arm = "targeted" if "targeted" in P.curricula else P.curricula[-1]
hb = "general" if "general" in P.buckets else P.buckets[-1]
b0, b1 = ev[(arm, "SFT")][hb], ev[(arm, "SFT+RL")][hb]
in_dist = [b for b in P.buckets if b != "ood_long"]
parse_after = np.mean([ev[(arm, "SFT+RL")][b]["sampled_parse"] for b in in_dist])
h = rls[arm].history
print(f"{arm}, {hb}: sampled accuracy (T={P.temperature}) {ci(b0['sampled_acc'], b0['sampled_acc_ci'])} "
      f"-> {ci(b1['sampled_acc'], b1['sampled_acc_ci'])}  "
      f"({100 * (b1['sampled_acc'] - b0['sampled_acc']):+.1f} points)")
print(f"{arm}, {hb}: greedy accuracy {ci(b0['acc'], b0['acc_ci'])} -> {ci(b1['acc'], b1['acc_ci'])}")
print(f"parse rate of samples after RL (in-distribution buckets): {pct(parse_after)}%")
print(f"exact KL to the SFT start at the last step: {h['kl'][-1]:.4f} nats/token "
      f"(k1 {h['kl_k1'][-1]:.4f}, k3 {h['kl_k3'][-1]:.4f})")

# %% [markdown]
# ## What RL did not practise
#
# RL's prompts come from `rl_buckets` only. Greedy accuracy on the buckets it never
# practises (`d1`, `d2_*`, pooled), before and after RL: a drop is forgetting, the cost the
# KL term is meant to guard against (06 measures it per beta).

# %%
unp = {}
for (c, stage), d in ev.items():
    flags = np.concatenate([d[b]["correct"] for b in unpractised]) if unpractised else np.zeros(0, bool)
    unp[(c, stage)] = flags
if unpractised:
    print(table([[c, f"{pct(unp[(c, 'SFT')].mean())}", f"{pct(unp[(c, 'SFT+RL')].mean())}",
                  f"{100 * (unp[(c, 'SFT+RL')].mean() - unp[(c, 'SFT')].mean()):+.1f}"] for c in P.curricula],
                ["start", f"SFT % ({', '.join(unpractised)}, n={len(unp[(P.curricula[0], 'SFT')])})",
                 "SFT+RL %", "change (points)"]))

# %% [markdown]
# ## The headroom curve: RL from starts of every quality
#
# **Question.** How much can RL add, as a function of what the start can already do? RL's
# reward carries signal only where the start sometimes samples a correct answer: a start
# with pass@k = 0 gives every group the same reward. **Method.** The same RL budget and
# beta from starts along the targeted SFT schedule: its checkpoints at the probe steps
# where the probe's greedy `general` first reached 20%, 50% and 80%, one two probes
# before the first of these and the start 06 and the RL-vs-SFT comparison below use
# (`rl.schedule_starts`), then the finished
# arms (each curriculum, and the other answer formats where this run trains them). For each
# start and its RL model: greedy accuracy and pass@1 / pass@8 (`n_samples` samples at T =
# `temperature`) on `n_passk` held-out `general` problems, and greedy accuracy on the
# buckets RL never practises.

# %%
print(table([[label[k], f"{r.timing.get('loop_s', float('nan')):.1f}", artifacts.shown(r.path.parent)]
             for k, r in head.items()], ["start", "RL s", "artifact"]))

# %%
hb_set = tasks.make_eval_set(P.max_digits, P.n_passk, P.eval_seed, buckets=["general"])
un_set = tasks.make_eval_set(P.max_digits, P.n_passk, P.eval_seed, buckets=unpractised) if unpractised else None
k_top = 8 if P.n_samples >= 8 else P.n_samples


def headroom_eval(model, fmt) -> dict:
    """Greedy and pass@1 / pass@k_top on general, greedy on the unpractised buckets."""
    g = metrics.greedy_eval(model, hb_set, fmt)["general"]
    s = metrics.sampled_eval(model, hb_set, fmt, P.n_samples, P.temperature, P.top_k, P.seed,
                             sorted({1, k_top}))["general"]
    out = {"greedy": g["acc"], "correct": g["correct"], "pass1": s["pass"][1]["value"],
           "passk": s["pass"][k_top]["value"]}
    if un_set is not None:
        u = metrics.greedy_eval(model, un_set, fmt)
        out["unpractised"] = np.concatenate([u[b]["correct"] for b in unpractised])
    return out


hr = {k: (headroom_eval(starts[k][0], starts[k][1].fmt), headroom_eval(r.model, starts[k][1].fmt))
      for k, r in head.items()}
print(f"general, n={n_per.get('general', P.n_passk)} problems, seed {P.seed}; gains in points")
print(table([[label[k], pct(a["greedy"]), pct(a["pass1"]), pct(a["passk"]),
              f"{100 * (b['greedy'] - a['greedy']):+.1f}", f"{100 * (b['pass1'] - a['pass1']):+.1f}",
              f"{100 * (b['passk'] - a['passk']):+.1f}",
              f"{100 * (b['unpractised'].mean() - a['unpractised'].mean()):+.1f}" if un_set else "",
              f"{head[k].history['kl'][-1]:.4f}" if P.beta > 0 else ""] for k, (a, b) in hr.items()],
            ["start", "greedy %", "pass@1 %", f"pass@{k_top} %", "RL gain: greedy", "pass@1",
             f"pass@{k_top}", f"unpractised ({', '.join(unpractised)})", "KL at the end"]))

# %%
fig = plots.headroom_curve(
    {label[k].replace("targeted, ", "").replace(", finished", ""):
     (a["pass1"], a["passk"], 100 * (b["greedy"] - a["greedy"]), 100 * (b["pass1"] - a["pass1"]))
     for k, (a, b) in hr.items()}, k_top,
    f"the headroom curve: {P.rl_steps} RL steps, beta={P.beta:g}, from every start, seed {P.seed} "
    f"(n={P.n_passk} general problems)")
fig.savefig(out_dir / "headroom.png", dpi=120)
plt.show()

# %% [markdown]
# ## RL against more SFT, at equal compute
#
# **Question.** From a model in the middle of its transition, is the compute RL spends
# better spent on more SFT? **Method.** From the targeted snapshot where the probe first
# reached 50% (`rl.moving_start`; its best probe in a run that never got there; 06's beta
# scan starts there too), one arm is the RL run of
# the headroom curve and the other continues the SFT run itself (the same schedule, data
# stream and optimizer state) for the same compute: RL's FLOPs in SFT training tokens
# (`rl.sft_tokens_of`: the sampler's forward passes, the update's forward and backward and
# the reference's forward, 2N / 6N / 2N FLOPs per real token for N weights, against 6N per
# SFT token). The CPU seconds of each (over all its threads: RL's updates use two, SFT
# one) are printed beside it: per FLOP, sampling is slower than training.

# %% tags=["nbval-ignore-output"]
mv = rl.moving_start(t_run.history)
vs = None
if mv is not None:
    k_mv = next(k for k, (_, c, st) in starts.items() if c == tcfg and st == mv)
    rl_mv = head[k_mv]
    more_tok = rl.sft_tokens_of(rl_mv.history, reference=P.beta > 0)
    more = sft.continued(tcfg, root, mv, more_tok, device=dev)
    vs = {"start": starts[k_mv][0], "RL": rl_mv.model, "more SFT": more.model}
    vs_ev = {k: metrics.full_eval(m, eval_set, P.fmt, P.n_samples, P.temperature, P.top_k, P.seed, P.ks)
             for k, m in vs.items()}
    vs_s = {"start": float("nan"), "RL": rl_mv.timing.get("cpu_s", float("nan")),
            "more SFT": more.timing.get("cpu_s", float("nan"))}
    n_sft_steps = more.history["step"][-1] - mv
    print(f"start: targeted SFT at step {mv}; RL {P.rl_steps} steps = {more_tok:,} SFT tokens of compute; "
          f"more SFT: {n_sft_steps} steps, {more.history['tokens'][-1] - more.history['tokens'][mv - 1]:,} tokens")
else:
    print("the targeted run has no probe before its end: no snapshot to start from")

# %%
if vs is not None:
    print(table([[k, f"{vs_s[k]:.1f}" if k != "start" else "", ci(e["general"]["acc"], e["general"]["acc_ci"]),
                  pct(e["general"]["pass"][1]["value"]), pct(e["general"]["pass"][k8]["value"]),
                  pct(np.concatenate([e[b]["correct"] for b in unpractised]).mean()) if unpractised else "",
                  *[pct(e[b]["acc"]) for b in ("mixed", "low_sum", "mixed3") if b in P.buckets],
                  pct(e["general"]["parse"])]
                 for k, e in vs_ev.items()],
                ["arm", "CPU s", "general greedy %", "pass@1 %", f"pass@{k8} %",
                 f"unpractised % ({', '.join(unpractised)})",
                 *[f"{b} %" for b in ("mixed", "low_sum", "mixed3") if b in P.buckets], "parse %"]))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    show_b = [b for b in P.buckets if b != "ood_long"]
    x = np.arange(len(show_b))
    for i, (k, e) in enumerate(vs_ev.items()):
        ax.bar(x + (i - 1) * 0.27, [e[b]["acc"] for b in show_b], 0.27, label=k,
               color={"start": "lightgrey", "RL": "tab:orange", "more SFT": "tab:blue"}[k])
    ax.set_xticks(x, plots.with_n(show_b, n_per))
    ax.set(ylim=(0, 1.05), ylabel="greedy accuracy",
           title=f"RL vs more SFT from step {mv}, equal FLOPs, seed {P.seed}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "rl_vs_sft.png", dpi=120)
    plt.show()

# %% tags=["nbval-ignore-output"]
rec = {}
for (c, stage), d in ev.items():
    st = "sft" if stage == "SFT" else "rl"
    for b in P.buckets:
        records.mean_with_problems(f"rl/{c}/{st}/{b}/acc", d[b]["correct"], rec)
        rec.update({f"rl/{c}/{st}/{b}/sampled_acc": d[b]["sampled_acc"], f"rl/{c}/{st}/{b}/parse": d[b]["parse"],
                    f"rl/{c}/{st}/{b}/sampled_parse": d[b]["sampled_parse"]})
        if 8 in P.ks:
            rec[f"rl/{c}/{st}/{b}/pass@8"] = d[b]["pass"][8]["value"]
    if unpractised:
        records.mean_with_problems(f"rl/{c}/{st}/unpractised/acc", unp[(c, stage)], rec)
for c, r in rls.items():
    rec[f"rl/{c}/final_kl"] = r.history["kl"][-1]
    rec[f"rl/{c}/final_reward"] = r.history["reward"][-1]
rec["rl/parse_after"] = parse_after
for k, (a, b) in hr.items():   # the headroom curve: start and RL end per start
    for st, d in (("start", a), ("rl", b)):
        rec.update({f"headroom/{k}/{st}/greedy": d["greedy"], f"headroom/{k}/{st}/pass@1": d["pass1"],
                    f"headroom/{k}/{st}/pass@{k_top}": d["passk"]})
        records.mean_with_problems(f"headroom/{k}/{st}/general/acc", d["correct"], rec)
        if un_set is not None:
            records.mean_with_problems(f"headroom/{k}/{st}/unpractised/acc", d["unpractised"], rec)
# finding 3b: the starts with headroom pooled (each problem's mean over them; None without any)
band = [k for k, (a, _) in hr.items() if findings.HEADROOM[0] <= a["greedy"] <= findings.HEADROOM[1]]
rec["headroom/band/n_starts"] = len(band)
for st, i in (("start", 0), ("rl", 1)):
    name = f"headroom/band/{st}/general/acc"
    if band:
        records.mean_with_problems(name, np.mean([hr[k][i]["correct"] for k in band], axis=0), rec)
    else:
        rec[name] = None
rec["headroom/band/gain"] = (rec["headroom/band/rl/general/acc"] - rec["headroom/band/start/general/acc"]
                             if band else None)
for name in ("RL", "more_SFT"):   # finding 8b reads these; None when there was no start
    rec[f"rl_vs_sft/{name}/general/acc"] = None
if vs is not None:
    rec["rl_vs_sft/start_step"] = mv
    rec["rl_vs_sft/sft_tokens"] = more_tok
    for k, e in vs_ev.items():
        name = k.replace(" ", "_")
        rec[f"rl_vs_sft/{name}/cpu_s"] = vs_s[k]
        for b in P.buckets:
            records.mean_with_problems(f"rl_vs_sft/{name}/{b}/acc", e[b]["correct"], rec)
        rec[f"rl_vs_sft/{name}/general/pass@1"] = e["general"]["pass"][1]["value"]
        rec[f"rl_vs_sft/{name}/general/parse"] = e["general"]["parse"]
metrics_05 = {"notebook": "05_kl_rl", "seed": P.seed, "params": vars(P), "records": rec}
records.write(out_dir / "metrics.json", "05_kl_rl", P.seed, rec, vars(P),
              history={c: {k: r.history[k] for k in ("reward", "kl", "kl_k1", "kl_k3", "entropy",
                                                    "zero_signal", "grad_norm", "drawn", "groups",
                                                    "grad_tokens", "mix")} for c, r in rls.items()},
              timing={c: r.timing for c, r in rls.items()},
              checkpoint={c: r.path.parent.name for c, r in rls.items()})
print("wrote", artifacts.shown(out_dir / "metrics.json"))

# %% tags=["nbval-check-output"]
kls = {c: np.array(r.history["kl"]) for c, r in rls.items()}
print(checks([
    ("every RL run took rl_steps updates", all(len(r.history["reward"]) == P.rl_steps for r in rls.values())),
    ("every reward lies in [0, 1]", all(0 <= x <= 1 for r in rls.values() for x in r.history["reward"])),
    ("the exact KL is finite and >= 0 at every step",
     P.beta == 0 or all(np.isfinite(k).all() and (k >= -1e-6).all() for k in kls.values())),
    ("the exact KL is 0 at the first step (the policy is its reference)",
     P.beta == 0 or all(abs(k[0]) < 1e-5 for k in kls.values())),
    ("accuracy <= parse rate <= 1 in every bucket of every model",
     all(0 <= d[b]["acc"] <= d[b]["parse"] <= 1 for d in ev.values() for b in P.buckets)),
]))

# %% [markdown]
# ## What this run shows
#
# Generated from this notebook's records by the cross-seed summary's evaluator, for this
# seed only (95% bootstrap over the held-out problems; models compared on the same problems).

# %%
Markdown(findings.story_markdown(findings.this_run("05_kl_rl", metrics_05)))

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
# # 06 · The beta scan
#
# **Question.** How much does the KL weight beta matter? The seed study found accuracy on
# `general` stable between 91.4% and 91.6% for beta in {0.02, 0.05, 0.10}. Is the KL term
# actually constraining the policy at those values, or is the policy staying close to its
# start for other reasons (few steps, a small learning rate)?
#
# **Method.** From the same targeted SFT checkpoint, run the RL of 05 once per beta in
# `betas` (beta = 0 included: no reference forward at all), with the same budget and the
# same seed. For each arm we measure greedy and sampled accuracy, pass@8, and the exact KL
# to the start on the policy's own samples. The KL term *binds* when it keeps the policy
# measurably closer to the start than the unregularised (beta = 0) run does.

# %% tags=["parameters"]
seed = 0
fmt = "reversed"
max_digits = 3
curricula = ["control", "targeted"]
buckets = ["d1", "d2_nocarry", "d2_carry", "mixed", "low_sum", "general", "ood_long"]
n_layer = 2
n_head = 4
n_embd = 64
total_tokens = 150000
batch_size = 128
lr = 0.002
min_lr_frac = 0.1
warmup_frac = 0.05
weight_decay = 0.1
grad_clip = 1.0
replay = 0.2
mixed_replay = 0.15
eval_every = 50
eval_n = 30
n_eval = 100
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
rl_eval_every = 5
betas = [0.0, 0.02, 0.05, 0.1, 0.5]
run_dir = "runs/notebooks/seed-0"
artifacts_dir = "runs/notebooks/artifacts"
device = "cpu"

# %%
from reasonlib import params

P = params.collect(globals())

# %%
import matplotlib.pyplot as plt
import numpy as np

from reasonlib import artifacts, metrics, plots, rl, sft, tasks
from reasonlib.runtime import resolve_device
from reasonlib.tables import checks, ci, pct, table

out_dir = artifacts.resolve(P.run_dir) / "06_beta_scan"
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(P.device)
root = artifacts.resolve(P.artifacts_dir)
eval_set = tasks.make_eval_set(P.max_digits, max(P.n_eval, P.n_passk), P.eval_seed,
                               buckets=P.buckets).subset(P.n_passk)
arm = "targeted" if "targeted" in P.curricula else P.curricula[-1]

# %% tags=["nbval-ignore-output"]
sft_cfg = sft.config_from_params(P, arm)
start = sft.get_or_train(sft_cfg, root, device=dev)
runs = {beta: rl.get_or_train(rl.config_from_params(P, sft_cfg, beta), start.model, sft_cfg,
                              root, device=dev) for beta in P.betas}
print(f"SFT start ({arm}): " + artifacts.describe_provenance(start.provenance))
for beta, r in runs.items():
    print(f"beta={beta:g}: {r.path}\n   " + artifacts.describe_provenance(r.provenance).replace("\n", "\n   "))

# %% tags=["nbval-check-output"]
print(table([[f"{beta:g}", len(r.history["step"]), P.rl_prompts, P.rl_group] for beta, r in runs.items()],
            ["beta", "updates", "prompts per update", "samples each"]))

# %%
ev = {beta: metrics.full_eval(r.model, eval_set, P.fmt, P.n_samples, P.temperature, P.top_k,
                              P.seed, P.ks) for beta, r in runs.items()}
ev0 = metrics.full_eval(start.model, eval_set, P.fmt, P.n_samples, P.temperature, P.top_k,
                        P.seed, P.ks)
kl = {beta: rl.measure_kl(r.model, start.model, eval_set, P.fmt, seed=P.seed)
      for beta, r in runs.items()}

# %% [markdown]
# ## Accuracy, pass@8 and KL per beta
#
# `general` bucket, `n_passk` problems; brackets are Wilson 95% intervals over problems.
# KL is nats per generated answer token, on the policy's own samples.

# %%
hb = "general" if "general" in P.buckets else P.buckets[-1]
k8 = 8 if 8 in P.ks else max(P.ks)
ref_beta = min(P.betas)
rows = [["SFT start", ci(ev0[hb]["acc"], ev0[hb]["acc_ci"]),
         ci(ev0[hb]["sampled_acc"], ev0[hb]["sampled_acc_ci"]),
         pct(ev0[hb]["pass"][k8]["value"]), "0", ""]]
verdicts = {}
for beta in P.betas:
    e = ev[beta][hb]
    if beta == ref_beta:
        verdicts[beta] = "reference arm" if beta == 0 else "smallest beta (reference arm)"
    else:
        ratio = kl[beta] / max(kl[ref_beta], 1e-12)
        verdicts[beta] = ("binds" if ratio <= 0.5 else "binds weakly" if ratio <= 0.9
                          else "does not bind") + f" (KL {ratio:.2f} x beta={ref_beta:g})"
    rows.append([f"beta={beta:g}", ci(e["acc"], e["acc_ci"]),
                 ci(e["sampled_acc"], e["sampled_acc_ci"]), pct(e["pass"][k8]["value"]),
                 f"{kl[beta]:.4f}", verdicts[beta]])
print(f"{arm} SFT + RL, {hb}, seed {P.seed}")
print(table(rows, ["arm", "greedy %", f"sampled % (T={P.temperature})", f"pass@{k8} %",
                   "KL to start", "does the KL term bind?"]))

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
axes[0].errorbar(xs, ys, yerr=[np.subtract(ys, lo), np.subtract(hi, ys)], fmt="o-", capsize=3)
for b, x, y in zip(P.betas, xs, ys):
    axes[0].annotate(f"beta={b:g}", (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
axes[0].axhline(ev0[hb]["sampled_acc"], color="grey", ls="--", lw=0.8, label="SFT start")
axes[0].set(xlabel="KL to the SFT start (nats/token)", ylabel=f"sampled accuracy on {hb}",
            title="reward vs KL")
axes[0].legend()
for beta, r in runs.items():
    axes[1].plot(r.history["step"], plots.smooth(r.history["reward"], 5), label=f"beta={beta:g}")
axes[1].set(xlabel="RL step", ylabel="mean batch reward (5-step mean)", title="learning curves")
axes[1].legend(fontsize=8)
fig.suptitle(f"beta scan from the {arm} SFT model, seed {P.seed}, n={P.n_passk} problems")
fig.tight_layout()
fig.savefig(out_dir / "beta_frontier.png", dpi=120)
plt.show()

# %% tags=["nbval-ignore-output"]
summary = {f"{beta:g}": {"buckets": {b: ev[beta][b] for b in P.buckets},
                         "kl": kl[beta], "verdict": verdicts[beta]} for beta in P.betas}
summary["start"] = {b: ev0[b] for b in P.buckets}
artifacts.write_json(out_dir / "metrics.json", summary)
print("wrote", out_dir / "metrics.json")

# %% tags=["nbval-check-output"]
print(checks([
    ("the measured KL to the start is finite and >= 0 for every beta",
     all(np.isfinite(v) and v >= -1e-6 for v in kl.values())),
    ("every arm took rl_steps updates", all(len(r.history["reward"]) == P.rl_steps for r in runs.values())),
    ("beta = 0 never ran the reference during training",
     all(np.isnan(r.history["kl"]).all() for b, r in runs.items() if b == 0)),
    ("every arm is a different artifact", len({r.path for r in runs.values()}) == len(runs)),
]))

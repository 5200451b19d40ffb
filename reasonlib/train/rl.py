"""KL-regularized policy-gradient RL against the answer validator.

Per step: draw prompts from a bucket mix, sample ``group_size`` answers per prompt from the
current policy (batched KV-cache sampler, T = 1 so the samples are on-policy), score them
with :mod:`reasonlib.core.reward`, turn rewards into group-relative advantages, and take one
AdamW step on

    loss = - mean_t [ A_i * log pi(y_t | prefix) ]  +  beta * mean_t KL(pi(.|prefix) || ref(.|prefix))

where the means run over every generated answer token (EOS included) in the batch, and the
KL is computed **exactly** over the vocabulary at each generated position (the vocabulary
has 264 entries, so this is cheap). The reference is the starting SFT model, frozen. With
beta = 0 the reference is never run. The k1 and k3 sample estimators of the same KL are
logged beside the exact value for comparison.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import artifacts, loop, params, sft
from ..core import metrics, reward, sampling, tasks
from .loop import TrainResult
from ..core.model import GPT
from ..core.tokenizer import EOS, PAD


# ---- pure maths ----------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, std_normalize: bool = False, eps: float = 1e-6):
    """rewards (P, G) -> (advantages (P, G), share of groups whose rewards are all equal).

    Advantage = reward - group mean (optionally divided by the group std), so it sums to zero
    in every group; a group with equal rewards has all-zero advantages and carries no signal.
    """
    mean = rewards.mean(dim=1, keepdim=True)
    adv = rewards - mean
    if std_normalize:
        adv = adv / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)
    flat = (rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean().item()
    return adv, flat


def exact_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last axis from log-probabilities: sum_v p_v (log p_v - log q_v)."""
    return (logp.exp() * (logp - logq)).sum(dim=-1)


def kl_k1(lp_pi: torch.Tensor, lp_ref: torch.Tensor) -> torch.Tensor:
    """k1 estimator at sampled tokens y ~ pi: log pi(y) - log ref(y) (unbiased, high variance)."""
    return lp_pi - lp_ref


def kl_k3(lp_pi: torch.Tensor, lp_ref: torch.Tensor) -> torch.Tensor:
    """k3 estimator at y ~ pi: r - 1 - log r with r = ref(y) / pi(y) (unbiased, >= 0)."""
    log_r = lp_ref - lp_pi
    return log_r.exp() - 1 - log_r


def rollout_batch(prompts: np.ndarray, valid: np.ndarray, gen: np.ndarray):
    """Join left-padded prompts (P, Lp), repeated G times, with generated rows (P*G, Lg).

    Each row is packed to the left, ``BOS a+b= y_1 .. y_k`` followed by padding, which is
    exactly the layout (and the positions) the sampler used, and lets the policy run with
    plain causal attention, the fast path. Returns tensors (P*G, Lp + Lg): ``seq``,
    ``seq_valid`` (the real tokens, a prefix of every row) and ``gen_mask``, the generated
    tokens up to and including the first EOS (or a sampled PAD, which also ends a row):
    exactly the tokens the policy chose, which the loss scores.
    """
    G = gen.shape[0] // prompts.shape[0]
    p = np.repeat(prompts, G, axis=0)
    v = np.repeat(valid, G, axis=0)
    stop = (gen == EOS) | (gen == PAD)
    before = np.cumsum(stop, axis=1) - stop  # terminators strictly before each position
    real = before == 0
    seq = np.concatenate([p, gen], axis=1)
    seq_valid = np.concatenate([v, real], axis=1)
    gen_mask = np.concatenate([np.zeros_like(v), real], axis=1)
    order = np.argsort(~seq_valid, axis=1, kind="stable")  # real tokens first, in order
    seq = np.take_along_axis(seq, order, axis=1)
    seq_valid = np.take_along_axis(seq_valid, order, axis=1)
    gen_mask = np.take_along_axis(gen_mask, order, axis=1)
    seq = np.where(seq_valid, seq, PAD)
    return torch.from_numpy(seq), torch.from_numpy(seq_valid), torch.from_numpy(gen_mask)


def policy_loss(policy: GPT, ref: GPT | None, seq, seq_valid, gen_mask, adv_rows, beta: float):
    """Token-level policy gradient + beta * exact KL. adv_rows: (R,) advantage per rollout.

    Returns (loss, stats) where stats holds exact KL, k1, k3, entropy (means over generated
    tokens); KL stats are NaN when ``ref`` is None (beta = 0 skips the reference forward).
    """
    # rows are left-packed (real tokens form a prefix), so plain causal attention is exact
    x, y, m = seq[:, :-1], seq[:, 1:], gen_mask[:, 1:]
    logits = policy(x, select=m)                     # (N, V), N = generated tokens
    logp = F.log_softmax(logits.float(), dim=-1)
    tgt = y[m]
    lp_tok = logp.gather(1, tgt[:, None]).squeeze(1)  # (N,)
    adv_tok = adv_rows[:, None].expand_as(m)[m]       # (N,)
    pg = -(adv_tok * lp_tok).mean()
    with torch.no_grad():
        ent = -(logp.exp() * logp).sum(-1).mean()
    stats = {"entropy": ent.item(), "kl": float("nan"), "kl_k1": float("nan"),
             "kl_k3": float("nan")}
    loss = pg
    if ref is not None:
        with torch.no_grad():
            logq = F.log_softmax(ref(x, select=m).float(), dim=-1)
        kl = exact_kl(logp, logq).mean()
        lq_tok = logq.gather(1, tgt[:, None]).squeeze(1)
        stats["kl"] = kl.item()
        stats["kl_k1"] = kl_k1(lp_tok, lq_tok).mean().item()
        stats["kl_k3"] = kl_k3(lp_tok, lq_tok).mean().item()
        if beta > 0:
            loss = pg + beta * kl
    stats["pg"] = pg.item()
    return loss, stats


def draw_prompts(buckets, n: int, rng: np.random.Generator, max_digits: int,
                 exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n RL prompts, the buckets in equal expected shares, never a problem in ``exclude``
    (held-out and reserved eval problems: :func:`reasonlib.core.tasks.train_exclusions`)."""
    a, b, _ = draw_mix(buckets, np.full(len(buckets), 1 / len(buckets)), n, rng, max_digits, exclude)
    return a, b


def draw_mix(buckets, weights, n: int, rng: np.random.Generator, max_digits: int,
             exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n RL prompts drawn bucket ``i`` with probability ``weights[i]``, never a problem in
    ``exclude``; returns (a, b, the index of each prompt's bucket)."""
    counts = rng.multinomial(n, np.asarray(weights, dtype=float))
    parts = [(*tasks.sample_bucket(b, int(k), rng, max_digits, exclude), i)
             for i, (b, k) in enumerate(zip(buckets, counts)) if k]
    return (np.concatenate([a for a, _, _ in parts]), np.concatenate([b for _, b, _ in parts]),
            np.concatenate([np.full(len(a), i) for a, _, i in parts]))


def sampled_tokens(valid: np.ndarray, gen: np.ndarray) -> int:
    """The real tokens a sampler ran the model on: each prompt's (``valid`` (P, Lp), once per
    sample) and each generated row's up to and including its first EOS or PAD (``gen``
    (P * G, Lg))."""
    G = gen.shape[0] // valid.shape[0]
    stop = (gen == EOS) | (gen == PAD)
    return int(valid.sum()) * G + int(((np.cumsum(stop, axis=1) - stop) == 0).sum())


def informative(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (P, G) -> (P,) bool: the groups whose rewards are not all equal. Only they have
    a nonzero advantage, so only they carry a gradient."""
    return rewards.max(dim=1).values != rewards.min(dim=1).values


def mix_weights(pass_rate, group_size: int, floor: float) -> np.ndarray:
    """The prompt mix from the model's per-bucket pass rate p (a sampled answer is correct):
    each bucket weighted by the chance that a group of ``group_size`` samples is informative,
    1 - p^G - (1-p)^G, then blended with the uniform mix so that every bucket keeps a share of
    at least ``floor`` (a skill RL stops practising can be forgotten). All buckets
    uninformative (every p 0 or 1): the uniform mix."""
    p = np.clip(np.asarray(pass_rate, dtype=float), 0.0, 1.0)
    k = len(p)
    if not 0 <= floor * k <= 1:
        raise ValueError(f"mix floor {floor} for {k} buckets: must be in [0, 1/{k}]")
    w = 1 - p ** group_size - (1 - p) ** group_size
    w = w / w.sum() if w.sum() > 0 else np.full(k, 1 / k)
    return floor + (1 - floor * k) * w


@dataclass
class Rollouts:
    """One step's training groups and what it took to find them."""
    a: np.ndarray            # (P,) problems of the kept groups
    b: np.ndarray
    tokens: np.ndarray       # (P * G, L) their samples, problem-major
    rewards: np.ndarray      # (P, G) their rewards
    drawn: int               # prompts drawn (and sampled) this step
    informative: int         # drawn groups whose rewards were not all equal
    rounds: int              # sampling rounds
    capped: bool             # dynamic sampling stopped at its cap short of the groups asked for
    reward: float            # mean reward over every drawn sample (the policy on the mix)
    correct: float
    parse: float
    ended: float
    bucket_correct: dict     # bucket index -> mean correct over its drawn samples
    sampled_tokens: int = 0  # real tokens the sampler ran the model on (prompts + answers)
    sample_s: float = 0.0    # seconds in the sampler
    score_s: float = 0.0     # seconds in the validator


def collect_groups(policy: GPT, prompts_per_step: int, group_size: int, buckets, weights,
                   rng: np.random.Generator, seed: int, max_digits: int, exclude, fmt: str,
                   max_new: int, dynamic: bool = False, max_draws: int = 1) -> Rollouts:
    """Sample one step's groups at T = 1.

    Without ``dynamic``: ``prompts_per_step`` prompts from the mix, every group kept (equal
    rewards and all). With it (DAPO's dynamic sampling): keep only informative groups, and
    draw again until ``prompts_per_step`` of them are found or ``max_draws *
    prompts_per_step`` prompts have been drawn (``capped``: fewer groups, possibly none).
    Later rounds draw the deficit divided by the informative share seen so far. Round 0
    samples with ``seed`` (the loop's per-step seed), round r with a seed derived from it."""
    P, G = prompts_per_step, group_size
    cap = P * (max_draws if dynamic else 1)
    kept, stats, drawn, found, rounds, n_tok = [], [], 0, 0, 0, 0
    t_sample = t_score = 0.0
    while found < P and drawn < cap:
        share = 1.0 if rounds == 0 else max(found / drawn, 1 / max_draws)   # kept share so far
        n = min(cap - drawn, max(1, math.ceil((P - found) / share)))
        a, b, which = draw_mix(buckets, weights, n, rng, max_digits, exclude)
        p, v = tasks.render_prompts(a, b)
        sd = seed if rounds == 0 else 10**12 + seed * 1000 + rounds
        t0 = time.perf_counter()
        g = sampling.generate(policy, p, v, max_new, temperature=1.0, n_samples=G, seed=sd)
        t1 = time.perf_counter()
        rw = reward.validate(g.tokens, np.repeat(a, G), np.repeat(b, G), fmt)
        t_sample += t1 - t0
        t_score += time.perf_counter() - t1
        inf = informative(torch.from_numpy(rw.total).view(-1, G)).numpy()
        keep = inf.copy() if dynamic else np.ones(n, dtype=bool)
        if dynamic:   # the first groups found, up to the number still asked for
            keep &= np.cumsum(keep) <= P - found
        kept.append(((a, b, g.tokens), which, keep))
        stats.append((rw, which, inf))
        n_tok += sampled_tokens(v, g.tokens)
        drawn += n
        found += int(keep.sum())
        rounds += 1
    width = max(t.shape[1] for (_, _, t), _, _ in kept)   # a narrower round ended every row
    toks = [np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=PAD).reshape(len(a), G, width)[k]
            for (a, _, t), _, k in kept]
    tot = np.concatenate([r.total for r, _, _ in stats])
    cor = np.concatenate([r.correct for r, _, _ in stats])
    which_all = np.repeat(np.concatenate([w for _, w, _ in stats]), G)
    return Rollouts(
        a=np.concatenate([a[k] for (a, _, _), _, k in kept]),
        b=np.concatenate([b[k] for (_, b, _), _, k in kept]),
        tokens=np.concatenate(toks).reshape(-1, width), drawn=drawn,
        rewards=np.concatenate([r.total.reshape(-1, G)[k] for (r, _, _), (_, _, k) in zip(stats, kept)]),
        informative=int(sum(i.sum() for _, _, i in stats)), rounds=rounds, capped=found < P,
        reward=float(tot.mean()), correct=float(cor.mean()),
        parse=float(np.concatenate([r.parsed for r, _, _ in stats]).mean()),
        ended=float(np.concatenate([r.ended for r, _, _ in stats]).mean()),
        bucket_correct={int(i): float(cor[which_all == i].mean()) for i in np.unique(which_all)},
        sampled_tokens=n_tok, sample_s=t_sample, score_s=t_score)


# ---- the loop ------------------------------------------------------------------------
_D = params.DEFAULTS
MIX_EMA = 0.5   # adaptive mix: weight of a step's observed pass rate in the running estimate
# RLConfig field -> the notebook parameter it comes from (and takes its default from)
RL_PARAMS = {"seed": "seed", "steps": "rl_steps", "prompts_per_step": "rl_prompts",
             "group_size": "rl_group", "lr": "rl_lr", "beta": "beta",
             "std_normalize": "rl_std_normalize", "buckets": "rl_buckets",
             "dynamic": "rl_dynamic", "max_draws": "rl_max_draws", "mix": "rl_mix",
             "mix_floor": "rl_mix_floor",
             "grad_clip": "grad_clip", "eval_every": "rl_eval_every", "eval_n": "eval_n"}


@dataclass(frozen=True)
class RLConfig:
    init: str                    # artifact key hash of the starting SFT model (sft.artifact_key)
    seed: int = _D["seed"]
    steps: int = _D["rl_steps"]
    prompts_per_step: int = _D["rl_prompts"]
    group_size: int = _D["rl_group"]
    lr: float = _D["rl_lr"]
    beta: float = _D["beta"]
    std_normalize: bool = _D["rl_std_normalize"]
    buckets: tuple = tuple(_D["rl_buckets"])
    dynamic: bool = _D["rl_dynamic"]     # dynamic sampling: train on informative groups only
    max_draws: int = _D["rl_max_draws"]  # ... drawing at most max_draws * prompts_per_step prompts
    mix: str = _D["rl_mix"]              # uniform, or adaptive: weights from per-bucket pass rates
    mix_floor: float = _D["rl_mix_floor"]  # adaptive: every bucket's least share
    grad_clip: float = _D["grad_clip"]
    warmup_steps: int = 10       # linear learning-rate warmup (Adam's first steps are large)
    log_kl_at_zero_beta: bool = False  # beta = 0: run the reference anyway (no grad) to log KL
    eval_every: int = _D["rl_eval_every"]
    eval_n: int = _D["eval_n"]

    def __post_init__(self):
        if self.mix not in params.RL_MIXES:
            raise ValueError(f"RLConfig.mix={self.mix!r}: must be one of {', '.join(params.RL_MIXES)}")
        if not 0 <= self.mix_floor * len(self.buckets) <= 1:
            raise ValueError(f"RLConfig.mix_floor={self.mix_floor}: must be in [0, 1/{len(self.buckets)}] "
                             f"for {len(self.buckets)} buckets")
        if self.max_draws < 1:
            raise ValueError(f"RLConfig.max_draws={self.max_draws}: must be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["buckets"] = list(self.buckets)
        return d


RLResult = TrainResult   # what train_rl and get_or_train return


def train_rl(cfg: RLConfig, sft_model: GPT, sft_cfg, ckpt_path=None, ckpt_every: int = 0,
             device: str = "cpu", progress: bool = True,
             stop_after_step: int | None = None) -> RLResult:
    """RL from ``sft_model`` (also the frozen reference). ``sft_cfg`` is its SFTConfig
    (format, digits, eval seed). Resumes from ``ckpt_path`` when it holds an unfinished run.
    It runs at the process's torch threads: unlike SFT's small batches, an update of
    ``prompts_per_step x group_size`` rollouts uses two threads fully (measured: 26-28 CPU s
    per quick-profile run at one thread, 13 s of wall time at two), so RL runs one after
    the other in the kernel rather than beside each other in one-thread processes."""
    for b in cfg.buckets:
        tasks.check_bucket(b)
    torch.manual_seed(cfg.seed)
    policy = copy.deepcopy(sft_model).to(device).train()
    need_ref = cfg.beta > 0 or cfg.log_kl_at_zero_beta
    ref = copy.deepcopy(sft_model).to(device).eval() if need_ref else None
    if ref is not None:
        for p in ref.parameters():
            p.requires_grad_(False)
    opt = loop.make_optimizer(policy, cfg.lr, weight_decay=0.0, fused=None)
    rng = np.random.default_rng([cfg.seed, 11])
    fmt, D = sft_cfg.fmt, sft_cfg.max_digits
    exclude = tasks.train_exclusions(D, sft_cfg.eval_seed)   # what no training path draws
    probe = tasks.make_val_set(D, cfg.eval_n, sft_cfg.eval_seed)   # validation, never eval
    max_new = tasks.max_answer_tokens(D, fmt)
    keys = ("reward", "sampled_acc", "parse", "ended", "kl", "kl_k1", "kl_k3", "entropy",
            "zero_signal", "grad_norm", "pg", "drawn", "groups", "rounds", "draws_per_group",
            "capped", "grad_tokens", "sampled_tokens", "update_tokens")
    hist = {"step": [], **{k: [] for k in keys}, "mix": [], "val": []}
    run = loop.Run(cfg.to_dict(), artifact_key(cfg), policy, opt, rng, ckpt_path, device, hist,
                   timers=("rollout_s", "score_s", "probe_s"))
    # per-bucket sampled pass rate (adaptive mix), EMA
    pass_est = list(run.resume().get("pass_est", [None] * len(cfg.buckets)))
    hist, sec = run.history, run.seconds

    def timing():  # this process's share of the run (a resumed run counts from the resume)
        return {**sec, "update_s": run.loop_s - sum(sec.values()), "loop_s": run.loop_s,
                "cpu_s": run.cpu_s}

    def save(done):
        run.save(done, timing(), pass_est=pass_est)

    run.progress(progress, cfg.steps, run.step, desc=f"RL beta={cfg.beta}")
    while run.step < cfg.steps:
        start = run.lap()
        seen = [0.5 if p is None else p for p in pass_est]   # unseen: the most informative guess
        weights = (mix_weights(seen, cfg.group_size, cfg.mix_floor) if cfg.mix == "adaptive"
                   else np.full(len(cfg.buckets), 1 / len(cfg.buckets)))
        # per-rollout randomness derived from integers: (seed, step) -> sampler seed
        ro = collect_groups(policy, cfg.prompts_per_step, cfg.group_size, cfg.buckets, weights,
                            rng, cfg.seed * 1_000_003 + run.step, D, exclude, fmt, max_new,
                            cfg.dynamic, cfg.max_draws)
        for i, c in ro.bucket_correct.items():   # what the mix learns from: every drawn sample
            pass_est[i] = c if pass_est[i] is None else (1 - MIX_EMA) * pass_est[i] + MIX_EMA * c
        st = {"entropy": float("nan"), "kl": float("nan"), "kl_k1": float("nan"),
              "kl_k3": float("nan"), "pg": float("nan")}
        gn, grad_tokens, update_tokens = 0.0, 0, 0
        if len(ro.a):   # dynamic sampling may find no informative group: then no update
            prompts, valid = tasks.render_prompts(ro.a, ro.b)
            adv, _ = group_advantages(torch.from_numpy(ro.rewards).float(), cfg.std_normalize)
            seq, sv, gm = rollout_batch(prompts, valid, ro.tokens)
            grad_tokens = int(gm[adv.reshape(-1) != 0].sum())
            update_tokens = int(sv.sum())
            policy.train()
            for grp in opt.param_groups:
                grp["lr"] = cfg.lr * min(1.0, (run.step + 1) / max(1, cfg.warmup_steps))
            loss, st = policy_loss(policy, ref, seq.to(device), sv.to(device), gm.to(device),
                                   adv.reshape(-1).to(device), cfg.beta)
            gn = run.update(loss, cfg.grad_clip, "RL").item()
        run.step += 1
        sec["rollout_s"] += ro.sample_s
        sec["score_s"] += ro.score_s
        row = {"reward": ro.reward, "sampled_acc": ro.correct, "parse": ro.parse,
               "ended": ro.ended, "zero_signal": 1 - ro.informative / ro.drawn, "grad_norm": gn,
               "drawn": ro.drawn, "groups": len(ro.a), "rounds": ro.rounds,
               "draws_per_group": ro.drawn / max(1, len(ro.a)), "capped": ro.capped,
               "grad_tokens": grad_tokens, "sampled_tokens": ro.sampled_tokens,
               "update_tokens": update_tokens, **st}
        hist["step"].append(run.step)
        for k in keys:
            hist[k].append(row[k])
        hist["mix"].append([float(w) for w in weights])
        run.tick(1, reward=f"{row['reward']:.3f}", kl=f"{row['kl']:.4f}")
        finished = run.step >= cfg.steps
        if run.step % cfg.eval_every == 0 or finished:
            t2 = time.perf_counter()
            ge = metrics.greedy_eval(policy, probe, fmt)
            hist["val"].append({"step": run.step, **{b: v["acc"] for b, v in ge.items()}})
            sec["probe_s"] += time.perf_counter() - t2
        run.lapped(start)   # the probes are the loop's time here
        if finished or (ckpt_every and run.step % ckpt_every == 0):
            save(finished)
        if stop_after_step is not None and run.step >= stop_after_step and not finished:
            save(False)
            break
    run.close()
    policy.eval()
    return RLResult(policy, hist, run.ckpt_path, True, timing(), run.provenance)


def artifact_key(cfg: RLConfig) -> dict:
    """The config (whose ``init`` is the start's own key hash) and the source of every module
    the RL loop imports, the SFT and model code included."""
    return artifacts.artifact_key("rl", cfg.to_dict(), ["train.rl"])


def artifact_dir_for(cfg: RLConfig, root) -> Path:
    return artifacts.artifact_dir(root, artifact_key(cfg))


def _loaded(sft_model: GPT, device: str):
    """How a finished RL checkpoint becomes a result, shaped like its start ``sft_model``."""
    def load(ck, path):
        model = copy.deepcopy(sft_model)
        model.load_state_dict(ck["model"])
        return RLResult(model.eval().to(device), ck["history"], path, False,
                        ck.get("timing", {}), ck.get("provenance", []))
    return load


def load_cached(cfg: RLConfig, sft_model: GPT, root, device: str = "cpu") -> RLResult | None:
    """The finished RL model of ``cfg`` from ``root/rl-<hash>/ckpt.pt`` (shaped like its
    start ``sft_model``), or None (never trains)."""
    return loop.load_cached(artifact_key(cfg), root, cfg.to_dict(), _loaded(sft_model, device))


def get_or_train(cfg: RLConfig, sft_model: GPT, sft_cfg, root, device: str = "cpu",
                 progress: bool = True, ckpt_every: int = 25) -> RLResult:
    """The RL model for ``cfg``: loaded from ``root/rl-<hash>/ckpt.pt`` when finished,
    otherwise trained (resuming an unfinished checkpoint)."""
    return loop.get_or_train(
        artifact_key(cfg), root, cfg.to_dict(), _loaded(sft_model, device),
        lambda path: train_rl(cfg, sft_model, sft_cfg, path, ckpt_every, device, progress))


def config_from_params(P, sft_cfg, beta: float | None = None,
                       start_step: int | None = None) -> RLConfig:
    """The RL config for one arm, from validated notebook parameters and its SFT start (the
    finished model, or its snapshot at probe step ``start_step``)."""
    vals = {f: getattr(P, p) for f, p in RL_PARAMS.items()}
    vals["buckets"] = tuple(vals["buckets"])
    if beta is not None:
        vals["beta"] = float(beta)
    return RLConfig(init=init_key(sft_cfg, start_step), **vals)


def init_key(sft_cfg, start_step: int | None = None) -> str:
    """How an RL config names its start: the hash of the SFT model's artifact key (so a change
    to the SFT code or config also gives the RL run a new key), ``@step-N`` for a snapshot."""
    h = artifacts.config_hash(sft.artifact_key(sft_cfg))
    return h if start_step is None else f"{h}@step-{start_step}"


# Where along the targeted SFT schedule RL starts (05's headroom curve, 06's beta scan, RL
# against more SFT): probe steps picked by the probe's greedy `general` accuracy
HEADROOM_LEVELS = (0.2, 0.5, 0.8)   # the first probe at or above each level
BEFORE_PROBES = 2     # and the probe this many before the first at or above the lowest level
MOVING_LEVEL = 0.5    # the start where RL has the most to do: the first probe at or above


def schedule_starts(history: dict, bucket: str = "general") -> dict[str, int]:
    """``{label: probe step}`` of an SFT run's snapshots to start RL from, in step order,
    each step once: one before the transition (:data:`BEFORE_PROBES` probes before the first
    at or above the lowest level), the first probe at or above each of
    :data:`HEADROOM_LEVELS` and the :func:`moving_start`. The finished run's last probe is
    not a snapshot (it is the finished model); a level no earlier probe reached gives no
    start."""
    ev = history["val"][:-1]   # the last probe is the finished model's
    steps = [e["step"] for e in ev]
    out = {}
    for lv in HEADROOM_LEVELS:
        st = next((e["step"] for e in ev if e.get(bucket, 0.0) >= lv), None)
        if st is None:
            continue
        if lv == HEADROOM_LEVELS[0] and steps.index(st) >= BEFORE_PROBES:
            before = steps[steps.index(st) - BEFORE_PROBES]
            out[before] = f"step {before} (before)"
        out.setdefault(st, f"step {st} (>= {lv:.0%})")
    mv = moving_start(history, bucket)
    if mv is not None:
        out.setdefault(mv, f"step {mv} (best probe)")
    return {out[k]: k for k in sorted(out)}


def moving_start(history: dict, bucket: str = "general") -> int | None:
    """The probe step RL starts from where it can move the policy (06's beta scan, 05's RL
    against more SFT): the first probe at or above :data:`MOVING_LEVEL`, or, in a run whose
    probes before the end never got there, its best one (the first of equals). None: no
    probe before the end at all."""
    ev = history["val"][:-1]
    if not ev:
        return None
    hit = next((e["step"] for e in ev if e.get(bucket, 0.0) >= MOVING_LEVEL), None)
    return hit if hit is not None else max(ev, key=lambda e: e.get(bucket, 0.0))["step"]


def beta_scan_jobs(P, root, device: str = "cpu") -> tuple[dict, dict]:
    """06's runs, the one home of what they are: ``{beta: (RLConfig, start model, SFTConfig)}``
    for every beta in ``P.betas``, all from the :func:`moving_start` of the targeted arm (the
    last curriculum when targeted is not run), and ``{"arm", "step", "sft"}`` of that start
    (``step`` None: the finished model). Its beta = ``P.beta`` run is 05's RL-vs-SFT run."""
    arm = "targeted" if "targeted" in P.curricula else P.curricula[-1]
    scfg = sft.config_from_params(P, arm)
    run = sft.get_or_train(scfg, root, device=device)
    at = moving_start(run.history)
    start = run.model if at is None else sft.load_snapshot(scfg, root, at, device)
    jobs = {b: (config_from_params(P, scfg, b, start_step=at), start, scfg) for b in P.betas}
    return jobs, {"arm": arm, "step": at, "sft": run}


def forgetting_jobs(P, root, device: str = "cpu") -> tuple[dict, dict]:
    """06's second scan: ``{beta: (RLConfig, start model, SFTConfig)}`` from the finished
    control arm (the study's "early RL": RL from a model that never saw the curriculum, where
    RL was seen to unlearn ``d1`` and ``d2_*``) at beta 0, ``P.beta`` and the largest of
    ``P.betas`` (its beta = ``P.beta`` run is 05's), and ``{"sft"}``; empty without control."""
    if "control" not in P.curricula:
        return {}, {}
    scfg = sft.config_from_params(P, "control")
    run = sft.get_or_train(scfg, root, device=device)
    betas = sorted({0.0, float(P.beta), float(max(P.betas))})
    return {b: (config_from_params(P, scfg, b), run.model, scfg) for b in betas}, {"sft": run}


def sft_tokens_of(history: dict, reference: bool) -> int:
    """An RL run's compute in SFT training tokens: the sampler's forward passes (2N FLOPs a
    token for N weights) over ``sampled_tokens``, the update's forward and backward (6N) over
    ``update_tokens``, and the frozen reference's forward (2N) over them too when it ran
    (``reference``); an SFT token costs 6N. Real tokens only: padding, attention scores and
    the probes are left out of both sides."""
    s, u = sum(history["sampled_tokens"]), sum(history["update_tokens"])
    return int(round(s / 3 + u * (1 + (1 / 3 if reference else 0))))


@torch.no_grad()
def kl_per_problem(policy: GPT, ref: GPT, eval_set: tasks.EvalSet, fmt: str, n_samples: int = 4,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Exact KL(policy || ref) per generated token on the policy's own samples (T = 1), as
    one value per eval problem: the mean over the tokens of its ``n_samples`` answers. The
    same quantity RL logs, measured after training; per problem, so two policies can be
    compared on the same problems (paired). ``{bucket: (n_problems,) array}``."""
    out = {}
    max_new = tasks.max_answer_tokens(eval_set.max_digits, fmt)
    for i, (bucket, (a, b)) in enumerate(eval_set.problems.items()):
        p, v = tasks.render_prompts(a, b)
        g = sampling.generate(policy, p, v, max_new, temperature=1.0, n_samples=n_samples,
                              seed=seed * 1000 + i)
        seq, sv, gm = rollout_batch(p, v, g.tokens)
        x, m = seq[:, :-1], gm[:, 1:]
        logp = F.log_softmax(policy(x, select=m).float(), dim=-1)
        logq = F.log_softmax(ref(x, select=m).float(), dim=-1)
        tok_kl = exact_kl(logp, logq).numpy()               # (N tokens,)
        problem = np.nonzero(m.numpy())[0] // n_samples     # the problem each token answers
        tot = np.bincount(problem, weights=tok_kl, minlength=len(a))
        cnt = np.bincount(problem, minlength=len(a))
        out[bucket] = tot / np.maximum(cnt, 1)
    return out


def measure_kl(policy: GPT, ref: GPT, eval_set: tasks.EvalSet, fmt: str, n_samples: int = 4,
               seed: int = 0) -> float:
    """The mean over every eval problem of :func:`kl_per_problem`."""
    return float(np.concatenate(list(kl_per_problem(policy, ref, eval_set, fmt, n_samples,
                                                    seed).values())).mean())

"""RL's rivals at equal compute, from the same start (issue 42's comparators b and c).

05's "more SFT" arm (:func:`reasonlib.train.sft.continued`) carries the SFT run's own cosine
schedule on: from a late start it barely trains, and it keeps the optimizer state and a
learning rate 2-5x RL's. These two arms start afresh instead, each with its own optimizer
(SFT's AdamW) and schedule: linear warmup, then cosine decay to ``min_lr_frac`` over the
arm's compute budget, so their learning rate can be tuned like RL's.

* ``kind="sft"``: continued SFT, **re-warmed and annealed**, on labelled problems drawn from
  RL's prompt pool (``buckets``, the held-out and reserved problems excluded, as every
  training path does). It learns from answers RL never sees.
* ``kind="rft"``: rejection-sampling fine-tuning (expert iteration). Each step draws
  ``prompts_per_step`` prompts from the same pool, samples ``group_size`` answers each at
  T = 1 from the current model, and takes an SFT step on the validator-accepted ones (the
  model's own tokens, EOS included). It gets RL's signal (the reward) and no labels.

**Equal compute.** The budget is in SFT training tokens (6N FLOPs a real token for N
weights), as :func:`reasonlib.train.rl.sft_tokens_of` counts RL's: an SFT step spends its
batch's real tokens; an RFT step spends a third of the tokens its sampler ran (2N each) and
the real tokens of its update. A run stops at the first step that reaches the budget.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import artifacts, loop, params, rl, sft
from ..core import metrics, reward, sampling, tasks
from ..core.model import GPT
from ..core.tokenizer import PAD

KINDS = ("sft", "rft")
_D = params.DEFAULTS


@dataclass(frozen=True)
class RivalConfig:
    init: str                 # the start's key (rl.init_key), as an RLConfig names it
    kind: str                 # one of KINDS
    budget: int               # compute, in SFT training tokens (RL's: rl.sft_tokens_of)
    lr: float                 # peak learning rate, tuned on validation problems
    seed: int = _D["seed"]
    buckets: tuple = tuple(_D["rl_buckets"])   # the prompt pool (RL's)
    batch_size: int = _D["batch_size"]         # sft: labelled problems a step
    prompts_per_step: int = _D["rl_prompts"]   # rft: prompts a step ...
    group_size: int = _D["rl_group"]           # ... and samples of each
    warmup_frac: float = _D["warmup_frac"]
    min_lr_frac: float = _D["min_lr_frac"]
    weight_decay: float = _D["weight_decay"]
    grad_clip: float = _D["grad_clip"]
    eval_every: int = _D["rl_eval_every"]
    eval_n: int = _D["eval_n"]

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"RivalConfig.kind={self.kind!r}: must be one of {', '.join(KINDS)}")
        if self.budget <= 0:
            raise ValueError(f"RivalConfig.budget={self.budget}: must be > 0 SFT tokens")
        if not self.lr > 0:
            raise ValueError(f"RivalConfig.lr={self.lr}: must be > 0")
        if not self.buckets:
            raise ValueError("RivalConfig.buckets is empty: name the prompt pool's buckets")
        for b in self.buckets:
            tasks.check_bucket(b)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["buckets"] = list(self.buckets)
        return d


def own_answer_loss(model: GPT, seq: torch.Tensor, gen_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the generated tokens of left-packed rows (``rl.rollout_batch``): the
    model's own accepted answers as SFT targets. seq, gen_mask (R, L)."""
    x, y, m = seq[:, :-1], seq[:, 1:], gen_mask[:, 1:]
    logits = model(x, select=m)
    return F.cross_entropy(logits.float(), y[m])


def accepted(policy: GPT, a: np.ndarray, b: np.ndarray, group_size: int, fmt: str, max_new: int,
             seed: int):
    """Sample ``group_size`` answers to each problem at T = 1 and keep the validator-accepted
    ones: (seq, gen_mask) of the kept rows (None when none is correct), the sampler's real
    tokens, and the share accepted."""
    p, v = tasks.render_prompts(a, b)
    g = sampling.generate(policy, p, v, max_new, temperature=1.0, n_samples=group_size, seed=seed)
    ok = reward.validate(g.tokens, np.repeat(a, group_size), np.repeat(b, group_size), fmt).correct
    seq, sv, gm = rl.rollout_batch(p, v, g.tokens)
    sampled = rl.sampled_tokens(v, g.tokens)
    keep = torch.from_numpy(np.asarray(ok, bool))
    if not keep.any():
        return None, sampled, 0.0
    return (seq[keep], gm[keep]), sampled, float(keep.float().mean())


def train_rival(cfg: RivalConfig, start: GPT, sft_cfg: sft.SFTConfig, ckpt_path=None,
                device: str = "cpu", progress: bool = True) -> loop.TrainResult:
    """Train one rival from ``start`` (a copy; the start is left as it is) until its budget
    is spent. ``sft_cfg`` is the start's SFT config (format, digits, eval seed). Resumes from
    ``ckpt_path`` when it holds an unfinished run."""
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(start).to(device).train()
    opt = loop.make_optimizer(model, cfg.lr, cfg.weight_decay, fused=None)
    rng = np.random.default_rng([cfg.seed, 13 if cfg.kind == "sft" else 17])
    fmt, D = sft_cfg.fmt, sft_cfg.max_digits
    exclude = tasks.train_exclusions(D, sft_cfg.eval_seed)   # what no training path draws
    probe = tasks.make_val_set(D, cfg.eval_n, sft_cfg.eval_seed)
    max_new = tasks.max_answer_tokens(D, fmt)
    hist = {"step": [], "spent": [], "loss": [], "lr": [], "grad_norm": [], "accepted": [],
            "trained_tokens": [], "sampled_tokens": [], "val": []}
    run = loop.Run(cfg.to_dict(), artifact_key(cfg), model, opt, rng, ckpt_path, device, hist,
                   timers=("sample_s",))
    spent = run.resume().get("spent", 0.0)
    hist, sec = run.history, run.seconds

    def timing():
        return {**sec, "loop_s": run.loop_s, "cpu_s": run.cpu_s}

    run.progress(progress, cfg.budget, int(spent), unit="tok", unit_scale=True,
                 desc=f"{'re-warmed SFT' if cfg.kind == 'sft' else 'RFT'} lr={cfg.lr:g}")
    while spent < cfg.budget:
        t0 = run.lap()
        lr = sft.lr_at(spent / cfg.budget, cfg.lr, cfg.warmup_frac, cfg.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        sampled, share, loss, gn, trained = 0, 1.0, float("nan"), 0.0, 0
        if cfg.kind == "sft":
            a, b = rl.draw_prompts(cfg.buckets, cfg.batch_size, rng, D, exclude)
            toks, ans = tasks.render_examples(a, b, fmt)
            trained = int((toks != PAD).sum())
            lt = sft.answer_loss(model, torch.from_numpy(toks).to(device), torch.from_numpy(ans).to(device))
        else:
            a, b = rl.draw_prompts(cfg.buckets, cfg.prompts_per_step, rng, D, exclude)
            ts = time.perf_counter()
            model.eval()
            kept, sampled, share = accepted(model, a, b, cfg.group_size, fmt, max_new,
                                            cfg.seed * 1_000_003 + run.step)
            model.train()
            sec["sample_s"] += time.perf_counter() - ts
            lt = None
            if kept is not None:
                seq, gm = kept
                trained = int((seq != PAD).sum())
                lt = own_answer_loss(model, seq.to(device), gm.to(device))
        if lt is not None:   # an RFT step with no accepted sample makes no update
            gn = float(run.update(lt, cfg.grad_clip, cfg.kind.upper()))
            loss = lt.item()
        run.step += 1
        spent += trained + sampled / 3
        run.lapped(t0)
        for k, v in (("step", run.step), ("spent", spent), ("loss", loss), ("lr", lr),
                     ("grad_norm", gn), ("accepted", share), ("trained_tokens", trained),
                     ("sampled_tokens", sampled)):
            hist[k].append(v)
        run.tick(int(trained + sampled / 3), loss=f"{loss:.3f}")
        finished = spent >= cfg.budget
        if run.step % cfg.eval_every == 0 or finished:
            ge = metrics.greedy_eval(model, probe, fmt)
            model.train()
            hist["val"].append({"step": run.step, **{k: v["acc"] for k, v in ge.items()}})
        if finished:
            run.save(True, timing(), spent=spent)
    run.close()
    model.eval()
    return loop.TrainResult(model, hist, run.ckpt_path, True, timing(), run.provenance)


def artifact_key(cfg: RivalConfig) -> dict:
    return artifacts.artifact_key("rival", cfg.to_dict(), ["train.rivals"])


def get_or_train(cfg: RivalConfig, start: GPT, sft_cfg, root, device: str = "cpu",
                 progress: bool = True) -> loop.TrainResult:
    """The rival of ``cfg``: loaded from ``root/rival-<hash>/ckpt.pt`` when finished,
    otherwise trained from ``start``."""
    def load(ck, path: Path):
        model = copy.deepcopy(start)
        model.load_state_dict(ck["model"])
        return loop.TrainResult(model.eval().to(device), ck["history"], path, False,
                                ck.get("timing", {}), ck.get("provenance", []))
    return loop.get_or_train(artifact_key(cfg), root, cfg.to_dict(), load,
                             lambda path: train_rival(cfg, start, sft_cfg, path, device, progress))

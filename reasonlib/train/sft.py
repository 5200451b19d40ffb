"""Supervised fine-tuning on a curriculum: loss on answer tokens only.

AdamW, linear warmup then cosine decay (both driven by the share of the token budget
used), gradient clipping, a periodic greedy probe on a fixed slice of the eval set, and
checkpoints that hold everything needed to resume bit for bit: model, optimizer, the data
generator's state, the torch RNG, step, tokens seen, history and config.

Snapshots: an arm with ``snapshots`` also keeps such a checkpoint at every probe step
(``snapshots/step-NNNNN.pt`` beside ``ckpt.pt``), so RL can start from any point of the
schedule (05's headroom curve) and the schedule can be continued from it (:func:`continued`,
"more SFT").

Threads: SFT trains at one torch thread on CPU (``runtime.TRAIN_THREADS``), whatever the
process has: the setting the recipe was calibrated at, and one number per arm whichever way
it is trained. Several arms train at once in worker processes instead
(:func:`get_or_train_many`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import artifacts, loop, params
from ..core import metrics, tasks
from ..core import packed as packed_step
from .curriculum import BatchMaker, check_curriculum, stages
from .loop import TrainResult
from ..core.model import GPT, ModelConfig
from ..core.schemes import PLACED
from ..core.runtime import in_processes, train_threads
from ..core.tokenizer import PAD


_D = params.DEFAULTS  # the one home of every default (a test compares them all)
SNAPSHOTS = "snapshots"   # the folder of an arm's probe-step checkpoints, beside ckpt.pt


@dataclass(frozen=True)
class SFTConfig:
    """One SFT arm. Every field but ``curriculum`` is the notebook parameter of the same name,
    and takes its default from :data:`reasonlib.train.params.SCHEMA`."""
    curriculum: str = "targeted"
    fmt: str = _D["fmt"]
    max_digits: int = _D["max_digits"]
    seed: int = _D["seed"]
    # model
    n_layer: int = _D["n_layer"]
    n_head: int = _D["n_head"]
    n_embd: int = _D["n_embd"]
    pos: str = _D["pos"]
    pos_offset: int = _D["pos_offset"]
    # optimisation
    total_tokens: int = _D["total_tokens"]
    batch_size: int = _D["batch_size"]
    lr: float = _D["lr"]
    min_lr_frac: float = _D["min_lr_frac"]
    warmup_frac: float = _D["warmup_frac"]
    weight_decay: float = _D["weight_decay"]
    grad_clip: float = _D["grad_clip"]
    # curriculum
    replay: float = _D["replay"]
    mixed_replay: float = _D["mixed_replay"]
    # probing
    eval_every: int = _D["eval_every"]
    eval_n: int = _D["eval_n"]
    eval_seed: int = _D["eval_seed"]  # fixes the eval problems, so what training never draws
    # not a parameter: keep a resumable checkpoint at every probe step (the curriculum arms
    # do; the format and position-scheme arms of 03 and 08 do not, see study_arms)
    snapshots: bool = True
    # train with the packed, padding-free step (answer_loss(packed=True)): the same loss with
    # other float roundings, so a profile's calibrated numbers are measured again before it
    # uses it (the quick profile does; docs/performance.md)
    packed: bool = _D["packed"]

    def __post_init__(self):
        check_curriculum(self.curriculum)
        tasks.check_format(self.fmt)
        if self.pos not in PLACED:   # the offset means nothing without digit places, so
            object.__setattr__(self, "pos_offset", 0)   # it never splits a cache key

    def model_config(self) -> ModelConfig:
        return ModelConfig(n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                           pos=self.pos,
                           block_size=tasks.block_size_for(self.max_digits, self.fmt))

    def to_dict(self) -> dict:
        return asdict(self)


SFTResult = TrainResult   # what train_sft, get_or_train and continued return


def lr_at(frac: float, base: float, warmup_frac: float, min_frac: float) -> float:
    """Learning rate after ``frac`` of the budget: linear warmup, then cosine to min_frac*base."""
    if warmup_frac > 0 and frac < warmup_frac:
        return base * (frac + 1e-9) / warmup_frac
    t = min(1.0, (frac - warmup_frac) / max(1e-9, 1 - warmup_frac))
    return base * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model: torch.nn.Module, cfg: SFTConfig, fused: bool | None = None) -> torch.optim.AdamW:
    """SFT's AdamW (:func:`reasonlib.train.loop.make_optimizer` at ``cfg.lr``, ``cfg.weight_decay``).
    ``fused`` (default: on CPU and CUDA) picks the one-kernel-a-tensor implementation; ``make
    bench`` also times the plain loop with it."""
    if fused is None:
        fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return loop.make_optimizer(model, cfg.lr, cfg.weight_decay, fused)


def answer_loss(model: GPT, tokens: torch.Tensor, answer: torch.Tensor,
                place_offset: torch.Tensor | None = None, packed: bool = False) -> torch.Tensor:
    """Mean cross-entropy over answer positions only.

    tokens (B, T) right-padded ids; answer (B, T) marks answer tokens. Position t predicts
    token t+1, so the hidden state at t is scored when token t+1 is an answer token; the
    output layer runs on those positions only. ``place_offset`` (B,): the training place offsets
    of the placed schemes (``model.PLACED``).

    ``packed``: the same loss without padding: each row up to its last scored position (no
    EOS and no padding is run), its tokens in one list, attention in bins of
    ``packed.bin_slots(T - 1)`` slots (:mod:`reasonlib.core.packed`). The same value to float rounding,
    not the same floats.
    """
    x, y, m = tokens[:, :-1], tokens[:, 1:], answer[:, 1:]
    if not packed:
        h = model(x, hidden_only=True, select=m, place_offset=place_offset)
        return F.cross_entropy(model.head(h).float(), y[m])
    T = x.shape[1]
    keep = (m * torch.arange(1, T + 1, device=m.device)).amax(1)   # last scored position + 1
    p = packed_step.pack_rows(keep, T, packed_step.bin_slots(T))
    h = packed_step.hidden(model, x, m, p, place_offset)
    return F.cross_entropy(model.head(h).float(), y[m])


def train_sft(cfg: SFTConfig, ckpt_path=None, ckpt_every: int = 0, device: str = "cpu",
              progress: bool = True, stop_after_step: int | None = None,
              stop_at_tokens: int | None = None, snapshot_dir=None) -> SFTResult:
    """Train (or resume, when ``ckpt_path`` holds an unfinished checkpoint of this config).

    ``stop_after_step`` / ``stop_at_tokens`` end the loop early (after that step, or once
    that many tokens were seen) with an unfinished checkpoint saved: tests use the first to
    simulate an interrupted run, :func:`continued` the second. ``snapshot_dir``: where a
    checkpoint of every probe step is kept (``step-NNNNN.pt``).
    """
    with train_threads(device):
        return _train_sft(cfg, ckpt_path, ckpt_every, device, progress, stop_after_step,
                          stop_at_tokens, snapshot_dir)


def _train_sft(cfg, ckpt_path, ckpt_every, device, progress, stop_after_step, stop_at_tokens,
               snapshot_dir) -> SFTResult:
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config()).to(device)
    opt = make_optimizer(model, cfg)
    data_rng = np.random.default_rng([cfg.seed, 7])
    # the probe reads validation problems only: every choice made from it (transition steps,
    # RL starts, recipes) leaves the eval problems to be scored
    probe = tasks.make_val_set(cfg.max_digits, cfg.eval_n, cfg.eval_seed)
    # held-out and reserved eval problems: never drawn, whatever eval sizes a notebook uses
    maker = BatchMaker(cfg.curriculum, cfg.fmt, cfg.max_digits, cfg.batch_size, data_rng,
                       exclude=tasks.train_exclusions(cfg.max_digits, cfg.eval_seed),
                       replay=cfg.replay, mixed_replay=cfg.mixed_replay)
    hist = {"step": [], "tokens": [], "loss": [], "lr": [], "grad_norm": [], "stage": [],
            "val": []}
    run = loop.Run(cfg.to_dict(), artifact_key(cfg), model, opt, data_rng, ckpt_path, device,
                   hist, timers=("data_s",))
    seen = run.resume().get("tokens", 0)
    hist, sec = run.history, run.seconds

    def timing():  # this process's share of the run (a resumed run counts from the resume)
        return {"data_s": sec["data_s"], "loop_s": run.loop_s, "cpu_s": run.cpu_s,
                "data_share": sec["data_s"] / run.loop_s if run.loop_s else 0.0}

    def save(done: bool, path=None):
        run.save(done, timing(), path, tokens=seen)

    run.progress(progress, cfg.total_tokens, seen, unit="tok", unit_scale=True,
                 desc=f"SFT {cfg.curriculum}")
    model.train()
    while seen < cfg.total_tokens:
        start = run.lap()
        frac = seen / cfg.total_tokens
        toks, ans = maker.next_batch(frac)
        toks_t = torch.from_numpy(toks).to(device)
        ans_t = torch.from_numpy(ans).to(device)
        n_tok = int((toks != PAD).sum())
        sec["data_s"] += time.perf_counter() - start[0]
        lr = lr_at(frac, cfg.lr, cfg.warmup_frac, cfg.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        off = None
        if cfg.pos in PLACED and cfg.pos_offset:  # the torch RNG: saved in the checkpoint
            off = torch.randint(0, cfg.pos_offset + 1, (toks_t.shape[0],)).to(device)
        loss = answer_loss(model, toks_t, ans_t, off, packed=cfg.packed)
        gn = run.update(loss, cfg.grad_clip, "SFT")
        loss = loss.item()
        run.step += 1
        seen += n_tok
        run.lapped(start)   # the probes below are not the loop's time
        hist["step"].append(run.step)
        hist["tokens"].append(seen)
        hist["loss"].append(loss)
        hist["lr"].append(lr)
        hist["grad_norm"].append(float(gn))
        hist["stage"].append(maker.last_stage)
        run.tick(n_tok, loss=f"{loss:.3f}")
        finished = seen >= cfg.total_tokens
        if run.step % cfg.eval_every == 0 or finished:
            g = metrics.greedy_eval(model, probe, cfg.fmt)
            model.train()
            hist["val"].append({"step": run.step, "tokens": seen,
                                 **{b: r["acc"] for b, r in g.items()},
                                 **{f"parse_{b}": r["parse"] for b, r in g.items()}})
            if snapshot_dir is not None and not finished:   # the finished one is ckpt.pt
                save(False, Path(snapshot_dir) / f"step-{run.step:05d}.pt")
        if finished or (ckpt_every and run.step % ckpt_every == 0):
            save(finished)
        stop = ((stop_after_step is not None and run.step >= stop_after_step)
                or (stop_at_tokens is not None and seen >= stop_at_tokens))
        if stop and not finished:
            save(False)
            break
    run.close()
    model.eval()
    return SFTResult(model, hist, run.ckpt_path, trained_now=True, timing=timing(),
                     provenance=run.provenance)


def transition_step(history: dict, level: float, bucket: str = "general") -> int | None:
    """The first training step whose probe put ``bucket``'s greedy accuracy at or above
    ``level`` (None if no probe did): with 0.5 and 0.9, when the 3-digit transition began
    and when it was done."""
    for e in history["val"]:
        if e.get(bucket, 0.0) >= level:
            return e["step"]
    return None


def load_model(path, expect_config: dict | None = None) -> tuple[GPT, dict]:
    """Rebuild a model from a checkpoint (its config travels with it)."""
    ck = artifacts.load_checkpoint(path, expect_config)
    return _model_from(SFTConfig(**ck["config"]), ck), ck


def _model_from(cfg: SFTConfig, ck: dict) -> GPT:
    model = GPT(cfg.model_config())
    model.load_state_dict(ck["model"])
    return model.eval()


def artifact_key(cfg: SFTConfig) -> dict:
    """What the model of ``cfg`` is keyed by: the config, the stage schedule its curriculum
    expands to, and the source of every module the SFT loop imports (artifacts.code_digest)."""
    sched = [[st.name, st.start, st.end, [list(w) for w in st.weights]]
             for st in stages(cfg.curriculum, cfg.replay, cfg.mixed_replay)]
    return artifacts.artifact_key("sft", cfg.to_dict(), ["train.sft"], extra={"schedule": sched})


def artifact_dir_for(cfg: SFTConfig, root) -> Path:
    """Where the model of ``cfg`` lives: editing a curriculum or any training module gives a
    new folder, so a stale model is never reused."""
    return artifacts.artifact_dir(root, artifact_key(cfg))


def _loaded(cfg: SFTConfig, device: str):
    """How a finished SFT checkpoint becomes a result (``loop.get_or_train``'s ``load``)."""
    return lambda ck, path: SFTResult(_model_from(cfg, ck).to(device), ck["history"], path,
                                      False, ck.get("timing", {}), ck.get("provenance", []))


def load_cached(cfg: SFTConfig, root, device: str = "cpu") -> SFTResult | None:
    """The finished model of ``cfg`` from ``root/sft-<hash>/ckpt.pt``, or None (never trains)."""
    return loop.load_cached(artifact_key(cfg), root, cfg.to_dict(), _loaded(cfg, device))


def get_or_train(cfg: SFTConfig, root, device: str = "cpu", progress: bool = True,
                 ckpt_every: int = 200) -> SFTResult:
    """The SFT model for ``cfg``: loaded from ``root/sft-<hash>/ckpt.pt`` when finished,
    otherwise trained (resuming an unfinished checkpoint)."""
    snaps = artifact_dir_for(cfg, root) / SNAPSHOTS if cfg.snapshots else None
    return loop.get_or_train(
        artifact_key(cfg), root, cfg.to_dict(), _loaded(cfg, device),
        lambda path: train_sft(cfg, path, ckpt_every=ckpt_every, device=device,
                               progress=progress, snapshot_dir=snaps))


def _train_arm(cfg: SFTConfig, root: str) -> None:
    """One arm in a worker process of :func:`get_or_train_many`."""
    get_or_train(cfg, root, progress=False)


def get_or_train_many(cfgs, root, device: str = "cpu", progress: bool = True) -> list[SFTResult]:
    """:func:`get_or_train` for several arms; on CPU the ones not in the cache train at the
    same time, one worker process each (``runtime.in_processes``). An arm's numbers are those
    it gets trained alone: one thread each, and the processes share nothing. Each checkpoint
    is read once; an arm listed twice is one result."""
    cfgs = list(cfgs)
    found = {c: load_cached(c, root, device) for c in dict.fromkeys(cfgs)}
    todo = [c for c, r in found.items() if r is None]
    if len(todo) > 1 and str(device) == "cpu":
        in_processes(_train_arm, {f"{i + 1} ({arm_label(c)}, seed {c.seed})": (c, str(root))
                                  for i, c in enumerate(todo)}, "SFT arm", progress)
        for c in todo:   # trained by a worker, just now
            found[c] = load_cached(c, root, device)
            found[c].trained_now = True
    found = {c: r or get_or_train(c, root, device, progress) for c, r in found.items()}
    return [found[c] for c in cfgs]


def arm_label(cfg: SFTConfig) -> str:
    """``targeted`` / ``targeted, plain`` / ``targeted, local``: what tells an arm apart."""
    extra = [cfg.fmt] if cfg.fmt != _D["fmt"] else []
    extra += [cfg.pos] if cfg.pos != _D["pos"] else []
    return ", ".join([cfg.curriculum, *extra])


def study_arms(P) -> dict[str, SFTConfig]:
    """Every SFT arm a seed's notebooks use, the one home of how they are built: the
    curricula (03-07, with snapshots; targeted always), the targeted curriculum once per
    other answer format (03) and once per other position scheme (08), with this run's
    budget. Keys: the curriculum, ``format <fmt>``, ``pos <scheme>``."""
    # the targeted arm always: the variants' own-format, own-scheme arm
    arms = {c: config_from_params(P, c) for c in dict.fromkeys([*P.curricula, "targeted"])}
    base = arms["targeted"]
    for f in P.formats:
        if f != P.fmt:
            arms[f"format {f}"] = replace(base, fmt=f, snapshots=False)
    for s in P.positions:
        if s != P.pos:
            arms[f"pos {s}"] = replace(base, pos=s, pos_offset=P.pos_offset, snapshots=False)
    return arms


# ---- snapshots and continued SFT ---------------------------------------------------------

def snapshot_steps(cfg: SFTConfig, root) -> list[int]:
    """The probe steps of ``cfg``'s snapshots (empty when it keeps none or is not trained)."""
    d = artifact_dir_for(cfg, root) / SNAPSHOTS
    return sorted(int(p.stem.split("-")[1]) for p in d.glob("step-*.pt"))


def snapshot_path(cfg: SFTConfig, root, step: int) -> Path:
    p = artifact_dir_for(cfg, root) / SNAPSHOTS / f"step-{step:05d}.pt"
    if not p.is_file():
        have = snapshot_steps(cfg, root)
        raise ValueError(f"no SFT snapshot at step {step} for {arm_label(cfg)} (seed {cfg.seed}); "
                         + (f"its snapshots are at steps {', '.join(map(str, have))}" if have else
                            "it has none (train it with snapshots=True first)"))
    return p


def load_snapshot(cfg: SFTConfig, root, step: int, device: str = "cpu") -> GPT:
    """The model of ``cfg`` at probe step ``step`` of its schedule."""
    return _model_from(cfg, artifacts.load_checkpoint(snapshot_path(cfg, root, step),
                                                      cfg.to_dict())).to(device)


def continued(cfg: SFTConfig, root, step: int, tokens: int, device: str = "cpu",
              progress: bool = True) -> SFTResult:
    """The SFT run of ``cfg`` continued from its snapshot at ``step`` for ``tokens`` more
    training tokens: the same schedule, data stream and optimizer state, so the run it would
    have been (05's "more SFT" arm). Cached in ``root/sft-more-<hash>/``; an interrupted
    continuation resumes."""
    snap = snapshot_path(cfg, root, step)
    key = dict(artifact_key(cfg), kind="sft-more", more={"from_step": step, "tokens": int(tokens)})
    d = artifacts.artifact_dir(root, key)
    path, done = d / "ckpt.pt", d / "done.json"
    if done.is_file():
        ck = artifacts.load_checkpoint(path, cfg.to_dict())
        return SFTResult(_model_from(cfg, ck).to(device), ck["history"], path, False,
                         artifacts.read_json(done)["timing"], ck.get("provenance", []))
    artifacts.write_json(d / "key.json", key)
    if not path.exists():
        artifacts.write_bytes(path, snap.read_bytes())
    start = artifacts.load_checkpoint(snap, cfg.to_dict())["tokens"]
    res = train_sft(cfg, path, device=device, progress=progress, stop_at_tokens=start + int(tokens))
    artifacts.write_json(done, {"timing": res.timing, "from_tokens": start})
    return res


def config_from_params(P, curriculum: str) -> SFTConfig:
    """The SFT config of one curriculum arm, from validated notebook parameters (every field
    but ``curriculum`` is the parameter of the same name)."""
    return SFTConfig(curriculum=curriculum,
                     **{f.name: getattr(P, f.name) for f in fields(SFTConfig)
                        if f.name not in CONFIG_ONLY})


CONFIG_ONLY = ("curriculum", "snapshots")   # the SFTConfig fields no parameter sets

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

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import artifacts, metrics, params, tasks
from .runtime import in_processes, train_threads
from .curriculum import BatchMaker, check_curriculum, stages
from . import packed as packed_step
from .model import GPT, PLACED, ModelConfig
from .tokenizer import PAD


_D = params.DEFAULTS  # the one home of every default (a test compares them all)
SNAPSHOTS = "snapshots"   # the folder of an arm's probe-step checkpoints, beside ckpt.pt


@dataclass(frozen=True)
class SFTConfig:
    """One SFT arm. Every field but ``curriculum`` is the notebook parameter of the same name,
    and takes its default from :data:`reasonlib.params.SCHEMA`."""
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
    # uses it (the quick profile does; README, speed)
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


@dataclass
class SFTResult:
    model: GPT
    history: dict
    path: Path | None = None
    trained_now: bool = False
    timing: dict = field(default_factory=dict)
    provenance: list = field(default_factory=list)  # one entry per process that trained it


def lr_at(frac: float, base: float, warmup_frac: float, min_frac: float) -> float:
    """Learning rate after ``frac`` of the budget: linear warmup, then cosine to min_frac*base."""
    if warmup_frac > 0 and frac < warmup_frac:
        return base * (frac + 1e-9) / warmup_frac
    t = min(1.0, (frac - warmup_frac) / max(1e-9, 1 - warmup_frac))
    return base * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model: torch.nn.Module, cfg: SFTConfig, fused: bool | None = None) -> torch.optim.AdamW:
    """SFT's AdamW (``cfg.lr``, ``cfg.weight_decay`` on matrices only). ``fused`` (default: on
    CPU and CUDA) picks the one-kernel-a-tensor implementation; ``make bench`` also times the
    plain loop with it."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    if fused is None:
        fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8, fused=fused)


def answer_loss(model: GPT, tokens: torch.Tensor, answer: torch.Tensor,
                place_offset: torch.Tensor | None = None, packed: bool = False) -> torch.Tensor:
    """Mean cross-entropy over answer positions only.

    tokens (B, T) right-padded ids; answer (B, T) marks answer tokens. Position t predicts
    token t+1, so the hidden state at t is scored when token t+1 is an answer token; the
    output layer runs on those positions only. ``place_offset`` (B,): the training place offsets
    of the placed schemes (``model.PLACED``).

    ``packed``: the same loss without padding: each row up to its last scored position (no
    EOS and no padding is run), its tokens in one list, attention in bins of
    ``packed.bin_slots(T - 1)`` slots (:mod:`reasonlib.packed`). The same value to float rounding,
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


def check_finite(value, what: str, step: int, ckpt_path) -> None:
    """Stop a run whose ``what`` (a loss, a gradient norm, the weights' largest magnitude)
    is NaN or inf at ``step``, naming the step and the checkpoint that is kept.

    The loops call it before anything of that step is saved: the loss before backward, the
    gradient norm before the optimizer step, the weights after it (a huge learning rate can
    overflow them from finite gradients), so the checkpoint on disk is the last good one."""
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if math.isfinite(v):
        return
    if ckpt_path is None:
        kept = "no checkpoint path was given"
    elif Path(ckpt_path).exists():
        kept = f"last good checkpoint kept at {ckpt_path}"
    else:
        kept = f"no checkpoint was written yet at {ckpt_path}"
    raise FloatingPointError(f"{what} is {v} at step {step}; {kept}")


def max_abs_weight(model: torch.nn.Module) -> torch.Tensor:
    """The largest |w| over every parameter: NaN or inf when any weight is (one sync)."""
    return torch.stack([p.detach().abs().amax() for p in model.parameters()]).amax()


def _rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, s: str) -> None:
    rng.bit_generator.state = json.loads(s)


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
    probe = tasks.make_eval_set(cfg.max_digits, cfg.eval_n, cfg.eval_seed)
    # held-out and reserved eval problems: never drawn, whatever eval sizes a notebook uses
    maker = BatchMaker(cfg.curriculum, cfg.fmt, cfg.max_digits, cfg.batch_size, data_rng,
                       exclude=tasks.train_exclusions(cfg.max_digits, cfg.eval_seed),
                       replay=cfg.replay, mixed_replay=cfg.mixed_replay)
    step, seen = 0, 0
    hist = {"step": [], "tokens": [], "loss": [], "lr": [], "grad_norm": [], "stage": [],
            "eval": []}
    prov = artifacts.provenance_segments([], device)
    key = artifact_key(cfg)
    ckpt_path = Path(ckpt_path) if ckpt_path else None
    if ckpt_path and ckpt_path.exists():
        ck = artifacts.load_checkpoint(ckpt_path, expect_config=cfg.to_dict())
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        _set_rng_state(data_rng, ck["rng_np"])
        torch.set_rng_state(ck["rng_torch"])
        step, seen, hist = ck["step"], ck["tokens"], ck["history"]
        prov = artifacts.provenance_segments(ck.get("provenance", []), device)

    def save(done: bool, path=None):
        path = path or ckpt_path
        if path:
            artifacts.save_checkpoint(path, {
                "config": cfg.to_dict(), "model": model.state_dict(), "optim": opt.state_dict(),
                "rng_np": _rng_state(data_rng), "rng_torch": torch.get_rng_state(),
                "step": step, "tokens": seen, "history": hist, "done": done,
                "timing": _timing(), "provenance": prov, "key": key})

    def _timing():  # this process's share of the run (a resumed run counts from the resume)
        return {"data_s": t_data, "loop_s": t_loop, "cpu_s": t_cpu,
                "data_share": t_data / t_loop if t_loop else 0.0}

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.total_tokens, initial=seen, unit="tok", unit_scale=True,
                   desc=f"SFT {cfg.curriculum}")
    t_data = t_loop = t_cpu = 0.0   # t_cpu: CPU seconds, the run's cost whatever ran beside it
    model.train()
    while seen < cfg.total_tokens:
        t0, c0 = time.perf_counter(), time.process_time()
        frac = seen / cfg.total_tokens
        toks, ans = maker.next_batch(frac)
        toks_t = torch.from_numpy(toks).to(device)
        ans_t = torch.from_numpy(ans).to(device)
        n_tok = int((toks != PAD).sum())
        t1 = time.perf_counter()
        lr = lr_at(frac, cfg.lr, cfg.warmup_frac, cfg.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        off = None
        if cfg.pos in PLACED and cfg.pos_offset:  # the torch RNG: saved in the checkpoint
            off = torch.randint(0, cfg.pos_offset + 1, (toks_t.shape[0],)).to(device)
        loss = answer_loss(model, toks_t, ans_t, off, packed=cfg.packed)
        check_finite(loss, "SFT loss", step + 1, ckpt_path)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        check_finite(gn, "SFT gradient norm", step + 1, ckpt_path)
        opt.step()
        check_finite(max_abs_weight(model), "SFT largest weight after the update", step + 1,
                     ckpt_path)
        loss = loss.item()
        step += 1
        seen += n_tok
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_loop += t2 - t0
        t_cpu += time.process_time() - c0
        hist["step"].append(step)
        hist["tokens"].append(seen)
        hist["loss"].append(loss)
        hist["lr"].append(lr)
        hist["grad_norm"].append(float(gn))
        hist["stage"].append(maker.last_stage)
        if bar is not None:
            bar.update(n_tok)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        finished = seen >= cfg.total_tokens
        if step % cfg.eval_every == 0 or finished:
            g = metrics.greedy_eval(model, probe, cfg.fmt)
            model.train()
            hist["eval"].append({"step": step, "tokens": seen,
                                 **{b: r["acc"] for b, r in g.items()},
                                 **{f"parse_{b}": r["parse"] for b, r in g.items()}})
            if snapshot_dir is not None and not finished:   # the finished one is ckpt.pt
                save(False, Path(snapshot_dir) / f"step-{step:05d}.pt")
        if finished or (ckpt_every and step % ckpt_every == 0):
            save(finished)
        stop = ((stop_after_step is not None and step >= stop_after_step)
                or (stop_at_tokens is not None and seen >= stop_at_tokens))
        if stop and not finished:
            save(False)
            break
    if bar is not None:
        bar.close()
    model.eval()
    return SFTResult(model, hist, ckpt_path, trained_now=True, timing=_timing(), provenance=prov)



def transition_step(history: dict, level: float, bucket: str = "general") -> int | None:
    """The first training step whose probe put ``bucket``'s greedy accuracy at or above
    ``level`` (None if no probe did): with 0.5 and 0.9, when the 3-digit transition began
    and when it was done."""
    for e in history["eval"]:
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
    return artifacts.artifact_key("sft", cfg.to_dict(), ["sft"], extra={"schedule": sched})


def artifact_dir_for(cfg: SFTConfig, root) -> Path:
    """Where the model of ``cfg`` lives: editing a curriculum or any training module gives a
    new folder, so a stale model is never reused."""
    return artifacts.artifact_dir(root, artifact_key(cfg))


def load_cached(cfg: SFTConfig, root, device: str = "cpu") -> SFTResult | None:
    """The finished model of ``cfg`` from ``root/sft-<hash>/ckpt.pt``, or None (never trains)."""
    path = artifact_dir_for(cfg, root) / "ckpt.pt"
    ck = artifacts.load_finished(path, cfg.to_dict())
    if ck is None:
        return None
    return SFTResult(_model_from(cfg, ck).to(device), ck["history"], path, trained_now=False,
                     timing=ck.get("timing", {}), provenance=ck.get("provenance", []))


def get_or_train(cfg: SFTConfig, root, device: str = "cpu", progress: bool = True,
                 ckpt_every: int = 200) -> SFTResult:
    """The SFT model for ``cfg``: loaded from ``root/sft-<hash>/ckpt.pt`` when finished,
    otherwise trained (resuming an unfinished checkpoint)."""
    cached = load_cached(cfg, root, device)
    if cached is not None:
        return cached
    d = artifact_dir_for(cfg, root)
    path = d / "ckpt.pt"
    artifacts.write_json(d / "key.json", artifact_key(cfg))
    return train_sft(cfg, path, ckpt_every=ckpt_every, device=device, progress=progress,
                     snapshot_dir=d / SNAPSHOTS if cfg.snapshots else None)


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

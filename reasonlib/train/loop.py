"""The one training-loop skeleton SFT and RL share.

A loop (``sft._train_sft``, ``rl._train_rl``) builds its model, optimizer and data RNG, then
hands them to a :class:`Run`, which owns what every loop does the same way:

* resume: an unfinished checkpoint of the same config restores the weights, the optimizer,
  the numpy and torch RNGs, the step, the history and the loop's own extras, so a resumed
  run is the run it would have been, bit for bit;
* atomic saves of all of that (``artifacts.save_checkpoint``), with provenance and key;
* timing: named seconds (data, rollouts, ...), the loop's wall and CPU seconds;
* a progress bar; the update step with its three finite checks; the probe record.

Artifacts that are cached by config (``<root>/<kind>-<hash>/ckpt.pt``) are found, loaded or
trained by :func:`get_or_train`. :class:`TrainResult` is what both loops return.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import artifacts

# AdamW's hyper-parameters besides the learning rate and decay: the one home of both loops'
BETAS, EPS = (0.9, 0.98), 1e-8


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   fused: bool | None) -> torch.optim.AdamW:
    """AdamW with :data:`BETAS` and :data:`EPS`, ``weight_decay`` on matrices only. ``fused``:
    the one-kernel-a-tensor implementation (None: torch's default for the device)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=BETAS, eps=EPS, fused=fused)


@dataclass
class TrainResult:
    """A trained (or loaded) model of SFT or RL, with its history and where it lives."""
    model: torch.nn.Module
    history: dict
    path: Path | None = None
    trained_now: bool = False
    timing: dict = field(default_factory=dict)
    provenance: list = field(default_factory=list)  # one entry per process that trained it


def check_finite(value, what: str, step: int, ckpt_path) -> None:
    """Stop a run whose ``what`` (a loss, a gradient norm, the weights' largest magnitude)
    is NaN or inf at ``step``, naming the step and the checkpoint that is kept.

    :meth:`Run.update` calls it before anything of that step is saved: the loss before
    backward, the gradient norm before the optimizer step, the weights after it (a huge
    learning rate can overflow them from finite gradients), so the checkpoint on disk is the
    last good one."""
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


class Run:
    """One training run's state besides the loop's own variables: checkpoint, timing, bar.

    ``extras`` names the loop's own checkpoint fields (SFT: ``tokens``; RL: ``pass_est``):
    :meth:`resume` returns them, :meth:`save` takes them."""

    def __init__(self, cfg: dict, key: dict, model, opt, rng: np.random.Generator, ckpt_path,
                 device: str, history: dict, timers: tuple[str, ...]):
        self.cfg, self.key, self.model, self.opt, self.rng = cfg, key, model, opt, rng
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.device, self.history, self.step = device, history, 0
        self.provenance = artifacts.provenance_segments([], device)
        self.seconds = dict.fromkeys(timers, 0.0)   # this process's share of the run
        self.loop_s = self.cpu_s = 0.0
        self.bar = None

    def resume(self) -> dict:
        """Restore an unfinished checkpoint at ``ckpt_path`` if there is one; the loop's
        extras from it (empty when starting fresh)."""
        if not (self.ckpt_path and self.ckpt_path.exists()):
            return {}
        ck = artifacts.load_checkpoint(self.ckpt_path, expect_config=self.cfg)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optim"])
        self.rng.bit_generator.state = json.loads(ck["rng_np"])
        torch.set_rng_state(ck["rng_torch"])
        self.step, self.history = ck["step"], ck["history"]
        self.provenance = artifacts.provenance_segments(ck.get("provenance", []), self.device)
        return ck

    def save(self, done: bool, timing: dict, path=None, **extras) -> None:
        path = path or self.ckpt_path
        if path:
            artifacts.save_checkpoint(path, {
                "config": self.cfg, "model": self.model.state_dict(),
                "optim": self.opt.state_dict(), "rng_np": json.dumps(self.rng.bit_generator.state),
                "rng_torch": torch.get_rng_state(), "step": self.step, "history": self.history,
                "done": done, "timing": timing, "provenance": self.provenance, "key": self.key,
                **extras})

    def progress(self, on: bool, total: int, initial: int, **kw) -> None:
        if on:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, **kw)

    def tick(self, n: int, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(refresh=False, **postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def lap(self) -> tuple[float, float]:
        """The start of a loop iteration: (wall, CPU) clocks for :meth:`lapped`."""
        return time.perf_counter(), time.process_time()

    def lapped(self, start: tuple[float, float]) -> None:
        self.loop_s += time.perf_counter() - start[0]
        self.cpu_s += time.process_time() - start[1]

    def update(self, loss: torch.Tensor, grad_clip: float, what: str) -> torch.Tensor:
        """One optimizer step on ``loss`` (step number ``self.step + 1``), clipped to
        ``grad_clip``, with the finite checks; returns the gradient norm before clipping."""
        step, path = self.step + 1, self.ckpt_path
        check_finite(loss, f"{what} loss", step, path)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        check_finite(gn, f"{what} gradient norm", step, path)
        self.opt.step()
        check_finite(max_abs_weight(self.model), f"{what} largest weight after the update",
                     step, path)
        return gn


def get_or_train(key: dict, root, cfg: dict, load, train) -> TrainResult:
    """The artifact of ``key`` under ``root``: loaded when its checkpoint marks a finished run
    of ``cfg`` (``load(checkpoint, path)`` builds the result), otherwise trained by
    ``train(path)`` (which resumes an unfinished checkpoint there)."""
    cached = load_cached(key, root, cfg, load)
    if cached is not None:
        return cached
    d = artifacts.artifact_dir(root, key)
    artifacts.write_json(d / "key.json", key)
    return train(d / "ckpt.pt")


def load_cached(key: dict, root, cfg: dict, load) -> TrainResult | None:
    """The finished artifact of ``key`` under ``root`` (never trains), or None."""
    path = artifacts.artifact_dir(root, key) / "ckpt.pt"
    ck = artifacts.load_finished(path, cfg)
    return None if ck is None else load(ck, path)

"""A tiny SFT run, then a tiny RL run from its model, checkpointing after every step.

Run as ``python tests/reliability_worker.py ROOT``: both runs go through ``get_or_train``
(the notebooks' path) with artifacts under ROOT, so a rerun of the same command loads what
is finished and resumes what is not. After each checkpoint is in place it prints
``saved <sft|rl> <step>`` and flushes, so a test can kill the process (SIGKILL) at a chosen
step and rerun it (tests/test_reliability.py). Prints ``done`` at the end.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reasonlib.train import artifacts, rl, sft  # noqa: E402

SFT_CFG = sft.SFTConfig(curriculum="targeted", fmt="plain", max_digits=2, seed=0, n_layer=1,
                        n_head=2, n_embd=32, total_tokens=3000, batch_size=16, lr=3e-3,
                        eval_every=7, eval_n=3)


def rl_config() -> rl.RLConfig:
    return rl.RLConfig(init=rl.init_key(SFT_CFG), seed=0, steps=10,
                       prompts_per_step=8, group_size=4, lr=3e-3, beta=0.1, buckets=("d1", "d2_nocarry"),
                       eval_every=4, eval_n=3)


def main(root: str) -> None:
    torch.set_num_threads(1)
    real_save = artifacts.save_checkpoint

    def save_and_report(path, payload):
        out = real_save(path, payload)
        if Path(path).parent.name != sft.SNAPSHOTS:   # a probe step's snapshot is not the run's checkpoint
            print(f"saved {Path(path).parent.name.split('-')[0]} {payload['step']}", flush=True)
        return out

    artifacts.save_checkpoint = save_and_report  # sft and rl call it as artifacts.save_checkpoint
    s = sft.get_or_train(SFT_CFG, root, progress=False, ckpt_every=1)
    rl.get_or_train(rl_config(), s.model, SFT_CFG, root, progress=False, ckpt_every=1)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

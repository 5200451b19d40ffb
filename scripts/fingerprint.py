"""Fingerprints of what the model code computes, to show a refactor changed nothing trained.

    python scripts/fingerprint.py                 # every position scheme, as below
    python scripts/fingerprint.py --steps 20 --prompts 100
    python scripts/fingerprint.py --padded        # train with the padded step instead

For every position scheme: the sha256 of the weights after ``--steps`` packed SFT training
steps (the quick profile's shape and recipe, seed 0, one torch thread), and of the tokens
of ``--prompts`` x 16 samples at temperature 1 from that model (the KV-cache sampler). Two
runs on the same machine, torch build and thread count print the same lines exactly when
the code computes the same floats; on another CPU the hashes differ (docs/reproducibility.md).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reasonlib.train import params, rl, sft  # noqa: E402
from reasonlib.core import sampling, tasks
from reasonlib.core.schemes import POS_SCHEMES  # noqa: E402


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--schemes", nargs="+", default=list(POS_SCHEMES), choices=POS_SCHEMES)
    ap.add_argument("--padded", action="store_true", help="train with the padded step")
    ap.add_argument("--rl-steps", type=int, default=0,
                    help="then this many RL steps (quick recipe, beta > 0), and their weights' hash")
    a = ap.parse_args(argv)
    P = params.validate(params.load_profile("quick"))
    base = sft.config_from_params(P, "targeted")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    a_, b_ = (rng.integers(0, 10 ** base.max_digits, a.prompts) for _ in range(2))
    prompts, valid = tasks.render_prompts(a_, b_)
    max_new = tasks.max_answer_tokens(base.max_digits, base.fmt)
    for s in a.schemes:
        t0 = time.perf_counter()
        cfg = replace(base, pos=s, pos_offset=P.pos_offset, packed=not a.padded, snapshots=False)
        res = sft.train_sft(cfg, progress=False, stop_after_step=a.steps)
        g = sampling.generate(res.model, prompts, valid, max_new, temperature=1.0, n_samples=16,
                              seed=1)
        samples = hashlib.sha256(g.tokens.astype(np.int64).tobytes()).hexdigest()[:16]
        line = f"{s:8s} weights {weights_hash(res.model)}  samples {samples}"
        if a.rl_steps:
            rcfg = replace(rl.config_from_params(P, cfg, beta=0.05), steps=a.rl_steps)
            line += f"  rl {weights_hash(rl.train_rl(rcfg, res.model, cfg, progress=False).model)}"
        print(f"{line}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Device resolution, done once per notebook: ``auto`` picks cuda > mps > cpu.

Importing this module applies ``REASONLIB_THREADS`` (set by ``python -m reasonlib run`` for
each notebook kernel, so parallel workers do not oversubscribe the cores) to torch.
"""
from __future__ import annotations

import os

import torch

# The committed notebooks' outputs are made (``make notebooks``) and checked (nbval, through
# tests/conftest.py) with this many torch threads: results depend on the thread count
# (README, Determinism), so both sides pin it whatever the machine's core count.
NOTEBOOK_THREADS = 2

if os.environ.get("REASONLIB_THREADS", "").isdigit() and int(os.environ["REASONLIB_THREADS"]) > 0:
    torch.set_num_threads(int(os.environ["REASONLIB_THREADS"]))


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is available; "
                         "allowed here: auto, cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but MPS is not available; allowed here: auto, cpu")
    return name

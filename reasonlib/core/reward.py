"""The answer validator used as the RL reward.

Reward parts are reported separately: ``ended`` (the answer stopped with EOS inside the
token budget), ``parsed`` (it parses in the format), ``correct`` (it equals a + b). The
reward is 1.0 only for a correct answer; unparsable or truncated output gets 0, and a
well-formed but wrong answer also gets 0 (no credit for the format alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import tasks
from .tokenizer import EOS, PAD, decode_answer


@dataclass
class Reward:
    ended: np.ndarray    # (R,) bool
    parsed: np.ndarray   # (R,) bool
    correct: np.ndarray  # (R,) bool
    total: np.ndarray    # (R,) float: 1.0 for a correct, ended answer, else 0.0
    texts: list[str]


def validate(tokens: np.ndarray, a: np.ndarray, b: np.ndarray, fmt: str) -> Reward:
    """Score generated rows ``tokens`` (R, L) against problems ``a + b`` (each (R,))."""
    tokens = np.asarray(tokens)
    stop = (tokens == EOS) | (tokens == PAD)
    first = stop.argmax(axis=1)  # first terminator (0 when there is none; checked below)
    ended = stop.any(axis=1) & (tokens[np.arange(len(tokens)), first] == EOS)
    texts = [decode_answer(r) for r in tokens]
    vals = [tasks.parse_answer(t, fmt) if e else None for t, e in zip(texts, ended)]
    parsed = np.array([v is not None for v in vals], dtype=bool)
    truth = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    correct = np.array([v is not None and v == int(t) for v, t in zip(vals, truth)], dtype=bool)
    return Reward(ended, parsed, correct, correct.astype(np.float64), texts)

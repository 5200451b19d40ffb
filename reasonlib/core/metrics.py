"""Pure metric functions: unbiased pass@k, Wilson intervals, and per-bucket evaluation."""
from __future__ import annotations

import math

import numpy as np

from . import sampling, tasks
from .tokenizer import decode_answer

def pass_at_k(n, c, k: int) -> np.ndarray:
    """Unbiased pass@k per problem (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i), which never forms a large binomial.
    ``n`` samples per problem, ``c`` of them correct (arrays or scalars).
    """
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), np.shape(c))
    c = np.asarray(c, dtype=np.int64)
    if np.any(n < k):
        raise ValueError(f"pass@{k} needs at least k samples per problem; got n={int(n.min())}")
    if np.any((c < 0) | (c > n)):
        raise ValueError("c must lie in [0, n]")
    out = np.empty(c.shape, dtype=np.float64)
    for idx in np.ndindex(c.shape):
        ni, ci = int(n[idx]), int(c[idx])
        if ni - ci < k:
            out[idx] = 1.0
        else:
            i = np.arange(ni - ci + 1, ni + 1, dtype=np.float64)
            out[idx] = 1.0 - np.prod(1.0 - k / i)
    return out


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion (successes may be fractional, e.g. a
    sum of per-problem pass@k values)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the exact interval always contains p; clamping to it removes rounding (e.g. a lower
    # bound of 2e-19 instead of 0 at zero successes)
    return (max(0.0, min(p, mid - half)), min(1.0, max(p, mid + half)))


def score(texts: list[str], a: np.ndarray, b: np.ndarray, fmt: str):
    """(parsed, correct) bool arrays for answer texts against problems a+b."""
    vals = [tasks.parse_answer(t, fmt) for t in texts]
    parsed = np.array([v is not None for v in vals], dtype=bool)
    truth = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    correct = np.array([v is not None and v == int(t) for v, t in zip(vals, truth)], dtype=bool)
    return parsed, correct


def _answers(model, a, b, fmt, max_digits, **kw):
    p, v = tasks.render_prompts(a, b)
    g = sampling.generate(model, p, v, tasks.answer_budget(a, b, max_digits, fmt), **kw)
    return [decode_answer(r) for r in g.tokens], g


def greedy_eval(model, eval_set: tasks.EvalSet, fmt: str, batch_size: int = 2048) -> dict:
    """Per bucket: n, greedy accuracy and parse rate with Wilson intervals, plus the answers
    and the per-problem ``correct`` flags (what paired comparisons over problems need)."""
    out = {}
    for bucket, (a, b) in eval_set.problems.items():
        texts, _ = _answers(model, a, b, fmt, eval_set.max_digits, batch_size=batch_size)
        parsed, correct = score(texts, a, b, fmt)
        n = len(a)
        out[bucket] = {
            "n": n,
            "acc": float(correct.mean()), "acc_ci": wilson(correct.sum(), n),
            "parse": float(parsed.mean()), "parse_ci": wilson(parsed.sum(), n),
            "answers": texts, "correct": correct,
        }
    return out


def sampled_eval(model, eval_set: tasks.EvalSet, fmt: str, n_samples: int, temperature: float,
                 top_k: int, seed: int, ks, batch_size: int = 4096, only=None) -> dict:
    """Per bucket: sampled accuracy, parse rate and pass@k (k <= n_samples) with intervals,
    and the per-problem correct counts ``c`` (n_samples samples per problem). ``only``: the
    buckets to sample (default all); a bucket's samples are the same either way."""
    out = {}
    for i, (bucket, (a, b)) in enumerate(eval_set.problems.items()):
        if only is not None and bucket not in only:
            continue
        texts, _ = _answers(model, a, b, fmt, eval_set.max_digits, temperature=temperature,
                            top_k=top_k, n_samples=n_samples, seed=seed * 1000 + i,
                            batch_size=batch_size)
        ra, rb = np.repeat(a, n_samples), np.repeat(b, n_samples)
        parsed, correct = score(texts, ra, rb, fmt)
        c = correct.reshape(len(a), n_samples).sum(1)
        n = len(a)
        res = {"n": n, "n_samples": n_samples, "c": c.tolist(),
               "sampled_acc": float(correct.mean()),
               "sampled_acc_ci": wilson(correct.mean() * n, n),
               "parse": float(parsed.mean()), "parse_ci": wilson(parsed.mean() * n, n),
               "pass": {}}
        for k in ks:
            if k <= n_samples:
                pk = pass_at_k(n_samples, c, k)
                res["pass"][k] = {"value": float(pk.mean()), "ci": wilson(pk.sum(), n)}
        out[bucket] = res
    return out


def full_eval(model, eval_set: tasks.EvalSet, fmt: str, n_samples: int, temperature: float,
              top_k: int, seed: int, ks, sampled=None) -> dict:
    """Greedy and sampled evaluation merged per bucket (what 05-07 tabulate). ``sampled``:
    the buckets to sample too (default all); the others carry greedy results only."""
    g = greedy_eval(model, eval_set, fmt)
    s = sampled_eval(model, eval_set, fmt, n_samples, temperature, top_k, seed, ks, only=sampled)
    return {b: {"n": g[b]["n"], "acc": g[b]["acc"], "acc_ci": g[b]["acc_ci"],
                "parse": g[b]["parse"], "parse_ci": g[b]["parse_ci"], "correct": g[b]["correct"],
                **({"sampled_acc": s[b]["sampled_acc"], "sampled_acc_ci": s[b]["sampled_acc_ci"],
                    "sampled_parse": s[b]["parse"], "pass": s[b]["pass"], "c": s[b]["c"]}
                   if b in s else {})}
            for b in g}

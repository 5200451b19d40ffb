"""Batched generation with the KV cache: greedy or temperature / top-k sampling.

Prompts of mixed lengths share one batch (left padding + a validity mask). When several
samples are drawn per prompt, the prompt is run once and its keys are read by all its
samples (``engine.KVCache``); the chunks of one call reuse one cache's memory.
Rows stop at EOS (later positions are PAD); the loop ends when every row has stopped.

Randomness: one ``torch.Generator`` seeded with ``seed`` is consumed chunk after chunk, so
the same (seed, prompts, n_samples, batch_size) give the same samples on the same machine.
``temperature == 0`` is greedy decoding and consumes no randomness.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from . import engine
from .tokenizer import EOS, PAD


@dataclass
class Generation:
    tokens: np.ndarray    # (N * n_samples, max_new) generated ids, PAD after EOS
    logprobs: np.ndarray  # (N * n_samples, max_new) log-prob of each chosen token (0 on PAD)


def _pick(logits: torch.Tensor, temperature: float, top_k: int, gen: torch.Generator | None):
    if temperature == 0:
        return logits.argmax(-1)
    if temperature != 1:   # x / 1 is x, bit for bit: no copy of the logits at temperature 1
        logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=gen, device=cdf.device, dtype=cdf.dtype)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    return idx.clamp_max_(cdf.shape[-1] - 1)


@torch.no_grad()
def generate(model, prompts: np.ndarray, valid: np.ndarray, max_new_tokens: int,
             temperature: float = 0.0, top_k: int = 0, n_samples: int = 1, seed: int = 0,
             batch_size: int = 2048, use_cache: bool = True) -> Generation:
    """Generate ``n_samples`` continuations for each left-padded prompt.

    prompts, valid: (N, P) ids and bool mask of real tokens. Output rows are ordered
    problem-major: row ``i * n_samples + j`` is sample j of prompt i.
    ``use_cache=False`` recomputes the whole sequence every step (reference path for tests).
    """
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0")
    if top_k < 0:
        raise ValueError(f"top_k={top_k}: must be >= 0 (0 disables top-k)")
    if n_samples < 1 or max_new_tokens < 1:
        raise ValueError(f"n_samples={n_samples}, max_new_tokens={max_new_tokens}: must be >= 1")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    gen = None
    if temperature > 0:
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed))
    N, P = prompts.shape
    if P + max_new_tokens > model.cfg.block_size:
        raise ValueError(f"prompt length {P} + max_new_tokens {max_new_tokens} exceeds "
                         f"block_size={model.cfg.block_size}")
    per_chunk = max(1, batch_size // n_samples)
    out_tok, out_lp = [], []
    # the chunks' KV caches share their memory (one store per call)
    step = partial(_run_cached, store={}) if use_cache else _run_full
    for s in range(0, N, per_chunk):
        p = torch.as_tensor(prompts[s:s + per_chunk], device=dev)
        v = torch.as_tensor(valid[s:s + per_chunk], device=dev)
        t, lp = step(model, p, v, max_new_tokens, temperature, top_k, n_samples, gen)
        out_tok.append(t.cpu().numpy())
        out_lp.append(lp.cpu().numpy())
    model.train(was_training)
    return Generation(np.concatenate(out_tok), np.concatenate(out_lp))


def _emit(logits, temperature, top_k, gen, done, toks, lps, i):
    nxt = _pick(logits, temperature, top_k, gen)
    lp = torch.log_softmax(logits.float(), -1).gather(1, nxt[:, None]).squeeze(1)
    nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
    toks[:, i] = nxt
    lps[:, i] = torch.where(done, torch.zeros_like(lp), lp)
    return done | (nxt == EOS) | (nxt == PAD), nxt  # a sampled PAD also ends the row


def _run_cached(model, p, v, max_new, temperature, top_k, n, gen, store=None):
    B, P = p.shape
    cache = engine.new_cache(model, B, P + max_new, store)
    logits = engine.prefill(model, p, v, cache)
    cache.repeat_interleave(n)
    logits = logits.repeat_interleave(n, dim=0)
    R = B * n
    toks = torch.full((R, max_new), PAD, dtype=torch.long, device=p.device)
    lps = torch.zeros((R, max_new), device=p.device)
    done = torch.zeros(R, dtype=torch.bool, device=p.device)
    for i in range(max_new):
        done, nxt = _emit(logits, temperature, top_k, gen, done, toks, lps, i)
        if bool(done.all()) or i == max_new - 1:
            break
        logits = engine.decode_step(model, nxt, cache)
    return toks, lps


def _run_full(model, p, v, max_new, temperature, top_k, n, gen):
    p, v = p.repeat_interleave(n, dim=0), v.repeat_interleave(n, dim=0)
    R = p.shape[0]
    toks = torch.full((R, max_new), PAD, dtype=torch.long, device=p.device)
    lps = torch.zeros((R, max_new), device=p.device)
    done = torch.zeros(R, dtype=torch.bool, device=p.device)
    seq, val = p, v
    for i in range(max_new):
        logits = model(seq, valid=val)[:, -1]
        done, nxt = _emit(logits, temperature, top_k, gen, done, toks, lps, i)
        if bool(done.all()):
            break
        seq = torch.cat([seq, nxt[:, None]], 1)
        val = torch.cat([val, torch.ones_like(val[:, :1])], 1)
    return toks, lps

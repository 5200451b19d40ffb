#!/usr/bin/env python
"""reasonlib vs Hugging Face ``transformers`` GPT-2 of the same shape, on CPU.

Two measurements, in one run, for every shape asked for:

1. **Training throughput** (non-PAD tokens/s). reasonlib's ``GPT`` trained with its own loss
   (``reasonlib.train.sft.answer_loss``) against ``GPT2LMHeadModel`` trained the idiomatic HF way
   (``labels`` = tokens with non-answer positions set to -100, ``attention_mask`` = tokens != PAD,
   loss taken from the model output). Same n_layer / n_head / n_embd, context (n_positions =
   block_size), vocabulary, GPT-2 dropout 0, the same pre-drawn batches of real training data
   from ``reasonlib.train.curriculum.BatchMaker``, the same optimizer (the study's fused AdamW,
   ``sft.make_optimizer``, same hyper-parameters) and the same step (forward, backward,
   grad-norm clipping, optimizer step, ``loss.item()``).
   Data generation is done before timing, so neither side pays for it. Each side's
   matrix-product FLOPs a step are counted (torch's FlopCounterMode, untimed), with the
   achieved GFLOP/s (those FLOPs over the whole step's time) and the floor an exact
   implementation that skips every unused product would reach (``floor_flops``). A training
   ratio is the product of the two: transformers' FLOPs over reasonlib's, times reasonlib's
   GFLOP/s over transformers'.
2. **pass@k sampling throughput**: N problems x k samples at temperature 1.0,
   ``max_new_tokens = tasks.max_answer_tokens(max_digits, fmt)``. reasonlib: ``sampling.generate``;
   HF: ``GPT2LMHeadModel.generate`` (do_sample, top_k=0, num_return_sequences=k, KV cache) on the
   same left-padded prompts, batched with the same number of rows (prompts x samples) per chunk.
   Both models are untrained (same random-init recipe). HF is forced to generate exactly
   max_new tokens (``min_new_tokens``); reasonlib ends a row at EOS (or a sampled PAD) and stops
   a chunk early only when every row has ended (which an untrained model practically never
   does), so generated tokens/s counts the tokens each side really produced.

Timing: ``time.perf_counter`` after warm-up, the order of the sides flipped every repeat.
Training interleaves the sides step by step (every side takes its step on a batch before any
takes the next), so each repeat times every side over the same seconds of the machine's
drifting speed; sampling interleaves them repeat by repeat. Headline ratios use the best
repeat of each side (background load only ever adds time), medians are printed alongside.
Under each training ratio the paired view (``paired_ratio``): the ratio of all timed steps'
summed times, a 95% bootstrap interval over the step pairs, and the range of the repeats'
ratios, so a reader can tell a target met from one within the noise of the run.
Training runs at the study's SFT thread count, ``reasonlib.core.runtime.TRAIN_THREADS`` (1):
every SFT run of the study trains at it whatever the machine has, so that is the speed its
budget is bought with. Sampling runs at torch's default thread count, as the notebooks'
evaluation does on a machine of the study's size. ``--threads N`` pins both; the counts are
printed. The CPU time other processes used meanwhile is printed after each block: on a small
shared machine, OpenMP threads stall badly whenever another process takes a core, so a busy
machine can distort single repeats many-fold (medians from such runs are unreliable; rerun on
a quiet machine).
Ratios are reasonlib / transformers: higher favours reasonlib.

    python benchmarks/bench_vs_transformers.py            # full run (~3 minutes on 2 quiet cores)
    python benchmarks/bench_vs_transformers.py --shapes 3x4x96,4x4x128
    python benchmarks/bench_vs_transformers.py --quick    # smoke run (~20 s)

Needs the optional ``bench`` extra (``pip install -e .[bench]``); without ``transformers`` the
script says so, measures the reasonlib side alone and exits 0. Nothing is downloaded: the HF
model is built from a config.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from types import SimpleNamespace

import numpy as np
import torch

import reasonlib
from reasonlib.core import tasks
from reasonlib.train.curriculum import BatchMaker
from reasonlib.core.model import GPT, ModelConfig
from reasonlib.core.schemes import POS_SCHEMES
from reasonlib.core.runtime import TRAIN_THREADS
from reasonlib.core.sampling import generate
from reasonlib.train.sft import answer_loss, make_optimizer
from reasonlib.core.tokenizer import BOS, EOS, PAD, VOCAB_SIZE
from torch.utils.flop_counter import FlopCounterMode

try:
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel
    _HF_ERROR = None
except Exception as e:  # optional "bench" extra (ImportError), or a broken install
    transformers = None
    _HF_ERROR = e

TARGETS = {"training": 2.0, "sampling": 5.0}  # issues 13 and 14


class OtherLoad:
    """CPU time used by *other* processes while a block runs (Linux /proc/stat), in cores.

    The benchmark is easily disturbed on a small shared machine: 2 OpenMP threads on 2 cores
    stall whenever another process takes a core. This makes such runs visible."""

    def __init__(self):
        self.busy = 0.0
        self.wall = 0.0

    @staticmethod
    def _busy_s():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: busy = all but idle, iowait
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self._t = (time.perf_counter(), self._busy_s(), time.process_time())
        return self

    def __exit__(self, *exc):
        t0, b0, p0 = self._t
        b1 = self._busy_s()
        self.wall += time.perf_counter() - t0
        if b0 is not None and b1 is not None:
            self.busy += max(0.0, (b1 - b0) - (time.process_time() - p0))
        return False

    def cores(self):
        return self.busy / self.wall if self.wall else 0.0


# ---- models ------------------------------------------------------------------------------
def parse_shape(s: str) -> tuple[int, int, int]:
    """'LxHxC' -> (n_layer, n_head, n_embd)."""
    try:
        l, h, c = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {s!r}: expected LxHxC, e.g. 3x4x96") from None
    if min(l, h, c) <= 0 or c % h:
        raise argparse.ArgumentTypeError(f"shape {s!r}: positive ints, n_embd divisible by n_head")
    return l, h, c


def reasonlib_builder(pos):
    def build(shape, block_size, seed):
        torch.manual_seed(seed)
        l, h, c = shape
        return GPT(ModelConfig(n_layer=l, n_head=h, n_embd=c, block_size=block_size, pos=pos,
                               vocab_size=VOCAB_SIZE))
    return build


def build_hf(shape, block_size, seed):
    torch.manual_seed(seed)
    l, h, c = shape
    cfg = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=block_size, n_embd=c, n_layer=l,
                     n_head=h, n_inner=None,  # 4 * n_embd, as reasonlib's mlp_ratio=4
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    return GPT2LMHeadModel(cfg)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())  # shared (tied) tensors counted once


def make_opt(model, a):
    # The same optimizer for both sides: the one the study trains with (sft.make_optimizer:
    # AdamW, weight decay on matrices, its fused CPU kernel, one kernel a tensor instead of a
    # dozen small ops; --optimizer plain for the single-tensor loop).
    return make_optimizer(model, SimpleNamespace(lr=a.lr, weight_decay=0.1),
                          fused=a.optimizer == "fused")


# ---- training ----------------------------------------------------------------------------
def make_batches(a, n):
    rng = np.random.default_rng([a.seed, 7])
    maker = BatchMaker(a.curriculum, a.fmt, a.max_digits, a.batch_size, rng)
    out = []
    for _ in range(n):
        toks, ans = maker.next_batch(a.frac)
        t = torch.from_numpy(toks)
        m = torch.from_numpy(ans)
        out.append({
            "tokens": t, "answer": m,
            # HF inputs, prepared up front like any data loader would
            "labels": torch.where(m, t, torch.full_like(t, -100)),
            "attention_mask": (t != PAD).long(),
            "n_tok": int((toks != PAD).sum()),
        })
    return out


def reasonlib_loss(model, b):
    return answer_loss(model, b["tokens"], b["answer"])


def reasonlib_packed_loss(model, b):
    return answer_loss(model, b["tokens"], b["answer"], packed=True)


def hf_loss(model, b):
    return model(input_ids=b["tokens"], attention_mask=b["attention_mask"],
                 labels=b["labels"]).loss


def train_step(model, opt, loss_fn, b, grad_clip):
    """Run one training step on batch ``b``; return (seconds, loss)."""
    t0 = time.perf_counter()
    loss = loss_fn(model, b)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    last = loss.item()
    return time.perf_counter() - t0, last


def step_flops(model, loss_fn, batches) -> float:
    """Mean matrix-product FLOPs (``aten.mm`` and ``aten.addmm``: the linear layers, on both
    sides) of one training step's forward and backward, counted by torch's FlopCounterMode."""
    total = 0
    for b in batches:
        fc = FlopCounterMode(display=False)
        with fc:
            loss_fn(model, b).backward()
        model.zero_grad(set_to_none=True)
        counts = fc.get_flop_counts().get("Global", {})
        total += sum(n for op, n in counts.items() if str(op) in ("aten.mm", "aten.addmm"))
    return total / len(batches)


def floor_flops(shape, batches, mlp_ratio=4) -> float:
    """The fewest linear-layer FLOPs a step of the answer-only loss needs: those of an exact
    implementation that skips every product the loss does not use and runs no product twice
    on the same row.

    A row's real tokens up to the last scored one (all but its EOS) run through every layer
    but the last, where they need only their key and value (2 C^2 multiply-adds); the scored
    positions also need their query, projection, MLP and the output layer. The first layer's
    qkv (3 C^2) sees a token's embedding only, so it needs one row per distinct token id of
    the batch (``abacus`` adds place vectors first: one per distinct id and place, a few more
    rows). The backward costs twice the forward (the tied embedding needs the input gradient
    too); 2 FLOPs a multiply-add. Attention's T x T products are left out, as in
    :func:`step_flops`."""
    L, _, C = shape
    qkv, layer = 3 * C * C, (4 + 2 * mlp_ratio) * C * C
    total = 0
    for b in batches:
        t = b["tokens"]
        ids = t[:, :-1][t[:, 1:] != PAD]                 # the tokens that run: all but EOS
        need, distinct = len(ids), int(ids.unique().numel())
        scored = int(b["answer"][:, 1:].sum())
        head = scored * ((1 + 2 * mlp_ratio) * C * C + VOCAB_SIZE * C)   # proj, MLP, output
        if L == 1:   # the one layer's qkv sees the embeddings only
            macs = distinct * qkv + head
        else:
            macs = (distinct * qkv + need * (layer - qkv)          # the first layer
                    + need * (L - 2) * layer                       # the layers between
                    + need * 2 * C * C + scored * C * C + head)    # the last: k, v; scored q
        total += 6 * macs
    return total / len(batches)


def bench_training(shape, a, block_size, sides):
    batches = make_batches(a, a.warmup + a.steps)
    warm, timed = batches[:a.warmup], batches[a.warmup:]
    runs = {}
    for name, (build, loss_fn) in sides.items():
        model = build(shape, block_size, a.seed)
        model.train()
        opt = make_opt(model, a)
        for b in warm:
            train_step(model, opt, loss_fn, b, a.grad_clip)
        runs[name] = (model, opt, loss_fn)
    flops = {name: step_flops(m, fn, timed[:3]) for name, (m, _, fn) in runs.items()}
    step_s = {name: np.zeros((a.repeats, len(timed))) for name in sides}   # every step's time
    losses = {}
    load = OtherLoad()
    tok = sum(b["n_tok"] for b in timed)   # non-PAD tokens of one repeat
    with load:
        for r in range(a.repeats):
            order = list(runs.items())
            for i, batch in enumerate(timed):   # every side steps on it before the next
                for name, (model, opt, loss_fn) in (order if r % 2 == 0 else order[::-1]):
                    step_s[name][r, i], losses[name] = train_step(model, opt, loss_fn, batch,
                                                                  a.grad_clip)
    rates = {name: list(tok / t.sum(1)) for name, t in step_s.items()}   # one per repeat
    tok_per_step = tok / len(timed)
    return {"rates": rates, "step_s": step_s, "loss": losses, "tok_per_step": tok_per_step,
            "flops": flops,
            "floor": floor_flops(shape, timed[:3]),
            "params": {n: n_params(r[0]) for n, r in runs.items()}, "other_load": load.cores()}


def paired_ratio(ref: np.ndarray, side: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """Speed of ``side`` over ``ref`` from their paired step times, (repeats, steps) arrays
    taken side by side on the same batches: (ratio of the summed times, 2.5th and 97.5th
    percentiles of that ratio over ``n_boot`` resamplings of the step pairs, each repeat's
    ratio). Pairs are resampled whole, so the drift of the machine's speed that both sides
    of a pair met cancels; steps are treated as independent, which the repeats' own spread
    (the last value) lets a reader check."""
    if ref.ndim != 2 or ref.shape != side.shape:
        raise ValueError(f"paired_ratio: needs two (repeats, steps) arrays of one shape, "
                         f"got {ref.shape} and {side.shape}")
    r, s = ref.ravel(), side.ravel()
    idx = np.random.default_rng(seed).integers(0, len(r), size=(n_boot, len(r)))
    lo, hi = np.percentile(r[idx].sum(1) / s[idx].sum(1), [2.5, 97.5])
    return float(r.sum() / s.sum()), (float(lo), float(hi)), list(ref.sum(1) / side.sum(1))


# ---- sampling ----------------------------------------------------------------------------
def sample_reasonlib(model, prompts, valid, a, max_new):
    g = generate(model, prompts, valid, max_new, temperature=1.0, n_samples=a.n_samples,
                 seed=0, batch_size=a.gen_rows)
    # tokens really produced: up to and including each row's first EOS (PAD after it); a
    # sampled PAD also ends a row and is not counted (slightly conservative for reasonlib)
    return g.tokens.shape[0], int((g.tokens != PAD).sum())


def sample_hf(model, prompts, valid, a, max_new):
    model.eval()
    torch.manual_seed(0)
    per_chunk = max(1, a.gen_rows // a.n_samples)
    rows = toks = 0
    for s in range(0, len(prompts), per_chunk):
        ids = torch.as_tensor(prompts[s:s + per_chunk])
        att = torch.as_tensor(valid[s:s + per_chunk]).long()
        out = model.generate(ids, attention_mask=att, do_sample=True, temperature=1.0, top_k=0,
                             num_return_sequences=a.n_samples, max_new_tokens=max_new,
                             min_new_tokens=max_new, pad_token_id=PAD, eos_token_id=EOS,
                             use_cache=True)
        new = out[:, ids.shape[1]:]
        rows += new.shape[0]
        toks += new.shape[0] * new.shape[1]  # forced to max_new tokens per row
    return rows, toks


def bench_sampling(shape, a, block_size, sides):
    max_new = tasks.max_answer_tokens(a.max_digits, a.fmt)
    ev = tasks.make_eval_set(a.max_digits, a.problems, a.seed + 1234, buckets=("general",))
    prompts, valid = tasks.render_prompts(*ev.problems["general"])
    models = {}
    with torch.no_grad():
        for name, (build, fn) in sides.items():
            m = build(shape, block_size, a.seed)
            m.eval()
            w = min(len(prompts), max(1, a.gen_rows // a.n_samples))
            fn(m, prompts[:w], valid[:w], a, max_new)  # warm-up: one chunk
            models[name] = (m, fn)
        res = {name: {"sec": [], "rows": 0, "toks": 0} for name in sides}
        load = OtherLoad()
        with load:
            for r in range(a.sample_repeats):
                order = list(models.items())
                for name, (m, fn) in (order if r % 2 == 0 else order[::-1]):
                    t0 = time.perf_counter()
                    rows, toks = fn(m, prompts, valid, a, max_new)
                    res[name]["sec"].append(time.perf_counter() - t0)
                    res[name]["rows"], res[name]["toks"] = rows, toks
    return {"res": res, "max_new": max_new, "prompt_len": prompts.shape[1], "n": len(prompts),
            "other_load": load.cores()}


# ---- report ------------------------------------------------------------------------------
def load_line(cores):
    s = f"  other processes used {cores:.2f} CPU cores on average during the timed runs"
    if cores > 0.25:
        s += "  <-- machine busy: numbers are noisy, rerun on a quiet machine"
    return s


def ratio_line(what, best, med, target):
    return (f"{what} ratio (reasonlib/transformers): {best:.2f}x  (median {med:.2f}x)   "
            f"[target >= {target:.1f}x: {'met' if best >= target else 'NOT met'}]")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=96)
    p.add_argument("--shapes", type=str, default=None,
                   help="comma-separated LxHxC shapes to run, e.g. '3x4x96,4x4x128' "
                        "(default: the single shape of --n-layer/--n-head/--n-embd)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--grad-clip", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--optimizer", choices=("fused", "plain"), default="fused",
                   help="AdamW on both sides: fused (the study's, sft.make_optimizer) or the "
                        "plain single-tensor loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved training repeats")
    p.add_argument("--curriculum", default="targeted")
    p.add_argument("--fmt", default="reversed")
    p.add_argument("--max-digits", type=int, default=3)
    p.add_argument("--frac", type=float, default=0.9,
                   help="share of the curriculum budget the batches are drawn at")
    p.add_argument("--problems", type=int, default=1000)
    p.add_argument("--n-samples", type=int, default=16)
    p.add_argument("--gen-rows", type=int, default=2048,
                   help="rows (prompts x samples) per generation chunk, both sides")
    p.add_argument("--sample-repeats", type=int, default=5, help="interleaved sampling repeats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads(N) for training and sampling, both sides "
                        f"(default: training at the study's SFT thread count, "
                        f"reasonlib.core.runtime.TRAIN_THREADS = {TRAIN_THREADS}; sampling at "
                        "torch's default)")
    p.add_argument("--pos", type=str, default=",".join(POS_SCHEMES),
                   help="comma-separated reasonlib position schemes, each benchmarked as its "
                        "own side (reasonlib-<scheme>)")
    p.add_argument("--packed", choices=("both", "no", "only"), default="both",
                   help="training: also (or only) each scheme with the packed, padding-free "
                        "step (reasonlib-<scheme>-packed; answer_loss(packed=True)), the step "
                        "the quick and paper profiles train with")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-sample", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 warm-up + 5 timed steps, 1 repeat, 50 problems")
    a = p.parse_args(argv)
    if a.quick:
        a.warmup, a.steps, a.repeats = 2, 5, 1
        a.problems, a.sample_repeats = 50, 1
    if a.threads is not None and a.threads < 1:
        p.error(f"--threads {a.threads}: must be >= 1")
    threads = {"training": a.threads or TRAIN_THREADS,
               "sampling": a.threads or torch.get_num_threads()}
    shapes = ([parse_shape(s) for s in a.shapes.split(",") if s.strip()] if a.shapes
              else [parse_shape(f"{a.n_layer}x{a.n_head}x{a.n_embd}")])
    block_size = tasks.block_size_for(a.max_digits, a.fmt)

    schemes = [s.strip() for s in a.pos.split(",") if s.strip()]
    bad = [s for s in schemes if s not in POS_SCHEMES]
    if bad or not schemes:
        p.error(f"--pos {a.pos!r}: allowed schemes are {', '.join(POS_SCHEMES)}")
    have_hf = transformers is not None
    steps = {"both": ("", "-packed"), "no": ("",), "only": ("-packed",)}[a.packed]
    train_sides = {f"reasonlib-{s}{k}": (reasonlib_builder(s), reasonlib_packed_loss if k
                                         else reasonlib_loss)
                   for s in schemes for k in steps}
    sample_sides = {f"reasonlib-{s}": (reasonlib_builder(s), sample_reasonlib) for s in schemes}
    if have_hf:
        transformers.logging.set_verbosity_error()
        warnings.filterwarnings("ignore", module="transformers")
        train_sides["transformers"] = (build_hf, hf_loss)
        sample_sides["transformers"] = (build_hf, sample_hf)

    print("reasonlib vs transformers GPT-2 benchmark (CPU)")
    print(f"  python {platform.python_version()}  torch {torch.__version__}  "
          f"transformers {transformers.__version__ if have_hf else 'NOT INSTALLED'}  "
          f"numpy {np.__version__}")
    print(f"  reasonlib from {os.path.dirname(reasonlib.__file__)}")
    why = (("--threads", "--threads") if a.threads is not None
           else ("the study's SFT runs, runtime.TRAIN_THREADS", "torch default"))
    print(f"  torch threads: training {threads['training']} ({why[0]}), sampling "
          f"{threads['sampling']} ({why[1]}); interop {torch.get_num_interop_threads()}"
          f"  os.cpu_count {os.cpu_count()}  machine {platform.machine()}")
    if have_hf:
        print(f"  HF attention implementation: "
              f"{build_hf((1, 1, 8), block_size, 0).config._attn_implementation}")
    print(f"  data: curriculum={a.curriculum} fmt={a.fmt} max_digits={a.max_digits} "
          f"frac={a.frac}  block_size={block_size}  vocab={VOCAB_SIZE}")
    print(f"  shapes (n_layer x n_head x n_embd): {', '.join('x'.join(map(str, s)) for s in shapes)}"
          f"{'  [--quick]' if a.quick else ''}")
    if not have_hf:
        print(f"\nNOTE: transformers is not installed ({_HF_ERROR}); the comparison needs the "
              f"optional 'bench' extra:\n    pip install -e .[bench]\n"
              f"Measuring the reasonlib side only; no ratios are printed.")

    summary = []
    for shape in shapes:
        tag = "x".join(map(str, shape))
        print(f"\n=== shape L={shape[0]} H={shape[1]} C={shape[2]}  (batch {a.batch_size}) ===")
        if not a.skip_train:
            torch.set_num_threads(threads["training"])
            tr = bench_training(shape, a, block_size, train_sides)
            print(f"training at {threads['training']} torch thread(s): AdamW ({a.optimizer}) "
                  f"lr={a.lr}, clip={a.grad_clip}, "
                  f"{a.warmup} warm-up + "
                  f"{a.steps} timed steps x {a.repeats} repeats, "
                  f"{tr['tok_per_step']:,.0f} non-PAD tokens/step")
            w = max(20, *(len(n) + 1 for n in tr["rates"]))
            print(f"  {'side':<{w}}{'params':>10}{'tok/s best':>13}{'tok/s median':>14}"
                  f"{'ms/step best':>14}{'last loss':>11}{'GFLOP/step':>12}{'GFLOP/s':>9}")
            best, med = {}, {}
            for name, rates in tr["rates"].items():
                best[name], med[name] = max(rates), statistics.median(rates)
                f = tr["flops"][name]
                print(f"  {name:<{w}}{tr['params'][name]:>10,}{best[name]:>13,.0f}{med[name]:>14,.0f}"
                      f"{1000 * tr['tok_per_step'] / best[name]:>14.1f}{tr['loss'][name]:>11.3f}"
                      f"{f / 1e9:>12.2f}{f * best[name] / tr['tok_per_step'] / 1e9:>9.1f}")
            print(f"  GFLOP/step: the linear layers' products, forward and backward (torch's "
                  f"FlopCounterMode); skipping every\n  product the loss does not use "
                  f"(padding, EOS, the last layer's unscored queries) and running the first "
                  f"layer's qkv once\n  per distinct token would leave "
                  f"{tr['floor'] / 1e9:.2f} (floor_flops).")
            if have_hf:
                print(f"  A training ratio is transformers' FLOPs over reasonlib's times "
                      f"reasonlib's GFLOP/s over transformers'; at\n  the floor the FLOP "
                      f"ratio would be {tr['flops']['transformers'] / tr['floor']:.2f}x.")
            if have_hf:
                for side in (n for n in tr["rates"] if n != "transformers"):
                    s = side.removeprefix("reasonlib-")
                    rb = best[side] / best["transformers"]
                    rm = med[side] / med["transformers"]
                    fr = tr["flops"]["transformers"] / tr["flops"][side]
                    print("  " + ratio_line(f"training, {s}", rb, rm, TARGETS["training"])
                          + f"  = FLOPs {fr:.2f}x * rate {rb / fr:.2f}x")
                    pr, (lo, hi), per = paired_ratio(tr["step_s"]["transformers"],
                                                     tr["step_s"][side])
                    print(f"      all {tr['step_s'][side].size} paired steps: {pr:.2f}x, 95% "
                          f"interval {lo:.2f}-{hi:.2f}x (bootstrap over the pairs); "
                          f"repeats {min(per):.2f}-{max(per):.2f}x")
                    summary.append((tag, f"training tok/s {s}", rb, rm, TARGETS["training"]))
                if "-packed" in steps:
                    print("  *-packed: answer_loss(packed=True), rows packed without padding "
                          "(attention in bins, packed._PackedAttention), the step the quick\n  and "
                          "paper profiles train with; the lines without -packed: the padded step.")
            print(load_line(tr["other_load"]))
        if not a.skip_sample:
            torch.set_num_threads(threads["sampling"])
            sp = bench_sampling(shape, a, block_size, sample_sides)
            print(f"sampling at {threads['sampling']} torch thread(s): {sp['n']:,} problems x "
                  f"{a.n_samples} samples, temperature 1.0, "
                  f"max_new_tokens={sp['max_new']}, prompt width {sp['prompt_len']}, "
                  f"{a.gen_rows} rows/chunk, {a.sample_repeats} repeats")
            print(f"  {'side':<20}{'samples':>9}{'wall s best':>13}{'wall s median':>15}"
                  f"{'samples/s best':>16}{'gen tok':>9}{'gen tok/s best':>16}")
            best, med = {}, {}
            for name, r in sp["res"].items():
                best[name], med[name] = min(r["sec"]), statistics.median(r["sec"])
                print(f"  {name:<20}{r['rows']:>9,}{best[name]:>13.2f}{med[name]:>15.2f}"
                      f"{r['rows'] / best[name]:>16,.0f}{r['toks']:>9,}{r['toks'] / best[name]:>16,.0f}")
            for s in (schemes if have_hf else []):
                side = f"reasonlib-{s}"
                rl, hf = sp["res"][side], sp["res"]["transformers"]
                # samples/s ratio = inverse wall-time ratio (both sides draw the same samples)
                rs = (rl["rows"] / best[side]) / (hf["rows"] / best["transformers"])
                rsm = (rl["rows"] / med[side]) / (hf["rows"] / med["transformers"])
                rt = (rl["toks"] / best[side]) / (hf["toks"] / best["transformers"])
                rtm = (rl["toks"] / med[side]) / (hf["toks"] / med["transformers"])
                print("  " + ratio_line(f"sampling (samples/s), {s}", rs, rsm, TARGETS["sampling"]))
                print("  " + ratio_line(f"sampling (generated tokens/s), {s}", rt, rtm,
                                        TARGETS["sampling"]))
                summary.append((tag, f"sampling samples/s {s}", rs, rsm, TARGETS["sampling"]))
                summary.append((tag, f"sampling gen tok/s {s}", rt, rtm, TARGETS["sampling"]))
            print(load_line(sp["other_load"]))

    if summary:
        print("\nsummary (reasonlib / transformers, higher is better for reasonlib; "
              "best of repeats, median in brackets):")
        for tag, what, r, rm, tgt in summary:
            print(f"  {tag:<9} {what:<37} {r:5.2f}x  ({rm:.2f}x)   target >= {tgt:.1f}x: "
                  f"{'met' if r >= tgt else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

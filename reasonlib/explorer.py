"""Failure records and an ipywidgets explorer over them (07).

:func:`collect_records` answers every eval problem greedily and by sampling, with each
checkpoint, and classifies every answer with :func:`reasonlib.failures.classify`.
:class:`Explorer` filters the records by checkpoint, bucket and error class and shows the
prompt, the samples, and the per-token probabilities of the chosen answer. Its callbacks
are plain methods, so tests drive it headlessly by setting widget values.
"""
from __future__ import annotations

import html

import numpy as np
import torch

from . import failures, sampling, tasks
from .tokenizer import BOS, EOS, PAD, decode_answer


def collect_records(models: dict, eval_set: tasks.EvalSet, fmt: str, n_samples: int = 8,
                    temperature: float = 1.0, seed: int = 0) -> list[dict]:
    recs = []
    D = eval_set.max_digits
    max_new = tasks.max_answer_tokens(D, fmt)
    for ci, (name, model) in enumerate(models.items()):
        for bi, (bucket, (a, b)) in enumerate(eval_set.problems.items()):
            held = eval_set.held_out(bucket)
            p, v = tasks.render_prompts(a, b)
            g = sampling.generate(model, p, v, max_new)
            s = sampling.generate(model, p, v, max_new, temperature=temperature,
                                  n_samples=n_samples, seed=seed * 10_000 + ci * 100 + bi)
            st = [decode_answer(r) for r in s.tokens]
            for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
                gt = decode_answer(g.tokens[i])
                row = g.tokens[i].tolist()
                stop = next((j for j, t in enumerate(row) if t in (EOS, PAD)), len(row))
                samples = st[i * n_samples:(i + 1) * n_samples]
                recs.append({
                    "checkpoint": name, "bucket": bucket, "a": x, "b": y, "greedy": gt,
                    "held_out": bool(held[i]),   # False: a problem training could draw (d1)
                    # the generated ids: the text drops bytes that are not valid UTF-8
                    "greedy_ids": row[:stop],
                    "class": failures.classify(x, y, tasks.parse_answer(gt, fmt)),
                    "samples": samples,
                    "sample_classes": [failures.classify(x, y, tasks.parse_answer(t, fmt))
                                       for t in samples]})
    return recs


def count_table(records: list[dict], classes=failures.CLASSES):
    """counts[(checkpoint, bucket)][class] of greedy answers, and the row/column labels."""
    rows = list(dict.fromkeys((r["checkpoint"], r["bucket"]) for r in records))
    counts = {k: {c: 0 for c in classes} for k in rows}
    for r in records:
        if r["class"] in classes:
            counts[(r["checkpoint"], r["bucket"])][r["class"]] += 1
    return counts, rows


@torch.no_grad()
def answer_token_probs(model, a: int, b: int, answer) -> list[tuple[str, float]]:
    """Probability the model gives each token of ``answer`` (then EOS) after ``a+b=``.

    ``answer`` is a string or a list of token ids (the generated ids: decoding replaces
    bytes that are not valid UTF-8, so re-encoding the text would score other tokens)."""
    prompt = [BOS] + list(f"{a}+{b}=".encode())
    ans = (list(answer.encode()) if isinstance(answer, str) else [int(t) for t in answer]) + [EOS]
    dev = next(model.parameters()).device
    ids = torch.tensor([prompt + ans], device=dev)[:, : model.cfg.block_size]
    logp = torch.log_softmax(model(ids[:, :-1]).float(), -1)[0]
    out = []
    for j, t in enumerate(ans):
        pos = len(prompt) - 1 + j
        if pos >= logp.shape[0]:
            break
        label = "⏎" if t == EOS else chr(t) if t < 128 else f"\\x{t:02x}"
        out.append((label, float(logp[pos, t].exp())))
    return out


def render_record(rec: dict, probs: list[tuple[str, float]] | None) -> str:
    """HTML for one record: prompt, truth, greedy answer with its class, samples, probabilities."""
    e = html.escape
    truth = rec["a"] + rec["b"]
    parts = [f"<b>{e(rec['checkpoint'])}</b> · {e(rec['bucket'])} · "
             f"<code>{rec['a']}+{rec['b']}=</code> (sum {truth})",
             f"greedy: <code>{e(repr(rec['greedy']))}</code> → <b>{e(rec['class'])}</b>"]
    if probs:
        cells = "".join(f"<td style='padding:2px 6px;background:rgba(220,50,50,{1 - p:.2f})'>"
                        f"{e(t)}<br><small>{p:.2f}</small></td>" for t, p in probs)
        parts.append(f"per-token probability of the greedy answer:<table><tr>{cells}</tr></table>")
    samp = ", ".join(f"<code>{e(repr(t))}</code> ({e(c)})"
                     for t, c in zip(rec["samples"], rec["sample_classes"]))
    parts.append(f"samples: {samp}")
    return "<br>".join(parts)


class Explorer:
    """Widgets: checkpoint, bucket, class dropdowns and a problem slider over the matches."""

    def __init__(self, records: list[dict], models: dict | None = None):
        import ipywidgets as W

        self.records, self.models = records, models or {}
        ck = list(dict.fromkeys(r["checkpoint"] for r in records))
        bk = list(dict.fromkeys(r["bucket"] for r in records))
        self.checkpoint = W.Dropdown(options=ck, description="checkpoint")
        self.bucket = W.Dropdown(options=["(all)"] + bk, description="bucket")
        self.klass = W.Dropdown(options=["(all wrong)"] + list(failures.ALL), description="class")
        self.index = W.IntSlider(min=0, max=0, description="match")
        self.summary = W.HTML()
        self.html = W.HTML()
        for w in (self.checkpoint, self.bucket, self.klass):
            w.observe(self._on_filter, names="value")
        self.index.observe(self._on_index, names="value")
        self.widget = W.VBox([W.HBox([self.checkpoint, self.bucket, self.klass]), self.index,
                              self.summary, self.html])
        self._on_filter()

    def matches(self) -> list[dict]:
        out = []
        for r in self.records:
            if r["checkpoint"] != self.checkpoint.value:
                continue
            if self.bucket.value != "(all)" and r["bucket"] != self.bucket.value:
                continue
            k = self.klass.value
            if (k == "(all wrong)" and r["class"] == "correct") or (k != "(all wrong)" and r["class"] != k):
                continue
            out.append(r)
        return out

    def _on_filter(self, change=None):
        self._matches = self.matches()
        n = len(self._matches)
        self.index.max = max(0, n - 1)
        self.index.value = 0
        self.summary.value = f"{n} matching problems"
        self._on_index()

    def _on_index(self, change=None):
        if not self._matches:
            self.html.value = "<i>no problem matches these filters</i>"
            return
        rec = self._matches[min(self.index.value, len(self._matches) - 1)]
        model = self.models.get(rec["checkpoint"])
        ans = rec.get("greedy_ids", rec["greedy"])
        probs = answer_token_probs(model, rec["a"], rec["b"], ans) if model else None
        self.html.value = render_record(rec, probs)

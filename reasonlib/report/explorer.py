"""Failure records and an ipywidgets explorer over them (07).

:func:`collect_records` answers every eval problem greedily and by sampling, with each
checkpoint, and classifies every answer with :func:`reasonlib.core.failures.classify`.
:class:`Explorer` filters the records by checkpoint, bucket and error class and shows the
prompt, the samples, and the per-token probabilities of the chosen answer. Its callbacks
are plain methods, so tests drive it headlessly by setting widget values.
"""
from __future__ import annotations

import html

import torch

from ..core import failures, sampling, tasks
from ..core.tokenizer import BOS, EOS, PAD, decode_answer


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


def _label(t: int) -> str:
    return "⏎" if t == EOS else chr(t) if 32 <= t < 127 else f"\\x{t:02x}"


@torch.no_grad()
def answer_token_dists(model, a: int, b: int, answer, top: int = 3) -> list[dict]:
    """Per token of ``answer`` (then EOS) after ``a+b=``: the token, the probability the model
    gave it, and its ``top`` most likely tokens there (the alternatives it weighed).

    ``answer`` is a string or a list of token ids (the generated ids: decoding replaces
    bytes that are not valid UTF-8, so re-encoding the text would score other tokens)."""
    prompt = [BOS] + list(f"{a}+{b}=".encode())
    ans = (list(answer.encode()) if isinstance(answer, str) else [int(t) for t in answer]) + [EOS]
    dev = next(model.parameters()).device
    ids = torch.tensor([prompt + ans], device=dev)[:, : model.cfg.block_size]
    probs = torch.softmax(model(ids[:, :-1]).float(), -1)[0]
    out = []
    for j, t in enumerate(ans):
        pos = len(prompt) - 1 + j
        if pos >= probs.shape[0]:
            break
        p, idx = probs[pos].topk(top)
        out.append({"token": _label(t), "id": t, "p": float(probs[pos, t]),
                    "top": [(_label(int(i)), float(q)) for q, i in zip(p, idx)]})
    return out


def answer_token_probs(model, a: int, b: int, answer) -> list[tuple[str, float]]:
    """Probability the model gives each token of ``answer`` (then EOS) after ``a+b=``."""
    return [(d["token"], d["p"]) for d in answer_token_dists(model, a, b, answer)]


def first_wrong(rec: dict, fmt: str) -> int | None:
    """Index of the first answer token where the greedy answer leaves the correct one (None
    when it is correct)."""
    want = list(tasks.answer_text(rec["a"], rec["b"], fmt).encode()) + [EOS]
    got = list(rec.get("greedy_ids", list(rec["greedy"].encode()))) + [EOS]
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return i
    return None if len(got) == len(want) else min(len(got), len(want))


def probability_strip(dists: list[dict], wrong: int | None) -> str:
    """An inline SVG: one bar per answer token, its height and colour the probability the
    model gave it; the first wrong token outlined."""
    w, h = 30, 44
    parts = [f'<svg class="prob-strip" width="{w * len(dists) + 4}" height="{h + 30}" '
             f'role="img" aria-label="per-token probability of the greedy answer">']
    for i, d in enumerate(dists):
        p = d["p"]
        bh = max(1.0, p * h)
        x = 2 + i * w
        color = f"rgb({int(220 * (1 - p))},{int(160 * p + 40)},70)"
        stroke = ' stroke="black" stroke-width="2"' if i == wrong else ""
        parts.append(f'<rect x="{x + 3}" y="{2 + h - bh:.1f}" width="{w - 6}" height="{bh:.1f}" '
                     f'fill="{color}"{stroke}><title>{html.escape(d["token"])}: {p:.3f}</title></rect>')
        parts.append(f'<text x="{x + w / 2}" y="{h + 16}" font-size="12" text-anchor="middle">'
                     f'{html.escape(d["token"])}</text>')
        parts.append(f'<text x="{x + w / 2}" y="{h + 28}" font-size="9" text-anchor="middle" '
                     f'fill="#555">{p:.2f}</text>')
    return "".join(parts) + "</svg>"


def render_record(rec: dict, probs: list[tuple[str, float]] | None = None,
                  dists: list[dict] | None = None, fmt: str | None = None,
                  command: str | None = None) -> str:
    """HTML for one record: prompt, truth, whether training could have seen the problem, the
    greedy answer with its class, the per-token probabilities (a table of numbers and, with
    ``dists``, a bar strip and the top alternatives at the first wrong token), the samples,
    and the command that reruns the analysis holding it."""
    e = html.escape
    truth = rec["a"] + rec["b"]
    seen = rec.get("held_out")
    label = "" if seen is None else (" · <span class='held-out'>held out</span>" if seen else
                                     " · <span class='seen'>seen in training</span>")
    parts = [f"<b>{e(rec['checkpoint'])}</b> · {e(rec['bucket'])}{label} · "
             f"<code>{rec['a']}+{rec['b']}=</code> (sum {truth})",
             f"greedy: <code>{e(repr(rec['greedy']))}</code> → <b>{e(rec['class'])}</b>"]
    if dists:
        probs = [(d["token"], d["p"]) for d in dists]
    if probs:
        cells = "".join(f"<td style='padding:2px 6px;background:rgba(220,50,50,{1 - p:.2f})'>"
                        f"{e(t)}<br><small>{p:.2f}</small></td>" for t, p in probs)
        parts.append(f"per-token probability of the greedy answer:<table><tr>{cells}</tr></table>")
    if dists:
        wrong = first_wrong(rec, fmt) if fmt else None
        parts.append(probability_strip(dists, wrong))
        if wrong is not None and wrong < len(dists):
            alts = ", ".join(f"<code>{e(t)}</code> {q:.2f}" for t, q in dists[wrong]["top"])
            parts.append(f"<span class='alternatives'>at the first wrong token (#{wrong + 1}, "
                         f"<code>{e(dists[wrong]['token'])}</code>) the model's top choices: "
                         f"{alts}</span>")
    samp = ", ".join(f"<code>{e(repr(t))}</code> ({e(c)})"
                     for t, c in zip(rec["samples"], rec["sample_classes"]))
    parts.append(f"samples: {samp}")
    if command:
        q = e(command, quote=True)
        parts.append(f"<button class='copy-command' data-command=\"{q}\" "
                     f"onclick='navigator.clipboard.writeText(this.dataset.command)'>copy the "
                     f"command that reruns this analysis</button> <code class='command'>{e(command)}</code>")
    return "<br>".join(parts)


class Explorer:
    """Widgets: checkpoint, bucket, class dropdowns and a problem slider over the matches.

    ``fmt`` (the answer format) lets the view find the first wrong token; ``command(rec)``
    gives the line that reruns the analysis. A callback that raises shows the error in the
    page (``error``) and logs it, instead of failing silently in the kernel."""

    def __init__(self, records: list[dict], models: dict | None = None, fmt: str | None = None,
                 command=None):
        import ipywidgets as W

        self.records, self.models = records, models or {}
        self.fmt, self.command = fmt, command
        ck = list(dict.fromkeys(r["checkpoint"] for r in records))
        bk = list(dict.fromkeys(r["bucket"] for r in records))
        self.checkpoint = W.Dropdown(options=ck, description="checkpoint")
        self.bucket = W.Dropdown(options=["(all)"] + bk, description="bucket")
        self.klass = W.Dropdown(options=["(all wrong)"] + list(failures.ALL), description="class")
        self.index = W.IntSlider(min=0, max=0, description="match")
        self.summary = W.HTML()
        self.html = W.HTML()
        self.error = W.HTML()
        for w in (self.checkpoint, self.bucket, self.klass):
            w.observe(self._guarded(self._on_filter), names="value")
        self.index.observe(self._guarded(self._on_index), names="value")
        for w, name in ((self.checkpoint, "checkpoint"), (self.bucket, "bucket"), (self.klass, "class"),
                        (self.index, "match"), (self.summary, "summary"), (self.html, "record"),
                        (self.error, "error")):
            w.add_class(f"explorer-{name}")   # stable hooks for a browser test
        self.widget = W.VBox([W.HBox([self.checkpoint, self.bucket, self.klass]), self.index,
                              self.summary, self.html, self.error])
        self._guarded(self._on_filter)()

    def _guarded(self, fn):
        def run(change=None):
            try:
                fn(change)
            except Exception as e:   # shown in the page and logged: never lost in the kernel
                import sys
                import traceback

                self.error.value = (f"<pre class='explorer-traceback'>explorer error: "
                                    f"{html.escape(f'{type(e).__name__}: {e}')}</pre>")
                traceback.print_exc(file=sys.stderr)
        return run

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
        dists = answer_token_dists(model, rec["a"], rec["b"], ans) if model else None
        self.html.value = render_record(rec, dists=dists, fmt=self.fmt,
                                        command=self.command(rec) if self.command else None)

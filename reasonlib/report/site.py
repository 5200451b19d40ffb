"""A static HTML site of one profile's run, readable from disk with no network.

``build(profile_root)`` renders every executed notebook of ``runs/<profile>/``
(``seed-*/NN_name.ipynb`` and the cross-seed ``NN_name.ipynb`` beside the seed folders,
e.g. ``09_summary.ipynb``) with nbconvert, and writes ``index.html``, which tells the story
first: the question, the setup (model, budgets, seeds, what was held out), then per finding
the study's claim, our number, the verdict with its rule and generated sentences on what it
means, with notebook 09's figure (referenced, stored once beside the summary); then the
tables and a link to every page. The numbers come from notebook 09's
``summary/metrics.json``, or are computed with :mod:`reasonlib.report.summary` when it is absent.

Offline by construction:

* a notebook page's figures are PNG files it references by relative path, each stored
  once: the file the cell saved (``fig.savefig(out_dir / "name.png")``) where it saved
  one, else the output's bytes under ``_static/img/`` (:func:`link_figures`); the index
  references notebook 09's PNG files the same way;
* nbconvert's ``lab`` template loads require.js, MathJax, mermaid and the widget manager
  from CDNs: a small template extending it empties those blocks (formulas then show as
  their TeX source);
* widget outputs keep only their ``text/plain`` fallback (with a note that the widget needs
  a live kernel) instead of an empty widget area, and the saved widget state is dropped;
* every page is checked by :func:`remote_references` before it is written: a script,
  stylesheet, image or frame pointing to ``http(s)://`` or ``//`` raises :class:`ReportError`.
  Plain ``<a href>`` links to the web are allowed: they load nothing by themselves.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat

from . import findings as F
from . import summary as summary_mod
from ..core.schemes import PLACED
from ..train.artifacts import shown, write_bytes


class ReportError(ValueError):
    """The report cannot be built (no such profile folder, no seeds, a page with a remote
    resource); the message names the path."""


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "[interactive widget: it needs a live Jupyter kernel. Its text form follows.]"

# The lab template with every block that loads code from a CDN emptied.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

# ---- offline check --------------------------------------------------------------------------------
_REMOTE = re.compile(r"^\s*(https?:|//)", re.I)
_CSS_REMOTE = re.compile(r"""(url\(\s*['"]?\s*(https?:|//)[^)]*\)|@import\s+(url\(\s*)?['"]?\s*(https?:|//)\S*)""",
                         re.I)
_JS_REMOTE = re.compile(r"""['"`](https?:)?//[^'"`\s]+['"`]""", re.I)
_URL_ATTRS = {"src", "href", "xlink:href", "data", "poster", "srcset", "background", "action",
              "formaction", "manifest"}
_LINK_TAGS = {"a", "area"}   # navigation only: a click, not a load


class _RemoteFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in = None

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "style":
                self.found += [f"<{tag} style> {m.group(0)}" for m in _CSS_REMOTE.finditer(value)]
            elif name in _URL_ATTRS and tag not in _LINK_TAGS:
                urls = [u.strip().split(" ")[0] for u in value.split(",")] if name == "srcset" else [value]
                self.found += [f"<{tag} {name}={u!r}>" for u in urls if _REMOTE.match(u)]
        self._in = tag if tag in ("style", "script") else None

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.found += [f"<style> {m.group(0)[:120]}" for m in _CSS_REMOTE.finditer(data)]
        elif self._in == "script":
            self.found += [f"<script> {m.group(0)[:120]}" for m in _JS_REMOTE.finditer(data)]


def remote_references(page: str) -> list[str]:
    """Everything in an HTML page that would load a resource from the network: src/href
    (and similar) of anything but a plain link, ``url(...)`` and ``@import`` in CSS, and
    quoted URLs in inline scripts. Empty for a page that works offline."""
    f = _RemoteFinder()
    f.feed(page)
    f.close()
    return f.found


# ---- notebooks -----------------------------------------------------------------------------------
def find_notebooks(profile_root: Path) -> list[Path]:
    """Executed notebooks under a profile folder, relative to it: the cross-seed ones
    (``NN_name.ipynb`` beside the seed folders) first, then each seed's, in seed order."""
    top = sorted(profile_root.glob("[0-9][0-9]_*.ipynb"))
    seeds = summary_mod.find_seeds(profile_root)
    per_seed = [nb for s in seeds for nb in sorted(s.glob("[0-9][0-9]_*.ipynb"))]
    return [p.relative_to(profile_root) for p in top + per_seed]


_BOXES = {"HBoxModel": " ", "VBoxModel": "\n", "BoxModel": " "}
_TEXTS = {"HTMLModel", "LabelModel", "HTMLMathModel"}
_PROGRESS = {"FloatProgressModel", "IntProgressModel"}


def _widget_text(model_id: str, state: dict, depth: int = 0) -> str | None:
    """The final state of a display-only widget (text, progress bars and boxes of them, e.g.
    a tqdm bar) as one line of text; None for anything interactive or unknown."""
    m = state.get(model_id)
    if not isinstance(m, dict) or depth > 8:
        return None
    name, st = m.get("model_name"), m.get("state", {})
    if name in _BOXES:
        parts = [_widget_text(str(c).removeprefix("IPY_MODEL_"), state, depth + 1)
                 for c in st.get("children", [])]
        return None if None in parts else _BOXES[name].join(p for p in parts if p)
    if name in _TEXTS:
        return html.unescape(re.sub(r"<[^>]*>", "", str(st.get("value", "")))).replace("\u200b", "").strip()
    if name in _PROGRESS:
        lo, hi, v = st.get("min", 0), st.get("max", 100), st.get("value", 0)
        try:
            fill = round(10 * (v - lo) / (hi - lo)) if hi > lo else 10
        except TypeError:
            return None
        fill = min(max(fill, 0), 10)
        return "|" + "#" * fill + "." * (10 - fill) + "|"
    return None


def static_notebook(nb):
    """A copy of ``nb`` that renders without a kernel or network, saved widget state dropped.

    A display-only widget (e.g. a tqdm progress bar) becomes the text of its final saved
    state; an interactive one keeps its ``text/plain`` fallback behind a note saying it needs
    a live kernel."""
    nb = copy.deepcopy(nb)
    saved = nb.metadata.pop("widgets", {}) or {}
    state = saved.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data or WIDGET_VIEW not in data:
                continue
            view = data[WIDGET_VIEW]
            final = _widget_text(view.get("model_id", ""), state) if isinstance(view, dict) else None
            if final is not None:
                out["data"] = {"text/plain": final}
                continue
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            out["data"] = {"text/plain": WIDGET_NOTE + ("\n" + text if text else "")}
    return nb


# a figure cell's file: ``fig.savefig(out_dir / "name.png", ...)`` with a literal name
_SAVEFIG = re.compile(r"""\.savefig\(\s*out_dir\s*/\s*["']([^"'{}]+\.png)["']""")


FIGURE_KEY = "reasonlib_figure"   # output metadata of a figure published as a file reference


def _img(src: str) -> str:
    return f'<img src="{html.escape(src)}" alt="figure" style="max-width:100%">'


def _saved_figures(cell, outs: list, fig_dir: Path | None) -> list[Path]:
    """The PNG files ``cell`` saved for its ``outs``, in order: only when it saves as many
    literally named PNGs into the notebook's output folder as it shows, all present."""
    names = _SAVEFIG.findall(cell.source)
    saved = [fig_dir / n for n in names] if fig_dir is not None and len(names) == len(outs) else []
    return saved if all(f.is_file() for f in saved) else []


def _png_outputs(cell) -> list:
    return [o for o in cell.get("outputs", []) if "image/png" in (o.get("data") or {})]


def link_figures(nb, fig_dir: Path | None, page_dir: Path, img_dir: Path, used: set[Path],
                 nb_dir: Path | None = None):
    """``nb`` with every figure output shown by an ``<img>`` that references a file, so a
    figure is stored once as a PNG instead of again as a data URI in the page: the PNG
    the cell saved into the notebook's output folder (``fig_dir``) when the cell saves as
    many literally named PNGs as it shows (the same figure, drawn at the dpi of its
    ``savefig``), else the output's own bytes, written once under ``img_dir`` by content
    hash. An output :func:`publish_notebook` already turned into a reference (to a file
    relative to ``nb_dir``) is pointed at that file. Paths are relative to ``page_dir``;
    each file referenced is added to ``used``."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            ref = (o.get("metadata") or {}).get(FIGURE_KEY)
            if ref and nb_dir is not None:
                target = (nb_dir / ref).resolve()
                used.add(target)
                o["data"]["text/html"] = _img(Path(os.path.relpath(target, page_dir)).as_posix())
        outs = _png_outputs(cell)
        if not outs:
            continue
        saved = _saved_figures(cell, outs, fig_dir)
        for i, o in enumerate(outs):
            if saved:
                target = saved[i]
            else:
                data = o["data"]["image/png"]
                raw = base64.b64decode("".join(data) if isinstance(data, list) else data)
                target = img_dir / f"{hashlib.sha256(raw).hexdigest()[:20]}.png"
                if not target.is_file():
                    write_bytes(target, raw)
            used.add(target.resolve())
            o["data"] = {"text/html": _img(Path(os.path.relpath(target, page_dir)).as_posix()),
                         "text/plain": o["data"].get("text/plain", "<Figure>")}
    return nb


def publish_notebook(path: Path, fig_dir: Path) -> int:
    """Rewrite an executed notebook for publishing: each figure output whose cell saved it
    as a PNG in ``fig_dir`` (see :func:`link_figures`) becomes an ``<img>`` referencing
    that file, with the file's path in the output's metadata, instead of a second,
    embedded copy of the figure. Papermill's record of the notebook's input and output paths
    becomes relative to the repository where it lies inside it (:func:`artifacts.shown`), so
    a published notebook carries no machine's folders. Everything else is kept. Returns how
    many figures it replaced."""
    nb = nbformat.read(path, as_version=4)
    pm = nb.metadata.get("papermill") or {}
    where = {k: shown(pm[k]) for k in ("input_path", "output_path") if pm.get(k)}
    moved = {k: v for k, v in where.items() if v != pm[k]}
    pm.update(moved)
    n = 0
    for cell in nb.cells:
        outs = _png_outputs(cell) if cell.cell_type == "code" else []
        for o, f in zip(outs, _saved_figures(cell, outs, fig_dir)):
            rel = Path(os.path.relpath(f, path.parent)).as_posix()
            o["data"] = {"text/html": _img(rel), "text/plain": o["data"].get("text/plain", "<Figure>")}
            o.setdefault("metadata", {})[FIGURE_KEY] = rel
            n += 1
    if n or moved:
        write_bytes(path, nbformat.writes(nb).encode())
    return n


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="offline.html.j2",
                        extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                        embed_images=True, exclude_anchor_links=True)


_NAV_CSS = ("<style>.report-nav{font:14px sans-serif;padding:8px 0 4px 0}"
            ".report-nav a{color:#1a5fb4}</style>")


def render_notebook(path: Path, title: str, index_href: str, exporter=None,
                    figures: tuple | None = None) -> str:
    """One executed notebook as a standalone offline HTML page with a link back to the index;
    ``figures`` = ``(fig_dir, page_dir, img_dir, used)``: its PNGs referenced as files
    (:func:`link_figures`) instead of embedded."""
    nb = static_notebook(nbformat.read(path, as_version=4))
    if figures is not None:
        nb = link_figures(nb, *figures, nb_dir=path.parent)
    exporter = exporter or _exporter()
    # "path": markdown images given as files beside the notebook are embedded too
    page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title,
                                                                      "path": str(path.parent)}})
    nav = (f'<nav class="report-nav"><a href="{html.escape(index_href)}">&larr; report index</a>'
           f" &middot; {html.escape(title)}</nav>")
    page = page.replace("</head>", _NAV_CSS + "</head>", 1)
    page = page.replace("<main>", "<main>" + nav, 1)
    return page


# ---- index ------------------------------------------------------------------------------------------
_INDEX_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
     padding:0 1em;color:#1d1d1f;line-height:1.5}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .3em 0}
p.lede{font-size:1.08em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #d0d0d0;padding:3px 8px;vertical-align:top}
th{background:#f3f3f3;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;white-space:nowrap;padding:2px 6px;border-radius:4px;font-size:.85em}
.v-reproduced,.v-supported{background:#d8f0d8;color:#1b5e20}
.v-not-reproduced,.v-not-supported{background:#f9d6d5;color:#8e1c14}
.v-smaller,.v-larger{background:#fdf0c8;color:#6d4c00}
.story{font-size:1.05em;border-left:4px solid #4a78b0;padding:4px 12px;background:#f4f7fb}
.limits li{margin:3px 0}
.v-inconclusive,.v-not-measured{background:#eee;color:#444}
.finding{border-left:3px solid #ddd;padding:.1em 0 .3em 1em;margin:1em 0}
.rule{color:#555;font-size:.85em;font-style:italic}
.muted{color:#666;font-size:.9em}
.finding img{max-width:100%;width:640px;border:1px solid #eee;margin-top:.4em}
img.wide{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:0 3px}
"""

QUESTION = ("When does reinforcement learning after curriculum SFT really help a small Transformer "
            "add, and when does the curriculum, the answer format or the data do the work?")


def _load_summary(profile_root: Path) -> tuple[dict, str, bool]:
    """The cross-seed summary, where it came from, and whether it is notebook 09's own
    (then its figures match it). A summary written before the seed folders changed, or by
    an older reasonlib, is recomputed instead."""
    f = profile_root / "summary" / "metrics.json"
    seeds = [p.name for p in summary_mod.find_seeds(profile_root)]
    note = ""
    if f.is_file():
        try:
            s = json.loads(f.read_text())
        except ValueError:
            s, note = None, f" ({f.relative_to(profile_root)} is not valid JSON)"
        if isinstance(s, dict) and "measures" in s and "findings" in s and "limitations" not in s:
            s, note = None, (f" ({f.relative_to(profile_root)} was written with the verdict "
                             f"rules of an older reasonlib)")
        if isinstance(s, dict) and "measures" in s and "findings" in s:
            if s.get("seeds") == seeds:
                return s, f"{f.relative_to(profile_root)} (written by notebook 09)", True
            note = (f" ({f.relative_to(profile_root)} covers seeds {', '.join(s.get('seeds') or [])}: "
                    f"out of date, rerun notebook 09 for its figures)")
    return (summary_mod.summarize(profile_root),
            "computed now from the seeds' records" + note, False)


def _esc(x) -> str:
    return html.escape(str(x))


def _setup_html(s: dict) -> str:
    st = s.get("setup") or {}
    if not st:
        return "<p class=muted>No setup recorded (notebook 03 has not run).</p>"
    m = st["model"]
    rl = st.get("rl") or {}
    items = [
        f"<li><b>Model.</b> A causal Transformer built from scratch: {m['n_layer']} layers, "
        f"{m['n_head']} heads, width {m['n_embd']}, byte-level tokens, "
        f"<code>{_esc(m.get('pos') or 'rope')}</code> positions"
        # only the place schemes draw a random place offset in training (docs/positions.md)
        + (f" (training place offsets up to {m['pos_offset']})"
           if m.get("pos_offset") and m.get("pos") in PLACED else "")
        + "; answers in the "
        f"<code>{_esc(st['fmt'])}</code> format, operands up to {st['max_digits']} digits.</li>",
        f"<li><b>SFT.</b> {st['total_tokens']:,} training tokens per arm, for each curriculum "
        f"({_esc(', '.join(st.get('curricula') or []))}) and, for the format comparison, the "
        f"targeted curriculum in {_esc(', '.join(st.get('formats') or []))}.</li>",
    ]
    if rl.get("rl_steps"):
        items.append(f"<li><b>RL.</b> {rl['rl_steps']} updates of {rl['rl_prompts']} prompts x "
                     f"{rl['rl_group']} samples from each SFT model (beta = {rl['beta']:g}, prompts from "
                     f"{_esc(', '.join(rl.get('rl_buckets') or []))}); the beta scan repeats it for beta in "
                     f"{{{_esc(', '.join(f'{b:g}' for b in st.get('betas') or []))}}}.</li>")
    items.append(f"<li><b>Seeds.</b> {s['n_seeds']} ({_esc(', '.join(s['seeds']))}); intervals: "
                 f"{_esc(summary_mod.interval_word(s['n_seeds']))}.</li>")
    rows = [[v["bucket"], f"{v['problems']:,}" if v.get("problems") else "",
             f"{v['held_out']:,}" if v.get("held_out") is not None else "",
             f"{v['eval']:,}" if v.get("eval") else ""] for v in st["buckets"]]
    split = _table_html(["bucket", "problems", "never trained (held out or reserved)", "eval problems"], rows)
    items.append("<li><b>Held out.</b> 30% of every bucket with at most 10,000 problems but d1, and "
                 "the eval problems of the larger ones, are never drawn by any training path (SFT "
                 "stages, replay, format arms, RL prompts); every metric is measured on them. d1 "
                 "(100 problems) is trained and evaluated in full. A further 10% of every small "
                 "bucket and up to 2,000 problems of each large one are <b>validation</b> "
                 "problems, neither trained nor scored: the probe during training reads them, and "
                 "so every choice made from data (transition steps, RL starts, recipes)." + split
                 + "</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _verdict_span(v: str) -> str:
    return f'<span class="verdict v-{v.replace(" ", "-")}">{_esc(F.verdict_text(v))}</span>'


def _finding_html(r: dict, figs: dict) -> str:
    v = r["verdict"] if r["measured"] else "not measured"
    holm = (f" Holm: {_verdict_span(r['holm'])} (adjusted p = {r['p_holm']:.3f})"
            if r["measured"] and r.get("holm") else "")
    fig = figs.get(r["id"])
    img = f'<br><img alt="finding {_esc(r["id"])}" src="{_esc(fig)}">' if fig else ""
    return (f'<section class="finding" id="finding-{_esc(r["id"])}"><h3>{_esc(r["id"])}. '
            f'{_esc(r["title"])} {_verdict_span(v)}</h3>'
            f"<p><b>Claim.</b> {_esc(r['claim'])}. <b>The study:</b> {_esc(r['study'])}. "
            f"<b>Ours:</b> {_esc(r['what'])}: {_esc(summary_mod.ours_text(r))}.</p>"
            f"<p>{_esc(' '.join(r.get('sentences') or []))}</p>"
            + (f'<p class="rule">Verdict rule: {_esc(r["rule"])}.{holm}</p>' if r["measured"] else "")
            + img + "</section>")


def _table_html(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A table of text cells: the first ``left`` columns left-aligned, the others numeric."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td{"" if i < left else " class=num"}>{html.escape(c)}</td>' for i, c in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figures(profile_root: Path, out: Path, s: dict) -> dict[str, str]:
    """{finding id: path of notebook 09's figure relative to the report folder}: the PNG is
    stored once, beside the summary, and referenced."""
    figs = {}
    for r in s.get("findings", []):
        p = profile_root / "summary" / f"finding_{r['id']}.png"
        if p.is_file():
            figs[r["id"]] = Path(os.path.relpath(p, out)).as_posix()
    return figs


def _index_html(profile_root: Path, out: Path, s: dict, source: str,
                pages: list[tuple[Path, Path | None, str]], figures: bool = True) -> str:
    name = profile_root.name
    top = [(nb, page, err) for nb, page, err in pages if len(nb.parts) == 1]
    by_seed: dict[str, list] = {}
    for nb, page, err in pages:
        if len(nb.parts) > 1:
            by_seed.setdefault(nb.parts[0], []).append((nb, page, err))

    def link(nb, page, err):
        label = html.escape(nb.stem)
        if page is None:
            return f'{label} <span class="muted">(not rendered: {html.escape(err)})</span>'
        return f'<a href="{html.escape(page.as_posix())}">{label}</a>'

    nav = []
    if top:
        nav.append("<p><b>Across seeds:</b> " + " &middot; ".join(link(*x) for x in top) + "</p>")
    if by_seed:
        nav.append("<table><tr><th>seed</th><th>executed notebooks</th></tr>" + "".join(
            f"<tr><td>{html.escape(seed)}</td><td>" + " &middot; ".join(link(*x) for x in items)
            + "</td></tr>" for seed, items in by_seed.items()) + "</table>")
    if not pages:
        nav.append('<p class="muted">no executed notebooks found (only metrics.json files)</p>')
    missing = [f"<li>{html.escape(seed)}: no metrics from {html.escape(', '.join(nbs))}</li>"
               for seed, nbs in s.get("missing", {}).items()]
    figs = _figures(profile_root, out, s) if figures else {}
    one = s["n_seeds"] == 1
    study = [r for r in s["findings"] if r["family"] == "study"]
    ours = [r for r in s["findings"] if r["family"] == "suite"]
    head = (profile_root / "summary" / "headroom.png")
    headroom = (f'<h2>Headroom: where RL has something to do</h2><p class="muted">Every RL start '
                f'of 05, coloured by type (snapshots along the targeted schedule, finished '
                f'curriculum arms, finished format arms): what RL gained on general, against the '
                f'start\'s greedy accuracy, its pass@k and the gap between them, each with a fitted '
                f'curve and its R² held out by seed (finding 3b; 09 compares the predictors).</p>'
                f'<img class="wide" alt="the headroom curve" src="{_esc(Path(os.path.relpath(head, out)).as_posix())}">'
                if head.is_file() else "")
    gpng = profile_root / "summary" / "grid.png"
    grid_fig = (f'<h2>The length-pair grid</h2><p class="muted">Every SFT arm (curriculum, answer '
                f'format, position scheme) on every pair of operand lengths up to D+3, greedy '
                f'exact match in %, the mean over seeds (notebook 08). Outlined: the trained '
                f'lengths; red: the cell (1, D), which no training path draws.</p>'
                f'<img class="wide" alt="the length-pair grid" src="{_esc(Path(os.path.relpath(gpng, out)).as_posix())}">'
                if gpng.is_file() else "")
    rpng = profile_root / "summary" / "razor.png"
    fit = s.get("razor_fit") or {}
    razor_fig = ('<h2>Forgetting against KL</h2><p class="muted">Every RL run of 06 (both starts, '
                 'every beta): the change on the buckets RL never practises against the exact KL '
                 'to the start on RL\'s prompts, with the fitted line'
                 + (f' (R² {fit["r2"]:.2f}' + (f', held out by seed {fit["r2_held_out"]:.2f}'
                                                if "r2_held_out" in fit else "") + ')' if fit else "")
                 + '. RL\'s Razor (Shenfeld et al. 2025) says KL predicts forgetting.</p>'
                 f'<img class="wide" alt="forgetting against KL" src="{_esc(Path(os.path.relpath(rpng, out)).as_posix())}">'
                 if rpng.is_file() else "")
    limits = "".join(f"<li>{_esc(x)}</li>" for x in s.get("limitations") or [])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reasonlib report: {html.escape(name)}</title><style>{_INDEX_CSS}</style></head>
<body>
<h1>{html.escape(QUESTION)}</h1>
<p class="lede">A small Transformer learns addition by supervised fine-tuning on a curriculum,
then by RL against an answer checker. This report re-creates a published study (<i>Cultivating
Reasoning Capabilities in Small Models</i>, <a href="{html.escape(summary_mod.PUBLISHED_SOURCE)}">its published text</a>)
on the <code>{html.escape(name)}</code> profile, checks each of its seven claims on problems no
training path ever saw, on direction and size, and asks questions of its own.{' With a single seed every verdict is for <b>this seed only</b>: it says how sure we are about these models, not how the result moves with another seed.' if one else ''}</p>
<h2>What this run shows</h2>
<div class="story">{"".join(f"<p>{_esc(x)}</p>" for x in s.get("story") or [])}</div>
<h2>The study's claims</h2>
<p><b>Scoreboard (Holm-adjusted, the headline):</b> {_esc(F.scoreboard(s["findings"], "study"))}.
<span class="muted">Raw: {_esc(F.scoreboard(s["findings"], "study", "verdict"))}. A claim with a
published effect is reproduced when its interval lies above 0 and reaches into the band within a
factor of two of the study's effect; Holm's step-down adjustment treats the seven as one family
(one-sided 2.5% each).</span></p>
{_table_html(summary_mod.CLAIM_HEADERS, summary_mod.claim_rows(s, "study"), left=6)}
<h2>Our questions</h2>
<p><b>Scoreboard (Holm within them):</b> {_esc(F.scoreboard(s["findings"], "suite"))}.
<span class="muted">Raw: {_esc(F.scoreboard(s["findings"], "suite", "verdict"))}. Beyond the
study: supported or not, never "reproduced".</span></p>
{_table_html(summary_mod.CLAIM_HEADERS, summary_mod.claim_rows(s, "suite"), left=6)}
<h2>Limitations</h2>
<ul class="limits">{limits}</ul>
{headroom}
{razor_fig}
{grid_fig}
<h2>Setup</h2>
{_setup_html(s)}
<h2>The study's claims in detail</h2>
{"".join(_finding_html(r, figs) for r in study)}
<h2>Our questions in detail</h2>
{"".join(_finding_html(r, figs) for r in ours)}
<h2>Headline measures</h2>
<p class="muted">Greedy exact match on held-out problems unless the row says otherwise; intervals:
{html.escape(summary_mod.interval_word(s['n_seeds']))}; every seed's value is listed.
Numbers: {html.escape(source)}.</p>
{_table_html(summary_mod.MEASURE_HEADERS, summary_mod.measure_rows(s))}
<h2>Failure taxonomy before and after RL</h2>
<p class="muted">Wrong greedy answers (07) on the held-out mixed, low_sum, mixed3 and general
problems, mean over seeds; the study saw 12+3 &rarr; 18 (digit substitution) and 12+3 &rarr; 123
(operand duplication).</p>
{_table_html(summary_mod.TAXONOMY_HEADERS, summary_mod.taxonomy_rows(s))}
<h2>Notebooks</h2>
{"".join(nav)}
{"<h2>Missing inputs</h2><ul>" + "".join(missing) + "</ul>" if missing else ""}
<p class="muted">This site loads nothing from the network; formulas show as TeX source.</p>
</body></html>
"""


STATIC = "_static"
# Inline <style> blocks at least this long (nbconvert's JupyterLab theme, ~260 KB a page)
# are written once to <out>/_static/<hash>.css and linked: every page carries the same ones.
SHARED_CSS_MIN = 2000
_STYLE = re.compile(r"<style([^>]*)>(.*?)</style>", re.S)


def _share_styles(page: str, out: Path, depth: int, used: set[str]) -> str:
    """``page`` with its long inline stylesheets moved to shared files under ``out/_static``
    (named by content hash, written once, checked offline), linked relative to a page
    ``depth`` folders below ``out``."""
    def repl(m):
        css = m.group(2)
        if len(css) < SHARED_CSS_MIN:
            return m.group(0)
        bad = [x.group(0)[:120] for x in _CSS_REMOTE.finditer(css)]
        if bad:
            raise ReportError(f"a stylesheet would load from the network: {bad[0]}")
        name = f"{STATIC}/{hashlib.sha256(css.encode()).hexdigest()[:16]}.css"
        if name not in used:
            used.add(name)
            f = out / name
            if not f.is_file() or f.read_bytes() != css.encode():
                write_bytes(f, css.encode())
        return f'<link rel="stylesheet" href="{"../" * depth}{name}">'
    return _STYLE.sub(repl, page)


def _fig_dir(profile_root: Path, rel: Path) -> Path:
    """Where a notebook saves its figures: seed-<s>/NN_name/, the summary into summary/."""
    return profile_root / (rel.with_suffix("") if len(rel.parts) > 1 else "summary")


def build(profile_root: Path, out: Path | None = None, publish: bool = False) -> Path:
    """Write the static site for ``profile_root`` (``runs/<profile>``) into ``out``
    (default ``<profile_root>/report``) and return the path of its ``index.html``.
    ``publish``: first rewrite the executed notebooks so that each figure saved as a PNG is
    stored once (:func:`publish_notebook`); for a folder that is published, not a run."""
    profile_root = Path(profile_root)
    try:
        summary_mod.find_seeds(profile_root)  # the folder exists and holds seed-* folders
    except summary_mod.SummaryError as e:
        raise ReportError(f"cannot build a report: {e}") from None
    out = Path(out) if out is not None else profile_root / "report"
    if publish:
        for rel in find_notebooks(profile_root):
            publish_notebook(profile_root / rel, _fig_dir(profile_root, rel))
    exporter = _exporter()
    pages, used, images = [], set(), set()
    for rel in find_notebooks(profile_root):
        page_rel = rel.with_suffix(".html")
        back = "../" * (len(rel.parts) - 1) + "index.html"
        title = " · ".join(rel.with_suffix("").parts)
        fig_dir = _fig_dir(profile_root, rel)
        try:
            page = render_notebook(profile_root / rel, title, back, exporter,
                                   (fig_dir, (out / page_rel).parent, out / STATIC / "img", images))
        except (OSError, ValueError, nbformat.ValidationError) as e:
            pages.append((rel, None, f"{type(e).__name__}: {str(e)[:200]}"))
            continue
        page = _share_styles(page, out, len(rel.parts) - 1, used)
        _check_offline(page, out / page_rel)
        write_bytes(out / page_rel, page.encode())
        pages.append((rel, page_rel, ""))
    for old in (out / STATIC).glob("*.css"):   # left by an earlier build, linked by no page
        if f"{STATIC}/{old.name}" not in used:
            old.unlink()
    for old in (out / STATIC / "img").glob("*.png"):
        if old.resolve() not in images:
            old.unlink()
    s, source, own = _load_summary(profile_root)
    index = _index_html(profile_root, out, s, source, pages, figures=own)
    _check_offline(index, out / "index.html")
    return write_bytes(out / "index.html", index.encode())


def _check_offline(page: str, path: Path):
    bad = remote_references(page)
    if bad:
        raise ReportError(f"{path} would load {len(bad)} resource(s) from the network, "
                          f"first: {bad[0]}")

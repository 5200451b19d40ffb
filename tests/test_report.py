"""reasonlib.report.site: a static site from a small fake profile folder (tiny executed notebooks
made here with nbformat, with an image, a progress-bar widget and an interactive widget, plus
metrics.json files), checked to open offline: links resolve, images are embedded, nothing
is loaded from the network."""
from __future__ import annotations

import base64
import json
import re
import struct
import zlib

import nbformat
import pytest
from nbformat import v4

from reasonlib.report import site
from reasonlib.train.artifacts import repo_root
from reasonlib.report.site import ReportError
from test_summary import write_seed

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _png(w: int = 3, h: int = 2) -> bytes:
    """A valid w x h RGB PNG (red), built by hand."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG_B64 = base64.b64encode(_png()).decode()


def _model(name, **state):
    return {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0",
            "model_name": name, "state": state}


def make_notebook(title: str, extra_markdown: str = "") -> nbformat.NotebookNode:
    """An executed-looking notebook: markdown with TeX and a web link, a printed table, an
    inline PNG figure, a tqdm-like progress widget (saved state: finished) and an
    interactive widget whose only static form is its text/plain repr."""
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        v4.new_markdown_cell(f"# {title}\n\nThe loss is $$\\mathcal{{L}} = -\\log p$$; see "
                             f"[the docs](https://example.org/docs).{extra_markdown}"),
        v4.new_code_cell("print('acc 93.2')", execution_count=1,
                         outputs=[v4.new_output("stream", name="stdout", text="acc 93.2\n")]),
        v4.new_code_cell("plt.show()", execution_count=2, outputs=[v4.new_output(
            "display_data", data={"image/png": PNG_B64, "text/plain": "<Figure size 640x480>"})]),
        v4.new_code_cell("for _ in tqdm(range(12)): pass", execution_count=3, outputs=[v4.new_output(
            "display_data", data={WIDGET_VIEW: {"model_id": "bar", "version_major": 2, "version_minor": 0},
                                  "text/plain": "  0%|          | 0/12 [00:00<?, ?it/s]"})]),
        v4.new_code_cell("ex.widget", execution_count=4, outputs=[v4.new_output(
            "execute_result", execution_count=4,
            data={WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0},
                  "text/plain": "VBox(children=(Dropdown(description='checkpoint'),))"})]),
    ]
    nb.metadata["widgets"] = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {
        "bar": _model("HBoxModel", children=["IPY_MODEL_desc", "IPY_MODEL_prog", "IPY_MODEL_stat"]),
        "desc": _model("HTMLModel", value="RL beta=0.05: 100%"),
        "prog": _model("FloatProgressModel", value=12, min=0, max=12),
        "stat": _model("HTMLModel", value="12/12 [00:01&lt;00:00, 9.0it/s]"),
        "box": _model("VBoxModel", children=["IPY_MODEL_dd"]),
        "dd": _model("DropdownModel", description="checkpoint", index=0),
    }}}
    return nb


@pytest.fixture
def profile(tmp_path):
    """runs/<profile>/ with two seeds (metrics + executed notebooks) and a summary notebook."""
    root = tmp_path / "quick"
    for seed in ("seed-0", "seed-1"):
        write_seed(root / seed)
        for name in ("03_sft", "07_failure_analysis"):
            nbformat.write(make_notebook(f"{name} {seed}"), root / seed / f"{name}.ipynb")
    nbformat.write(make_notebook("09 summary"), root / "09_summary.ipynb")
    return root


# ---- independent offline checks (not reusing site.remote_references) ------------------------------
_TAG = re.compile(r"<(script|link|img|iframe|source|embed|object|video|audio)\b([^>]*)>", re.I | re.S)
_ATTR = re.compile(r"""\b(src|href|srcset|data|poster)\s*=\s*(["'])(.*?)\2""", re.I | re.S)
_REMOTE = re.compile(r"^\s*(https?:|//)", re.I)


def assert_offline(page: str, where: str):
    for tag, attrs in _TAG.findall(page):
        for name, _, value in _ATTR.findall(attrs):
            assert not _REMOTE.match(value), f"{where}: <{tag} {name}={value!r}>"
    for css in re.findall(r"<style[^>]*>(.*?)</style>", page, re.S | re.I) + \
            re.findall(r"""style\s*=\s*"([^"]*)\"""", page, re.I):
        assert not re.search(r"url\(\s*['\"]?\s*(https?:|//)", css, re.I), where
        assert not re.search(r"@import\s+(url\()?\s*['\"]?\s*(https?:|//)", css, re.I), where


def _local_links(page: str) -> list[str]:
    return [h for h in re.findall(r'<a\s[^>]*href="([^"]+)"', page)
            if not h.startswith(("http:", "https:", "#", "mailto:"))]


def test_build_writes_an_offline_site(profile, tmp_path):
    index = site.build(profile)
    assert index == profile / "report" / "index.html" and index.is_file()
    pages = sorted(index.parent.rglob("*.html"))
    assert {p.relative_to(index.parent).as_posix() for p in pages} == {
        "index.html", "09_summary.html", "seed-0/03_sft.html", "seed-0/07_failure_analysis.html",
        "seed-1/03_sft.html", "seed-1/07_failure_analysis.html"}
    text = index.read_text()
    links = _local_links(text)
    assert len(links) == 5
    for href in links:
        assert (index.parent / href).is_file(), href
    for p in pages:
        page = p.read_text()
        assert_offline(page, str(p))
        assert site.remote_references(page) == [], p
        assert "<script" not in page.lower(), p          # no code at all, inline or remote
        for href in _local_links(page):                  # the link back to the index
            assert (p.parent / href).resolve().is_file(), (p, href)
        # the theme's long stylesheets are shared files, linked relative to the page
        assert all(len(css) < site.SHARED_CSS_MIN
                   for css in re.findall(r"<style[^>]*>(.*?)</style>", page, re.S))
        for href in re.findall(r'<link rel="stylesheet" href="([^"]+)">', page):
            css = (p.parent / href).resolve()
            assert css.is_file() and css.parent == index.parent / site.STATIC, (p, href)
            assert_offline(f"<style>{css.read_text()}</style>", str(css))
    # one copy for every page: seed pages and the summary page link the same files
    names = lambda p: sorted(h.rsplit("/", 1)[1] for h in
                             re.findall(r'<link rel="stylesheet" href="([^"]+)">', p.read_text()))
    assert names(index.parent / "09_summary.html")
    assert names(index.parent / "09_summary.html") == names(index.parent / "seed-1" / "03_sft.html")
    assert sorted(f.name for f in (index.parent / site.STATIC).glob("*.css")) == \
        names(index.parent / "09_summary.html")
    # and figures are files the pages reference, never data URIs
    for p in pages:
        for src in re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', p.read_text()):
            assert not src.startswith("data:") and (p.parent / src).resolve().is_file(), (p, src)


def test_rebuild_drops_stale_stylesheets_and_refuses_remote_css(profile, tmp_path):
    static = profile / "report" / site.STATIC
    static.mkdir(parents=True)
    (static / "0000000000000000.css").write_text("body{}")
    site.build(profile)
    assert not (static / "0000000000000000.css").exists() and list(static.glob("*.css"))
    page = "<style>" + "a{}" * site.SHARED_CSS_MIN + "@import url(https://cdn.example/x.css);</style>"
    with pytest.raises(site.ReportError, match="cdn.example"):
        site._share_styles(page, tmp_path, 0, set())


def test_notebook_pages_reference_each_figure_once_and_show_widget_text(profile):
    # a cell that saved its figure into the notebook's output folder: the page shows that file
    nb = nbformat.read(profile / "seed-1" / "03_sft.ipynb", 4)
    saved = _png(5, 4)
    nb.cells.append(v4.new_code_cell('fig.savefig(out_dir / "curves.png", dpi=120)\nplt.show()',
                                     execution_count=5, outputs=[v4.new_output(
        "display_data", data={"image/png": base64.b64encode(_png(4, 4)).decode(), "text/plain": "<Figure>"})]))
    nbformat.write(nb, profile / "seed-1" / "03_sft.ipynb")
    (profile / "seed-1" / "03_sft").mkdir(exist_ok=True)
    (profile / "seed-1" / "03_sft" / "curves.png").write_bytes(saved)
    stale = profile / "report" / site.STATIC / "img" / "0000.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    index = site.build(profile)
    page_path = index.parent / "seed-1" / "03_sft.html"
    page = page_path.read_text()
    imgs = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page)
    assert len(imgs) == 2 and "data:image" not in page and PNG_B64 not in page
    files = [(page_path.parent / s).resolve() for s in imgs]
    assert files[1] == (profile / "seed-1" / "03_sft" / "curves.png").resolve()
    assert files[0].parent == (index.parent / site.STATIC / "img").resolve()
    assert files[0].read_bytes() == _png()
    # the same unsaved figure on every page is one file; a file no page uses is removed
    assert [p.name for p in (index.parent / site.STATIC / "img").iterdir()] == [files[0].name]
    other = (index.parent / "seed-0" / "03_sft.html").read_text()
    assert f"img/{files[0].name}" in other
    assert "acc 93.2" in page and "03_sft seed-1" in page
    # the progress bar shows its final saved state, not the 0% it was displayed with
    assert "RL beta=0.05: 100% |##########| 12/12 [00:01&lt;00:00, 9.0it/s]" in page
    assert "0/12 [00:00" not in page
    # the interactive widget shows its text fallback and says it needs a kernel
    assert "needs a live Jupyter kernel" in page and "Dropdown(description=" in page
    assert WIDGET_VIEW not in page and WIDGET_STATE not in page
    assert 'href="https://example.org/docs"' in page    # a plain link is fine: it loads nothing
    assert "mathjax" not in page.lower() and "require.js" not in page.lower()


def test_publish_stores_each_saved_figure_once(profile):
    """--publish: a figure a cell saved as a PNG is referenced from the executed notebook
    (and its page) instead of embedded; a figure no file holds stays embedded; papermill's
    paths inside the repository become relative to it, others stay as they are."""
    nbp = profile / "seed-0" / "03_sft.ipynb"
    nb = nbformat.read(nbp, 4)
    nb.metadata["papermill"] = {"input_path": str(repo_root() / "notebooks" / "03_sft.ipynb"),
                                "output_path": "/elsewhere/seed-0/.03_sft.partial.ipynb",
                                "duration": 1.5}
    nb.cells.append(v4.new_code_cell('fig.savefig(out_dir / "curves.png", dpi=120)\nplt.show()',
                                     execution_count=5, outputs=[v4.new_output(
        "display_data", data={"image/png": base64.b64encode(_png(4, 4)).decode(), "text/plain": "<Figure>"})]))
    nbformat.write(nb, nbp)
    (profile / "seed-0" / "03_sft").mkdir(exist_ok=True)
    (profile / "seed-0" / "03_sft" / "curves.png").write_bytes(_png(5, 4))
    before = nbp.read_text()
    site.build(profile)                       # a plain build rewrites no notebook
    assert nbp.read_text() == before
    index = site.build(profile, publish=True)
    nb = nbformat.read(nbp, 4)
    nbformat.validate(nb)
    outs = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "display_data"]
    linked = [o for o in outs if site.FIGURE_KEY in o.get("metadata", {})]
    assert len(linked) == 1 and linked[0]["metadata"][site.FIGURE_KEY] == "03_sft/curves.png"
    assert "image/png" not in linked[0]["data"] and 'src="03_sft/curves.png"' in linked[0]["data"]["text/html"]
    assert any(o["data"].get("image/png") == PNG_B64 for o in outs)   # the unsaved one stays
    assert nb.metadata["papermill"] == {"input_path": "notebooks/03_sft.ipynb", "duration": 1.5,
                                        "output_path": "/elsewhere/seed-0/.03_sft.partial.ipynb"}
    page = (index.parent / "seed-0" / "03_sft.html").read_text()
    srcs = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page)
    assert "../../seed-0/03_sft/curves.png" in srcs and "data:image" not in page
    assert site.build(profile, publish=True) == index    # publishing twice changes nothing more
    assert nbformat.read(nbp, 4) == nb


def test_index_tells_the_story_first(profile):
    text = site.build(profile).read_text()
    assert "computed now from the seeds" in text          # no summary/metrics.json yet
    assert "seed-0, seed-1" in text
    # the question, the answer, the study's claims apart from our questions (each with its
    # scoreboard and Holm column), the limitations, then the setup, the findings with their
    # rules, then the tables
    order = [text.index(x) for x in (site.QUESTION[:40], "<h2>What this run shows", "Of the study&#x27;s seven claims",
                                     "<h2>The study's claims</h2>", "Scoreboard (Holm-adjusted",
                                     "<th>Holm</th>", "<h2>Our questions</h2>", "<h2>Limitations",
                                     "<h2>Setup</h2>", "Held out.", "<h2>The study's claims in detail",
                                     "Verdict rule:", "<h2>Our questions in detail",
                                     "<h2>Headline measures", "<h2>Notebooks")]
    assert order == sorted(order)
    study = text.split("<h2>The study's claims</h2>")[1].split("<h2>Our questions</h2>")[0]
    ours = text.split("<h2>Our questions</h2>")[1].split("<h2>Limitations")[0]
    assert "1a" in study and "8b" not in study and "supported" not in study
    assert "8b" in ours and "reproduced" not in ours.replace('never "reproduced"', "")
    for claim in ("the targeted curriculum beats the control curriculum on held-out low_sum",
                  "pass@8", "beta"):
        assert claim in text
    assert "SFT targeted: low_sum (held-out)" in text and "85.4" in text
    assert re.search(r'class="verdict v-(reproduced|smaller|larger|not-reproduced|inconclusive)"', text)
    assert re.search(r'class="verdict v-(supported|not-supported|inconclusive)"', text)
    assert "Over 2 seeds" in text                       # generated sentences
    assert 'href="../' not in text.split("<h2>Notebooks")[0]   # nothing outside the site linked


def test_index_prefers_the_summary_notebook_metrics(profile, tmp_path):
    from reasonlib.report import summary
    s = summary.summarize(profile)
    s["findings"][0]["claim"] = "A CLAIM ONLY THE SAVED SUMMARY HAS"
    (profile / "summary").mkdir()
    (profile / "summary" / "metrics.json").write_text(json.dumps(s, sort_keys=True))
    (profile / "summary" / "finding_1a.png").write_bytes(_png(5, 4))
    out = tmp_path / "site"
    index = site.build(profile, out)
    assert index == out / "index.html"
    text = index.read_text()
    assert "A CLAIM ONLY THE SAVED SUMMARY HAS" in text and "written by notebook 09" in text
    srcs = re.findall(r'<img alt="finding 1a" src="([^"]+)"', text)   # stored once, referenced
    assert len(srcs) == 1 and (out / srcs[0]).resolve() == (profile / "summary" / "finding_1a.png").resolve()
    assert base64.b64encode(_png(5, 4)).decode() not in text
    # sorted keys on disk, the table keeps the summary's own order
    assert text.index("SFT control: low_sum (held-out)") < text.index("beta = 0.02: general")
    assert_offline(text, "index")
    assert not (profile / "report").exists()
    # a seed added after notebook 09 ran: the saved summary is out of date, recomputed
    write_seed(profile / "seed-7")
    text = site.build(profile, out).read_text()
    assert "A CLAIM ONLY THE SAVED SUMMARY HAS" not in text and "out of date" in text
    assert "seed-0, seed-1, seed-7" in text
    assert "finding_1a.png" not in text                  # its figures are stale too


def test_metrics_only_profile_and_broken_notebook(tmp_path):
    root = tmp_path / "p"
    write_seed(root / "seed-3")
    (root / "seed-3" / "04_pass_at_k.ipynb").write_text("{ not a notebook")
    text = site.build(root).read_text()
    assert "04_pass_at_k" in text and "not rendered" in text
    assert _local_links(text) == []


def test_remote_markdown_image_is_refused(tmp_path):
    root = tmp_path / "p"
    write_seed(root / "seed-0")
    nbformat.write(make_notebook("x", "\n\n![logo](https://example.org/logo.png)"),
                   root / "seed-0" / "03_sft.ipynb")
    with pytest.raises(ReportError, match=r"03_sft\.html.*network.*https://example.org/logo.png"):
        site.build(root)


@pytest.mark.parametrize("snippet,bad", [
    ('<script src="https://cdn.example/x.js"></script>', True),
    ('<script src="//cdn.example/x.js"></script>', True),
    ('<link rel="stylesheet" href="http://fonts.example/css">', True),
    ('<img src="HTTPS://example.org/a.png">', True),
    ('<img srcset="a.png 1x, https://example.org/b.png 2x">', True),
    ('<iframe src="https://example.org"></iframe>', True),
    ('<style>@import url("https://fonts.example/f.css");</style>', True),
    ("<style>@import 'https://fonts.example/f.css';</style>", True),
    ('<style>body{background:url(//example.org/bg.png)}</style>', True),
    ('<div style="background: url(\'https://example.org/bg.png\')">x</div>', True),
    ('<script>import("https://cdn.example/mermaid.mjs")</script>', True),
    ('<a href="https://example.org">a link</a>', False),
    ('<img src="data:image/png;base64,AAAA">', False),
    ('<style>.x{background:url(data:image/svg+xml;base64,AAAA)}</style>', False),
    ('<link rel="stylesheet" href="local.css"><script src="js/app.js"></script>', False),
    ('<p>see https://example.org in the text</p>', False),
])
def test_remote_references(snippet, bad):
    assert bool(site.remote_references(snippet)) == bad


def test_bad_profile_roots(tmp_path):
    with pytest.raises(ReportError, match=re.escape(str(tmp_path / "missing"))):
        site.build(tmp_path / "missing")
    (tmp_path / "empty" / "summary").mkdir(parents=True)
    with pytest.raises(ReportError, match=re.escape(str(tmp_path / "empty")) + ".*no seed"):
        site.build(tmp_path / "empty")
    assert issubclass(ReportError, ValueError)

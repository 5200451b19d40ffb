"""The published study (``reports/paper/``) stays lean: no checkpoints, under 25 MB, and each
figure stored once, as a PNG file the notebook and its HTML page reference (republishing
issue, acceptance 4). These read the committed folder; ``make paper`` rewrites it."""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

# the report's own rules: where a notebook saves its figures, which outputs a cell saved
from reasonlib.report.site import FIGURE_KEY, _fig_dir, _png_outputs, _saved_figures

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "reports" / "paper"
LIMIT = 25_000_000  # bytes
CHECKPOINTS = {".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".npz"}
IMG_SRC = re.compile(r"""<img\b[^>]*\bsrc=["']([^"']+)["']""", re.I)


def files():
    return [p for p in PAPER.rglob("*") if p.is_file()]


def notebooks():
    return sorted(PAPER.glob("seed-*/*.ipynb")) + sorted(PAPER.glob("*.ipynb"))


def test_the_published_study_is_there():
    assert (PAPER / "summary" / "metrics.json").is_file()
    assert len(list(PAPER.glob("seed-*"))) >= 5, "reports/paper/ holds the report seeds 0-4"
    assert (PAPER / "report" / "index.html").is_file()


def test_no_checkpoints():
    found = [str(p.relative_to(ROOT)) for p in files() if p.suffix in CHECKPOINTS]
    assert not found, f"checkpoints are artifacts, not part of the report: {found}"


def test_under_25_mb():
    total = sum(p.stat().st_size for p in files())
    biggest = sorted(files(), key=lambda p: -p.stat().st_size)[:5]
    assert total < LIMIT, (f"reports/paper/ is {total / 1e6:.1f} MB (limit {LIMIT / 1e6:.0f} MB); "
                           f"largest: {[(str(p.relative_to(PAPER)), p.stat().st_size) for p in biggest]}")


def test_no_file_is_stored_twice():
    """Within one seed's folder, the summary or the site (a figure that does not depend on
    the seed, such as 02's stage schedule, is each seed's own output)."""
    by_hash = defaultdict(list)
    for p in files():
        if p.suffix in {".png", ".css"}:
            part = p.relative_to(PAPER).parts[0]
            by_hash[part, hashlib.sha256(p.read_bytes()).hexdigest()].append(str(p.relative_to(PAPER)))
    twice = [v for v in by_hash.values() if len(v) > 1]
    assert not twice, f"the same file stored more than once: {twice}"


def test_pages_reference_images_and_embed_none():
    pages = sorted((PAPER / "report").rglob("*.html"))
    assert pages
    n_img = 0
    for page in pages:
        text = page.read_text()
        assert "data:image" not in text, f"{page.relative_to(PAPER)} embeds an image as a data URI"
        for src in IMG_SRC.findall(text):
            assert not src.startswith(("http:", "https:", "//")), f"{page.name}: remote image {src}"
            assert (page.parent / src).resolve().is_file(), f"{page.relative_to(PAPER)}: {src} is missing"
            n_img += 1
    assert n_img > 0, "the site shows no figure at all"


def test_saved_figures_are_referenced_by_the_notebooks():
    refs = 0
    for nb_path in notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        saved_dir = _fig_dir(PAPER, nb_path.relative_to(PAPER))
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            for o in cell.get("outputs", []):
                ref = (o.get("metadata") or {}).get(FIGURE_KEY)
                if ref:
                    assert (nb_path.parent / ref).is_file(), f"{nb_path.name} cell {i}: {ref} is missing"
                    assert "image/png" not in o.get("data", {}), f"{nb_path.name} cell {i}: embedded too"
                    refs += 1
            pngs = _png_outputs(cell)
            saved = _saved_figures(cell, pngs, saved_dir) if pngs else []
            if saved:
                pytest.fail(f"{nb_path.relative_to(PAPER)} cell {i} embeds the figures it saved "
                            f"as {[f.name for f in saved]}: run "
                            f"`python -m reasonlib report reports/paper --publish`")
    assert refs > 0, "no notebook references a saved figure"

"""The package's floor plan (docs/layout.md) as tests: four layers, imports only downward,
no cycles, every module listed in the layout page, and the reference model kept small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from reasonlib.train import artifacts

PKG = artifacts.PKG_DIR
ROOT = PKG.parent
LAYERS = ("core", "train", "study", "report")   # bottom to top


def _imports(name: str) -> set[str]:
    """Every package module ``name`` imports, relatively or as ``reasonlib.x.y``, at module
    level or inside a function (a lazy import is a dependency too)."""
    tree = ast.parse((PKG / Path(*name.split("."))).with_suffix(".py").read_text())
    out = artifacts._sibling_imports(tree, name, PKG)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("reasonlib."):
            mod = node.module.split(".")[1:]
            if (PKG / Path(*mod)).with_suffix(".py").is_file():
                out.add(".".join(mod))
            else:
                out.update(".".join(mod + [a.name]) for a in node.names
                           if (PKG / Path(*mod, a.name)).with_suffix(".py").is_file())
    return out - {name}


MODULES = artifacts.package_modules(exclude={"__main__.py"})
GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_lives_in_a_layer():
    assert MODULES and all(m.split(".")[0] in LAYERS and m.count(".") == 1 for m in MODULES), \
        [m for m in MODULES if m.split(".")[0] not in LAYERS]


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_only_downward(module):
    here = LAYERS.index(module.split(".")[0])
    up = sorted(t for t in GRAPH[module] if LAYERS.index(t.split(".")[0]) > here)
    assert not up, f"{module} imports from a higher layer: {', '.join(up)}"


def test_no_import_cycles():
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [m])


def test_the_layering_test_sees_an_upward_import(tmp_path):
    """The check above on a toy package: a core module that imports from report fails."""
    (tmp_path / "core").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "site.py").write_text("X = 1\n")
    (tmp_path / "core" / "model.py").write_text("from ..report import site\n")
    tree = ast.parse((tmp_path / "core" / "model.py").read_text())
    assert artifacts._sibling_imports(tree, "core.model", tmp_path) == {"report.site"}


def test_the_layout_page_lists_every_module():
    page = (ROOT / "docs" / "layout.md").read_text()
    missing = [m for m in MODULES if f"`{m.split('.')[1]}.py`" not in page
               or f"reasonlib/{m.split('.')[0]}/" not in page]
    assert not missing, f"docs/layout.md does not list {', '.join(missing)}"


def test_the_reference_model_is_small_and_holds_no_fast_path():
    src = (PKG / "core" / "model.py").read_text()
    assert len(src.splitlines()) <= 300
    tree = ast.parse(src)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    fast = {"KVCache", "prefill", "decode_step", "new_cache", "Packing", "pack_rows",
            "_PackedAttention", "_ResidualMLP", "hidden"}
    assert not defined & fast, defined & fast

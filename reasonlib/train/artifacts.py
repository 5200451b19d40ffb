"""Run folders, config-hashed artifacts, atomic writes and safe checkpoint loading.

* An artifact lives in ``<root>/<kind>-<hash>/`` where ``hash`` is a digest of its key: the
  config that produced it and the source of every module whose code trains it (computed
  from the import graph, never bumped by hand). A notebook builds what is missing and
  reuses what exists; editing the training code gives new keys, so nothing stale is loaded.
* Every checkpoint records its provenance (torch, CPU, vector path, threads, device): the
  things besides the key that decide a trained model's float results.
* Every write goes to a temporary file in the same folder and is renamed into place, so a
  reader never sees half a file.
* Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain
  containers only, never arbitrary pickled objects, so loading cannot execute code.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, corrupted, unsafe or mismatched."""


def config_hash(cfg: dict, n: int = 12) -> str:
    """Stable digest of a JSON-able config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


# ---- keys that follow the code ------------------------------------------------------------
PKG_DIR = Path(__file__).resolve().parents[1]   # the reasonlib package


def _module_file(pkg_dir: Path, name: str) -> Path:
    return pkg_dir.joinpath(*name.split(".")).with_suffix(".py")


def _sibling_imports(tree: ast.AST, name: str = "", pkg_dir: Path | None = None) -> set[str]:
    """The package modules (dotted names below the package, e.g. ``core.model``) that module
    ``name`` imports relatively: ``from . import x``, ``from .x import y``, ``from ..core
    import model``, ``from ..core.model import GPT``. A name that is a subpackage stands for
    the modules imported from it."""
    pkg_dir = Path(pkg_dir or PKG_DIR)
    here = name.split(".")[:-1]   # the importing module's package, below the top one
    out = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.level >= 1):
            continue
        base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
        target = base + (node.module.split(".") if node.module else [])
        if target and _module_file(pkg_dir, ".".join(target)).is_file():
            out.add(".".join(target))
            continue
        for a in node.names:   # the names are modules of the package ``target``
            if _module_file(pkg_dir, ".".join(target + [a.name])).is_file():
                out.add(".".join(target + [a.name]))
    return out


def package_modules(pkg_dir=None, exclude=()) -> list[str]:
    """Every module of the package (dotted names below it), ``exclude`` (file names) left out."""
    pkg_dir = Path(pkg_dir or PKG_DIR)
    return sorted(".".join(p.relative_to(pkg_dir).with_suffix("").parts)
                  for p in pkg_dir.rglob("*.py")
                  if p.name != "__init__.py" and p.name not in exclude
                  and "__pycache__" not in p.parts)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_digest(entries, pkg_dir=None) -> dict[str, str]:
    """``{module: digest}`` for ``entries`` and every package module they import, directly or
    not: the code that decides what an artifact built by ``entries`` holds.

    Each digest covers the module's syntax tree without docstrings, so editing a comment or a
    docstring keeps every key, and editing code (a default, a constant, a line of a loop)
    changes the key of every artifact whose code reaches that module. Nothing is bumped by
    hand: a module newly imported by a training module joins the key by itself."""
    pkg_dir = Path(pkg_dir or PKG_DIR)
    todo, out = list(entries), {}
    while todo:
        name = todo.pop()
        if name in out:
            continue
        path = _module_file(pkg_dir, name)
        if not path.is_file():
            raise FileNotFoundError(f"module {name!r} of the artifact key not found in {pkg_dir}")
        tree = ast.parse(path.read_text(), filename=str(path))
        todo.extend(_sibling_imports(tree, name, pkg_dir))
        out[name] = hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()[:16]
    return dict(sorted(out.items()))


def artifact_key(kind: str, cfg: dict, code_entries, extra: dict | None = None) -> dict:
    """Everything an artifact's folder name is a digest of: its config, ``extra`` (e.g. the
    curriculum schedule the config expands to) and :func:`code_digest` of the modules that
    train it. Saved in the checkpoint and beside it (``key.json``), so a reader sees why two
    artifacts differ."""
    return {"kind": kind, "config": cfg, "extra": extra or {}, "code": code_digest(code_entries)}


def artifact_dir(root, key: dict) -> Path:
    """``root/<kind>-<hash of the key>``."""
    return Path(root) / f"{key['kind']}-{config_hash(key)}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance(device: str = "cpu") -> dict:
    """Where and how an artifact was computed: what decides its float results besides its key
    (torch build, CPU and its vector path, thread count, device). Trained numbers are
    reproducible only when all of these match (docs/reproducibility.md, "Determinism")."""
    cap = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    d = {"torch": str(torch.__version__), "numpy": str(np.__version__),
         "python": platform.python_version(), "cpu": _cpu_model(), "cpu_capability": cap,
         "threads": torch.get_num_threads(), "device": str(device)}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name()
    for var in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS"):
        if os.environ.get(var):
            d[var] = os.environ[var]
    return d


def provenance_segments(earlier: list[dict], device: str = "cpu") -> list[dict]:
    """The provenance list of a run starting or resuming now: the earlier processes' entries,
    plus this process's when it differs from the last one."""
    now = provenance(device)
    return list(earlier) + ([now] if not earlier or earlier[-1] != now else [])


def describe_provenance(segments: list[dict]) -> str:
    """One line per process that trained part of an artifact (a resumed run has several)."""
    lines = []
    for i, p in enumerate(segments or []):
        head = "trained" if i == 0 else "resumed"
        extra = "".join(f", {k}={p[k]}" for k in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
                        if k in p)
        lines.append(f"{head} with torch {p.get('torch')}, {p.get('threads')} thread(s) on "
                     f"{p.get('device')} ({p.get('cpu')}, {p.get('cpu_capability')}{extra})")
    return "\n".join(lines) or "no provenance recorded"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates its file readable by its owner only; a renamed artifact gets the
# permissions a plain open() would give it
_FILE_MODE = 0o666 & ~_umask()


def _atomic(path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def write_json(path, obj) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


def read_json(path):
    return json.loads(Path(path).read_text())


def save_checkpoint(path, payload: dict) -> Path:
    """Atomically ``torch.save`` a dict of tensors / plain Python values."""
    return _atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path, expect_config: dict | None = None) -> dict:
    """Load a checkpoint safely; raise :class:`CheckpointError` naming the file when it is
    missing, unreadable, unsafe, or was made by a different config than ``expect_config``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # torch.load does not verify the zip CRCs: flipped bytes in tensor data would load
        # silently as wrong weights, so check every member's CRC-32 first
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            raise ValueError(f"CRC-32 mismatch in member {bad}")
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, flipped bytes, forbidden pickle globals, ...
        first = (str(e).splitlines() or [""])[0][:200]  # some errors have an empty message
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely "
                              f"({type(e).__name__}: {first})") from e
    if not isinstance(ck, dict) or "config" not in ck:
        raise CheckpointError(f"checkpoint {path} is not a reasonlib checkpoint (no config)")
    if expect_config is not None and ck["config"] != expect_config:
        diff = sorted(k for k in set(ck["config"]) | set(expect_config)
                      if ck["config"].get(k) != expect_config.get(k))
        raise CheckpointError(f"checkpoint {path} was made by a different config "
                              f"(differs in: {', '.join(diff)})")
    return ck


def load_finished(path, expect_config: dict) -> dict | None:
    """The checkpoint at ``path`` when it exists and marks a finished run of
    ``expect_config``; None when it is absent or unfinished (the caller trains or resumes)."""
    if not Path(path).exists():
        return None
    ck = load_checkpoint(path, expect_config=expect_config)
    return ck if ck.get("done") else None


def repo_root() -> Path:
    """The checkout this package lives in (where pyproject.toml is)."""
    here = Path(__file__).resolve().parents[2]
    return here


def shown(path) -> str:
    """A path as a notebook prints it: relative to the repository when inside it, so an
    executed notebook carries no machine's folders."""
    p = Path(path).resolve()
    root = repo_root().resolve()
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)


def resolve(path) -> Path:
    """Relative paths are taken from the repository root, so notebooks run from any cwd."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p

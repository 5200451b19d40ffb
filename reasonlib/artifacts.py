"""Run folders, config-hashed artifacts, atomic writes and safe checkpoint loading.

* An artifact lives in ``<root>/<kind>-<hash>/`` where ``hash`` is a digest of the config
  that produced it: a notebook builds what is missing and reuses what exists.
* Every write goes to a temporary file in the same folder and is renamed into place, so a
  reader never sees half a file.
* Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors and plain
  containers only, never arbitrary pickled objects, so loading cannot execute code.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, corrupted, unsafe or mismatched."""


def config_hash(cfg: dict, n: int = 12) -> str:
    """Stable digest of a JSON-able config (key order does not matter)."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


# Bump when a change to the training code would make old artifacts of the same config
# differ from what the code now produces (it is part of every artifact's hash).
CODE_VERSION = 3


def artifact_dir(root, kind: str, cfg: dict, extra: dict | None = None) -> Path:
    """``root/<kind>-<hash>``: the hash covers the config, ``extra`` (e.g. the curriculum
    schedule the config expands to) and :data:`CODE_VERSION`."""
    key = {"config": cfg, "extra": extra or {}, "code_version": CODE_VERSION}
    return Path(root) / f"{kind}-{config_hash(key)}"


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
    here = Path(__file__).resolve().parent.parent
    return here


def resolve(path) -> Path:
    """Relative paths are taken from the repository root, so notebooks run from any cwd."""
    p = Path(path)
    return p if p.is_absolute() else repo_root() / p

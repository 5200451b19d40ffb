"""Reliability: killed runs resume bit for bit, artifacts are written atomically and
corrupted ones are refused (never retrained over), numerical faults stop a run at a named
step with the last good checkpoint kept, and a smoke notebook run twice gives the same
metrics.

Other parts of the same story live beside the modules they test: loading refuses a pickled
payload that would run code (test_artifacts.py::test_refuses_malicious_pickle), the
tokenizer and the answer parser take any input without crashing (hypothesis tests in
test_tokenizer.py and test_tasks.py), NaN losses (test_sft.py / test_rl.py
::test_nan_loss_raises_naming_step).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import papermill as pm
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from conftest import tiny_sft_config
from reasonlib.train import artifacts, params, rl, sft
from reasonlib.train.artifacts import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "reliability_worker.py"
NB_DIR = ROOT / "notebooks"


def _tensors_equal(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def _finished(root: Path, kind: str) -> dict:
    (d,) = [p for p in root.iterdir() if p.name.startswith(kind + "-")]
    return artifacts.load_checkpoint(d / "ckpt.pt")


# ---- 1. kill -9 and resume -------------------------------------------------------------------
def _worker(root: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(WORKER), str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(ROOT))


def _run(root: Path, kill_at: tuple[str, int] | None = None) -> list[tuple[str, int]]:
    """Run the worker; with ``kill_at=(kind, step)`` SIGKILL it as soon as it reports that
    checkpoint (it keeps running meanwhile, so it dies a little later, anywhere: inside a
    step, inside a checkpoint write...). Returns the checkpoints it reported."""
    p = _worker(root)
    saved = []
    try:
        for line in p.stdout:
            if line.startswith("saved "):
                kind, step = line.split()[1:]
                saved.append((kind, int(step)))
                if kill_at and saved[-1] == kill_at:
                    os.kill(p.pid, signal.SIGKILL)
                    break
            elif line.strip() == "done":
                saved.append(("done", 0))
    finally:
        rc = p.wait(timeout=120)
        p.stdout.close()
    if kill_at:
        assert rc == -signal.SIGKILL and saved[-1] == kill_at, (rc, saved[-3:])
    else:
        assert rc == 0 and saved[-1] == ("done", 0), (rc, saved[-3:])
    return saved


def test_sigkill_then_resume_is_bitwise_equal(tmp_path):
    """An SFT run, then an RL run from its model (tests/reliability_worker.py, checkpoint
    after every step), each killed with SIGKILL at a step drawn by a seeded generator, then
    rerun with the same command: the final weights and histories equal an uninterrupted
    run's, bit for bit."""
    ref = _worker(tmp_path / "ref")  # the uninterrupted run, on the other core meanwhile
    n_sft, n_rl = 20, 10  # steps of the worker's runs
    pick = random.Random(20240611)
    k_sft, k_rl = pick.randint(1, n_sft - 2), pick.randint(1, n_rl - 2)
    root = tmp_path / "killed"
    a = _run(root, kill_at=("sft", k_sft))
    assert all(kind == "sft" for kind, _ in a)
    b = _run(root, kill_at=("rl", k_rl))
    # b resumed SFT from the last checkpoint a completed (a may have completed a few more
    # after reporting k_sft, before the signal landed), not from scratch
    first_sft = b[0][1]
    assert b[0][0] == "sft" and first_sft > k_sft, (k_sft, b[:2])
    assert [s for k, s in b if k == "sft"] == list(range(first_sft, n_sft + 1))
    c = _run(root)
    assert c[0][0] == "rl" and c[0][1] > k_rl, (k_rl, c[:2])  # SFT loaded, RL resumed
    assert ref.wait(timeout=120) == 0
    ref.stdout.close()
    for kind in ("sft", "rl"):
        want, got = _finished(tmp_path / "ref", kind), _finished(root, kind)
        assert want["done"] and got["done"] and got["step"] == want["step"]
        assert _tensors_equal(want["model"], got["model"]), kind
        assert got["history"] == want["history"], kind
        assert json.dumps(got["optim"]["param_groups"]) == json.dumps(want["optim"]["param_groups"])
    # a kill inside a checkpoint write leaves at most a stray temp file, never a torn ckpt.pt
    for d in root.iterdir():
        snaps = {"snapshots"} if d.name.startswith("sft-") else set()   # the probe steps' (sft.py)
        assert {p.name for p in d.iterdir() if not p.name.endswith(".tmp")} == {"ckpt.pt", "key.json"} | snaps
        for f in (d / "snapshots").glob("*.pt"):
            artifacts.load_checkpoint(f)   # whole (CRC-checked), or this raises


# ---- 2. atomic writes, corrupted artifacts ----------------------------------------------
@pytest.mark.parametrize("writer", ["write_json", "write_bytes", "save_checkpoint"])
def test_failed_rename_leaves_target_and_no_temp(tmp_path, monkeypatch, writer):
    path = tmp_path / "target"
    path.write_bytes(b"OLD CONTENT")
    calls = []

    def refuse(src, dst):
        calls.append((Path(src), Path(dst)))
        assert Path(src).parent == tmp_path and Path(src).stat().st_size > 0
        raise OSError("disk went away")

    monkeypatch.setattr(artifacts.os, "replace", refuse)
    with pytest.raises(OSError, match="disk went away"):
        if writer == "write_json":
            artifacts.write_json(path, {"k": list(range(100))})
        elif writer == "write_bytes":
            artifacts.write_bytes(path, b"NEW" * 1000)
        else:
            artifacts.save_checkpoint(path, {"config": {}, "w": torch.ones(100)})
    assert len(calls) == 1 and calls[0][1] == path  # the only way in is a rename
    assert path.read_bytes() == b"OLD CONTENT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]  # temp file removed


def test_atomic_write_keeps_usual_permissions(tmp_path):
    """A temp file is created 0600; the renamed artifact gets what a plain write gives."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    for p in (artifacts.write_bytes(tmp_path / "a", b"x"),
              artifacts.write_json(tmp_path / "b.json", {}),
              artifacts.save_checkpoint(tmp_path / "c.pt", {"config": {}})):
        assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777, p


def _tensor_span(path: Path) -> tuple[int, int]:
    """Byte range of the largest tensor-storage member inside a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size > 4096
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
    n_name, n_extra = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + n_name + n_extra
    return start, start + info.file_size


def _corrupt(path: Path, fault: str) -> None:
    data = bytearray(path.read_bytes())
    lo, hi = _tensor_span(path)
    mid = (lo + hi) // 2
    if fault == "cut_end":  # a write that stopped part-way
        data = data[: int(len(data) * 0.6)]
    elif fault == "cut_tail":  # only the last bytes (zip directory) missing
        data = data[:-64]
    elif fault == "cut_middle":  # bytes dropped inside tensor data
        data = data[: mid - 512] + data[mid + 512:]
    elif fault == "flip":  # same size, bits flipped inside tensor data
        for j in range(mid, mid + 4):
            data[j] ^= 0xFF
    elif fault == "wrong_config":  # a valid checkpoint made by another config
        ck = artifacts.load_checkpoint(path)
        ck["config"] = {**ck["config"], "lr": ck["config"]["lr"] * 2}
        artifacts.save_checkpoint(path, ck)
        return
    path.write_bytes(bytes(data))


FAULTS = ["cut_end", "cut_tail", "cut_middle", "flip", "wrong_config"]


@pytest.fixture(scope="module")
def finished_artifacts(tmp_path_factory):
    """A finished tiny SFT run and a finished tiny RL run from it, under one root."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("finished")
        scfg = tiny_sft_config(total_tokens=800)
        s = sft.get_or_train(scfg, root, progress=False)
        rcfg = rl.RLConfig(init=rl.init_key(scfg), steps=2,
                           prompts_per_step=4, group_size=2, buckets=("d1",), eval_n=3)
        rl.get_or_train(rcfg, s.model, scfg, root, progress=False)
    finally:
        torch.set_num_threads(n)
    return root, scfg, s.model, rcfg


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", ["load_checkpoint", "sft", "rl"])
def test_corrupted_checkpoint_is_refused_and_kept(tmp_path, monkeypatch, finished_artifacts,
                                                  kind, fault):
    """Refused with an error naming the file; the file stays byte for byte as found, nothing
    is written beside it, and no training starts over it."""
    src, scfg, model, rcfg = finished_artifacts
    root = tmp_path / "artifacts"
    shutil.copytree(src, root)
    which = "rl" if kind == "rl" else "sft"
    d = (rl.artifact_dir_for(rcfg, root) if which == "rl" else sft.artifact_dir_for(scfg, root))
    path = d / "ckpt.pt"
    _corrupt(path, fault)
    before = {p.name: p.read_bytes() for p in d.iterdir()}

    def boom(*a, **kw):
        raise AssertionError("must not train over a corrupted checkpoint")

    monkeypatch.setattr(sft, "train_sft", boom)
    monkeypatch.setattr(rl, "train_rl", boom)
    with pytest.raises(CheckpointError) as e:
        if kind == "load_checkpoint":
            artifacts.load_checkpoint(path, expect_config=scfg.to_dict())
        elif kind == "sft":
            sft.get_or_train(scfg, root, progress=False)
        else:
            rl.get_or_train(rcfg, model, scfg, root, progress=False)
    msg = str(e.value)
    assert str(path) in msg
    if fault == "wrong_config":
        assert "different config (differs in: lr)" in msg
    else:
        assert "cannot be loaded safely" in msg
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


# ---- 4. numerical faults ---------------------------------------------------------------------
def _assert_last_good(path: Path, bad_step: int, err: FloatingPointError, what: str):
    msg = str(err)
    assert re.search(rf"{what} is (nan|inf|-inf) at step {bad_step}\b", msg), msg
    assert f"last good checkpoint kept at {path}" in msg
    ck = artifacts.load_checkpoint(path)
    assert ck["step"] == bad_step - 1 and not ck["done"]
    assert all(torch.isfinite(t).all() for t in ck["model"].values())
    assert all(torch.isfinite(torch.tensor(ck["history"]["grad_norm"])))


def _poison_grads_at(monkeypatch, k: int):
    """Gradients of the k-th update get an inf (as if backward overflowed)."""
    real, n = torch.nn.utils.clip_grad_norm_, {"calls": 0}

    def clip(parameters, *a, **kw):
        parameters = list(parameters)
        n["calls"] += 1
        if n["calls"] == k:
            parameters[0].grad.view(-1)[0] = float("inf")
        return real(parameters, *a, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def _poison_weights_at(k: int):
    """The k-th optimizer step leaves an inf weight behind (as a huge step would)."""
    n = {"calls": 0}

    def hook(opt, args, kwargs):
        n["calls"] += 1
        if n["calls"] == k:
            with torch.no_grad():
                opt.param_groups[0]["params"][0].view(-1)[0] = float("inf")

    return register_optimizer_step_post_hook(hook)


@pytest.mark.parametrize("fault", ["huge_lr", "inf_grad", "inf_weight"])
def test_sft_numerical_fault_keeps_last_good_checkpoint(tmp_path, monkeypatch, fault):
    path = tmp_path / "ckpt.pt"
    cfg, bad, what = tiny_sft_config(), 3, "SFT gradient norm"
    handle = None
    if fault == "huge_lr":  # a real divergence: AdamW at lr 1e5, no warmup
        cfg, bad = tiny_sft_config(lr=1e5, warmup_frac=0.0), 2
    elif fault == "inf_grad":
        _poison_grads_at(monkeypatch, bad)
    else:
        handle, what = _poison_weights_at(bad), "SFT largest weight after the update"
    try:
        with pytest.raises(FloatingPointError) as e:
            sft.train_sft(cfg, ckpt_path=path, ckpt_every=1, progress=False)
    finally:
        if handle is not None:
            handle.remove()
    _assert_last_good(path, bad, e.value, what)


@pytest.fixture(scope="module")
def rl_start():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scfg = tiny_sft_config(total_tokens=1000)
        return sft.train_sft(scfg, progress=False).model, scfg
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("fault", ["huge_lr", "inf_grad", "inf_weight"])
def test_rl_numerical_fault_keeps_last_good_checkpoint(tmp_path, monkeypatch, rl_start, fault):
    model, scfg = rl_start
    path = tmp_path / "ckpt.pt"
    base = dict(init="x", steps=6, prompts_per_step=8, group_size=4, lr=1e-3, beta=0.1,
                buckets=("d1",), eval_every=100, eval_n=3, warmup_steps=4)
    cfg, bad, what = rl.RLConfig(**base), 3, "RL gradient norm"
    handle = None
    if fault == "huge_lr":  # a real divergence: weights ~1e8 after one step, NaN logits next
        cfg, bad, what = rl.RLConfig(**{**base, "lr": 1e10}), 2, "RL loss"
    elif fault == "inf_grad":
        _poison_grads_at(monkeypatch, bad)
    else:
        handle, what = _poison_weights_at(bad), "RL largest weight after the update"
    try:
        with pytest.raises(FloatingPointError) as e:
            rl.train_rl(cfg, model, scfg, ckpt_path=path, ckpt_every=1, progress=False)
    finally:
        if handle is not None:
            handle.remove()
    _assert_last_good(path, bad, e.value, what)


def _smoke_params(base: Path, **over) -> dict:
    return dict(params.load_profile("smoke"), run_dir=str(base / "run"),
                artifacts_dir=str(base / "artifacts"), **over)


def _execute(nb: str, out: Path, p: dict) -> None:
    declared = pm.inspect_notebook(str(NB_DIR / nb))
    pm.execute_notebook(str(NB_DIR / nb), str(out),
                        parameters={k: v for k, v in p.items() if k in declared},
                        cwd=str(NB_DIR), kernel_name="python3", progress_bar=False)


def test_notebook_stops_on_divergence_without_plots(tmp_path):
    """03 with a learning rate that blows the model up: the training cell fails naming the
    step, and neither a figure nor metrics.json is produced."""
    p = _smoke_params(tmp_path, lr=1e30, total_tokens=20_000, eval_every=5)   # a probe in budget
    out = tmp_path / "03.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        _execute("03_sft.ipynb", out, p)
    assert e.value.ename == "FloatingPointError"
    assert re.search(r"SFT loss is nan at step 2\b", e.value.evalue), e.value.evalue
    nb_dir = Path(p["run_dir"]) / "03_sft"
    assert not list(nb_dir.glob("*.png")) and not (nb_dir / "metrics.json").exists()
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert any(o.get("output_type") == "error" for o in outputs)  # the executed copy shows it
    assert not any("image/png" in o.get("data", {}) for o in outputs)


# ---- 5. determinism --------------------------------------------------------------------------
TIMING_KEYS = {"timing"}  # 03's metrics: {arm: {..., "timing": {data_s, loop_s, data_share}}}


def _drop_timing(x):
    if isinstance(x, dict):
        return {k: _drop_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [_drop_timing(v) for v in x]
    return x


def test_smoke_notebook_twice_gives_identical_metrics(tmp_path):
    """03 on the smoke profile, seed 0, twice from empty run and artifact folders (so every
    arm, both curricula and the format comparison's plain and scratchpad models, is trained
    twice, not loaded): metrics.json is equal but for wall-clock timings. A third of the
    smoke token budget keeps it cheap (about 35 steps per arm), with a probe every 10 steps
    (the budget rule asks for one before the last step)."""
    p = _smoke_params(tmp_path, total_tokens=50_000, eval_every=10)
    got = []
    for i in range(2):
        _execute("03_sft.ipynb", tmp_path / f"03_{i}.ipynb", p)
        m = json.loads((Path(p["run_dir"]) / "03_sft" / "metrics.json").read_text())
        # not loaded: both curricula, and the targeted curriculum in the two other formats
        assert (tmp_path / f"03_{i}.ipynb").read_text().count("trained now ->") == 4
        got.append(m)
        shutil.rmtree(p["run_dir"])
        shutil.rmtree(p["artifacts_dir"])
    assert _drop_timing(got[0]) == _drop_timing(got[1])
    assert got[0]["records"]["sft/control/final_loss"] == got[1]["records"]["sft/control/final_loss"]  # exact

import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from reasonlib.train import artifacts, params
from reasonlib.train.artifacts import CheckpointError

CFG = {"curriculum": "targeted", "fmt": "plain", "max_digits": 3, "lr": 0.003, "seed": 0}


# ---- config hashing ------------------------------------------------------------------------
def test_config_hash_order_independent():
    rev = dict(reversed(list(CFG.items())))
    assert list(rev) != list(CFG)
    assert artifacts.config_hash(rev) == artifacts.config_hash(CFG)
    assert len(artifacts.config_hash(CFG)) == 12
    assert len(artifacts.config_hash(CFG, n=20)) == 20


@pytest.mark.parametrize("key,new", [("curriculum", "control"), ("fmt", "reversed"),
                                     ("max_digits", 4), ("max_digits", "3"), ("lr", 0.0031),
                                     ("seed", 1), ("seed", 0.0), ("seed", False),
                                     ("seed", None)])
def test_config_hash_changes_with_any_value(key, new):
    assert artifacts.config_hash({**CFG, key: new}) != artifacts.config_hash(CFG)


def test_config_hash_changes_with_added_key():
    assert artifacts.config_hash({**CFG, "extra": 0}) != artifacts.config_hash(CFG)


def test_artifact_dir(tmp_path):
    key = artifacts.artifact_key("sft", CFG, ["train.sft"])
    d = artifacts.artifact_dir(tmp_path, key)
    assert d.parent == tmp_path and d.name.startswith("sft-")
    assert artifacts.artifact_dir(tmp_path, artifacts.artifact_key("sft", CFG, ["train.sft"])) == d  # stable
    assert artifacts.artifact_dir(tmp_path, artifacts.artifact_key("sft", CFG, ["train.sft"], {"s": 1})) != d
    assert artifacts.artifact_dir(tmp_path, artifacts.artifact_key("sft", {**CFG, "seed": 1}, ["train.sft"])) != d
    assert artifacts.artifact_dir(tmp_path, artifacts.artifact_key("rl", CFG, ["train.sft"])).name.startswith("rl-")


# ---- keys that follow the code ------------------------------------------------------------------
@pytest.fixture
def pkg_copy(tmp_path, monkeypatch):
    """A copy of the reasonlib sources that the key functions read instead of the real ones."""
    dst = tmp_path / "reasonlib"
    shutil.copytree(artifacts.PKG_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(artifacts, "PKG_DIR", dst)
    return dst


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, (path.name, old)
    path.write_text(text.replace(old, new, 1))


def test_code_digest_covers_the_import_closure():
    sft_code = artifacts.code_digest(["train.sft"])
    assert {"train.sft", "core.model", "core.packed", "core.engine", "train.loop",
            "core.tokenizer", "core.tasks", "train.curriculum", "core.metrics", "core.sampling",
            "train.artifacts", "train.params", "core.schemes"} <= set(sft_code)
    assert not any(m.startswith(("study.", "report.")) for m in sft_code)   # lower layers only
    rl_code = artifacts.code_digest(["train.rl"])
    assert set(sft_code) < set(rl_code) and {"train.rl", "core.reward"} <= set(rl_code)
    assert {k: rl_code[k] for k in sft_code} == sft_code


@pytest.mark.parametrize("module,old,new", [
    ("core/model.py", "mlp_ratio: int = 4", "mlp_ratio: int = 2"),             # a default
    ("train/curriculum.py", "(0.05, 0.10, 0.15, 0.10, 0.60)", "(0.05, 0.10, 0.15, 0.20, 0.50)"),
    ("train/loop.py", "BETAS, EPS = (0.9, 0.98)", "BETAS, EPS = (0.9, 0.95)"),  # the optimizer
    ("core/packed.py", "ln1(x if first", "ln2(x if first"),                  # the packed step
    ("core/engine.py", "cache.t += 1", "cache.t += 2"),                        # the KV cache
    ("core/tokenizer.py", "def ", "def _unused():\n    return 0\n\n\ndef "),  # any code at all
    ("core/sampling.py", "u * cdf[:, -1:]", "u * cdf[:, -1:] * 1.0"),
])
def test_editing_a_training_module_gives_a_new_key(pkg_copy, tmp_path, module, old, new):
    from reasonlib.train import rl, sft
    cfg = sft.SFTConfig()
    rcfg = rl.config_from_params(params.validate({}), cfg)
    sft_before, rl_before = sft.artifact_dir_for(cfg, tmp_path), rl.artifact_dir_for(rcfg, tmp_path)
    _edit(pkg_copy / module, old, new)
    assert sft.artifact_dir_for(cfg, tmp_path) != sft_before
    assert rl.config_from_params(params.validate({}), cfg).init != rcfg.init  # RL follows its start
    assert rl.artifact_dir_for(rcfg, tmp_path) != rl_before


def test_editing_rl_code_keeps_sft_keys(pkg_copy, tmp_path):
    from reasonlib.train import rl, sft
    cfg = sft.SFTConfig()
    rcfg = rl.config_from_params(params.validate({}), cfg)
    sft_before, rl_before = sft.artifact_dir_for(cfg, tmp_path), rl.artifact_dir_for(rcfg, tmp_path)
    _edit(pkg_copy / "core" / "reward.py", "def ", "def _unused():\n    return 0\n\n\ndef ")
    assert rl.artifact_dir_for(rcfg, tmp_path) != rl_before
    assert sft.artifact_dir_for(cfg, tmp_path) == sft_before


def test_docstrings_comments_and_other_modules_keep_keys(pkg_copy, tmp_path):
    from reasonlib.train import sft
    cfg = sft.SFTConfig()
    before = sft.artifact_dir_for(cfg, tmp_path)
    _edit(pkg_copy / "core" / "model.py", '"""The reference model', '"""The one model')
    _edit(pkg_copy / "train" / "sft.py", "# model\n", "# the model's shape\n")
    _edit(pkg_copy / "report" / "site.py", "def ", "def _unused():\n    return 0\n\n\ndef ")
    assert sft.artifact_dir_for(cfg, tmp_path) == before


def test_a_newly_imported_module_joins_the_key(pkg_copy, tmp_path):
    from reasonlib.train import sft
    cfg = sft.SFTConfig()
    before = sft.artifact_dir_for(cfg, tmp_path)
    (pkg_copy / "train" / "extra_helper.py").write_text("SCALE = 1\n")
    _edit(pkg_copy / "train" / "sft.py", "from . import artifacts", "from . import extra_helper  # noqa\nfrom . import artifacts")
    assert "train.extra_helper" in artifacts.code_digest(["train.sft"])
    after = sft.artifact_dir_for(cfg, tmp_path)
    assert after != before
    (pkg_copy / "train" / "extra_helper.py").write_text("SCALE = 2\n")
    assert sft.artifact_dir_for(cfg, tmp_path) != after


def test_provenance_records_what_decides_float_results():
    p = artifacts.provenance("cpu")
    assert p["torch"] == torch.__version__ and p["threads"] == torch.get_num_threads()
    assert p["device"] == "cpu" and p["cpu"] and p["cpu_capability"]
    segs = artifacts.provenance_segments([], "cpu")
    assert segs == [p]
    assert artifacts.provenance_segments(segs, "cpu") == segs           # resumed alike: one entry
    other = dict(p, threads=p["threads"] + 1)
    assert artifacts.provenance_segments([other], "cpu") == [other, p]  # resumed elsewhere: two
    text = artifacts.describe_provenance([other, p])
    assert text.startswith("trained with torch") and "\nresumed with torch" in text


# ---- atomic writes ---------------------------------------------------------------------------
def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_write_json_round_trip_and_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "res.json"
    obj = {"b": np.arange(3), "a": (1, 2), "s": {5}, "x": 1.5}
    artifacts.write_json(path, obj)
    assert artifacts.read_json(path) == {"a": [1, 2], "b": [0, 1, 2], "s": [5], "x": 1.5}
    assert _leftovers(path.parent) == []
    artifacts.write_json(path, {"v": 2})
    assert artifacts.read_json(path) == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["res.json"]


@pytest.mark.parametrize("writer", ["json", "ckpt"])
def test_target_only_appears_complete(tmp_path, monkeypatch, writer):
    """At the moment of the rename the temp file is complete and the target still old."""
    path = tmp_path / ("out.json" if writer == "json" else "ck.pt")
    path.write_bytes(b"OLD")
    real_replace = os.replace
    seen = {}

    def spy(src, dst):
        seen["dst_before"] = open(dst, "rb").read()
        seen["src"] = open(src, "rb").read()
        seen["src_name"] = os.path.basename(src)
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", spy)
    if writer == "json":
        artifacts.write_json(path, {"k": list(range(1000))})
    else:
        artifacts.save_checkpoint(path, {"config": CFG, "w": torch.arange(1000.0)})
    assert seen["dst_before"] == b"OLD"
    assert seen["src"] == path.read_bytes() and len(seen["src"]) > 1000
    assert seen["src_name"] != path.name and os.path.dirname(path) == str(tmp_path)
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ck.pt"
    artifacts.save_checkpoint(path, {"config": CFG, "w": torch.ones(3)})
    before = path.read_bytes()
    with pytest.raises(Exception):
        artifacts.save_checkpoint(path, {"config": CFG, "bad": lambda x: x})  # unpicklable
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    with pytest.raises(TypeError):
        artifacts.write_json(tmp_path / "a.json", {1j: 2})  # complex keys are not JSON keys
    assert not (tmp_path / "a.json").exists() and _leftovers(tmp_path) == []


# ---- checkpoint loading ------------------------------------------------------------------------
@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "run" / "ckpt.pt"
    g = torch.Generator().manual_seed(0)
    payload = {"config": dict(CFG), "model": {"w": torch.randn(64, 64, generator=g),
                                              "b": torch.zeros(64)},
               "step": 7, "history": {"loss": [1.0, 0.5]}, "rng_np": "{}"}
    artifacts.save_checkpoint(path, payload)
    return path, payload


def test_load_checkpoint_round_trip(ckpt):
    path, payload = ckpt
    ck = artifacts.load_checkpoint(path, expect_config=dict(CFG))
    assert ck["step"] == 7 and ck["history"] == payload["history"]
    for k, t in payload["model"].items():
        assert torch.equal(ck["model"][k], t)


def _assert_refused(path, match=None, **kw):
    with pytest.raises(CheckpointError) as e:
        artifacts.load_checkpoint(path, **kw)
    assert str(path) in str(e.value)
    if match:
        assert match in str(e.value)
    return str(e.value)


def test_refuses_missing(tmp_path):
    _assert_refused(tmp_path / "nope.pt", "does not exist")
    _assert_refused(tmp_path, "does not exist")  # a folder is not a checkpoint


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_refuses_truncated(ckpt, keep):
    path, _ = ckpt
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _assert_refused(path)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_refuses_flipped_bytes(ckpt, where):
    path, _ = ckpt
    data = bytearray(path.read_bytes())
    assert len(data) > 16_000  # the middle of the file is tensor data
    i = int(len(data) * where)
    for j in range(i, i + 4):
        data[j] ^= 0xFF
    path.write_bytes(bytes(data))
    _assert_refused(path)


def test_refuses_file_without_config(tmp_path):
    path = tmp_path / "noconf.pt"
    torch.save({"model": {"w": torch.ones(2)}}, path)
    _assert_refused(path, "no config")
    path2 = tmp_path / "list.pt"
    torch.save([1, 2, 3], path2)
    _assert_refused(path2, "no config")


def test_refuses_garbage(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    _assert_refused(path)


def test_refuses_wrong_config_naming_keys(ckpt):
    path, _ = ckpt
    other = {**CFG, "lr": 0.1, "max_digits": 4, "new_key": 1}
    del other["seed"]
    msg = _assert_refused(path, expect_config=other)
    assert "differs in: lr, max_digits, new_key, seed" in msg
    assert "curriculum" not in msg and "fmt" not in msg
    # the right config loads
    artifacts.load_checkpoint(path, expect_config=dict(CFG))


class _Evil:
    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))  # creating the marker file == code ran on load


class _EvilSystem:
    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("cls", [_Evil, _EvilSystem])
def test_refuses_malicious_pickle(tmp_path, cls):
    marker = tmp_path / "pwned"
    cls.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"config": dict(CFG), "payload": cls()}, path)
    assert not marker.exists()
    # sanity: an unsafe load really would run the payload (skipped for os.system: no shell)
    if cls is _Evil:
        torch.load(path, weights_only=False)
        assert marker.exists()
        marker.unlink()
    msg = _assert_refused(path)
    assert not marker.exists()
    assert "safely" in msg and "UnpicklingError" in msg  # refused by the weights-only loader


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_plain_pickle_file(tmp_path):
    marker = tmp_path / "pwned2"
    _Evil.marker = str(marker)
    path = tmp_path / "plain.pkl.pt"
    path.write_bytes(pickle.dumps({"config": CFG, "x": _Evil()}))
    _assert_refused(path)
    assert not marker.exists()


def test_resolve_relative_to_repo(tmp_path):
    assert artifacts.resolve(tmp_path) == tmp_path
    assert artifacts.resolve("runs/x") == artifacts.repo_root() / "runs" / "x"
    assert (artifacts.repo_root() / "reasonlib" / "train" / "artifacts.py").is_file()

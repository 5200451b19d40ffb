"""Notebook checks: each notebook runs under papermill on the smoke profile and writes its
metrics; the .py/.ipynb pairs agree; the parameters cells' defaults are the smoke profile.
(nbval then re-executes the committed notebooks and compares tagged outputs: see
pyproject's pytest options.)"""
from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
import pytest

from reasonlib.train import params

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
PAIRS = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
NAMES = [p.stem for p in PAIRS]


def _code(nb):
    return [c.source.strip() for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("py", PAIRS, ids=NAMES)
def test_pair_in_sync(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make notebooks`"
    assert _code(jupytext.read(py)) == _code(nbformat.read(ipynb, 4)), \
        f"{py.name} and {ipynb.name} differ: run `make notebooks`"


@pytest.mark.parametrize("py", PAIRS, ids=NAMES)
def test_parameters_cell_is_smoke_profile(py):
    declared = pm.inspect_notebook(str(py.with_suffix(".ipynb")))
    smoke = params.load_profile("smoke")
    assert declared, f"{py.name} has no parameters cell"
    for name, spec in declared.items():
        assert name in params.SCHEMA, f"{py.name} declares unknown parameter {name}"
        assert eval(spec["default"]) == smoke[name], (py.name, name)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run shared by the notebook tests (they chain through the artifact cache)."""
    base = tmp_path_factory.mktemp("smoke")
    # one seed folder under a profile folder, as `python -m reasonlib run` lays them out:
    # 01-08 write into run_dir, 09 summarises every seed-* folder of run_root
    p = dict(params.load_profile("smoke"), run_dir=str(base / "run" / "seed-0"),
             run_root=str(base / "run"), artifacts_dir=str(base / "artifacts"))
    return base, p


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_under_papermill(name, smoke_run):
    base, p = smoke_run
    nb = NB_DIR / f"{name}.ipynb"
    declared = pm.inspect_notebook(str(nb))
    out = base / "executed" / f"{name}.ipynb"
    out.parent.mkdir(exist_ok=True)
    pm.execute_notebook(str(nb), str(out), parameters={k: v for k, v in p.items() if k in declared},
                        cwd=str(NB_DIR), kernel_name="python3", progress_bar=False)
    mdir = Path(p["run_root"]) / "summary" if "run_root" in declared else Path(p["run_dir"]) / name
    m = json.loads((mdir / "metrics.json").read_text())
    assert m, f"{name} wrote empty metrics"
    rec = m.get("records", {})
    if name != "09_summary":   # flat records, named by the notebook, without machine paths
        assert m["notebook"] == name and rec and not {"run_dir", "artifacts_dir"} & set(m["params"])
    if name == "03_sft":   # the format comparison: every format, every bucket, the same budget
        for f in p["formats"]:
            assert {b for b in p["buckets"] if f"format/{f}/{b}/acc" in rec} == set(p["buckets"])
            assert abs(rec[f"format/{f}/tokens"] - p["total_tokens"]) <= p["batch_size"] * 40, f
            assert len(rec[f"format/{f}/general/acc@problems"]) == rec["sft/targeted/general/n"]
        assert rec[f"format/{p['fmt']}/general/acc@problems"] == rec["sft/targeted/general/acc@problems"]
        # trained numbers are checked here, against bounds with a wide margin, not by nbval:
        # measured on seeds 100-107 under each of the four float settings of
        # scripts/test_numerics.py (32 runs; docs/reproducibility.md): final loss 1.66-1.80
        # (from ln 264 = 5.6 at the start), in-distribution greedy parse rate >= 0.99
        for c in p["curricula"]:
            assert rec[f"sft/{c}/final_loss"] < 2.2, (c, rec[f"sft/{c}/final_loss"])
            assert min(rec[f"sft/{c}/{b}/parse"] for b in p["buckets"] if b != "ood_long") >= 0.9, c
    if name == "06_beta_scan":   # the KL term binds: beta = 0.5 ends closer to the start than 0
        # (in the calibration above: 32 of 32 runs, KL(0.5) / KL(0) at most 0.43)
        assert rec["beta/0.5/kl"] < rec["beta/0/kl"], (rec["beta/0.5/kl"], rec["beta/0/kl"])
    if name == "07_failure_analysis":   # each curriculum before and after RL
        assert m["checkpoints"] == ["SFT control", "SFT+RL control", "SFT targeted", "SFT+RL targeted"]
    if name == "08_lengths":   # every scheme scored at every length, trained range and beyond
        for s in p["positions"]:
            for n in range(1, p["max_digits"] + 4):
                b = f"length/{s}/len{n}"
                assert 0 <= rec[f"{b}/acc"] <= rec[f"{b}/parse"] <= 1, b
                assert rec[f"{b}/n"] == (100 if n == 1 else p["n_len"]), b
            assert abs(rec[f"length/{s}/tokens"] - p["total_tokens"]) <= p["batch_size"] * 40, s
    if name == "09_summary":
        from reasonlib.report import findings, summary
        assert [f["id"] for f in m["findings"]] == [f.id for f in findings.FINDINGS]
        assert m["missing"] == {} and summary.intervals_in_range(m) == []
        # every finding measured on this seed; only one that declares why its records can be
        # undefined (3b: no RL start of the smoke models lies in the headroom band) may have none
        undefined = {f.id for f in findings.FINDINGS if f.undefined}
        assert all(f["measured"] and (f["interval"].startswith("this seed only")
                                      or (f["n"] == 0 and f["id"] in undefined)) for f in m["findings"])
    executed = nbformat.read(out, 4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


def test_papermill_refuses_unknown_parameter(tmp_path):
    """A typo passed to a notebook stops it in the validation cell, before any compute."""
    out = tmp_path / "bad.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB_DIR / "01_tokenizer_model.ipynb"), str(out),
                            parameters={"n_layers": 3}, cwd=str(NB_DIR), kernel_name="python3",
                            progress_bar=False)
    assert "n_layers" in str(e.value) and "ParamError" in str(e.value)


def test_papermill_refuses_a_size_no_run_can_do(tmp_path):
    """n_eval = 10^6 is refused in the validation cell within seconds, naming the key."""
    import time
    t0 = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB_DIR / "02_data_curricula.ipynb"), str(tmp_path / "big.ipynb"),
                            parameters={"n_eval": 10**6}, cwd=str(NB_DIR), kernel_name="python3",
                            progress_bar=False)
    assert "'n_eval' = 1000000" in str(e.value) and "1..20,000" in str(e.value)
    assert time.perf_counter() - t0 < 60

"""The recipes of docs/developing.md, followed on toy cases: a notebook the runner finds and
plans, a finding evaluated on toy per-seed records (and picked up by the summary and the
results block with no other change), and the places a position scheme touches.
Fast and hermetic: nothing is executed or trained, everything is written under tmp_path."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch
import yaml

from reasonlib.core import engine, model, packed
from reasonlib.core import schemes as schemes_mod
from reasonlib.train import params
from reasonlib.study import runner
from reasonlib.report import findings as F
from reasonlib.study import records as R
from reasonlib.report import results_md
from reasonlib.report import summary as S
from reasonlib.study.records import RecordError

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "developing.md").read_text()


def test_the_doc_names_these_tests():
    for name in ("test_a_new_notebook_is_found_and_planned", "test_a_new_finding_on_toy_records",
                 "test_position_scheme_places_exist"):
        assert name in DOC and name in globals(), name


# ---- add a notebook ----------------------------------------------------------------------------
TOY_NOTEBOOK = '''\
# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Toy
#
# **Question.** Does the recipe hold?

# %% tags=["parameters"]
seed = 0
max_digits = 3
run_dir = "runs/notebooks/seed-0"
artifacts_dir = "runs/notebooks/artifacts"
device = "cpu"

# %%
from reasonlib.train import params

P = params.collect(globals())
'''


def _pair(nb_dir: Path, name: str, text: str) -> Path:
    """Steps 2 and 7: the percent-format source and its .ipynb (here unexecuted)."""
    nb_dir.mkdir(parents=True, exist_ok=True)
    (nb_dir / f"{name}.py").write_text(text)
    ipynb = nb_dir / f"{name}.ipynb"
    jupytext.write(jupytext.read(nb_dir / f"{name}.py"), ipynb)
    return ipynb


def test_a_new_notebook_is_found_and_planned(tmp_path):
    nb_dir = tmp_path / "notebooks"
    _pair(nb_dir, "10_toy", TOY_NOTEBOOK)
    _pair(nb_dir, "02_early", TOY_NOTEBOOK.replace("10 · Toy", "02 · Early"))
    (nb_dir / "toy_scratch.ipynb").write_text("{}")     # no NN_ prefix: not a notebook of the study
    # step 1: found by its two-digit prefix, in number order
    assert list(runner.discover(nb_dir)) == ["02", "10"]
    # step 3: every declared name is in the schema, every default is the smoke profile's
    nb = jupytext.read(nb_dir / "10_toy.py")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = {}
    exec(cell.source, {}, declared)
    smoke = params.load_profile("smoke")
    assert declared and all(k in params.SCHEMA and smoke[k] == v for k, v in declared.items())
    # step 9: the runner gives it only what it declares and runs it after 02 (no execution here)
    args = argparse.Namespace(profile="smoke", seeds=[0, 1], notebooks=None, out=str(tmp_path / "runs"),
                              notebooks_dir=str(nb_dir), workers=1)
    sweep = runner.plan(args)
    chain = sweep.chains[1]
    assert [j.name for j in chain] == ["02_early", "10_toy"] and sweep.summary is None
    assert set(chain[1].params) == set(declared) and chain[1].params["seed"] == 1
    assert chain[0].priority > chain[1].priority          # earlier notebooks first, whichever seed
    assert not (tmp_path / "runs").exists()              # planning writes nothing


# ---- add a finding -------------------------------------------------------------------------------
# step 2: a toy finding, built the way the recipe says (03 writes both records)
TOY = F.Finding("9z", "9", "mixed3: targeted vs control SFT",
                "the targeted curriculum beats the control curriculum on mixed3",
                "not in the study", "03_sft",
                F._vs("sft/targeted/mixed3/acc", "sft/control/mixed3/acc"),
                "targeted - control greedy accuracy on mixed3",
                needs=(("curricula", "targeted"), ("curricula", "control"), ("buckets", "mixed3")),
                yes="The mixed stage reaches one digit up.", no="Control does better one digit up.")
N = 200


def _metrics(seed: int, targeted: float, control: float, buckets=("mixed3",)) -> dict:
    """What 03 writes for one seed (step 1): the means and their per-problem vectors."""
    rec = {}
    for arm, p, shift in (("targeted", targeted, 0), ("control", control, 11)):
        flags = np.roll(np.arange(N) < round(p * N), shift)
        R.mean_with_problems(f"sft/{arm}/mixed3/acc", flags, rec)
    return {"notebook": "03_sft", "seed": seed, "records": rec,
            "params": {"curricula": ["control", "targeted"], "buckets": list(buckets),
                       "formats": ["reversed"]}}


def test_a_new_finding_on_toy_records(tmp_path):
    assert TOY.notebook in S.NOTEBOOKS and TOY.id not in {f.id for f in F.FINDINGS}
    # step 3: three seeds -> an interval over seeds, and the verdict follows it (a question of
    # our own: supported or not, never "reproduced")
    three = {f"seed-{i}": _metrics(i, t, 0.5) for i, t in enumerate((0.7, 0.75, 0.8))}
    r = F.evaluate(TOY, three)
    assert r["n"] == 3 and r["interval"].startswith("95% interval over 3 seeds")
    assert r["verdict"] == "supported" and 0 < r["lo"] <= r["point"] <= r["hi"]
    assert r["point"] == pytest.approx(0.25) and "The mixed stage reaches one digit up." in r["sentences"]
    worse = {f"seed-{i}": _metrics(i, 0.3, 0.5) for i in range(3)}
    assert F.evaluate(TOY, worse)["verdict"] == "not supported"
    # one seed: an interval over its problems, from the per-problem vectors
    one = F.evaluate(TOY, {"seed-0": _metrics(0, 0.7, 0.5)})
    assert one["interval"].startswith("this seed only") and one["n_problems"] == N
    # a run without the records' bucket: not measured, with the reason
    r = F.evaluate(TOY, {"seed-0": _metrics(0, 0.7, 0.5, buckets=("general",))})
    assert not r["measured"] and "buckets 'mixed3'" in r["why"]
    # a present notebook that lacks a record: an error naming it
    broken = _metrics(0, 0.7, 0.5)
    del broken["records"]["sft/control/mixed3/acc"]
    with pytest.raises(RecordError, match="sft/control/mixed3/acc"):
        F.evaluate(TOY, {"seed-0": broken})


def test_a_new_finding_needs_no_other_registration(tmp_path, monkeypatch):
    """Step 4: once in FINDINGS, the summary (09) and the results block show it."""
    monkeypatch.setattr(F, "FINDINGS", F.FINDINGS + (TOY,))
    for i, t in enumerate((0.7, 0.75, 0.8)):
        m = _metrics(i, t, 0.5)
        R.write(tmp_path / f"seed-{i}" / "03_sft" / "metrics.json", "03_sft", i, m["records"], m["params"])
    s = S.summarize(tmp_path)
    toy = next(r for r in s["findings"] if r["id"] == "9z")
    assert toy["verdict"] == "supported" and toy["n"] == 3
    # the catalogue's own findings on this run: measured only where 03's records allow
    assert all(not r["measured"] for r in s["findings"] if r["id"] != "9z")
    md = results_md.markdown(s, "toy.json")
    assert "| 9z | mixed3: targeted vs control SFT | not in the study |" in md
    assert "* **9z, supported.** Over 3 seeds" in md


# ---- add a position scheme -------------------------------------------------------------------------
def _cell_literal(py: Path, name: str):
    src = py.read_text()
    m = re.search(rf"^{name} = (.+)$", src, flags=re.M)
    assert m, f"{py.name} declares no {name}"
    return eval(m.group(1))


def test_position_scheme_places_exist():
    schemes = model.POS_SCHEMES
    # step 1: the names, and the placed subset, in their one home (the model reads them there)
    assert schemes is schemes_mod.POS_SCHEMES
    assert len(set(schemes)) == len(schemes) and set(schemes_mod.PLACED) <= set(schemes)
    with pytest.raises(ValueError, match="must be one of"):
        model.ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, pos="no-such-scheme")
    assert tuple(params.SCHEMA["pos"].choices) == tuple(schemes)
    assert tuple(params.SCHEMA["positions"].choices) == tuple(schemes)
    # steps 2-4: the functions the recipe names
    for fn in (model.GPT.positions, model.GPT.masks, engine.prefill, engine.decode_step, packed.hidden):
        assert callable(fn)
    # step 5: the defaults that list every scheme
    assert params.SCHEMA["positions"].default == list(schemes)
    smoke = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    assert smoke["positions"] == list(schemes)
    for nb in ("03_sft.py", "08_lengths.py"):
        assert _cell_literal(ROOT / "notebooks" / nb, "positions") == list(schemes), nb
    # step 6: the model tests run over every scheme
    assert "params=POS_SCHEMES" in (ROOT / "tests" / "test_model.py").read_text()
    # step 7: the calibration script's recipes
    assert "RECIPES = {" in (ROOT / "scripts" / "calibrate_sft.py").read_text()


@pytest.mark.parametrize("pos", model.POS_SCHEMES)
def test_every_scheme_meets_the_positions_contract(pos):
    """Step 2's contract, on a tiny untrained model: positions or places of (B, T) ids (or
    neither), then logits of the right shape, with and without left padding."""
    torch.manual_seed(0)
    m = model.GPT(model.ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, pos=pos)).eval()
    idx = torch.tensor([[ord(c) for c in "12+477="], [0, 0, 0] + [ord(c) for c in "5+8="]])
    valid = idx != 0
    rot, place = m.positions(idx, valid)
    for t in (rot, place):
        assert t is None or (t.shape[-1] == idx.shape[1] and t.dtype == torch.long)
    assert (place is not None) == (pos == "abacus")
    assert len(m.masks(valid, rot)) == m.cfg.n_layer
    with torch.no_grad():
        assert m(idx, valid=valid).shape == (2, idx.shape[1], m.cfg.vocab_size)

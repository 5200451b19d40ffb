"""The SFT recipe's calibration table: the committed runs, the README's copy, the script's
refusal of report seeds."""
import importlib.util
from pathlib import Path

import pytest

from reasonlib import calibration

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("calibrate_sft", ROOT / "scripts" / "calibrate_sft.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(seed, t90, general, recipe="r"):
    return {"recipe": recipe, "seed": seed, "overrides": {"pos": "coupled"}, "t50": 10,
            "t90": t90, "general": general, "len4": 0.5, "len5": 0.0, "len6": 0.0,
            "train_s": 100.0, "probe": [[10, 0.6], [20, 0.95]]}


def test_k_of_n_counts_only_seeds_that_reached_both_goals():
    rows = [_row(100, 20, 0.99), _row(101, None, 0.5), _row(102, 20, 0.96)]
    md = calibration.markdown(rows)
    assert "1 of 3 seeds transitioned" in md
    assert "0 of 3 reached 4-digit operands at >= 90%" in md   # len4 is 0.5 in every row
    assert "1 of 1 reached 4-digit" in calibration.markdown([{**_row(100, 20, 0.99), "len4": 0.9}])
    assert "| r | 101 | 10 | never | 50.0 |" in md


def test_readme_table_is_generated_from_the_committed_runs():
    rows = calibration.load(calibration.COMMITTED)
    assert rows, "no calibration runs committed under reports/calibration/"
    assert all(r["seed"] >= 100 for r in rows), "calibration runs must use seeds 100 and up"
    text = (ROOT / "README.md").read_text()
    assert calibration.readme_block(rows) in text, \
        "README's calibration table is stale: run python scripts/calibrate_sft.py --readme"


def test_replace_block_refuses_a_readme_without_markers():
    with pytest.raises(ValueError, match="exactly one"):
        calibration.replace_block("no markers", [])


def test_script_refuses_report_seeds():
    mod = _script()
    with pytest.raises(SystemExit, match="100 and up"):
        mod.seeds_arg("3-5")
    assert mod.seeds_arg("100-102,110") == [100, 101, 102, 110]


def test_packed_recipe_is_its_own_recipe_and_trains_packed():
    mod = _script()
    cfg, _ = mod.recipe_config("local", 100, {}, packed=True)
    assert cfg.packed and cfg.pos == "local" and cfg.pos_offset == 8
    assert not mod.recipe_config("local", 100, {})[0].packed
    assert mod.recipe_name("local", True) == "local-packed" and mod.recipe_name("local", False) == "local"

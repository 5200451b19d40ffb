"""The SFT recipe's calibration table: the committed runs, the copy in docs/calibration.md, the script's
refusal of report seeds."""
import importlib.util
from pathlib import Path

import pytest

from reasonlib.study import calibration

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


def test_compare_pairs_the_seeds_both_sides_hold():
    a = [_row(100, 20, 0.99), _row(101, 20, 0.98), _row(102, 20, 0.99), _row(103, None, 0.2)]
    b = [_row(100, None, 0.3), _row(101, 20, 0.99), _row(102, 20, 0.95), _row(104, 20, 0.99)]
    md = calibration.compare(a, b, "padded", "packed")
    assert "| 100 | 99.0 (20) | 30.0 (never) **x** |" in md
    assert "| 102 | 99.0 (20) | 95.0 (20) **x** |" in md   # reached 90% but below the goal
    assert "| 104 |" not in md and "| 103 |" not in md      # one side only: not a pair
    assert ("same 3 seeds: padded 3 of 3 transitioned, packed 1 of 3; 2 under padded only, "
            "0 under packed only (exact sign test p = 0.500)") in md
    assert "every row: padded 3 of 4, packed 2 of 4 (Fisher's exact p = 1.000)" in md
    assert "not the same machines" not in md
    b[0]["provenance"] = {"cpu": "AMD EPYC"}
    assert "not the same machines: padded ran on ?, packed on ?, AMD EPYC" in calibration.compare(a, b, "padded", "packed")
    with pytest.raises(ValueError, match="no seed in common"):
        calibration.compare(a, [_row(200, 20, 0.99)])
    with pytest.raises(ValueError, match="appears twice"):
        calibration.compare(a + a[:1], b)


def test_script_compare_refuses_missing_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main(["--compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _script().main(["--recipe", "rope", "--set", "packed=true", "--out", str(tmp_path)])
    assert "use --packed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())   # refused before any file or run


def test_docs_table_is_generated_from_the_committed_runs():
    rows = calibration.load(calibration.COMMITTED)
    assert rows, "no calibration runs committed under reports/calibration/"
    assert all(r["seed"] >= 100 for r in rows), "calibration runs must use seeds 100 and up"
    text = (ROOT / calibration.PAGE).read_text()
    assert calibration.docs_block(rows) in text, \
        f"{calibration.PAGE}'s calibration table is stale: run python scripts/calibrate_sft.py --docs"


def test_replace_block_refuses_a_page_without_markers():
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


# ---- targeted v2 and the factorial -------------------------------------------------------
def _grid_row(seed, curriculum="targeted_v2", pos="rope", trained=1.0, withheld=0.98,
              buckets=None, recipe=None):
    b = {"low_sum": 1.0, "mixed": 1.0, "mixed3": 0.995, "general": 0.995, "ood_long": 0.1,
         **(buckets or {})}
    grid = {"1x1": {"acc": 1.0, "n": 100, "kind": "seen"},
            "2x2": {"acc": trained, "n": 200, "kind": "trained"},
            "3x1": {"acc": 1.0, "n": 200, "kind": "trained"},
            "1x3": {"acc": withheld, "n": 200, "kind": "withheld"},
            "4x4": {"acc": 0.0, "n": 200, "kind": "untrained"}}
    return {**_row(seed, 20, b["general"], recipe or f"{curriculum}-{pos}-packed"),
            "curriculum": curriculum, "overrides": {"pos": pos},
            "buckets": {k: {"acc": v, "n": 100} for k, v in b.items()}, "grid": grid}


def test_goals_each_fail_on_their_own():
    assert all(calibration.goal_parts(_grid_row(100)).values())
    assert calibration.goal_parts(_grid_row(100, trained=0.985)) == \
        {"trained": False, "withheld": True, "mixed3": True, "general": True}
    assert not calibration.goal_parts(_grid_row(100, withheld=0.96))["withheld"]
    assert not calibration.goal_parts(_grid_row(100, buckets={"mixed3": 0.98}))["mixed3"]
    md = calibration.grid_markdown([_grid_row(100), _grid_row(101, withheld=0.5)])
    assert "all four goals on 1 of 2 seeds" in md and "withheld cell >= 97%: 1" in md
    assert "| 98.0 |" in md and "| 50.0 |" in md


def test_factorial_pairs_by_seed_and_flags_a_worse_bucket():
    rows = [_grid_row(s, "control", "rope", buckets={"mixed3": 0.9 + 0.01 * (s % 3)})
            for s in (100, 101, 102, 103)]
    rows += [_grid_row(s, "targeted", "rope", buckets={"mixed3": 0.5 + 0.01 * (s % 3)})
             for s in (100, 101, 102, 103)]
    rows += [_grid_row(s, "targeted_v2", "rope") for s in (100, 101, 102)]
    md = calibration.factorial_markdown(rows)
    assert "| rope | control | 4 |" in md and "| rope | targeted_v2 | 3 |" in md
    assert "rope, targeted - control (4 seeds)" in md and "Worse beyond the interval: mixed3" in md
    assert "mixed3 -" in md and "0 up and 4 down" in md   # the split is counted, seed by seed
    assert "rope, targeted_v2 - control (3 seeds)" in md
    line = next(x for x in md.splitlines() if x.startswith("- rope, targeted_v2"))
    assert "No measure worse" in line
    arms = calibration.factorial_arms(rows)
    assert list(arms) == ["rope, control", "rope, targeted", "rope, targeted_v2"]
    m = calibration.mean_grid(arms["rope, control"])
    assert m.shape == (4, 4) and m[0, 2] == pytest.approx(0.98)


def test_docs_grid_block_is_generated_from_the_committed_runs():
    rows = calibration.load(calibration.GRID) if calibration.GRID.is_dir() else []
    assert all(r["seed"] >= 100 for r in rows), "calibration runs must use seeds 100 and up"
    text = (ROOT / calibration.PAGE).read_text()
    assert calibration.grid_block(rows) in text, \
        f"{calibration.PAGE}'s targeted v2 tables are stale: run python scripts/calibrate_sft.py --docs"


def test_the_rivals_sweep_keeps_each_arms_best_rate_on_validation(tmp_path):
    spec = importlib.util.spec_from_file_location("calibrate_rivals", ROOT / "scripts" / "calibrate_rivals.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def row(seed, accs):
        return {"seed": seed, "start_kind": "moving", "start": {"general": 0.5},
                "arms": {f"{n}@{lr:g}": {"arm": n, "lr": lr, "general": v} for (n, lr), v in accs.items()}}
    rows = [row(100, {("rl", 1e-4): 0.6, ("rl", 3e-4): 0.7, ("sft", 1e-3): 0.8, ("rft", 1e-3): 0.55}),
            row(101, {("rl", 1e-4): 0.9, ("rl", 3e-4): 0.7, ("sft", 1e-3): 0.4, ("rft", 1e-3): 0.65})]
    assert mod.chosen(rows) == {"rl": 1e-4, "sft": 1e-3, "rft": 1e-3}   # means 0.75 > 0.70
    text = mod.table(rows)
    assert "0.0001 (kept)" in text and "+10.0 +40.0" in text and "2 seeds" in text
    with pytest.raises(SystemExit, match="calibration seeds are 100 and up"):
        mod.main(["--seeds", "3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--sft-lrs.*must be > 0"):
        mod.main(["--sft-lrs", "0", "--out", str(tmp_path)])

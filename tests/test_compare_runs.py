"""scripts/compare_runs.py: two runs of one seed compared value for value, wall-clock ignored."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_runs.py"


def _seed(d: Path, acc=0.25, secs=1.0) -> Path:
    for nb, m in {"03_sft": {"targeted": {"acc": acc, "timing": {"loop_s": secs},
                                          "checkpoint": str(d / "art")}, "ks": [1, 2],
                             "sampling": {"answers": 10, "seconds": secs}},
                  "05_kl_rl": {"kl": [0.0, 1e-3],
                               "records": {"rl_vs_sft/RL/cpu_s": 60.0 + secs,
                                           "rl_vs_sft/RL/general/acc": acc}}}.items():
        (d / nb).mkdir(parents=True)
        (d / nb / "metrics.json").write_text(json.dumps(m))
    return d


def _run(*a):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, a)], capture_output=True, text=True)


def test_equal_runs_differ_only_in_wall_clock(tmp_path):
    r = _run(_seed(tmp_path / "a"), _seed(tmp_path / "b", secs=9.0))
    assert r.returncode == 0 and "03_sft: identical (4 values compared)" in r.stdout


def test_one_bit_off_is_a_difference(tmp_path):
    r = _run(_seed(tmp_path / "a"), _seed(tmp_path / "b", acc=0.25 + 2 ** -40))
    assert r.returncode == 1 and "/targeted/acc: 0.25 vs 0.25000000000090" in r.stdout


def test_missing_notebook_and_bad_input(tmp_path):
    a = _seed(tmp_path / "a")
    b = _seed(tmp_path / "b")
    (b / "05_kl_rl" / "metrics.json").unlink()
    r = _run(a, b)
    assert r.returncode == 1 and "05_kl_rl: missing" in r.stdout
    assert _run(tmp_path / "nothing", b).returncode == 2
    assert _run(a).returncode == 2


def test_cpu_seconds_in_flat_records_are_skipped_and_their_neighbours_compared(tmp_path):
    r = _run(_seed(tmp_path / "a"), _seed(tmp_path / "b", secs=9.0))
    assert r.returncode == 0 and "05_kl_rl: identical (3 values compared)" in r.stdout
    r = _run(_seed(tmp_path / "c"), _seed(tmp_path / "d", acc=0.5))
    assert r.returncode == 1 and "/records/rl_vs_sft/RL/general/acc: 0.25 vs 0.5" in r.stdout

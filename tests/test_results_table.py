"""The README's results section: generated from notebook 09's summary by
scripts/results_table.py; the committed README must match the committed summary of the
default job (reports/quick, on the held-out protocol)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reasonlib import results_md as R
from reasonlib import summary as S

from test_summary import write_seed

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "results_table.py"


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_committed_readme_matches_committed_summary(profile):
    shown, name = R.BLOCKS[profile]
    published = ROOT / shown
    assert published.is_file(), f"{shown} is committed with the {profile} profile's report"
    readme = (ROOT / "README.md").read_text()
    s = R.load(published)
    assert R.replace_block(readme, R.markdown(s, shown), name) == readme
    # every finding's verdict and every generated sentence appears in the README as in the summary
    block = R.block_text(readme, name)
    for f in s["findings"]:
        assert f"**{f['verdict'] if f['measured'] else 'not measured'}**" in block
        assert " ".join(f["sentences"]) in block
    r = subprocess.run([sys.executable, str(SCRIPT), "--check", "--profile", profile],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _summary(tmp_path) -> Path:
    for i in range(3):
        write_seed(tmp_path / "run" / f"seed-{i}", {"sft/control/low_sum/acc": 0.5,
                                                    "sft/targeted/low_sum/acc": 0.8 + i / 100})
    p = tmp_path / "summary.json"
    p.write_text(json.dumps(S.summarize(tmp_path / "run")))
    return p


def test_markdown_has_every_finding_and_the_taxonomy(tmp_path):
    s = R.load(_summary(tmp_path))
    md = R.markdown(s, "x.json")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(s["findings"]) + 1 + len(S.CHECKPOINTS)
    assert "| 1a | low_sum: targeted vs control SFT | 64.8% -> 85.4% (control -> targeted) |" in md
    assert "**reproduced**" in md and "Seeds 0, 1, 2 (n = 3)" in md and "bootstrap over seeds" in md
    assert "* **1a, reproduced.** Over 3 seeds" in md
    assert "| SFT targeted | 8.0 | 0.0 | 0.0 | 0.0 | 0.0 | 8.0 | 0.0 |" in md   # 2 per bucket, 4 buckets


def test_script_writes_then_checks_then_detects_drift(tmp_path):
    summ = _summary(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{R.START}\nSTALE-TABLE\n{R.END}\n\ntail\n")
    run = lambda *a: subprocess.run([sys.executable, str(SCRIPT), "--summary", str(summ),
                                     "--readme", str(readme), *a], capture_output=True, text=True)
    assert run("--check").returncode == 1                   # the placeholder is out of date
    assert run().returncode == 0
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\ntail\n") and "STALE-TABLE" not in text
    assert run("--check").returncode == 0
    # a changed metric makes the committed table stale
    s = json.loads(summ.read_text())
    s["findings"][0]["verdict"] = "not reproduced"
    summ.write_text(json.dumps(s))
    r = run("--check")
    assert r.returncode == 1 and "out of date" in r.stderr


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(R.ResultsError, match="exactly one"):
        R.replace_block("no markers here", "x")
    with pytest.raises(R.ResultsError, match="exactly one"):
        R.replace_block(f"{R.END}\n{R.START}\n", "x")
    bad = tmp_path / "s.json"
    bad.write_text('{"seeds": []}')
    with pytest.raises(R.ResultsError, match="not a summary"):
        R.load(bad)
    r = subprocess.run([sys.executable, str(SCRIPT), "--summary", str(tmp_path / "nope.json"),
                        "--check"], capture_output=True, text=True)
    assert r.returncode == 2 and "nope.json" in r.stderr


def test_default_fills_the_blocks_the_readme_holds(tmp_path):
    """No --profile: every profile whose block README.md holds (here only quick's); a
    profile named explicitly must have its block."""
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{R.START}\nSTALE-BLOCK\n{R.END}\n")
    run = lambda *a: subprocess.run([sys.executable, str(SCRIPT), "--readme", str(readme), *a],
                                    capture_output=True, text=True)
    r = run()
    assert r.returncode == 0 and "(quick)" in r.stdout and "STALE-BLOCK" not in readme.read_text()
    r = run("--profile", "paper", "--summary", str(_summary(tmp_path)))
    assert r.returncode == 2 and "results-paper:start" in r.stderr
    readme.write_text("no blocks\n")
    r = run("--check")
    assert r.returncode == 2 and "holds no results block" in r.stderr

"""The generated results blocks: scripts/results_table.py writes them from notebook 09's
summaries (docs/results.md: every finding of the default job and of the paper profile;
README.md: the paper profile's headline), and the committed files must match the committed
summaries (reports/quick, reports/paper, on the held-out protocol)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reasonlib.report import findings as F, results_md as R
from reasonlib.report import summary as S

from test_summary import write_seed

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "results_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runner(capsys, *fixed):
    """The script's main() in this process (a subprocess would import torch again):
    (status, stdout, stderr)."""
    main = _script().main

    def run(*a):
        rc = main([str(x) for x in (*fixed, *a)])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


@pytest.mark.parametrize("block", R.BLOCKS, ids=lambda b: f"{b.file}:{b.name}")
def test_committed_files_match_committed_summaries(block):
    shown = R.SUMMARIES[block.profile]
    published = ROOT / shown
    assert published.is_file(), f"{shown} is committed with the {block.profile} profile's report"
    text = (ROOT / block.file).read_text()
    s = R.load(published)
    assert R.replace_block(text, R.render(block.name, s, shown), block.name) == text
    # the verdicts (and, in the full results, every generated sentence) appear as in the summary
    part = R.block_text(text, block.name)
    shown_ids = R.HEADLINE_FINDINGS if block.name == "headline" else [f["id"] for f in s["findings"]]
    for f in (f for f in s["findings"] if f["id"] in shown_ids):
        assert f"**{F.verdict_text(f['verdict']) if f['measured'] else 'not measured'}**" in part
        if block.name != "headline":
            assert " ".join(f["sentences"]) in part


def test_check_passes_on_the_committed_files():
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "README.md matches" in r.stdout and "results.md matches" in r.stdout


def test_each_published_profile_has_its_blocks_and_the_readme_its_headline():
    assert {b.profile for b in R.BLOCKS} == set(R.SUMMARIES)
    assert {(b.file, b.name) for b in R.BLOCKS} >= {("README.md", "headline"),
                                                    ("docs/results.md", "results-table"),
                                                    ("docs/results.md", "results-paper")}
    assert len({(b.file, b.name) for b in R.BLOCKS}) == len(R.BLOCKS)


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
    # two claim tables (a header each, one row per finding), then the taxonomy
    assert len(rows) == 2 + len(s["findings"]) + 1 + len(S.CHECKPOINTS)
    assert "| 1a | low_sum: targeted vs control SFT | 64.8% -> 85.4% (control -> targeted) (effect +20.6 points) |" in md
    assert md.index("**The study's claims** (Holm)") < md.index("**Our questions** (Holm)") \
        < md.index("**Limitations**")
    assert "Seeds 0, 1, 2 (n = 3)" in md and "Student t over seeds" in md
    assert "* **1a, reproduced.** Over 3 seeds" in md
    assert "| SFT targeted | 8.0 | 0.0 | 0.0 | 0.0 | 0.0 | 8.0 | 0.0 |" in md   # 2 per bucket, 4 buckets


def test_headline_is_short_and_has_each_rows_n_and_interval(tmp_path):
    s = R.load(_summary(tmp_path))
    md = R.headline(s, "x.json")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    study = [f for f in s["findings"] if f["family"] == "study"]
    ours = [i for i in R.HEADLINE_FINDINGS if i not in {f["id"] for f in study}]
    assert len(rows) == 1 + len(study) + 1 + len(ours)
    by_id = {f["id"]: f for f in s["findings"]}
    # 1a: targeted 0.80-0.82 vs control 0.5 on low_sum, three seeds, an interval, no per-seed list
    assert "| 1a | low_sum: targeted vs control SFT |" in md
    assert (f"| +31.0 points [{100 * by_id['1a']['lo']:+.1f}, {100 * by_id['1a']['hi']:+.1f}] | "
            "**reproduced** |") in md and "per seed" not in md
    assert "Seeds 0, 1, 2 (n = 3); intervals: 95% Student t over seeds" in md
    assert "Greedy accuracy on `general` (3 seeds): control SFT (SFT from scratch) 80.0% [" in md
    s["findings"] = [f for f in s["findings"] if f["id"] != "8"]
    with pytest.raises(R.ResultsError, match="no finding or measure '8'"):
        R.headline(s, "x.json")


def _write_both(tmp_path):
    start, end = R.markers("results-table")
    f = tmp_path / "results.md"
    f.write_text(f"# title\n\n{start}\nSTALE-TABLE\n{end}\n\ntail\n")
    return f


def test_script_writes_then_checks_then_detects_drift(tmp_path, capsys):
    summ = _summary(tmp_path)
    page = _write_both(tmp_path)
    run = _runner(capsys, "--summary", summ, "--file", page)
    assert run("--check")[0] == 1                           # the placeholder is out of date
    assert run()[0] == 0
    text = page.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\ntail\n") and "STALE-TABLE" not in text
    assert run("--check")[0] == 0
    # a changed metric makes the committed table stale
    s = json.loads(summ.read_text())
    s["findings"][0]["verdict"] = "not reproduced"
    summ.write_text(json.dumps(s))
    rc, _, err = run("--check")
    assert rc == 1 and "out of date" in err


def test_script_fills_the_headline_and_the_full_block_of_one_file(tmp_path, capsys):
    summ = _summary(tmp_path)
    f = tmp_path / "page.md"
    blocks = [R.markers(n) for n in ("headline", "results-paper")]
    f.write_text("".join(f"{a}\nOLD\n{b}\n" for a, b in blocks))
    rc, _, err = _runner(capsys)("--profile", "paper", "--summary", summ, "--file", f)
    assert rc == 0, err
    s = R.load(summ)
    text = f.read_text()
    assert "OLD" not in text
    assert R.block_text(text, "headline") == f"\n{R.headline(s, str(summ))}\n"
    assert R.block_text(text, "results-paper") == f"\n{R.markdown(s, str(summ))}\n"


def test_bad_inputs_are_named(tmp_path, capsys):
    with pytest.raises(R.ResultsError, match="exactly one"):
        R.replace_block("no markers here", "x")
    with pytest.raises(R.ResultsError, match="exactly one"):
        R.replace_block(f"{R.END}\n{R.START}\n", "x")
    bad = tmp_path / "s.json"
    bad.write_text('{"seeds": []}')
    with pytest.raises(R.ResultsError, match="not a summary"):
        R.load(bad)
    page = _write_both(tmp_path)
    rc, _, err = _runner(capsys)("--summary", tmp_path / "nope.json", "--file", page, "--check")
    assert rc == 2 and "nope.json" in err


def test_a_file_without_the_profiles_block_is_refused(tmp_path, capsys):
    """--file: the blocks of the chosen profiles that the file holds; a profile named
    explicitly must have one there, and a file with none is an error."""
    page = _write_both(tmp_path)                          # holds quick's block only
    run = _runner(capsys, "--file", page)
    rc, out, _ = run("--profile", "quick")
    assert rc == 0 and "(quick)" in out and "STALE-TABLE" not in page.read_text()
    rc, _, err = run("--profile", "paper", "--summary", _summary(tmp_path))
    assert rc == 2 and "headline:start" in err and "results-paper:start" in err
    page.write_text("no blocks\n")
    rc, _, err = run("--check")
    assert rc == 2 and "holds no results block" in err

"""The command line refuses bad input with exit status 2 before running anything, and the
``report`` subcommand hands over to ``reasonlib.report.site.build``."""
from __future__ import annotations

import subprocess
from pathlib import Path
import sys
import types

import pytest

import reasonlib
import reasonlib.report
from reasonlib.__main__ import main


@pytest.mark.parametrize("argv, needle", [
    (["run", "--profile", "nosuch"], "unknown profile 'nosuch'"),
    (["run", "--profile", "/nonexistent/p.yaml"], "does not exist"),
    (["run", "--profile", "smoke", "--notebooks", "99"], "--notebooks 99"),
    (["run", "--profile", "smoke", "--notebooks", "01", "x1"], "unknown notebook 'x1'"),
    (["run", "--profile", "smoke", "--seed", "-1"], "--seed -1"),
    (["run", "--profile", "smoke", "--seeds"], "--seeds: empty seed list"),
    (["run", "--profile", "smoke", "--seeds", "0", "-2"], "--seeds 0 -2: seed -2 is negative"),
    (["run", "--profile", "smoke", "--seeds", "0", "1", "0"], "--seeds 0 1 0: duplicate seed 0"),
    (["run", "--profile", "smoke", "--workers", "0"], "--workers 0: must be an integer >= 1"),
    (["run", "--profile", "smoke", "--threads", "0"], "--threads 0: must be an integer >= 1"),
    (["run", "--profile", "smoke", "--workers", "-3"], "--workers -3"),
    (["run", "--profile", "smoke", "--scheduler", "localhost:8786"], "--scheduler 'localhost:8786'"),
    (["run", "--profile", "smoke", "--scheduler", "http://h:8786"], "--scheduler 'http://h:8786'"),
    (["run", "--profile", "smoke", "--scheduler", "tcp://"], "--scheduler 'tcp://'"),
    (["run", "--profile", "smoke", "--notebooks-dir", "/nonexistent/nbs"], "--notebooks-dir"),
    (["run", "--profile", "smoke", "--seeds", "4-0"], "range 4-0 runs backwards"),
    (["run", "--profile", "smoke", "--seeds", "0-"], "'0-' is not a seed"),
    (["run", "--profile", "smoke", "--seeds", "1..3"], "'1..3' is not a seed"),
    (["run", "--profile", "smoke", "--seeds", "0-2", "2"], "duplicate seed 2"),
])
def test_bad_input_exits_2(argv, needle, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing may be written before validation passes"


def test_seed_ranges_plan_every_seed(tmp_path):
    from reasonlib.study import runner
    assert runner.parse_seeds(["0-2", "5", "7-7"]) == [0, 1, 2, 5, 7]


@pytest.mark.parametrize("out", ["notebooks", "reasonlib/core", "."])
def test_an_output_folder_among_tracked_files_is_refused(out, capsys):
    root = Path(reasonlib.__file__).resolve().parents[1]
    before = sorted(p.name for p in (root / out).iterdir())
    assert main(["run", "--profile", "smoke", "--out", str(root / out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "holds files of the repository" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (root / out).iterdir()) == before   # nothing written there


def test_an_artifact_folder_among_tracked_files_is_refused(tmp_path, capsys):
    root = Path(reasonlib.__file__).resolve().parents[1]
    assert main(["run", "--profile", "smoke", "--out", str(tmp_path),
                 "--artifacts", str(root / "tests")]) == 2
    assert "--artifacts" in capsys.readouterr().err and not any(tmp_path.iterdir())


@pytest.mark.parametrize("case, text", [
    ("budget", "total_tokens: 1\n"),
    ("head", "n_head: 64\nn_embd: 64\n"),
    ("duplicate", "seed: 0\nlr: 0.01\nlr: 0.02\n"),
])
def test_the_issue_cases_are_refused_before_any_training(case, text, tmp_path):
    """The three parameter sets the issue found running (or crashing) are refused by the
    command line with one line naming the parameters or the file and line, exit 2."""
    prof = tmp_path / f"{case}.yaml"
    prof.write_text(text)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "reasonlib", "run", "--profile", str(prof),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and not out.exists(), r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert {"budget": "total_tokens = 1", "head": "n_head = 64",
            "duplicate": f"{prof}:3: key 'lr' appears twice"}[case] in line, line


def test_bad_profile_content_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_layer: 0\n")
    assert main(["run", "--profile", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "'n_layer' = 0" in capsys.readouterr().err
    bad.write_text("n_layer: [1\n")
    assert main(["run", "--profile", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, needle", [
    (["--seed", "abc"], "--seed"),
    (["--seeds", "0", "x"], "--seeds"),
    (["--seed", "1", "--seeds", "2"], "not allowed with argument"),
    (["--workers", "two"], "--workers"),
])
def test_argparse_errors_exit_2(args, needle, tmp_path):
    r = subprocess.run([sys.executable, "-m", "reasonlib", "run", *args, "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr   # one line
    assert not any(tmp_path.iterdir())


def test_good_scheduler_addresses_pass_validation():
    from argparse import Namespace

    from reasonlib.study import runner

    for addr in ("tcp://10.0.0.5:8786", "tls://node-3.cluster:8786", "tcp://[::1]:8786", "tcp://h"):
        a = Namespace(profile="smoke", seeds=[0], seed=None, workers=2, scheduler=addr,
                      notebooks=["01"], out="/nonexistent-out", artifacts=None, force=False,
                      notebooks_dir=None)
        assert runner.plan(a).scheduler == addr


@pytest.fixture
def fake_report(monkeypatch):
    class ReportError(ValueError):
        pass

    calls = []

    def build(profile_root, out=None, publish=False):
        calls.append((profile_root, out) + (("publish",) if publish else ()))
        if not profile_root.name.startswith("ok"):
            raise ReportError(f"{profile_root} holds no seed-* folders")
        return (out or profile_root / "report") / "index.html"

    mod = types.SimpleNamespace(build=build, ReportError=ReportError)
    monkeypatch.setitem(sys.modules, "reasonlib.report.site", mod)
    monkeypatch.setattr(reasonlib.report, "site", mod, raising=False)
    return calls


def test_report_prints_the_index_path(fake_report, tmp_path, capsys):
    assert main(["report", str(tmp_path / "ok"), "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "index.html")
    assert fake_report == [(tmp_path / "ok", tmp_path / "r")]
    assert main(["report", str(tmp_path / "ok")]) == 0
    assert fake_report[-1] == (tmp_path / "ok", None)
    assert main(["report", str(tmp_path / "ok"), "--publish"]) == 0
    assert fake_report[-1] == (tmp_path / "ok", None, "publish")


def test_report_bad_input_exits_2(fake_report, tmp_path, capsys):
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no seed-* folders" in err

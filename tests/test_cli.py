"""The command line refuses bad input with exit status 2 before running anything."""
from __future__ import annotations

import subprocess
import sys

import pytest

from reasonlib.__main__ import main


@pytest.mark.parametrize("argv, needle", [
    (["run", "--profile", "nosuch"], "unknown profile 'nosuch'"),
    (["run", "--profile", "/nonexistent/p.yaml"], "does not exist"),
    (["run", "--profile", "smoke", "--notebooks", "99"], "--notebooks 99"),
    (["run", "--profile", "smoke", "--seed", "-1"], "--seed -1"),
])
def test_bad_input_exits_2(argv, needle, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing may be written before validation passes"


def test_bad_profile_content_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_layer: 0\n")
    assert main(["run", "--profile", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "'n_layer' = 0" in capsys.readouterr().err
    bad.write_text("n_layer: [1\n")
    assert main(["run", "--profile", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_argparse_errors_exit_2():
    r = subprocess.run([sys.executable, "-m", "reasonlib", "run", "--seed", "abc"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--seed" in r.stderr

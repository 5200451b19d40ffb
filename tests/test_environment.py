"""environment.yml installs what pyproject declares; the Makefile and it pin the same torch."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return env, deps, pip[0]


def test_environment_installs_the_package_with_test_extra():
    _, _, pip = _env_pip()
    assert "-e .[test]" in pip


def test_environment_python_satisfies_requires_python():
    _, deps, _ = _env_pip()
    py = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert py, "environment.yml must pin python"
    version = py[0].split("=")[-1]
    assert SpecifierSet(_pyproject()["project"]["requires-python"]).contains(version + ".0")


def test_torch_pin_matches_pyproject_and_makefile():
    _, _, pip = _env_pip()
    pins = [Requirement(x) for x in pip if x.startswith("torch")]
    assert len(pins) == 1
    pinned = next(iter(pins[0].specifier)).version
    deps = [Requirement(d) for d in _pyproject()["project"]["dependencies"]]
    torch_req = [d for d in deps if d.name == "torch"][0]
    assert torch_req.specifier.contains(pinned), (torch_req, pinned)
    make = (ROOT / "Makefile").read_text()
    assert re.search(rf"TORCH := torch=={re.escape(pinned)}\b", make)


def test_every_product_dependency_is_declared():
    deps = {Requirement(d).name.lower() for d in _pyproject()["project"]["dependencies"]}
    test = {Requirement(d).name.lower() for d in _pyproject()["project"]["optional-dependencies"]["test"]}
    for name in ("torch", "numpy", "matplotlib", "seaborn", "ipywidgets", "papermill", "jupytext"):
        assert name in deps, name
    assert "nbval" in test


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci

"""The failure explorer of a finished run, as a web page: ``python -m reasonlib explore``.

It works from what the run left and trains nothing: the explorer records notebook 07 saved
(``seed-<s>/07_failure_analysis/explorer.json.gz``: every problem's greedy answer, class,
samples and held-out label, per checkpoint) and, for the per-token probabilities, the four
models from the artifact cache, loaded only if they are there (keyed by the run's parameters
and the current code; a model trained by other code is reported missing, not retrained).

:func:`serve` writes a two-cell notebook that calls :func:`app` and serves it with Voilà on
localhost (the kernel holds the models; the page shows only the widget, not the code).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

from ..train import artifacts, params

RECORDS = "explorer.json.gz"
NOTEBOOK = "07_failure_analysis"
CHECKPOINTS = ("SFT control", "SFT+RL control", "SFT targeted", "SFT+RL targeted")


class ExploreError(ValueError):
    """No run to explore (or an unusable one); the message says which command makes one."""


def save_records(path, records: list[dict]) -> Path:
    """07's explorer records, gzipped JSON (the explorer's whole input but the models)."""
    return artifacts.write_bytes(path, gzip.compress(json.dumps(records).encode(), mtime=0))


def load_records(path) -> list[dict]:
    return json.loads(gzip.decompress(Path(path).read_bytes()))


def locate(run_root, seed: int | None = None) -> tuple[Path, dict]:
    """The seed folder to explore (the lowest seed with 07's records unless ``seed``) and 07's
    metrics; ExploreError naming the command that makes them when there is none."""
    root = Path(run_root)
    make = ("make run (or: python -m reasonlib run --profile quick --seeds 0), which writes "
            "runs/quick")
    if not root.is_dir():
        raise ExploreError(f"no run at {root}: run {make}")
    seeds = sorted((p for p in root.glob("seed-*") if (p / NOTEBOOK / RECORDS).is_file()),
                   key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 10**9)
    if seed is not None:
        seeds = [p for p in seeds if p.name == f"seed-{seed}"]
    if not seeds:
        what = f"seed {seed} of {root}" if seed is not None else str(root)
        raise ExploreError(f"{what} holds no failure analysis ({NOTEBOOK}/{RECORDS}): run {make}")
    m = json.loads((seeds[0] / NOTEBOOK / "metrics.json").read_text())
    return seeds[0], m


def load_models(p: dict, artifacts_root) -> tuple[dict, list[str]]:
    """07's four checkpoints from the artifact cache, and a note per one that is missing."""
    from ..train import rl, sft

    P = types.SimpleNamespace(**{**params.DEFAULTS, **p})
    models, notes = {}, []
    for c in P.curricula:
        cfg = sft.config_from_params(P, c)
        s = sft.load_cached(cfg, artifacts_root)
        if s is None:
            notes.append(f"SFT {c}: no model at {artifacts.shown(sft.artifact_dir_for(cfg, artifacts_root))}")
            continue
        models[f"SFT {c}"] = s.model
        r = rl.load_cached(rl.config_from_params(P, cfg), s.model, artifacts_root)
        if r is None:
            notes.append(f"SFT+RL {c}: no model in {artifacts.shown(artifacts_root)}")
        else:
            models[f"SFT+RL {c}"] = r.model
    return models, notes


def rerun_command(profile: str | None, seed: int, rec: dict) -> str:
    """The papermill line that reruns the failure analysis holding ``rec``."""
    f = f" -f ../params/{profile}.yaml" if profile and (params.PROFILES_DIR / f"{profile}.yaml").is_file() else ""
    return (f"cd notebooks && papermill {NOTEBOOK}.ipynb /tmp/07_seed{seed}.ipynb{f} -p seed {seed}"
            f"  # {rec['checkpoint']}, {rec['bucket']}: {rec['a']}+{rec['b']}")


def app(run_root, seed: int | None = None, artifacts_root=None, fault: str | None = None):
    """The explorer widget of a run (what the served notebook displays). ``fault`` breaks it
    on purpose for the browser test's own tests: ``callback`` makes a callback raise,
    ``layout`` leaves the slider out of the page."""
    from IPython.display import HTML, display

    from .explorer import Explorer

    seed_dir, m = locate(run_root, seed)
    root = Path(run_root)
    arts = Path(artifacts_root) if artifacts_root else root.parent / "artifacts"
    models, notes = load_models(m["params"], arts)
    s = m.get("seed", 0)
    ex = Explorer(load_records(seed_dir / NOTEBOOK / RECORDS), models, fmt=m["params"].get("fmt"),
                  command=lambda rec: rerun_command(root.name, s, rec))
    if fault == "callback":
        def broken(change=None):
            raise RuntimeError("a deliberately broken callback")
        ex.index.observe(ex._guarded(broken), names="value")
    elif fault == "layout":
        ex.widget.children = tuple(w for w in ex.widget.children if w is not ex.index)
    display(HTML(f"<h3>Failure explorer: {root.name}, {seed_dir.name}</h3><p>"
                 f"{len(ex.records):,} answers of {len(set(r['checkpoint'] for r in ex.records))} "
                 f"checkpoints; per-token probabilities from {len(models)} models"
                 + ("".join(f"<br><i>{n}</i>" for n in notes)) + "</p>"))
    return ex.widget


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_app_notebook(run_root, seed: int | None, artifacts_root, fault: str | None = None) -> Path:
    """The two-cell notebook Voilà serves, under ``<run_root>/.explore/``."""
    import nbformat
    from nbformat import v4

    folder = Path(run_root) / ".explore"
    folder.mkdir(parents=True, exist_ok=True)
    args = ", ".join(repr(x) for x in (str(Path(run_root).resolve()), seed,
                                       None if artifacts_root is None else str(Path(artifacts_root).resolve()),
                                       fault))
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [v4.new_code_cell(f"from reasonlib.report import serve\nserve.app({args})")]
    path = folder / "explorer.ipynb"
    artifacts.write_bytes(path, nbformat.writes(nb).encode())
    return path


# a Jupyter data folder holding voila/templates/offline (put first on JUPYTER_PATH)
JUPYTER_DATA = Path(__file__).resolve().parents[1] / "share"
# JupyterLab extensions installed beside voila that its page must not load: jupytext's is
# built for a newer JupyterLab than voila's bundle and failed with RUNTIME-012
DENIED_EXTENSIONS = ["jupyterlab-jupytext", "@voila-dashboards/jupyterlab-preview"]


def server_command(notebook: Path, port: int) -> list[str]:
    """Voila on 127.0.0.1 with the offline template (no CDN link) and only the widget manager."""
    voila = shutil.which("voila", path=str(Path(sys.executable).parent)) or "voila"
    return [voila, str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True", "--template=offline",
            *(f"--VoilaConfiguration.extension_denylist={e}" for e in DENIED_EXTENSIONS)]


def server_env() -> dict:
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(JUPYTER_DATA), env.get("JUPYTER_PATH")) if p)
    return env


def serve(run_root, seed: int | None = None, port: int | None = None, artifacts_root=None,
          fault: str | None = None, log=None) -> tuple[subprocess.Popen, str]:
    """Start Voilà on localhost for the run's explorer; returns the process and the URL.
    ``log``: a file for the server's output (default: this terminal)."""
    locate(run_root, seed)                       # fail before starting anything
    nb = write_app_notebook(run_root, seed, artifacts_root, fault)
    port = port or free_port()
    out = None if log is None else open(log, "w")
    proc = subprocess.Popen(server_command(nb, port), stdout=out, stderr=subprocess.STDOUT if out else None,
                            env=server_env())
    return proc, f"http://127.0.0.1:{port}/"

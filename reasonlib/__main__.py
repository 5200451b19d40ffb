"""Command line: ``python -m reasonlib run --profile quick --seed 0``.

Runs the numbered notebooks in order through papermill for one profile and seed, writing
executed copies and each notebook's outputs under ``runs/<profile>/seed-<seed>/``.
Parameters are validated before anything runs; bad input exits with status 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import params
from .artifacts import repo_root

NOTEBOOKS_DIR = repo_root() / "notebooks"


def notebooks() -> dict[str, Path]:
    return {p.name[:2]: p for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m reasonlib", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks for one profile and seed")
    r.add_argument("--profile", default="quick",
                   help="profile name in params/ (smoke, quick, paper) or a YAML path")
    r.add_argument("--seed", type=int, default=0, help="training seed (integer >= 0)")
    r.add_argument("--notebooks", nargs="+", default=None, metavar="NN",
                   help="notebook numbers to run, in order (default: all)")
    r.add_argument("--out", default="runs", help="root folder of run outputs")
    r.add_argument("--artifacts", default=None,
                   help="artifact cache (default: <out>/artifacts), shared by seeds and notebooks")
    sub.add_parser("refresh", help="sync jupytext pairs and re-execute the committed notebooks "
                                   "in place with their default (smoke) parameters")
    return ap


def refresh() -> int:
    """Make notebooks/NN_name.ipynb the executed form of NN_name.py (what nbval checks)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    for py in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(py)
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                               "language": "python"})
        t = time.time()
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
        from .artifacts import write_bytes
        write_bytes(py.with_suffix(".ipynb"), nbformat.writes(nb).encode())
        print(f"{py.with_suffix('.ipynb').name}: executed in {time.time() - t:.0f} s", flush=True)
    return 0


class UsageError(Exception):
    pass


def plan(args) -> list[tuple[Path, Path, dict]]:
    """Validate everything and return (notebook, executed copy, parameters) jobs."""
    prof = params.load_profile(args.profile)
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: must be an integer >= 0")
    have = notebooks()
    wanted = args.notebooks or list(have)
    bad = [n for n in wanted if n not in have]
    if bad:
        raise UsageError(f"--notebooks {' '.join(bad)}: unknown; allowed: {' '.join(have)}")
    name = Path(args.profile).stem
    out = Path(args.out)
    run_dir = out / name / f"seed-{args.seed}"
    arts = Path(args.artifacts) if args.artifacts else out / "artifacts"
    p = dict(prof, seed=args.seed, run_dir=str(run_dir.resolve()),
             artifacts_dir=str(arts.resolve()))
    params.validate(p)
    return [(have[n], run_dir / have[n].name, p) for n in wanted]


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.cmd == "refresh":
        return refresh()
    try:
        jobs = plan(args)
    except (params.ParamError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import papermill as pm

    for nb, out, p in jobs:
        out.parent.mkdir(parents=True, exist_ok=True)
        t = time.time()
        print(f"[{nb.stem}] profile={Path(args.profile).stem} seed={p['seed']} -> {out}", flush=True)
        declared = pm.inspect_notebook(str(nb))  # pass only what the notebook declares
        nb_params = {k: v for k, v in p.items() if k in declared}
        try:
            pm.execute_notebook(str(nb), str(out), parameters=nb_params, cwd=str(NOTEBOOKS_DIR),
                                kernel_name="python3", progress_bar=False)
        except pm.PapermillExecutionError as e:
            print(f"[{nb.stem}] FAILED in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                  f"  executed copy with the traceback: {out}", file=sys.stderr)
            return 1
        print(f"[{nb.stem}] done in {time.time() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

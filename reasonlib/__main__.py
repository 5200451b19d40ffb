"""Command line: ``python -m reasonlib run|report|explore|refresh``.

``run`` executes the numbered notebooks in order through papermill for one profile and one
or more seeds (seeds in parallel on a Dask cluster), writing executed copies and each
notebook's outputs under ``<out>/<profile>/seed-<seed>/``, then the cross-seed summary
notebook (09) once under ``<out>/<profile>/``. Finished notebooks are skipped on a rerun.
``report`` builds the report of a profile folder. ``explore`` serves the failure explorer
of a finished run on localhost. Parameters are validated before anything
runs.

Exit status: 0 success; 1 a notebook failed; 2 bad input (nothing ran); 3 the output
folder is locked by another run; 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .train import params
from .study.runner import NOTEBOOKS_DIR, UsageError, discover


def notebooks() -> dict[str, Path]:
    return discover(NOTEBOOKS_DIR)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block, no traceback): exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m reasonlib", description=__doc__,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="execute the notebooks for one profile and one or more seeds",
                       epilog="exit status: 0 done; 1 a notebook failed; 2 bad input (nothing "
                              "ran); 3 the profile folder is locked by another run; 130 "
                              "interrupted")
    r.add_argument("--profile", default="quick",
                   help="profile name in params/ (smoke, quick, paper) or a YAML path")
    seeds = r.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", nargs="*", default=None, metavar="S",
                       help="training seeds (distinct integers >= 0, or ranges A-B such as "
                            "0-4), run in parallel; default: the profile's planned seeds "
                            "(paper: 0-9; smoke, quick and a YAML path: 0)")
    seeds.add_argument("--seed", type=int, default=None,
                       help="one training seed (shorthand for --seeds S)")
    r.add_argument("--workers", type=int, default=1,
                   help="Dask worker processes on this machine (default 1; at most one per "
                        "seed is started); each notebook gets cpus // workers torch threads")
    r.add_argument("--threads", type=int, default=None,
                   help="torch threads per notebook kernel (default cpus // workers); results "
                        "depend on it, so pin it to reproduce a run made with other --workers")
    r.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786 (from "
                        "dask-jobqueue's SLURMCluster); --workers is then ignored")
    r.add_argument("--notebooks", nargs="+", default=None, metavar="NN",
                   help="notebook numbers to run, run in number order (default: all; 09, the "
                        "cross-seed summary, runs once per profile after the seeds)")
    r.add_argument("--out", default="runs", help="root folder of run outputs (default runs)")
    r.add_argument("--artifacts", default=None,
                   help="artifact cache (default: <out>/artifacts), shared by seeds and "
                        "notebooks; must be visible to every worker")
    r.add_argument("--force", action="store_true",
                   help="rerun notebooks even when their done-marker says they are up to date")
    r.add_argument("--notebooks-dir", default=None, help=argparse.SUPPRESS)  # tests
    rep = sub.add_parser("report", help="build the report of a profile folder (runs/<profile>)")
    rep.add_argument("profile_root", help="a profile folder written by `run`, e.g. runs/quick")
    rep.add_argument("--out", default=None, help="report folder (default: chosen by the report)")
    rep.add_argument("--publish", action="store_true",
                     help="first rewrite the executed notebooks so that each figure they saved as "
                          "a PNG is referenced, not embedded a second time (for reports/, not runs/)")
    ex = sub.add_parser("explore", help="serve the failure explorer of a finished run on localhost "
                                        "(trains nothing)")
    ex.add_argument("run_root", nargs="?", default="runs/quick",
                    help="a profile folder written by `run` (default runs/quick, what `make run` writes)")
    ex.add_argument("--seed", type=int, default=None, help="which seed (default: the lowest with 07's records)")
    ex.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    ex.add_argument("--artifacts", default=None,
                    help="the artifact cache the run used (default: <run_root>/../artifacts)")
    sub.add_parser("refresh", help="sync jupytext pairs and re-execute the committed notebooks "
                                   "in place with their default (smoke) parameters")
    return ap


def refresh() -> int:
    """Make notebooks/NN_name.ipynb the executed form of NN_name.py (what nbval checks)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    from .train.artifacts import resolve, write_bytes
    from .core.runtime import NOTEBOOK_THREADS

    # the defaults write every run folder and trained model under runs/notebooks: start it
    # empty, so the committed outputs come from models trained now, as in a clean clone
    # (a model cached by older code or another thread count would print other numbers)
    os.environ["REASONLIB_THREADS"] = str(NOTEBOOK_THREADS)  # inherited by the kernels
    base = resolve(params.DEFAULTS["run_root"])
    shutil.rmtree(base, ignore_errors=True)
    print(f"emptied {base}", flush=True)
    for py in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(py)
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                               "language": "python"})
        t = time.time()
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
        write_bytes(py.with_suffix(".ipynb"), nbformat.writes(nb).encode())
        print(f"{py.with_suffix('.ipynb').name}: executed in {time.time() - t:.0f} s", flush=True)
    return 0


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.cmd == "refresh":
        return refresh()
    if args.cmd == "report":
        return report(args)
    if args.cmd == "explore":
        return explore(args)
    from .study import runner

    try:
        sweep = runner.plan(args)
    except (params.ParamError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return runner.EXIT_USAGE
    return runner.execute(sweep)


def explore(args) -> int:
    from .report import serve as ex

    try:
        proc, url = ex.serve(args.run_root, args.seed, args.port, args.artifacts)
    except ex.ExploreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"the failure explorer of {args.run_root} is at {url} (Ctrl-C stops the server)", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
        print("server stopped")
        return 0


def report(args) -> int:
    from .report import site as rep

    try:
        index = rep.build(Path(args.profile_root), Path(args.out) if args.out else None,
                          publish=args.publish)
    except rep.ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())

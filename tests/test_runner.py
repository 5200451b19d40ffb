"""The multi-seed runner (``python -m reasonlib run``): seeds in parallel on a Dask
LocalCluster, failures reported and contained to their seed, done work skipped on a rerun,
the cross-seed summary run once per profile, and one writer per output folder.

Everything writes under pytest's tmp_path. Besides one end-to-end run of real notebooks,
the tests use tiny fixture notebooks (no torch) in a temporary notebooks folder
(the hidden ``--notebooks-dir`` option)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from reasonlib.study import runner
from reasonlib.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
CODE_HASH = runner.code_hash  # before any test replaces it


def _notebook(path: Path, params_src: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


_WRITE = """\
import json, os, pathlib, time
out = pathlib.Path(run_dir) / "{name}"
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({{
    "seed": seed, "n_layer": {n_layer}, "pid": os.getpid(), "time": time.time(),
    "threads": os.environ.get("REASONLIB_THREADS"), "omp": os.environ.get("OMP_NUM_THREADS"),
    "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}}))
"""


def _fixture_notebooks(d: Path) -> Path:
    """01 fails for seed 1 (in its third cell), 02 runs after it, 09 summarises run_root."""
    d.mkdir(parents=True, exist_ok=True)
    _notebook(d / "01_first.ipynb", 'seed = 0\nrun_dir = "x"\nn_layer = 2',
              _WRITE.format(name="01_first", n_layer="n_layer"),
              'if seed == 1:\n    raise RuntimeError(f"boom for seed {seed}")')
    _notebook(d / "02_second.ipynb", 'seed = 0\nrun_dir = "x"',
              _WRITE.format(name="02_second", n_layer="None"))
    _notebook(d / "09_summary.ipynb", 'run_root = "x"',
              "import json, os, pathlib\n"
              "root = pathlib.Path(run_root)\n"
              "(root / 'summary').mkdir(exist_ok=True)\n"
              "(root / 'summary' / 'seen.json').write_text(json.dumps(sorted(\n"
              "    p.parent.parent.name for p in root.glob('seed-*/*/metrics.json'))))")
    return d


@pytest.fixture
def nbdir(tmp_path):
    return _fixture_notebooks(tmp_path / "nbs")


def _run(argv, nbdir=None, profile="smoke") -> tuple[int, str, str]:
    """``python -m reasonlib run --profile smoke ARGV`` in process: (status, stdout, stderr)."""
    extra = ["--notebooks-dir", str(nbdir)] if nbdir else []
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["run", "--profile", profile] + argv + extra)
    return rc, out.getvalue(), err.getvalue()


def _table(out: str) -> dict:
    """The end-of-run table: seed -> [seed, ran, reused, skipped, failed, result...]."""
    return {r.split()[0]: r.split() for r in out.splitlines() if r[:1].isdigit()}


def _mtimes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def test_real_notebooks_two_seeds_on_two_workers(tmp_path):
    """The study end to end: the smoke profile, every notebook for seeds 0 and 1 in parallel
    on a 2-worker LocalCluster, then the cross-seed summary (09) once: executed copies,
    metrics, markers, and a summary table holding both seeds."""
    have = runner.discover()
    env_before = dict(os.environ)
    rc, out, err = _run(["--seeds", "0", "1", "--workers", "2",
                         "--out", str(tmp_path / "runs"), "--artifacts", str(tmp_path / "arts")])
    assert rc == 0, (out + err)[-3000:]
    # distributed must not leave OMP_NUM_THREADS=1 behind for kernels started later here
    assert dict(os.environ) == env_before
    root = tmp_path / "runs" / "smoke"
    for n, nb in have.items():
        if n == runner.SUMMARY:
            continue
        for s in (0, 1):
            assert (root / f"seed-{s}" / nb.name).is_file()
            assert json.loads((root / f"seed-{s}" / nb.stem / "metrics.json").read_text())
            marker = json.loads((root / f"seed-{s}" / ".done" / f"{nb.stem}.json").read_text())
            assert marker["params"]["seed"] == s and marker["threads"] == runner.threads_for(2)
    assert runner.SUMMARY in have, "the cross-seed summary notebook is missing"
    assert (root / have[runner.SUMMARY].name).is_file()
    assert not list(root.glob(f"seed-*/{have[runner.SUMMARY].name}")), "09 must not run per seed"
    summary = json.loads((root / "summary" / "metrics.json").read_text())
    assert summary["seeds"] == ["seed-0", "seed-1"] and summary["n_seeds"] == 2
    assert all(len(m["per_seed"]) == 2 for m in summary["measures"] if m["n"])
    # a finding that declares why its records can be undefined (3b: no RL start of a smoke
    # model in the headroom band) may count fewer seeds; every other counts both
    from reasonlib.report import findings
    undefined = {f.id for f in findings.FINDINGS if f.undefined}
    assert all((f["n"] == 2 and "interval over 2 seeds" in f["interval"])
               or (f["id"] in undefined and f["n"] < 2)
               for f in summary["findings"] if f["kind"] != "share")
    assert not (root / ".lock").exists()
    assert "2 local workers" in err and "100%" in err  # the progress bar finished
    assert not list(root.rglob(".*.partial.ipynb")), "a partial executed notebook was left"


def test_threads_follow_workers_not_seed_count(tmp_path):
    """One seed rerun with the sweep's --workers gets the sweep's thread count (numbers
    depend on it); --threads pins it."""
    base = ["--notebooks", "01", "--out", str(tmp_path / "runs"), "--artifacts", str(tmp_path / "a")]
    rc, out, err = _run(["--seeds", "0", "--workers", "2", *base])
    assert rc == 0, (out + err)[-3000:]
    m = json.loads((tmp_path / "runs" / "smoke" / "seed-0" / ".done" / "01_tokenizer_model.json").read_text())
    assert m["threads"] == runner.threads_for(2)
    rc, out, err = _run(["--seeds", "1", "--workers", "1", "--threads", "1", *base])
    assert rc == 0, (out + err)[-3000:]
    m = json.loads((tmp_path / "runs" / "smoke" / "seed-1" / ".done" / "01_tokenizer_model.json").read_text())
    assert m["threads"] == 1 and "x 1 torch threads" in err


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory):
    """Fixture notebooks 01 02 09 for seeds 0 and 1 on 2 workers: seed 1 fails in 01.
    The library's code hash is frozen: edits elsewhere must not invalidate markers here."""
    mp = pytest.MonkeyPatch()
    mp.setattr(runner, "code_hash", lambda: "frozen")
    base = tmp_path_factory.mktemp("sweep")
    nbs = _fixture_notebooks(base / "nbs")
    argv = ["--seeds", "0", "1", "--workers", "2", "--out", str(base / "runs")]
    rc, out, err = _run(argv, nbs)
    yield dict(rc=rc, out=out, err=err, root=base / "runs" / "smoke", nbs=nbs, argv=argv,
               base=base)
    mp.undo()


def test_failing_notebook_is_reported_and_contained_to_its_seed(failed_sweep):
    rc, root = failed_sweep["rc"], failed_sweep["root"]
    text = failed_sweep["out"] + failed_sweep["err"]
    assert rc == 1
    # seed 1: reported with its notebook, cell, error and executed copy; 02 skipped
    line = next(x for x in text.splitlines() if x.startswith("FAILED seed 1"))
    assert "01_first" in line and "cell [4]" in line and "RuntimeError: boom for seed 1" in line
    assert str(root / "seed-1" / "01_first.ipynb") in text
    assert "skipped seed 1 · 02_second (after 01_first failed)" in text
    assert not (root / "seed-1" / "02_second.ipynb").exists()
    assert not (root / "seed-1" / ".done" / "01_first.json").exists()
    # seed 0 completed, with the thread count for 2 workers passed to its kernels
    m = json.loads((root / "seed-0" / "02_second" / "metrics.json").read_text())
    assert m["threads"] == m["omp"] == str(runner.threads_for(2))
    # the kernel ran on a dask worker (which has distributed's malloc setting) without it
    assert m["malloc_trim"] is None
    assert (root / "seed-0" / ".done" / "02_second.json").is_file()
    # the summary ran once, for the profile, after the chains (it saw seed 0's outputs)
    assert (root / "09_summary.ipynb").is_file() and not list(root.glob("seed-*/09_summary.ipynb"))
    assert "seed-0" in json.loads((root / "summary" / "seen.json").read_text())
    # the table, and the lock released after a failure
    table = _table(failed_sweep["out"])
    assert table["0"][1:5] == ["2", "0", "0", "0"] and table["1"][1:5] == ["0", "0", "1", "1"]
    assert table["09_summary"][1:5] == ["1", "0", "0", "0"]
    assert not (root / ".lock").exists()


def test_rerun_skips_done_work_and_reruns_what_changed(failed_sweep):
    root, nbs, base = failed_sweep["root"], failed_sweep["nbs"], failed_sweep["base"]
    out = ["--out", str(base / "runs")]
    before = _mtimes(root)
    # seed 0 and the summary are up to date: nothing executes (no cluster), nothing is rewritten
    rc, o, _ = _run(["--seeds", "0"] + out, nbs)
    assert rc == 0 and _table(o)["0"][1:5] == ["0", "2", "0", "0"]
    assert _table(o)["09_summary"][1:3] == ["0", "1"]
    assert _mtimes(root) == before
    # a failed notebook has no marker: it runs again (and fails again); with no seed
    # succeeding in this run, the summary is skipped
    rc, o, _ = _run(["--seeds", "1", "--notebooks", "01", "09"] + out, nbs)
    assert rc == 1 and "skipped (every seed failed)" in o
    assert (root / "09_summary.ipynb").stat().st_mtime_ns == before["09_summary.ipynb"]
    # an interrupted sweep (02 never finished: no marker) resumes with 02 only
    (root / "seed-0" / ".done" / "02_second.json").unlink()
    assert _run(["--seeds", "0", "--notebooks", "01", "02"] + out, nbs)[0] == 0
    after = _mtimes(root)
    assert after["seed-0/01_first.ipynb"] == before["seed-0/01_first.ipynb"]
    assert after["seed-0/02_second.ipynb"] != before["seed-0/02_second.ipynb"]
    # a changed parameter that 01 declares reruns it
    prof = base / "smoke.yaml"
    prof.write_text((ROOT / "params" / "smoke.yaml").read_text().replace("n_layer: 2", "n_layer: 3"))
    assert _run(["--seeds", "0", "--notebooks", "01"] + out, nbs, profile=str(prof))[0] == 0
    assert json.loads((root / "seed-0" / "01_first" / "metrics.json").read_text())["n_layer"] == 3
    assert json.loads((root / "seed-0" / ".done" / "01_first.json").read_text())["params"]["n_layer"] == 3
    # planned reuse: up to date -> reused (02 does not declare n_layer); an earlier
    # notebook of the seed that reruns, or --force -> not reused
    plan = _planner(base / "runs", nbs)
    assert [j.reused for j in plan(profile=str(prof), notebooks=["01", "02"]).chains[0]] == [True, True]
    assert [j.reused for j in plan(notebooks=["01", "02"]).chains[0]] == [False, False]
    assert [j.reused for j in plan(profile=str(prof), notebooks=["01"], force=True).chains[0]] == [False]


def _planner(out, nbdir):
    import argparse

    def plan(**kw):
        a = dict(profile="smoke", seeds=[0], seed=None, workers=1, scheduler=None,
                 notebooks=["01"], out=str(out), artifacts=None, force=False,
                 notebooks_dir=str(nbdir))
        a.update(kw)
        return runner.plan(argparse.Namespace(**a))
    return plan


def test_marker_hash_covers_params_notebook_and_library(tmp_path, nbdir, monkeypatch):
    plan = _planner(tmp_path, nbdir)
    j = plan().chains[0][0]
    assert set(j.parts) == {"params", "notebook", "code"}
    assert plan().chains[0][0].hash == j.hash
    assert plan(seeds=[1]).chains[1][0].hash != j.hash
    assert "n_embd" not in j.params and set(j.params) == {"seed", "run_dir", "n_layer"}
    monkeypatch.setattr(runner, "code_hash", lambda: "other library")
    assert plan().chains[0][0].hash != j.hash
    monkeypatch.setattr(runner, "code_hash", CODE_HASH)
    _notebook(nbdir / "01_first.ipynb", 'seed = 0\nrun_dir = "x"\nn_layer = 2', "print(1)")
    assert plan().chains[0][0].hash != j.hash
    assert CODE_HASH() == CODE_HASH() and len(CODE_HASH()) == 64


# ------------------------------------------------------------------------------ the lock

def test_second_run_against_a_held_lock_exits_3(tmp_path, nbdir):
    out = tmp_path / "runs"
    lock = runner.RunLock(out / "smoke" / ".lock").acquire()  # held by this (live) process
    try:
        r = subprocess.run([sys.executable, "-m", "reasonlib", "run", "--profile", "smoke",
                            "--seeds", "0", "--out", str(out), "--notebooks-dir", str(nbdir)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 3, r.stderr
        assert f"pid {os.getpid()}" in r.stderr and str(out / "smoke" / ".lock") in r.stderr
        assert not (out / "smoke" / "seed-0").exists(), "nothing may run without the lock"
    finally:
        lock.release()
    assert not (out / "smoke" / ".lock").exists()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, nbdir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "smoke" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "x"}))
    rc, _, err = _run(["--seeds", "0", "--notebooks", "02", "--out", str(tmp_path)], nbdir)
    assert rc == 0
    assert f"taking over stale lock {lock} (pid {dead.pid}" in err
    assert not lock.exists()
    assert (tmp_path / "smoke" / "seed-0" / ".done" / "02_second.json").is_file()


def test_lock_of_another_host_or_unreadable_is_not_taken(tmp_path):
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": 999999999, "host": "elsewhere", "started": "x"}))
    with pytest.raises(runner.LockHeld, match="pid 999999999 on elsewhere"):
        runner.RunLock(path).acquire()
    path.write_text("")
    with pytest.raises(runner.LockHeld, match="unreadable"):
        runner.RunLock(path).acquire()


def test_lock_released_on_keyboard_interrupt(tmp_path):
    path = tmp_path / ".lock"
    with pytest.raises(KeyboardInterrupt):
        with runner.RunLock(path):
            assert json.loads(path.read_text())["pid"] == os.getpid()
            raise KeyboardInterrupt
    assert not path.exists()


def test_threads_never_oversubscribe():
    assert runner.threads_for(1, cpus=2) == 2
    assert runner.threads_for(2, cpus=2) == 1
    assert runner.threads_for(3, cpus=2) == 1
    assert runner.threads_for(4, cpus=16) == 4


# ------------------------------------------------------------------------- a killed sweep

def _kill_fixture_notebooks(d: Path, hold: Path, pidfile: Path) -> Path:
    """01 and 03 quick; 02 records its kernel's pid in ``pidfile``, then waits while ``hold``
    exists (at most 30 s) before writing its metrics: a rerun without ``hold`` is quick."""
    d.mkdir(parents=True, exist_ok=True)
    _notebook(d / "01_quick.ipynb", 'seed = 0\nrun_dir = "x"', _WRITE.format(name="01_quick", n_layer="None"))
    _notebook(d / "02_slow.ipynb", 'seed = 0\nrun_dir = "x"',
              "import os, pathlib, time\n"
              f"pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid()))\n"
              "t0 = time.time()\n"
              f"while pathlib.Path({str(hold)!r}).exists() and time.time() < t0 + 30:\n"
              "    time.sleep(0.05)",
              _WRITE.format(name="02_slow", n_layer="None"))
    _notebook(d / "03_quick.ipynb", 'seed = 0\nrun_dir = "x"', _WRITE.format(name="03_quick", n_layer="None"))
    return d


def _wait_for(cond, timeout: float, what: str, proc=None, log=None) -> None:
    import time

    end = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}:\n"
                        + (log.read_text()[-3000:] if log else ""))
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_sigkilled_sweep_resumes_without_redoing_finished_notebooks(tmp_path):
    """SIGKILL of the whole run (its process group) while 02 executes: 01 keeps its executed
    copy and marker, 02 has no executed copy (only a hidden partial), the lock is left
    stale and no cluster or kernel process outlives the run. The same command then takes
    over the lock with a warning, reuses 01 untouched and runs 02 and 03."""
    import signal
    import time

    psutil = pytest.importorskip("psutil")
    hold, pidfile = tmp_path / "hold", tmp_path / "02.pid"
    hold.touch()
    nbs = _kill_fixture_notebooks(tmp_path / "nbs", hold, pidfile)
    out = tmp_path / "runs"
    root, run = out / "smoke", out / "smoke" / "seed-0"
    cmd = [sys.executable, "-m", "reasonlib", "run", "--profile", "smoke", "--seeds", "0",
           "--workers", "1", "--out", str(out), "--notebooks-dir", str(nbs)]
    log = tmp_path / "killed.log"
    with open(log, "w") as f:
        cli = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        _wait_for((run / ".done" / "01_quick.json").is_file, 60, "01's done-marker", cli, log)
        _wait_for(lambda: pidfile.is_file() and pidfile.read_text().strip(), 60,
                  "02's kernel to start", cli, log)
        kernel = psutil.Process(int(pidfile.read_text()))
        family = psutil.Process(cli.pid).children(recursive=True)
        assert kernel in family
        # what a killed kernel leaves in the temp folder: its connection file and IPC sockets
        conn = Path(kernel.cmdline()[kernel.cmdline().index("-f") + 1])
        ipc = Path(json.loads(conn.read_text())["ip"])
        litter = [conn, *ipc.parent.glob(ipc.name + "-*")]
        os.killpg(cli.pid, signal.SIGKILL)
        assert cli.wait(timeout=10) == -signal.SIGKILL
    finally:
        if cli.poll() is None:  # never leave the run behind
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()

    def alive(p) -> bool:  # a zombie waiting for its new parent to reap it is dead
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def survivors() -> list:
        found = []
        for p in set(family) | set(psutil.process_iter()):
            try:
                if alive(p) and (p in family or os.getpgid(p.pid) == cli.pid):
                    found.append(f"{p.pid} {' '.join(p.cmdline())[:200]}")
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        return found

    # nothing of the killed run survives: the Dask nanny and worker share its process
    # group; the kernel has a session of its own and exits when it sees its parent gone
    deadline = time.monotonic() + 10
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = survivors()
    for f in litter:  # the killed run could not clean up after its kernel
        f.unlink(missing_ok=True)
    assert not left, f"processes of the killed run outlived it by 10 s: {left}"

    # the state the kill left: 01 finished, 02 never produced an executed copy, stale lock
    assert (run / "01_quick.ipynb").is_file() and (run / ".done" / "01_quick.json").is_file()
    assert not (run / "02_slow.ipynb").exists(), "a half-executed 02 landed at its output"
    assert not (run / ".done" / "02_slow.json").exists()
    assert not (run / "03_quick.ipynb").exists()
    assert json.loads((root / ".lock").read_text())["pid"] == cli.pid
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes())
            for p in (run / "01_quick.ipynb", run / ".done" / "01_quick.json")}

    # the same command again, to completion
    hold.unlink()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    text = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, text
    assert f"taking over stale lock {root / '.lock'} (pid {cli.pid}" in r.stderr, text
    assert _table(r.stdout)["0"][1:5] == ["2", "1", "0", "0"], text  # ran 2, reused 1
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in kept} == kept, "01 was redone"
    for n in ("01_quick", "02_slow", "03_quick"):
        assert (run / f"{n}.ipynb").is_file() and (run / ".done" / f"{n}.json").is_file(), n
        assert json.loads((run / n / "metrics.json").read_text())["seed"] == 0
    assert not (root / ".lock").exists()
    # the killed run's hidden partial is removed when 02 runs again
    assert not list(run.glob(".*.partial.ipynb"))


def test_kernel_env_drops_the_worker_malloc_setting_and_pins_threads():
    base = {"PATH": "/bin", "MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    env = runner.kernel_env(base, 3)
    assert "MALLOC_TRIM_THRESHOLD_" not in env and env["PATH"] == "/bin"
    assert all(env[k] == "3" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                       "OPENBLAS_NUM_THREADS", "REASONLIB_THREADS"))
    assert base["MALLOC_TRIM_THRESHOLD_"] == "65536"       # the worker's own env is untouched


def test_job_priority_runs_earlier_notebooks_first_whichever_seed():
    """Dask runs higher priorities first: every seed's 03 outranks any seed's 05."""
    def job(seed, name):
        return runner.Job(seed, name, "", "", "", {}, "")
    assert job(4, "03_sft").priority > job(0, "05_kl_rl").priority
    assert job(0, "03_sft").priority == job(4, "03_sft").priority
    assert [j.priority for j in map(lambda n: job(0, n), ["01_a", "02_b", "09_summary"])] == [-1, -2, -9]

"""The study as one command: every selected notebook, for every seed, on a Dask cluster.

``python -m reasonlib run --profile quick --seeds 0 1 2 --workers 2`` plans one chain of
notebook jobs per seed (the numbered notebooks in order, each through papermill), runs the
chains in parallel on a Dask ``LocalCluster`` (or the cluster behind ``--scheduler``), then
runs the cross-seed summary notebook (``09``) once for the profile.

* Layout: ``<out>/<profile>/seed-<s>/NN_name.ipynb`` (executed copies; each notebook writes
  ``seed-<s>/NN_name/metrics.json`` itself), ``<out>/<profile>/09_summary.ipynb``.
* Failures: a failing notebook is reported with its seed, name, cell and error and the path
  of its executed copy; the later notebooks of that seed are skipped, other seeds go on.
* Done work is skipped: after a notebook succeeds, ``<run>/.done/NN_name.json`` records a
  hash of the parameters it got, of its code cells and of the reasonlib sources. A rerun
  reuses a notebook whose marker matches and whose executed copy exists (and whose earlier
  notebooks in the seed were reused too); ``--force`` reruns everything.
* One writer: ``<out>/<profile>/.lock`` (pid and host of the holder) keeps a second run out
  of the same folder; a lock left by a dead process on this host is taken over.
* Threads: each notebook kernel gets ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` /
  ``REASONLIB_THREADS`` = max(1, cpus // workers on its host), so workers never
  oversubscribe the cores.

Exit status: 0 all done, 1 a notebook failed, 2 bad input (nothing ran), 3 the output folder
is locked by another run, 130 interrupted.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

# no torch here: this module is imported by every Dask worker (params and artifacts are
# imported where they are needed)
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SUMMARY = "09"  # the cross-seed notebook: once per profile, after the seed chains
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# what a Dask scheduler address looks like: protocol://host[:port]
_SCHEDULER_RE = re.compile(r"^(tcp|tls|ucx|ws|wss)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?/?$")
# sources that do not change what a notebook computes (the runner itself)
_NOT_CODE = {"__main__.py", "runner.py"}


class UsageError(Exception):
    """Bad command-line input (exit status 2, before any compute)."""


class LockHeld(Exception):
    """Another live run holds the output folder (exit status 3)."""


def discover(nb_dir: Path = NOTEBOOKS_DIR) -> dict[str, Path]:
    """``{"01": notebooks/01_name.ipynb, ...}`` in number order."""
    return {p.name[:2]: p for p in sorted(Path(nb_dir).glob("[0-9][0-9]_*.ipynb"))}


# --------------------------------------------------------------------------- planning

def notebook_priority(name: str) -> int:
    """Dask priority (higher first) of notebook ``NN_name``: earlier notebooks before later
    ones, whichever seed. Without it Dask runs four seeds' chains side by side and the fifth
    alone at the end, one worker idle for a whole chain; with it the last seed's long
    notebooks start while the others' later ones run (``benchmarks/bench_schedule.py``).
    Order only: no notebook's numbers depend on it."""
    return -int(name[:2])


@dataclass
class Job:
    """One notebook execution (picklable: it travels to a Dask worker)."""
    seed: int | None  # None: the per-profile summary notebook
    name: str  # "03_sft"
    source: str  # the notebook to execute
    output: str  # its executed copy
    cwd: str  # kernel working directory (the notebooks folder)
    params: dict  # only what the notebook declares
    marker: str  # done-marker path
    hash: str = ""
    parts: dict = field(default_factory=dict)
    reused: bool = False

    @property
    def priority(self) -> int:
        return notebook_priority(self.name)

    @property
    def label(self) -> str:
        return f"seed {self.seed} · {self.name}" if self.seed is not None else f"summary · {self.name}"


@dataclass
class Sweep:
    profile: str
    root: Path  # <out>/<profile>
    seeds: list[int]
    chains: dict[int, list[Job]]
    summary: Job | None
    workers: int
    scheduler: str | None
    force: bool
    artifacts: Path
    nb_dir: Path
    code_hash: str
    threads: int | None = None  # torch threads per notebook kernel (None: cpus // workers)


def _digest(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def code_hash() -> str:
    """Digest of the library's code: ``artifacts.code_digest`` (syntax trees without
    docstrings, the one code-hash system) of every module but the runner's own files."""
    from ..train import artifacts  # imports torch: not at the top (see above)
    return _digest(artifacts.code_digest(artifacts.package_modules(exclude=_NOT_CODE)))


def notebook_hash(path: Path) -> str:
    """Digest of a notebook's code cells (outputs and markdown do not count)."""
    nb = json.loads(Path(path).read_text())
    cells = [c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return _digest(["".join(s) if isinstance(s, list) else s for s in cells])


def parse_seeds(tokens) -> list[int]:
    """``--seeds`` tokens -> seeds: integers >= 0 and inclusive ranges ``A-B`` (``0-4``)."""
    shown = " ".join(map(str, tokens))
    out = []
    for t in map(str, tokens):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", t.strip())
        if m is None:
            neg = re.fullmatch(r"-\d+", t.strip())
            raise UsageError(f"--seeds {shown}: " + (f"seed {t} is negative; seeds must be "
                             "integers >= 0" if neg else f"{t!r} is not a seed; give integers "
                             ">= 0 or ranges A-B with A <= B (e.g. --seeds 0 1 2 or --seeds 0-4)"))
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise UsageError(f"--seeds {shown}: range {t} runs backwards; write it low-high "
                             f"({b}-{a})")
        out += range(a, b + 1)
    return out


# the seeds a profile's study is planned for (what the power test of every finding's rule
# assumes, tests/test_findings.py); `--seeds` or `--seed` overrides
PLANNED_SEEDS = {"smoke": [0], "quick": [0], "paper": list(range(10))}


def planned_seeds(profile) -> list[int]:
    """The seeds ``profile`` (a name, or a YAML path named after one) is planned for; [0]
    for any other."""
    return list(PLANNED_SEEDS.get(Path(str(profile)).stem, [0]))


def _seed_list(args) -> list[int]:
    if getattr(args, "seeds", None) is not None:
        if not args.seeds:
            raise UsageError("--seeds: empty seed list; give one or more integers >= 0 "
                             "(e.g. --seeds 0 1 2 or --seeds 0-4)")
        seeds = parse_seeds(args.seeds)
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            raise UsageError(f"--seeds {' '.join(map(str, args.seeds))}: duplicate seed "
                             f"{', '.join(map(str, dup))}; give each seed once")
        return list(seeds)
    if getattr(args, "seed", None) is None:
        return planned_seeds(getattr(args, "profile", "quick"))
    seed = args.seed
    if seed < 0:
        raise UsageError(f"--seed {seed}: must be an integer >= 0")
    return [seed]


def _tracked_under(path: Path) -> list[str]:
    """Files git tracks at or under ``path`` in this checkout, outside ``reports/`` (where
    ``make paper`` publishes on purpose); empty outside the repository or without git."""
    repo = NOTEBOOKS_DIR.parent.resolve()
    path = path.resolve()
    if not path.is_relative_to(repo) or path.is_relative_to(repo / "reports"):
        return []
    try:
        r = subprocess.run(["git", "-C", str(repo), "ls-files", "--", str(path)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return r.stdout.split() if r.returncode == 0 else []


def _check_output_folder(flag: str, path: Path) -> None:
    tracked = _tracked_under(path)
    if tracked:
        raise UsageError(f"{flag} {path}: holds files of the repository ({tracked[0]}, ...); "
                         "a run would write among them: use runs/ (the default) or a folder "
                         "outside the checkout")


def _selected(wanted, have: dict[str, Path]) -> list[str]:
    if wanted is None:
        return list(have)
    norm = []
    for n in wanted:
        k = n.zfill(2) if n.isdigit() else n
        if k not in have:
            raise UsageError(f"--notebooks {' '.join(wanted)}: unknown notebook {n!r}; "
                             f"allowed: {' '.join(have)}")
        if k not in norm:
            norm.append(k)
    return sorted(norm)


def read_json(path):
    return json.loads(Path(path).read_text())


def _marker_ok(job: Job) -> bool:
    try:
        m = read_json(job.marker)
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("hash") == job.hash and Path(job.output).is_file()


def plan(args) -> Sweep:
    """Validate every input and build the jobs; raises UsageError / params.ParamError.
    Writes nothing."""
    from ..train import params

    seeds = _seed_list(args)
    workers = getattr(args, "workers", 1)
    if workers is None or workers < 1:
        raise UsageError(f"--workers {workers}: must be an integer >= 1")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: must be an integer >= 1")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and not _SCHEDULER_RE.match(scheduler):
        raise UsageError(f"--scheduler {scheduler!r}: not a scheduler address; expected "
                         "protocol://host:port with protocol tcp, tls, ucx, ws or wss "
                         "(e.g. tcp://10.0.0.5:8786)")
    nb_dir = Path(getattr(args, "notebooks_dir", None) or NOTEBOOKS_DIR).resolve()
    if not nb_dir.is_dir():
        raise UsageError(f"--notebooks-dir {str(nb_dir)!r}: not a folder")
    prof = params.load_profile(args.profile)
    have = discover(nb_dir)
    wanted = _selected(getattr(args, "notebooks", None), have)

    import papermill as pm

    name = Path(args.profile).stem
    root = Path(args.out).resolve() / name
    arts = Path(args.artifacts).resolve() if getattr(args, "artifacts", None) else \
        Path(args.out).resolve() / "artifacts"
    _check_output_folder("--out", Path(args.out))
    if getattr(args, "artifacts", None):
        _check_output_folder("--artifacts", arts)
    code = code_hash()
    declared = {n: pm.inspect_notebook(str(have[n])) for n in wanted}
    nb_hash = {n: notebook_hash(have[n]) for n in wanted}
    force = bool(getattr(args, "force", False))

    def job(seed, n, run_dir, p) -> Job:
        src = have[n]
        jp = {k: v for k, v in p.items() if k in declared[n]}
        parts = {"params": _digest(jp), "notebook": nb_hash[n], "code": code}
        return Job(seed=seed, name=src.stem, source=str(src), output=str(run_dir / src.name),
                   cwd=str(nb_dir), params=jp, marker=str(run_dir / ".done" / f"{src.stem}.json"),
                   hash=_digest(parts), parts=parts)

    def shown(path: Path) -> str:
        """The path a notebook's parameter cell gets: relative to the repository when the run
        is local and inside it (published notebooks then carry no machine's folders), absolute
        for a cluster, whose workers need one path they all see."""
        repo = NOTEBOOKS_DIR.parent.resolve()
        if scheduler is None and path.is_relative_to(repo):
            return path.relative_to(repo).as_posix()
        return str(path)

    chains = {}
    for s in seeds:
        run_dir = root / f"seed-{s}"
        p = dict(prof, seed=s, run_dir=shown(run_dir), artifacts_dir=shown(arts))
        params.validate(p)
        chain, reusable = [], not force
        for n in wanted:
            if n == SUMMARY:
                continue
            j = job(s, n, run_dir, p)
            reusable = reusable and _marker_ok(j)
            j.reused = reusable
            chain.append(j)
        chains[s] = chain
    summary = job(None, SUMMARY, root, {"run_root": shown(root)}) if SUMMARY in wanted else None
    if summary is not None:
        summary.params = {"run_root": shown(root)}  # always: the notebook's only input
    return Sweep(profile=name, root=root, seeds=seeds, chains=chains, summary=summary,
                 workers=workers, scheduler=scheduler, force=force, artifacts=arts,
                 nb_dir=nb_dir, code_hash=code, threads=threads)


def _summary_hash(sweep: Sweep) -> None:
    """The summary's inputs are the seeds' results: its hash covers every seed marker."""
    j = sweep.summary
    seeds = {}
    for m in sorted(sweep.root.glob("seed-*/.done/*.json")):
        try:
            seeds[m.relative_to(sweep.root).as_posix()] = read_json(m)
        except (OSError, ValueError):
            continue
    j.parts = {"params": _digest(j.params), "notebook": notebook_hash(Path(j.source)),
               "code": sweep.code_hash, "seeds": _digest(seeds)}
    j.hash = _digest(j.parts)
    j.reused = not sweep.force and _marker_ok(j)


# --------------------------------------------------------------------------- the lock

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class RunLock:
    """``O_CREAT | O_EXCL`` lock file holding the holder's pid and host."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.info: dict | None = None

    def _read(self) -> dict | None:
        try:
            d = json.loads(self.path.read_text())
            return d if isinstance(d, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self, warn=lambda msg: print(msg, file=sys.stderr)) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raw = self.path.read_text() if self.path.exists() else ""
                holder = self._read()
                if (attempt == 0 and holder and holder.get("host") == me["host"]
                        and isinstance(holder.get("pid"), int) and not _alive(holder["pid"])):
                    warn(f"warning: taking over stale lock {self.path} (pid {holder['pid']} "
                         f"on {holder['host']} is no longer running)")
                    try:  # remove it only if nobody replaced it meanwhile
                        if self.path.read_text() == raw:
                            self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                raise LockHeld(self._held_message(holder)) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.info = me
            return self
        raise LockHeld(self._held_message(self._read()))

    def _held_message(self, holder: dict | None) -> str:
        if not holder:
            return (f"{self.path.parent} is locked by another run (lock file {self.path}, "
                    "unreadable); if no run is using this folder, delete the lock file")
        return (f"{self.path.parent} is in use by another run: pid {holder.get('pid')} on "
                f"{holder.get('host')} since {holder.get('started')} (lock file {self.path}). "
                "Wait for it to finish, or delete the lock file if that process is gone")

    def release(self) -> None:
        if self.info is None:
            return
        holder = self._read()
        if holder and holder.get("pid") == self.info["pid"] and holder.get("host") == self.info["host"]:
            self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# --------------------------------------------------------------------------- on a worker

def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _host_of(address: str) -> str:
    hostport = address.split("://", 1)[-1]
    return hostport.rsplit(":", 1)[0].strip("[]")


def _slots_on_this_host() -> int:
    """Task slots (worker threads) of all Dask workers on this host, asked from the scheduler."""
    from distributed import get_client, get_worker

    w = get_worker()
    try:
        try:
            info = get_client().scheduler_info(n_workers=-1)["workers"]
        except TypeError:  # distributed before 2025: always all workers
            info = get_client().scheduler_info()["workers"]
        host = _host_of(w.address)
        n = sum(v.get("nthreads", 1) for v in info.values() if v.get("host") == host)
        return max(n, 1)
    except Exception:  # noqa: BLE001 (no scheduler answer: assume this worker is alone)
        return max(getattr(w.state, "nthreads", 1), 1)


def threads_for(slots: int, cpus: int | None = None) -> int:
    """Torch threads per notebook kernel when ``slots`` kernels share this host's cores."""
    return max(1, (cpus or _cpus()) // max(slots, 1))


# Set by distributed's nanny in every worker's environment (pre-spawn-environ). Fixing glibc's
# trim threshold also freezes its mmap threshold, so every large tensor buffer is mmapped and
# unmapped again each step: measured on a 1-thread SFT run, 5.7M page faults instead of 0.3M,
# 9 s of system time instead of 1, and the notebook ~1.7x slower. Kernels do not inherit it.
WORKER_ONLY_ENV = ("MALLOC_TRIM_THRESHOLD_",)


def kernel_env(base, threads: int) -> dict:
    """The environment a notebook kernel starts with: ``base`` (the worker's), without the
    worker-only malloc setting, with every thread-count variable set to ``threads``."""
    env = {k: v for k, v in dict(base).items() if k not in WORKER_ONLY_ENV}
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                           "OPENBLAS_NUM_THREADS", "REASONLIB_THREADS")})
    return env


def _kernel_manager_with(threads: int, ipc: str):
    """A kernel manager class that starts kernels with ``kernel_env`` (built per call, so
    concurrent tasks in one process never share os.environ changes) and
    IPC sockets ``<ipc>-<n>``: the kernel is local, so no TCP ports (no port races between
    concurrent kernels, no plain-TCP warning)."""
    from jupyter_client.manager import AsyncKernelManager

    class EnvKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            kw.setdefault("ip", ipc)
            super().__init__(**kw)

        async def start_kernel(self, **kw):
            kw["env"] = kernel_env(kw.get("env") or os.environ, threads)
            return await super().start_kernel(**kw)

    return EnvKernelManager


def run_job(job: Job, prev: dict | None = None, slots: int | None = None,
            threads: int | None = None) -> dict:
    """Execute one notebook (on a worker). Never raises for a notebook error: returns a
    result dict with ``status`` done / failed / skipped."""
    res = {"seed": job.seed, "name": job.name, "executed": job.output}
    if prev is not None and prev.get("status") in ("failed", "skipped"):
        return dict(res, status="skipped", after=prev.get("after") or prev["name"])
    threads = threads or threads_for(slots if slots else _slots_on_this_host())
    # in the node-local temp folder; removed below even if the kernel did not clean up
    ipc = os.path.join(tempfile.gettempdir(), f"reasonlib-kernel-{uuid.uuid4().hex[:12]}")
    t0 = time.time()
    try:
        import papermill as pm

        Path(job.marker).unlink(missing_ok=True)  # a rerun is not done until it succeeds
        Path(job.output).parent.mkdir(parents=True, exist_ok=True)
        # papermill saves the notebook as it goes: run into a temporary name beside the
        # output and rename it at the end (also after a failure, so the copy holding the
        # traceback lands at the output): a reader never sees a half-executed notebook
        out = Path(job.output)
        for old in out.parent.glob(f".{glob.escape(out.stem)}.*.partial.ipynb"):
            old.unlink(missing_ok=True)  # left by a run that was killed mid-notebook
        partial = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.partial.ipynb")
        try:
            pm.execute_notebook(job.source, str(partial), parameters=job.params, cwd=job.cwd,
                                kernel_name="python3", progress_bar=False,
                                kernel_manager_class=_kernel_manager_with(threads, ipc))
        finally:
            if partial.exists():
                os.replace(partial, job.output)
    except Exception as e:  # noqa: BLE001 (reported, never fatal to the sweep)
        # papermill's PapermillExecutionError names the cell; anything else (a dead kernel,
        # a missing kernel) is reported by its type and message
        ev = str(getattr(e, "evalue", None) or e).strip()
        return dict(res, status="failed", seconds=time.time() - t0, threads=threads,
                    cell=getattr(e, "exec_count", None),
                    source=(str(getattr(e, "source", "") or "").strip().splitlines() or [""])[0][:120],
                    ename=getattr(e, "ename", None) or type(e).__name__,
                    evalue=ev.splitlines()[0][:500] if ev else "")
    finally:
        for f in glob.glob(glob.escape(ipc) + "-*"):
            Path(f).unlink(missing_ok=True)
    from ..train.artifacts import write_json  # atomic: a marker is whole or absent

    dt = time.time() - t0
    write_json(job.marker, {"hash": job.hash, "parts": job.parts, "params": job.params,
                            "notebook": job.source, "executed": job.output, "seconds": round(dt, 2),
                            "threads": threads, "host": socket.gethostname(),
                            "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return dict(res, status="done", seconds=dt, threads=threads)


# --------------------------------------------------------------------------- the driver

def _describe_failure(r: dict) -> str:
    cell = f"cell [{r['cell']}]" if r.get("cell") is not None else "outside any cell"
    who = f"seed {r['seed']} · {r['name']}" if r.get("seed") is not None else f"summary · {r['name']}"
    src = f"\n  cell starts: {r['source']}" if r.get("source") else ""
    return (f"FAILED {who}, {cell}: {r.get('ename')}: {r.get('evalue')}{src}\n"
            f"  executed copy (with the traceback): {r['executed']}")


class _Cluster:
    """A Dask client on a fresh LocalCluster (default) or on ``--scheduler``; lazy."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.client = self.cluster = None
        self.slots: int | None = None

    def get(self):
        if self.client is None:
            from distributed import Client, LocalCluster

            if self.sweep.scheduler:
                try:
                    self.client = Client(self.sweep.scheduler, timeout="30s")
                except (OSError, TimeoutError) as e:
                    raise UsageError(f"--scheduler {self.sweep.scheduler}: cannot connect ({e})") from None
                self.slots = None  # each task asks the scheduler how many share its host
            else:
                n = self.workers
                # dashboard on any free port: no clash (and warning) beside another cluster
                # distributed sets OMP_NUM_THREADS=1 (and more) in *this* process's
                # environment when it spawns workers: undo that, so nothing started here
                # later (a kernel, a test's nbval run) inherits it
                saved = dict(os.environ)
                try:
                    self.cluster = LocalCluster(n_workers=n, threads_per_worker=1,
                                                processes=True, dashboard_address=":0",
                                                silence_logs=logging.ERROR)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                self.client = Client(self.cluster)
                # threads follow --workers, not how many of them a short sweep starts:
                # rerunning one seed of a sweep then gets the same torch threads (results
                # depend on the thread count, docs/reproducibility.md)
                self.slots = self.sweep.workers
        return self.client

    @property
    def workers(self) -> int:
        # more workers than seed chains would sit idle and only take threads away
        return max(1, min(self.sweep.workers, len(self.sweep.seeds)))

    def close(self):
        for x in (self.client, self.cluster):
            if x is not None:
                try:
                    x.close()
                except Exception:  # noqa: BLE001
                    pass
        self.client = self.cluster = None


def execute(sweep: Sweep, out=None, err=None) -> int:
    """Run the sweep under the folder lock; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    lock = RunLock(sweep.root / ".lock")
    try:
        lock.acquire(warn=lambda m: print(m, file=err, flush=True))
    except LockHeld as e:
        print(f"error: {e}", file=err, flush=True)
        return EXIT_LOCKED
    old = None
    if threading.current_thread() is threading.main_thread():
        def _term(signum, frame):  # turn SIGTERM into an exception so the lock is released
            raise KeyboardInterrupt
        old = signal.signal(signal.SIGTERM, _term)
    try:
        return _run(sweep, out, err)
    except KeyboardInterrupt:
        print("\ninterrupted: finished notebooks keep their done-markers; run the same "
              "command again to resume", file=err, flush=True)
        return EXIT_INTERRUPTED
    except UsageError as e:
        print(f"error: {e}", file=err, flush=True)
        return EXIT_USAGE
    finally:
        lock.release()
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _run(sweep: Sweep, out, err) -> int:
    from tqdm.auto import tqdm

    cl = _Cluster(sweep)
    jobs = [j for s in sweep.seeds for j in sweep.chains[s]]
    total = len(jobs) + (sweep.summary is not None)
    results: dict[tuple, dict] = {}
    where = f"{sweep.scheduler}" if sweep.scheduler else (
        f"{cl.workers} local worker{'s' * (cl.workers > 1)} x "
        f"{sweep.threads or threads_for(sweep.workers)} torch threads")
    sel = sorted({j.name[:2] for j in jobs} | ({SUMMARY} if sweep.summary else set()))
    print(f"sweep: profile {sweep.profile}, seeds {' '.join(map(str, sweep.seeds))}, notebooks "
          f"{' '.join(sel)} on {where} -> {sweep.root}", file=err, flush=True)
    bar = tqdm(total=total, desc=f"{sweep.profile}", unit="nb", file=err, dynamic_ncols=True)
    failed = 0

    def record(key, r):
        nonlocal failed
        results[key] = r
        if r["status"] == "failed":
            failed += 1
            bar.write(_describe_failure(r), file=err)
        bar.set_postfix_str(f"failed {failed}" if failed else "")
        bar.update(1)

    try:
        for j in jobs:
            if j.reused:
                record((j.seed, j.name), {"seed": j.seed, "name": j.name, "status": "reused",
                                          "executed": j.output})
        pending = {s: [j for j in sweep.chains[s] if not j.reused] for s in sweep.seeds}
        if any(pending.values()):
            from distributed import as_completed

            client = cl.get()
            futs, jobs_of = [], {}
            for s in sweep.seeds:  # one future per notebook, each waiting for the previous
                prev = None
                for j in pending[s]:
                    key = f"{j.name}-seed-{s}-{uuid.uuid4().hex[:8]}"
                    prev = client.submit(run_job, j, prev, cl.slots, sweep.threads, key=key, pure=False,
                                         priority=j.priority)
                    futs.append(prev)
                    jobs_of[key] = j
            for f in as_completed(futs):
                j = jobs_of[f.key]
                try:
                    r = f.result()
                except Exception as e:  # noqa: BLE001 (a worker died; dependents erred too)
                    r = {"seed": j.seed, "name": j.name, "executed": j.output, "status": "error",
                         "ename": type(e).__name__, "evalue": str(e)[:500], "cell": None}
                if r["status"] == "error":
                    results[(j.seed, j.name)] = r
                    bar.update(1)
                else:
                    record((j.seed, j.name), r)
            _settle_errors(sweep, results, record_fail=lambda r: bar.write(_describe_failure(r), file=err))
            failed = sum(r["status"] == "failed" for r in results.values())
        if sweep.summary is not None:
            j = sweep.summary
            ok_seeds = [s for s in sweep.seeds
                        if not any(results[(s, x.name)]["status"] in ("failed", "skipped")
                                   for x in sweep.chains[s])]
            if not ok_seeds:
                record((None, j.name), {"seed": None, "name": j.name, "status": "skipped",
                                        "after": "every seed failed", "executed": j.output})
            else:
                _summary_hash(sweep)
                if j.reused:
                    r = {"seed": None, "name": j.name, "status": "reused", "executed": j.output}
                else:
                    client = cl.get()
                    f = client.submit(run_job, j, None, cl.slots, sweep.threads, pure=False,
                                      key=f"{j.name}-{uuid.uuid4().hex[:8]}")
                    try:
                        r = f.result()
                    except Exception as e:  # noqa: BLE001
                        r = {"seed": None, "name": j.name, "executed": j.output, "status": "failed",
                             "ename": type(e).__name__, "evalue": str(e)[:500], "cell": None}
                record((None, j.name), r)
    finally:
        bar.close()
        cl.close()
    _print_table(sweep, results, out)
    return EXIT_FAILED if any(r["status"] == "failed" for r in results.values()) else EXIT_OK


def _settle_errors(sweep: Sweep, results: dict, record_fail) -> None:
    """Infrastructure errors (a worker died): the first in a chain counts as failed, the
    later notebooks of that seed (whose futures erred with it) as skipped."""
    for s in sweep.seeds:
        after = None
        for j in sweep.chains[s]:
            r = results.get((s, j.name))
            if r is None or r["status"] != "error":
                if r is not None and r["status"] == "failed":
                    after = j.name
                continue
            if after is None:
                r["status"] = "failed"
                after = j.name
                record_fail(r)
            else:
                r.update(status="skipped", after=after)


def _print_table(sweep: Sweep, results: dict, out) -> None:
    rows = [("seed", "ran", "reused", "skipped", "failed", "result")]
    for s in sweep.seeds:
        rs = [results[(s, j.name)] for j in sweep.chains[s]]
        c = {k: sum(r["status"] == k for r in rs) for k in ("done", "reused", "skipped", "failed")}
        bad = [r["name"] for r in rs if r["status"] == "failed"]
        rows.append((str(s), str(c["done"]), str(c["reused"]), str(c["skipped"]), str(c["failed"]),
                     f"FAILED in {bad[0]}" if bad else "ok"))
    if sweep.summary is not None:
        r = results[(None, sweep.summary.name)]
        st = r["status"]
        rows.append((sweep.summary.name, str(int(st == "done")), str(int(st == "reused")),
                     str(int(st == "skipped")), str(int(st == "failed")),
                     {"done": "ok", "reused": "ok", "failed": "FAILED"}.get(
                         st, f"skipped ({r.get('after', '')})")))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("", file=out)
    for r in rows:
        print("  ".join(x.ljust(w[i]) if i in (0, len(w) - 1) else x.rjust(w[i])
                        for i, x in enumerate(r)).rstrip(), file=out)
    fails = [r for r in results.values() if r["status"] == "failed"]
    for r in fails:
        print(_describe_failure(r), file=out)
    skipped = [r for r in results.values() if r["status"] == "skipped" and r.get("seed") is not None]
    for r in skipped:
        print(f"skipped seed {r['seed']} · {r['name']} (after {r['after']} failed)", file=out)
    print(f"outputs: {sweep.root}", file=out, flush=True)

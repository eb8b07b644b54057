"""The cores of the machine for the training runs of a build.

Measured on the 2-core development machine (benchmarks/bench_build.py): a training run of this book is bound by
memory traffic and small operations, not by arithmetic, so two torch threads on one run gain little (a default
build took 784 s with 2 threads against 824 s with 1), while two runs side by side on one thread each take about
0.63x the time.  So a build whose chapters have training runs to compute, on a machine with at least 2 free cores
and no GPU, runs them on a Dask LocalCluster of one single-threaded worker per free core
(:func:`auto_cluster`), started once for the whole build.  The chapters' kernels keep their fair share of the
cores for what they compute themselves: a kernel's grids wait for their results, so kernel and workers never
compute at the same time.  ``--workers N``/``--scheduler`` (or ``$OVERSMOOTHING_WORKERS``; ``1``: everything in the
kernel) decide instead.  The results are those of one thread per run: the same for a given machine.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

__all__ = ["busy_cores", "fair_share_threads", "auto_workers", "auto_cluster"]

def busy_cores(interval: float = 0.5) -> float:
    """Cores kept busy by other processes right now (system-wide CPU use over ``interval`` seconds, in cores)."""
    import psutil

    return psutil.cpu_percent(interval=interval) / 100.0 * (psutil.cpu_count() or 1)


def fair_share_threads(workers: int, cores: int | None = None, busy: float = 0.0) -> dict[str, str]:
    """Environment of one of ``workers`` kernels run at once: torch, OpenMP and MKL threads =
    (cores - cores busy with other work) // workers, at least 1. Threads on busy cores thrash: chapter 06
    with 2 threads beside 2 busy processes on 2 cores took 199 s, with 1 thread 42 s (28 s idle).
    ``OVERSMOOTHING_THREADS`` set by the user wins."""
    free = (cores or os.cpu_count() or 1) - int(busy + 0.5)
    n = os.environ.get("OVERSMOOTHING_THREADS") or str(max(1, free // max(1, workers)))
    return {"OVERSMOOTHING_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


#: the experiments modules whose functions train through run_grid: a chapter that imports none of them (chapters
#: 01-03, the runner's test books) has no training runs for workers
_GRID_MODULES = re.compile(r"experiments(?:\.| import )(?:[\w ,]*\b)?(?:traps|gradients|remedies|questions)\b")


def _trains(job: dict) -> bool:
    """Whether the job's notebook imports a module of :data:`_GRID_MODULES`."""
    try:
        return bool(_GRID_MODULES.search(Path(job["input"]).read_text(encoding="utf-8")))
    except (OSError, KeyError):
        return True


def auto_workers(jobs: list[dict], env: dict | None, cores: int | None = None, busy: float | None = None) -> int:
    """How many single-threaded workers :func:`auto_cluster` starts: the free cores, or 0 (run in the kernels)
    when the caller chose an executor, a GPU may be used, a dry run estimates, or fewer than 2 cores are free."""
    env = env or {}
    chosen = ("OVERSMOOTHING_WORKERS", "OVERSMOOTHING_SCHEDULER", "OVERSMOOTHING_EXECUTOR")
    if not jobs or any(env.get(k) or os.environ.get(k) for k in chosen) or os.environ.get("OVERSMOOTHING_ESTIMATE"):
        return 0
    if not any(_trains(j) for j in jobs):
        return 0
    if any(str(j.get("parameters", {}).get("device", "auto")).startswith("cuda") for j in jobs):
        return 0
    from .cache import auto_device

    if auto_device() == "cuda" and any(str(j.get("parameters", {}).get("device", "auto")) == "auto" for j in jobs):
        return 0
    if cores is None:
        from ..grid.executors import cores as usable_cores

        cores = usable_cores()
    if busy is None:
        busy = 0.0 if os.environ.get("OVERSMOOTHING_THREADS") else busy_cores()
    free = cores - int(busy + 0.5)
    return free if free >= 2 else 0


@contextlib.contextmanager
def auto_cluster(env: dict | None, jobs: list[dict]):
    """The executor environment of ``jobs``: ``env`` itself, or with a LocalCluster of :func:`auto_workers`
    single-threaded workers for the duration of the block (its scheduler address passed to the kernels)."""
    n = auto_workers(jobs, env)
    if not n:
        yield env
        return
    from ..grid.executors import local_cluster

    import signal

    try:
        cluster = local_cluster(n)
        # the workers inherit an ignored SIGINT: a Ctrl-C reaches the runner, which stops them (no tracebacks)
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            address = cluster.__enter__()
        finally:
            signal.signal(signal.SIGINT, old)
    except Exception as exc:  # noqa: BLE001 - no cluster (e.g. no free port): the kernels run the grids
        print(f"  (could not start {n} local workers: {exc}; the training runs stay in the kernels)", file=sys.stderr)
        yield env
        return
    try:
        yield {**(env or {}), "OVERSMOOTHING_SCHEDULER": address, "OVERSMOOTHING_EXECUTOR": "dask",
               "OVERSMOOTHING_AUTO_WORKERS": str(n)}
    finally:
        cluster.__exit__(None, None, None)

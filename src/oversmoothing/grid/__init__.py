"""The run machinery: one function for every training grid.

:func:`run_grid` runs ``fn(config, **inputs)`` for each config, caches each result content-addressed
(:mod:`~oversmoothing.grid.tasks` for the keys, :mod:`~oversmoothing.grid.cache` for the data-only entries,
:mod:`~oversmoothing.grid.codec` for the results as data) and runs locally or on a Dask cluster
(:mod:`~oversmoothing.grid.executors`, TLS through :mod:`~oversmoothing.grid.security`).  Results are written as they complete,
so an interrupted grid resumes where it stopped and two chapters that need the same run compute it once.
Like the runner (``oversmoothing.book``) it imports none of the science: ``fn`` brings it.
"""
from __future__ import annotations

import json
import os

from ..codehash import library_hash
from . import cache as entries, executors, tasks, security
from .cache import CacheWarning, cache_dir
from .executors import local_cluster, shutdown
from .tasks import (GridError, GridResults, canonical_json, config_key, digest, per_process, plain, stack)

__all__ = ["run_grid", "GridError", "GridResults", "CacheWarning", "library_hash", "config_key", "cache_dir", "stack",
           "per_process", "local_cluster", "digest", "plain", "canonical_json", "shutdown"]


def _progress(progress) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get("OVERSMOOTHING_PROGRESS", "1") not in ("0", "false", "no")


#: a JSON-lines file where every grid appends one line per run (``kind``: "run" with fn, seconds and device
#: for a computed run, "cached" for one read back): the runner's progress, per-run wall times (bench_gpu.py)
LOG_ENV = "OVERSMOOTHING_GRID_LOG"
#: set by ``oversmoothing build --dry-run`` (see training.fit): nothing is written to the run cache (the runs
#: train only a few timed epochs), and every grid logs how many runs it has and how many are cached
ESTIMATE_ENV = "OVERSMOOTHING_ESTIMATE"


def _append(env: str, *records: dict) -> None:
    path = os.environ.get(env)
    if path and records:
        with open(path, "a") as f:
            f.write("".join(json.dumps(r, default=str) + "\n" for r in records))


#: with the run cache off, the results this process computed, by cache key: a run asked for twice in one kernel
#: (two grids of a chapter, a reading that repeats a headline run) is still computed once
_MEMO: dict = {}


def run_grid(fn, configs, *, inputs: dict | None = None, executor: str | None = None, workers: int | None = None,
             scheduler: str | None = None, cache=None, device=None, desc: str | None = None,
             progress: bool | None = None, retries: int = 1, tls: dict | None = None) -> GridResults:
    """``[fn(c, **inputs) for c in configs]``, cached per run and optionally on a Dask cluster.

    fn        : a picklable function of one config dict, returning the run's result (DataFrames,
                dicts of them, numbers); it must be deterministic given its config and device.
    configs   : dicts of JSON-able values (str, int, float, bool, None, lists, dicts); anything else
                (a torch.device, a numpy integer) is refused with a message naming it.
    inputs    : objects every run needs that are not JSON (e.g. ``{"graph": graph}``), passed to ``fn`` as
                keyword arguments; their :func:`digest` is part of each run's cache key, and on Dask they
                are sent to every worker once.
    executor  : "local" or "dask"; default "dask" when ``workers`` > 1 or ``scheduler`` is given (or
                their env vars OVERSMOOTHING_WORKERS / OVERSMOOTHING_SCHEDULER), else "local".
    workers   : size of the LocalCluster started for ``executor="dask"`` (default: the cores).
    scheduler : address of a running Dask scheduler to join instead (e.g. "tls://10.0.0.5:8786").
    tls       : {"ca": file, "cert": file, "key": file} securing the connection to ``scheduler``
                (default: $OVERSMOOTHING_TLS_CA/CERT/KEY; none: Dask's ``distributed.comm.tls`` config).
    cache     : a folder, False (no cache), or None (:func:`cache_dir`).  With no cache, a run this process already
                computed is not run again (:data:`_MEMO`).  A result that is not data
                (:mod:`~oversmoothing.grid.codec`) or a failed write is returned, not cached (a :class:`CacheWarning`).
    device    : "auto" | "cpu" | "cuda[:i]" (None = "auto"), resolved once (on a cluster: "cuda" when
                every worker has a GPU resource); its type (cpu/cuda) is in the cache key and it is passed
                to ``fn`` as ``config["device"]`` unless the config sets "device" itself.
    retries   : Dask retries of a task that raised (a task on a dead worker is re-run regardless).

    Returns a :class:`GridResults` list in the order of ``configs``.  A failing run raises
    :class:`GridError` naming its config (the runs finished before it stay cached).
    """
    configs = [dict(c) if isinstance(c, dict) else c for c in configs]
    for c in configs:
        canonical_json(c)  # refuse bad configs before any work
    inputs = dict(inputs or {})
    in_digest = {name: digest(obj, f"inputs[{name!r}]") for name, obj in inputs.items()}
    workers = workers if workers is not None else executors.env_int("OVERSMOOTHING_WORKERS")
    scheduler = scheduler or os.environ.get("OVERSMOOTHING_SCHEDULER") or None
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    executor = executor or ("dask" if (workers and workers > 1) or scheduler else "local")
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}; choose 'local' or 'dask'")
    if executor == "local" and workers and workers > 1:
        raise ValueError(f"executor='local' runs in this process; workers={workers} needs executor='dask'")
    if tls is not None:
        tls = security.check_tls(tls, scheduler)
    folder = cache_dir(cache)
    lib = library_hash()
    client = None
    if executor == "dask":
        hint = str(device) if device not in (None, "auto") else executors.resolve("auto")
        client = executors.client(workers or executors.cores(), scheduler, "cuda" if hint.startswith("cuda") else "cpu",
                                  tls)
        dev = executors.resolve(device, client)
    else:
        dev = executors.resolve(device)
    if device is not None:
        configs = [c if "device" in c else {**c, "device": dev} for c in configs]
    keys = [config_key(fn, c, device=str(c.get("device", dev)).split(":")[0], lib=lib, inputs=in_digest)
            for c in configs]

    out = GridResults([None] * len(configs))
    todo = {}  # key -> indices needing it (identical runs computed once)
    for i, k in enumerate(keys):
        hit, res = (True, _MEMO[k]) if folder is None and k in _MEMO else entries.load(folder, k)
        if hit:
            out[i] = res
            out.cached += 1
        else:
            todo.setdefault(k, []).append(i)
    name = tasks.fn_name(fn)
    _append(ESTIMATE_ENV, {"kind": "grid", "fn": name, "runs": len(configs), "cached": out.cached,
                           "to_compute": len(todo)})
    _append(LOG_ENV, *[{"kind": "cached", "fn": name}] * out.cached)
    if os.environ.get(ESTIMATE_ENV):
        folder = None  # a dry run's runs train a few epochs only: never cache them

    def done(config, seconds):  # noqa: ARG001 - (the result is memoised below, after the executor returns it)
        _append(LOG_ENV, {"kind": "run", "fn": name, "seconds": round(seconds, 3), "device": config.get("device", dev),
                          "config": config})
    from tqdm import tqdm

    bar = tqdm(total=len(configs), initial=out.cached, desc=desc or getattr(fn, "__name__", "grid"),
               disable=not _progress(progress) or not todo, leave=False, mininterval=1.0)
    try:
        if executor == "local":
            executors.run_local(fn, configs, todo, folder, out, bar, inputs, dev, done)
        else:
            executors.run_dask(client, fn, configs, todo, lib, dev, folder, out, bar, retries, inputs, done)
    finally:
        bar.close()
    if folder is None and not os.environ.get(ESTIMATE_ENV):  # with a cache, the cache remembers
        _MEMO.update((k, out[i]) for i, k in enumerate(keys) if out[i] is not None)
    return out

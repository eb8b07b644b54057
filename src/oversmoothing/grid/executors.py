"""Where the runs of a grid execute: in this process (``local``) or as tasks of a Dask cluster (``dask``).

``dask``: ``workers=N > 1`` (or ``$OVERSMOOTHING_WORKERS``) starts a ``LocalCluster`` of N single-threaded
worker processes; ``scheduler=ADDRESS`` (or ``$OVERSMOOTHING_SCHEDULER``) joins a running cluster
(dask-jobqueue, dask-kubernetes, SSHCluster, ``dask scheduler`` + ``dask worker ADDRESS``); a ``tls://`` address is
joined with the TLS files of :mod:`~oversmoothing.grid.security` (or Dask's own TLS config).  The client
writes each result to its own cache as the task completes; a run on a worker that dies is re-run elsewhere
(Dask reschedules it).  Every task sets torch's threads to the fair share of its host's cores (cores // task
slots on that host; ``$OVERSMOOTHING_THREADS`` overrides it: on a machine shared with other busy processes 1
is best, as 2 threads on 2 busy cores were measured 6-15x slower than 1 for a 64-layer GCN).
GPUs: with a CUDA device every task asks for the worker resource ``GPU=1``; start one worker per GPU with
``dask worker ADDRESS --nthreads 1 --resources GPU=1`` (and ``CUDA_VISIBLE_DEVICES`` set per worker, as
``dask-cuda``'s ``LocalCUDACluster`` does); a ``LocalCluster`` started here gives each worker GPU=1 and pins
worker i to GPU i mod the GPU count.  Workers you start yourself should drop Dask's ``MALLOC_TRIM_THRESHOLD_``
(2-5x slower training), e.g. with a Dask config file setting ``distributed.nanny.pre-spawn-environ`` to
``{OMP_NUM_THREADS: 1, MKL_NUM_THREADS: 1}``.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import time
import uuid

from ..codehash import PACKAGE, library_hash
from . import cache, security
from .tasks import GridError, failed

__all__ = ["cores", "env_int", "resolve", "client", "local_cluster", "shutdown", "run_local", "run_dask"]


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def env_int(name):
    v = os.environ.get(name, "").strip()
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {v!r}") from None


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def _fair_threads(slots: dict) -> int:
    """``$OVERSMOOTHING_THREADS`` if set, else this host's cores // its task slots (the sum of its
    Dask workers' threads), at least 1."""
    from distributed import get_worker

    if env_int("OVERSMOOTHING_THREADS"):
        return env_int("OVERSMOOTHING_THREADS")
    return max(1, cores() // max(1, slots.get(_host(get_worker().address), 1)))


def _task(fn, config, lib, device, slots, gpus, inputs=None):
    """Runs on a Dask worker: checks the library matches the client's, sets fair threads (and the GPU),
    silences progress bars, then ``fn(config, **inputs)``.  Returns (result, seconds)."""
    import torch

    if lib != library_hash():
        raise GridError(f"the worker's oversmoothing library (hash {library_hash()[:12]}, at {PACKAGE}) differs "
                        f"from the client's ({lib[:12]}): install the same version on every worker")
    os.environ["OVERSMOOTHING_PROGRESS"] = "0"
    threads = _fair_threads(slots)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if device.startswith("cuda") and gpus:
        from distributed import get_worker
        name = get_worker().name
        if isinstance(name, int):
            torch.cuda.set_device(name % gpus)
    t0 = time.perf_counter()
    return fn(config, **(inputs or {})), time.perf_counter() - t0


def resolve(device, client=None) -> str:
    """The device runs use: 'auto' -> 'cuda' when (the workers have / this machine has) a GPU, else 'cpu'."""
    device = "auto" if device is None else str(device)
    if client is None:
        from ..devices import resolve_device
        return str(resolve_device(device))
    if device == "auto":
        workers = _workers(client).values()
        has_gpu = bool(workers) and all(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers)
        return "cuda" if has_gpu else "cpu"
    if device == "cpu" or device.startswith("cuda"):
        return device
    raise ValueError(f"unknown device {device!r}; choose 'auto', 'cpu' or 'cuda[:i]'")


def _workers(client) -> dict:
    """address -> worker info (nthreads, resources, ...) of every worker of the cluster."""
    try:  # recent distributed lists only the first 5 workers unless asked for all
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:
        return client.scheduler_info()["workers"]


_CLUSTERS: dict = {}


def _new_local_cluster(workers: int, gpu: bool = False):
    """A LocalCluster of ``workers`` single-threaded processes, each with the fair share of the cores
    for OpenMP/MKL (set before torch loads), progress bars off, and GPU=1 each when ``gpu``.
    Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` is left out: it fixes glibc's mmap threshold, so
    every tensor above 128 KiB is mapped and unmapped anew (measured 2-5x slower training)."""
    import dask
    from distributed import LocalCluster

    share = str(env_int("OVERSMOOTHING_THREADS") or max(1, cores() // workers))
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    environ.update(OMP_NUM_THREADS=share, MKL_NUM_THREADS=share, OPENBLAS_NUM_THREADS=share,
                   OVERSMOOTHING_PROGRESS="0")
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=40, **(dict(resources={"GPU": 1}) if gpu else {}))


@contextlib.contextmanager
def local_cluster(workers: int, *, gpu: bool = False):
    """A LocalCluster for the duration of the block, shared by every grid started inside it: yields
    its scheduler address and sets ``$OVERSMOOTHING_SCHEDULER`` to it (so notebook kernels launched
    in the block join it; e.g. the runner's ``--workers N`` for all chapters at once)."""
    cluster = _new_local_cluster(workers, gpu)
    old = os.environ.get("OVERSMOOTHING_SCHEDULER")
    os.environ["OVERSMOOTHING_SCHEDULER"] = cluster.scheduler_address
    try:
        yield cluster.scheduler_address
    finally:
        if old is None:
            os.environ.pop("OVERSMOOTHING_SCHEDULER", None)
        else:
            os.environ["OVERSMOOTHING_SCHEDULER"] = old
        for k in [k for k in _CLUSTERS if k[:2] == ("scheduler", cluster.scheduler_address)]:
            _CLUSTERS.pop(k)[0].close()
        cluster.close()


def client(workers, scheduler, device_hint, tls: dict | None = None):
    """A (memoised) Client: joined to ``scheduler`` or on a LocalCluster of ``workers`` processes.
    ``tls`` (ca/cert/key files, default ``$OVERSMOOTHING_TLS_*``) secures the connection
    (:func:`oversmoothing.grid.security.security`); without it Dask's configuration applies.  A plain
    ``tcp://`` address of another host is warned about once (unless the runner already did)."""
    from distributed import Client

    tls = security.tls_files(tls)
    key = ("scheduler", scheduler, tuple(sorted(tls.items()))) if scheduler else ("local", workers, device_hint)
    if key in _CLUSTERS:
        c = _CLUSTERS[key][0]
        if c.status == "running":
            return c
    if scheduler:
        msg = security.plain_tcp_warning(scheduler)
        if msg and not os.environ.get("OVERSMOOTHING_SCHEDULER_WARNED"):
            import warnings
            warnings.warn_explicit(msg.removeprefix("warning: "), UserWarning, "oversmoothing.grid", 0)
        sec = security.security(tls)
        if sec is None and scheduler.startswith("tls://") and not _dask_tls_configured():
            raise ValueError(f"scheduler {scheduler} speaks TLS but no certificates are given: pass --tls-ca/--tls-cert"
                             "/--tls-key (or $OVERSMOOTHING_TLS_CA/CERT/KEY, or Dask's distributed.comm.tls config)")
        c, cluster = (Client(scheduler, security=sec) if sec is not None else Client(scheduler)), None
    else:
        cluster = _new_local_cluster(workers, device_hint == "cuda")
        c = Client(cluster)
    _CLUSTERS[key] = (c, cluster)
    return c


def _dask_tls_configured() -> bool:
    import dask
    return bool(dask.config.get("distributed.comm.tls.ca-file", None))


def shutdown():
    """Close the clients and LocalClusters :func:`oversmoothing.grid.run_grid` started (also done at exit)."""
    while _CLUSTERS:
        _, (c, cluster) = _CLUSTERS.popitem()
        try:
            c.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(shutdown)


def run_local(fn, configs, todo, folder, out, bar, inputs, dev="", done=None):
    """The runs of ``todo`` (key -> indices of ``configs`` needing it) one after another in this process;
    ``done(config, seconds)`` is called as each finishes."""
    for k, idx in todo.items():
        t0 = time.perf_counter()
        try:
            res = fn(configs[idx[0]], **inputs)
        except Exception as exc:
            raise failed(idx[0], configs[idx[0]], exc) from exc
        seconds = time.perf_counter() - t0
        cache.store(folder, k, fn, configs[idx[0]], res, seconds, str(configs[idx[0]].get("device", dev)))
        if done is not None:
            done(configs[idx[0]], seconds)
        for i in idx:
            out[i] = res
        out.computed += 1
        bar.update(len(idx))


def run_dask(c, fn, configs, todo, lib, dev, folder, out, bar, retries, inputs, done=None):
    """The runs of ``todo`` as tasks of the cluster of client ``c``, each stored as it completes."""
    from distributed import as_completed

    slots: dict = {}  # host -> task slots on it (for the fair share of its cores)
    for addr, w in _workers(c).items():
        slots[_host(addr)] = slots.get(_host(addr), 0) + int(w.get("nthreads", 1))
    gpus = 0
    if dev.startswith("cuda"):
        import torch
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    res_kw = {"resources": {"GPU": 1}} if dev.startswith("cuda") else {}
    futures, call = {}, uuid.uuid4().hex[:8]  # fresh task keys: a cancelled earlier call cannot shadow them
    # each input sent to every worker once, under a fresh key: scattering the dict itself would key each input by
    # its name ("graph"), shared with the previous grid's input, whose release races with this scatter and cancels
    # the new runs with "lost dependencies" (dask/distributed#8576, the same race for content-hashed keys)
    shared = dict(zip(inputs, c.scatter(list(inputs.values()), broadcast=True, hash=False))) if inputs else None
    for k, idx in todo.items():
        cfg = configs[idx[0]]
        f = c.submit(_task, fn, cfg, lib, str(cfg.get("device", dev)), slots, gpus, shared, key=f"grid-{k[:20]}-{call}",
                     pure=False, retries=retries, **res_kw)
        futures[f] = k
    try:
        for f in as_completed(futures):
            k = futures[f]
            idx = todo[k]
            try:
                res, seconds = f.result()
            except Exception as exc:
                raise failed(idx[0], configs[idx[0]], exc) from exc
            cache.store(folder, k, fn, configs[idx[0]], res, seconds,  # lands in the cache as it completes
                        str(configs[idx[0]].get("device", dev)))
            if done is not None:
                done(configs[idx[0]], seconds)
            for i in idx:
                out[i] = res
            out.computed += 1
            bar.update(len(idx))
            f.release()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            c.cancel(pending)

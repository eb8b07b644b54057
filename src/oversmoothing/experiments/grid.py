"""One function for every training grid: :func:`run_grid` runs ``fn(config, **inputs)`` for each config,
caches each result content-addressed, and runs locally or on a Dask cluster.

Cache key = sha256 of (fn's module + qualname, fn's source, canonical JSON of the config, the
:func:`digest` of each input (e.g. the graph's tensors), the library hash, the resolved device, torch's
version).  The library hash is over the abstract syntax
trees of ``src/oversmoothing/**.py`` minus docstrings (comments and formatting never count), the
runner and presentation files excluded (:data:`NOT_HASHED`).  Results are written atomically as
they complete, so an interrupted grid resumes where it stopped and two chapters that need the same
run compute it once.

Executors
---------
``local`` (default): the runs in this process, one after another; threads are left as they are.
``dask``: each run a task on a ``distributed`` cluster: ``workers=N > 1`` (or ``$OVERSMOOTHING_WORKERS``)
starts a ``LocalCluster`` of N single-threaded worker processes; ``scheduler=ADDRESS`` (or
``$OVERSMOOTHING_SCHEDULER``) joins a running cluster (dask-jobqueue, dask-kubernetes, SSHCluster,
``dask scheduler`` + ``dask worker ADDRESS``).  The client writes each result to its own cache as
the task completes; a run on a worker that dies is re-run elsewhere (Dask reschedules it).  Every
task sets torch's threads to the fair share of its host's cores (cores // task slots on that host;
``$OVERSMOOTHING_THREADS`` overrides it: on a machine shared with other busy processes 1 is best,
as 2 threads on 2 busy cores were measured 6-15x slower than 1 for a 64-layer GCN).
GPUs: with a CUDA device every task asks for the worker resource ``GPU=1``; start one worker per GPU
with ``dask worker ADDRESS --nthreads 1 --resources GPU=1`` (and ``CUDA_VISIBLE_DEVICES`` set per
worker, as ``dask-cuda``'s ``LocalCUDACluster`` does); a ``LocalCluster`` started here gives each
worker GPU=1 and pins worker i to GPU i mod the GPU count.  Workers you start yourself should drop
Dask's ``MALLOC_TRIM_THRESHOLD_`` (2-5x slower training), e.g. with a Dask config file setting
``distributed.nanny.pre-spawn-environ`` to ``{OMP_NUM_THREADS: 1, MKL_NUM_THREADS: 1}``.
"""
from __future__ import annotations

import ast
import atexit
import contextlib
import functools
import hashlib
import inspect
import json
import os
import pickle
import tempfile
import textwrap
import time
import uuid
import warnings
from pathlib import Path

__all__ = ["run_grid", "GridError", "GridResults", "library_hash", "config_key", "cache_dir", "stack", "per_process",
           "local_cluster", "digest", "plain", "shutdown", "NOT_HASHED"]

PACKAGE = Path(__file__).resolve().parents[1]  # the oversmoothing package
#: files/folders of the package that never change a run's result (runner, report, figures, parameter rules)
NOT_HASHED = ("book", "__main__.py", "report.py", "figures.py", "chapter.py", "parameters.py", "grid.py")
_FORMAT = 1  # bump when the cache entry format changes


class GridError(RuntimeError):
    """A run of the grid failed; the message names its config."""


class GridResults(list):
    """The results in the order of the configs, with ``computed`` / ``cached`` counts."""

    computed: int = 0
    cached: int = 0


# ----------------------------------------------------------------------------- keys
def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _source_digest(source: str) -> str:
    """sha256 of the source's AST without docstrings (comments, blank lines, line numbers ignored)."""
    return hashlib.sha256(ast.dump(_strip_docstrings(ast.parse(source))).encode()).hexdigest()


def library_hash(root: str | os.PathLike | None = None) -> str:
    """Hash of the library's code: :func:`_source_digest` of every ``*.py`` under ``root`` (default:
    this package), :data:`NOT_HASHED` excluded.  A comment or docstring edit keeps it."""
    root = Path(root) if root is not None else PACKAGE
    files = sorted(p for p in root.rglob("*.py")
                   if not any(part in NOT_HASHED for part in p.relative_to(root).parts))
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _library_hash(str(root), stamp)


@functools.lru_cache(maxsize=8)
def _library_hash(root: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for path, _, _ in stamp:
        h.update(str(Path(path).relative_to(root)).encode())
        h.update(_source_digest(Path(path).read_text(encoding="utf-8")).encode())
    return h.hexdigest()


def _check_jsonable(value, where="config"):
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):  # numpy.float64 is a float subclass: JSON writes it as a float
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_jsonable(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; grid configs must be JSON objects "
                                f"with string keys")
            _check_jsonable(v, f"{where}[{k!r}]")
        return
    hint = " (use str(device))" if type(value).__name__ == "device" else \
        " (convert numpy/torch scalars with int()/float())" if hasattr(value, "item") else ""
    raise TypeError(f"{where} = {value!r} of type {type(value).__name__} is not JSON-able{hint}; a grid config "
                    f"may hold only str, int, float, bool, None, lists and dicts of them")


def canonical_json(config: dict) -> str:
    """The config as canonical JSON (sorted keys, no spaces); refuses non-JSON-able values."""
    if not isinstance(config, dict):
        raise TypeError(f"a grid config must be a dict, got {type(config).__name__}: {config!r}")
    _check_jsonable(config)
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)


def plain(value):
    """``value`` with numpy/torch scalars turned into Python numbers and tuples into lists (recursively),
    so that a config built from numpy arrays (``np.linspace``, ``np.arange``) is JSON-able."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if not isinstance(value, (bool, int, float, str)) and value is not None and hasattr(value, "item"):
        return value.item()
    return value


def _feed(h, obj, where: str) -> None:
    """Feed ``obj``'s content into the hash ``h`` (type tags keep 1 and "1" and [1] apart)."""
    import dataclasses

    import numpy as np

    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, np.generic):
        _feed(h, obj.item(), where)
    elif isinstance(obj, np.ndarray):
        h.update(f"ndarray:{obj.dtype.str}:{obj.shape};".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif type(obj).__module__.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter"):
        import torch

        t = obj.detach().cpu()
        if t.is_sparse:
            t = t.coalesce()
            h.update(f"sparse:{t.shape};".encode())
            _feed(h, t.indices(), where)
            _feed(h, t.values(), where)
            return
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"dict:{len(obj)};".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, where)
            _feed(h, obj[k], f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}:{len(obj)};".encode())
        for i, v in enumerate(obj):
            _feed(h, v, f"{where}[{i}]")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dataclass:{type(obj).__module__}.{type(obj).__qualname__};".encode())
        for f in dataclasses.fields(obj):
            _feed(h, f.name, where)
            _feed(h, getattr(obj, f.name), f"{where}.{f.name}")
    else:
        raise TypeError(f"{where} = {obj!r} of type {type(obj).__name__} cannot be digested; a grid input may "
                        "hold tensors, numpy arrays, dataclasses (e.g. a Graph), dicts, lists and plain values")


def digest(obj, where: str = "input") -> str:
    """sha256 of ``obj``'s content (tensors and arrays by dtype, shape and bytes; dataclasses such as
    :class:`~oversmoothing.graphs.Graph` field by field): two graphs with equal tensors share a digest."""
    h = hashlib.sha256()
    _feed(h, obj, where)
    return h.hexdigest()


def _fn_identity(fn) -> str:
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:  # the function's own code is part of the key (a notebook's or a test's is not in the library hash)
        src = _source_digest(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        src = ""
    return f"{name}:{src}"


def config_key(fn, config: dict, *, device: str, lib: str | None = None, inputs: dict | None = None) -> str:
    """The cache key (hex sha256) of the run ``fn(config, **inputs)`` on ``device`` with library hash
    ``lib``; ``inputs`` maps each input's name to its :func:`digest`."""
    import torch

    payload = dict(fn=_fn_identity(fn), config=canonical_json(config), lib=lib or library_hash(),
                   device=device, torch=torch.__version__, format=_FORMAT)
    if inputs:
        payload["inputs"] = inputs
    payload = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


# ----------------------------------------------------------------------------- cache
def cache_dir(cache=None) -> Path | None:
    """The cache folder: ``cache`` if a path, None if False, else ``$OVERSMOOTHING_GRID_CACHE`` (``off``:
    no cache), else
    ``<project root>/_grid_cache`` (the folder holding pyproject.toml), else ``~/.cache/oversmoothing/grid``."""
    if cache is False:
        return None
    if cache not in (None, True):
        return Path(cache)
    env = os.environ.get("OVERSMOOTHING_GRID_CACHE", "").strip()
    if env.lower() in ("0", "off", "false", "no", "none"):
        return None
    if env:
        return Path(env)
    root = PACKAGE.parents[1]
    if (root / "pyproject.toml").is_file():
        return root / "_grid_cache"
    return Path.home() / ".cache" / "oversmoothing" / "grid"


def _entry(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.pkl"


def _load(folder: Path | None, key: str):
    """(True, result) for a readable entry of ``key``, else (False, None); a damaged entry is a miss."""
    if folder is None:
        return False, None
    path = _entry(folder, key)
    try:
        with open(path, "rb") as f:
            rec = pickle.load(f)
        if rec.get("key") == key:
            return True, rec["result"]
    except FileNotFoundError:
        return False, None
    except Exception as exc:  # truncated or foreign file: recompute
        warnings.warn(f"grid cache entry {path} is unreadable ({exc}); recomputing it")
    return False, None


def _store(folder: Path | None, key: str, fn, config, result, seconds: float):
    """Write the entry atomically (temporary file in the same folder, then rename)."""
    if folder is None:
        return
    path = _entry(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = dict(key=key, fn=f"{fn.__module__}.{fn.__qualname__}", config=config, seconds=seconds,
               written=time.time(), result=result)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(rec, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- tasks
def _cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def _fair_threads(slots: dict) -> int:
    """``$OVERSMOOTHING_THREADS`` if set, else this host's cores // its task slots (the sum of its
    Dask workers' threads), at least 1."""
    from distributed import get_worker

    if _env_int("OVERSMOOTHING_THREADS"):
        return _env_int("OVERSMOOTHING_THREADS")
    return max(1, _cores() // max(1, slots.get(_host(get_worker().address), 1)))


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


def _resolve_device(device, client=None) -> str:
    """The device runs use: 'auto' -> 'cuda' when (the workers have / this machine has) a GPU, else 'cpu'."""
    device = "auto" if device is None else str(device)
    if client is None:
        from ..training import resolve_device
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

    share = str(_env_int("OVERSMOOTHING_THREADS") or max(1, _cores() // workers))
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
        for k in [k for k in _CLUSTERS if k == ("scheduler", cluster.scheduler_address)]:
            _CLUSTERS.pop(k)[0].close()
        cluster.close()


def _client(workers, scheduler, device_hint):
    """A (memoised) Client: joined to ``scheduler`` or on a LocalCluster of ``workers`` processes."""
    from distributed import Client

    key = ("scheduler", scheduler) if scheduler else ("local", workers, device_hint)
    if key in _CLUSTERS:
        client = _CLUSTERS[key][0]
        if client.status == "running":
            return client
    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = _new_local_cluster(workers, device_hint == "cuda")
        client = Client(cluster)
    _CLUSTERS[key] = (client, cluster)
    return client


def shutdown():
    """Close the clients and LocalClusters :func:`run_grid` started (also done at exit)."""
    while _CLUSTERS:
        _, (client, cluster) = _CLUSTERS.popitem()
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(shutdown)


def _progress(progress) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get("OVERSMOOTHING_PROGRESS", "1") not in ("0", "false", "no")


def _env_int(name):
    v = os.environ.get(name, "").strip()
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {v!r}") from None


def _failed(i, config, exc) -> GridError:
    return GridError(f"grid run {i} failed for config {canonical_json(config)}: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- the grid
def run_grid(fn, configs, *, inputs: dict | None = None, executor: str | None = None, workers: int | None = None,
             scheduler: str | None = None, cache=None, device=None, desc: str | None = None,
             progress: bool | None = None, retries: int = 1) -> GridResults:
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
    scheduler : address of a running Dask scheduler to join instead (e.g. "tcp://10.0.0.5:8786").
    cache     : a folder, False (no cache), or None (:func:`cache_dir`).
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
    workers = workers if workers is not None else _env_int("OVERSMOOTHING_WORKERS")
    scheduler = scheduler or os.environ.get("OVERSMOOTHING_SCHEDULER") or None
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    executor = executor or ("dask" if (workers and workers > 1) or scheduler else "local")
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}; choose 'local' or 'dask'")
    if executor == "local" and workers and workers > 1:
        raise ValueError(f"executor='local' runs in this process; workers={workers} needs executor='dask'")
    folder = cache_dir(cache)
    lib = library_hash()
    client = None
    if executor == "dask":
        hint = str(device) if device not in (None, "auto") else _resolve_device("auto")
        client = _client(workers or _cores(), scheduler, "cuda" if hint.startswith("cuda") else "cpu")
        dev = _resolve_device(device, client)
    else:
        dev = _resolve_device(device)
    if device is not None:
        configs = [c if "device" in c else {**c, "device": dev} for c in configs]
    keys = [config_key(fn, c, device=str(c.get("device", dev)).split(":")[0], lib=lib, inputs=in_digest)
            for c in configs]

    out = GridResults([None] * len(configs))
    todo = {}  # key -> indices needing it (identical runs computed once)
    for i, k in enumerate(keys):
        hit, res = _load(folder, k)
        if hit:
            out[i] = res
            out.cached += 1
        else:
            todo.setdefault(k, []).append(i)
    from tqdm import tqdm

    bar = tqdm(total=len(configs), initial=out.cached, desc=desc or getattr(fn, "__name__", "grid"),
               disable=not _progress(progress) or not todo, leave=False, mininterval=1.0)
    try:
        if executor == "local":
            for k, idx in todo.items():
                t0 = time.perf_counter()
                try:
                    res = fn(configs[idx[0]], **inputs)
                except Exception as exc:
                    raise _failed(idx[0], configs[idx[0]], exc) from exc
                _store(folder, k, fn, configs[idx[0]], res, time.perf_counter() - t0)
                for i in idx:
                    out[i] = res
                out.computed += 1
                bar.update(len(idx))
        else:
            _run_dask(client, fn, configs, todo, lib, dev, folder, out, bar, retries, inputs)
    finally:
        bar.close()
    return out


def _run_dask(client, fn, configs, todo, lib, dev, folder, out, bar, retries, inputs):
    from distributed import as_completed

    slots: dict = {}  # host -> task slots on it (for the fair share of its cores)
    for addr, w in _workers(client).items():
        slots[_host(addr)] = slots.get(_host(addr), 0) + int(w.get("nthreads", 1))
    gpus = 0
    if dev.startswith("cuda"):
        import torch
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    res_kw = {"resources": {"GPU": 1}} if dev.startswith("cuda") else {}
    futures, call = {}, uuid.uuid4().hex[:8]  # fresh task keys: a cancelled earlier call cannot shadow them
    shared = client.scatter(inputs, broadcast=True) if inputs else None  # each input sent to every worker once
    for k, idx in todo.items():
        c = configs[idx[0]]
        f = client.submit(_task, fn, c, lib, str(c.get("device", dev)), slots, gpus, shared, key=f"grid-{k[:20]}-{call}",
                          pure=False, retries=retries, **res_kw)
        futures[f] = k
    try:
        for f in as_completed(futures):
            k = futures[f]
            idx = todo[k]
            try:
                res, seconds = f.result()
            except Exception as exc:
                raise _failed(idx[0], configs[idx[0]], exc) from exc
            _store(folder, k, fn, configs[idx[0]], res, seconds)  # lands in the cache as it completes
            for i in idx:
                out[i] = res
            out.computed += 1
            bar.update(len(idx))
            f.release()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)


# ----------------------------------------------------------------------------- helpers for fn
_PER_PROCESS: dict = {}


def per_process(key, make):
    """``make()`` once per process and ``key`` (e.g. a dataset loaded once per worker, shared by its
    runs); the memo lives in this module, so it survives between tasks on a Dask worker."""
    if key not in _PER_PROCESS:
        _PER_PROCESS[key] = make()
    return _PER_PROCESS[key]


# ----------------------------------------------------------------------------- tidy tables
def stack(results, configs, table: str | None = None):
    """Concatenate the runs' DataFrames (``results[i][table]`` if ``table`` else ``results[i]``),
    each row tagged with its config's scalar values (columns the table already has are kept)."""
    import pandas as pd

    frames = []
    for res, cfg in zip(results, configs):
        df = res[table] if table is not None else res
        tags = {k: v for k, v in cfg.items() if k not in df.columns and (v is None or isinstance(v, (str, int, float, bool)))}
        frames.append(df.assign(**tags))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

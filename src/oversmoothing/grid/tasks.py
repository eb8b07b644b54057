"""What one task of a grid is, and its cache key: configs as canonical JSON, inputs digested by content.

Cache key of the run ``fn(config, **inputs)`` = sha256 of (fn's module + qualname, fn's source, the
canonical JSON of the config, the :func:`digest` of each input (e.g. the graph's tensors), the library
hash (:func:`oversmoothing.codehash.library_hash`), the resolved device type, torch's version, the
entry format).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import textwrap

from ..codehash import library_hash, source_digest

__all__ = ["GridError", "GridResults", "FORMAT", "canonical_json", "plain", "digest", "config_key", "per_process",
           "stack", "failed"]

FORMAT = 3  # bump when the cache entry format changes (3: data-only .run entries)


class GridError(RuntimeError):
    """A run of the grid failed; the message names its config."""


class GridResults(list):
    """The results in the order of the configs, with ``computed`` / ``cached`` counts."""

    computed: int = 0
    cached: int = 0


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


def fn_name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _fn_identity(fn) -> str:
    try:  # the function's own code is part of the key (a notebook's or a test's is not in the library hash)
        src = source_digest(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        src = ""
    return f"{fn_name(fn)}:{src}"


def config_key(fn, config: dict, *, device: str, lib: str | None = None, inputs: dict | None = None) -> str:
    """The cache key (hex sha256) of the run ``fn(config, **inputs)`` on ``device`` with library hash
    ``lib``; ``inputs`` maps each input's name to its :func:`digest`."""
    import torch

    payload = dict(fn=_fn_identity(fn), config=canonical_json(config), lib=lib or library_hash(),
                   device=device, torch=torch.__version__, format=FORMAT)
    if inputs:
        payload["inputs"] = inputs
    payload = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def failed(i, config, exc) -> GridError:
    return GridError(f"grid run {i} failed for config {canonical_json(config)}: {type(exc).__name__}: {exc}")


_PER_PROCESS: dict = {}


def per_process(key, make):
    """``make()`` once per process and ``key`` (e.g. a dataset loaded once per worker, shared by its
    runs); the memo lives in this module, so it survives between tasks on a Dask worker."""
    if key not in _PER_PROCESS:
        _PER_PROCESS[key] = make()
    return _PER_PROCESS[key]


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

"""The run cache: one entry per training run, written atomically as it completes, keyed by
:func:`oversmoothing.grid.tasks.config_key`."""
from __future__ import annotations

import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path

from ..codehash import PACKAGE
from .tasks import fn_name

__all__ = ["cache_dir", "load", "store"]


def cache_dir(cache=None) -> Path | None:
    """The cache folder: ``cache`` if a path, None if False, else ``$OVERSMOOTHING_GRID_CACHE`` (``off``:
    no cache), else ``<project root>/_grid_cache`` (the folder holding pyproject.toml), else
    ``~/.cache/oversmoothing/grid``."""
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


def load(folder: Path | None, key: str):
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


def store(folder: Path | None, key: str, fn, config, result, seconds: float):
    """Write the entry atomically (temporary file in the same folder, then rename)."""
    if folder is None:
        return
    path = _entry(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = dict(key=key, fn=fn_name(fn), config=config, seconds=seconds, written=time.time(), result=result)
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

"""The run cache: one data-only file per training run, keyed by :func:`oversmoothing.grid.tasks.config_key`.

An entry ``<folder>/<key[:2]>/<key>.run`` is, line by line::

    OVERSMOOTHING-RUN 1                       the magic line
    {"format": 1, "key": ..., "sha256": ...}  the header (JSON): key, fn, config, chapter, library hash,
                                              device, versions, seconds, written (unix time), payload size
    {"t": "tuple", ...}                       the result's tree (JSON, :mod:`oversmoothing.grid.codec`)
    <npz bytes>                               its arrays (``np.savez``; read with ``allow_pickle=False``)

The SHA-256 in the header covers the tree line and the npz bytes.  Guarantees: reading an entry executes
nothing (JSON, ``np.load(allow_pickle=False)``, and only the package's own dataclasses are instantiated);
an entry with a wrong magic line, format, key or schema, a digest mismatch or a truncation is never
served: a one-line :class:`CacheWarning` names the file and the reason, and the run is recomputed and the
entry overwritten.  Old ``*.pkl`` entries are never opened.  Entries are written to a temporary file in
the same folder, fsynced and renamed into place (two writers of one entry both succeed, one wins); a
write that fails (read-only folder, full disk) is reported in one line and the run's result is used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ..codehash import PACKAGE, library_hash
from .tasks import fn_name

__all__ = ["cache_dir", "load", "store", "entry_path", "pack", "unpack", "check", "read_header", "EntryError",
           "CacheWarning", "MAGIC", "FORMAT", "SUFFIX"]

MAGIC = b"OVERSMOOTHING-RUN 1\n"
FORMAT = 1
SUFFIX = ".run"
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: header field -> accepted types
_SCHEMA = {"format": int, "key": str, "fn": str, "config": dict, "chapter": str, "lib": str, "device": str,
           "versions": dict, "seconds": (int, float), "written": (int, float), "sha256": str, "tree_bytes": int,
           "payload_bytes": int}


class CacheWarning(UserWarning):
    """A run-cache entry is damaged, or a result cannot be stored: the build goes on (recomputes / uses it)."""


class EntryError(ValueError):
    """Why an entry cannot be served (its message is the reason, e.g. "sha256 mismatch")."""


def warn(message: str) -> None:
    """A one-line :class:`CacheWarning` (no source line is attached)."""
    warnings.warn_explicit(message, CacheWarning, "oversmoothing.grid", 0)


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


def entry_path(folder: Path, key: str) -> Path:
    return Path(folder) / key[:2] / f"{key}{SUFFIX}"


def _chapter() -> str:
    claims = os.environ.get("OVERSMOOTHING_CLAIMS", "").strip()
    return Path(claims).name.removesuffix(".claims.json").removesuffix(".json") if claims else "manual"


def _versions() -> dict:
    from .. import __version__

    mods = {name: getattr(sys.modules.get(name), "__version__", None) for name in ("torch", "numpy", "pandas")}
    return {"python": platform.python_version(), **mods, "oversmoothing": __version__}


def pack(key: str, fn, config: dict, result, seconds: float, device: str = "") -> bytes:
    """The bytes of the entry of ``result``; TypeError (naming the value) for a result that is not data."""
    import numpy as np

    from . import codec

    tree, arrays = codec.encode(result)
    tree_line = json.dumps(tree, separators=(",", ":"), allow_nan=True).encode() + b"\n"
    npz = b""
    if arrays:
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        npz = buf.getvalue()
    payload = tree_line + npz
    header = dict(format=FORMAT, key=key, fn=fn_name(fn), config=config, chapter=_chapter(), lib=library_hash(),
                  device=str(device), versions=_versions(), seconds=float(seconds), written=time.time(),
                  sha256=hashlib.sha256(payload).hexdigest(), tree_bytes=len(tree_line), payload_bytes=len(payload))
    return MAGIC + json.dumps(header, separators=(",", ":"), allow_nan=True).encode() + b"\n" + payload


def _header(line: bytes, key: str | None) -> dict:
    try:
        header = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise EntryError("header is not JSON") from None
    if not isinstance(header, dict):
        raise EntryError("header is not a JSON object")
    if header.get("format") != FORMAT:
        raise EntryError(f"format {header.get('format')!r}, expected {FORMAT}")
    for name, types in _SCHEMA.items():
        if not isinstance(header.get(name), types) or isinstance(header.get(name), bool):
            kinds = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise EntryError(f"schema error: header field {name!r} is missing or not {kinds}")
    if not _HEX64.fullmatch(header["key"]) or not _HEX64.fullmatch(header["sha256"]):
        raise EntryError("schema error: key or sha256 is not 64 hex digits")
    if key is not None and header["key"] != key:
        raise EntryError(f"it holds key {header['key'][:12]}..., not {key[:12]}...")
    return header


def check(data: bytes, key: str | None = None) -> tuple[dict, bytes]:
    """(header, payload) of an entry's bytes after checking magic, header schema, key, size and SHA-256;
    EntryError (its reason) otherwise."""
    if not data.startswith(MAGIC):
        raise EntryError("not a run-cache entry: bad first line" if data else "empty file")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise EntryError("truncated: no complete header")
    header = _header(data[len(MAGIC):end], key)
    payload = data[end + 1:]
    if len(payload) != header["payload_bytes"]:
        raise EntryError(f"truncated: {len(payload)} of {header['payload_bytes']} payload bytes"
                         if len(payload) < header["payload_bytes"] else "extra bytes after the payload")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise EntryError("sha256 mismatch")
    return header, payload


def unpack(data: bytes, key: str | None = None):
    """(header, result) of an entry's bytes, checked by :func:`check`; EntryError (its reason) otherwise."""
    import zipfile

    import numpy as np

    from . import codec

    header, payload = check(data, key)
    n = header["tree_bytes"]
    try:
        if n > len(payload) or payload[n - 1:n] != b"\n":
            raise ValueError("the tree line's length is wrong")
        tree = json.loads(payload[:n])
        arrays = {}
        if len(payload) > n:
            with np.load(io.BytesIO(payload[n:]), allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        return header, codec.decode(tree, arrays)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError, OSError, EOFError,
            zipfile.BadZipFile) as exc:
        raise EntryError(f"schema error: {type(exc).__name__}: {str(exc)[:120]}") from None


def read_header(path: Path) -> dict:
    """The header of the entry at ``path`` (reads two lines only; the payload is not checked)."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise EntryError("not a run-cache entry: bad first line")
        line = f.readline(1 << 22)
    if not line.endswith(b"\n"):
        raise EntryError("truncated: no complete header")
    return _header(line, None)


def load(folder: Path | None, key: str):
    """(True, result) for a sound entry of ``key``, else (False, None); a damaged one is reported (one line)."""
    if folder is None:
        return False, None
    path = entry_path(folder, key)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False, None
    except OSError as exc:
        warn(f"grid cache entry {path} is unreadable ({type(exc).__name__}: {exc.strerror or exc}); recomputing it")
        return False, None
    try:
        return True, unpack(data, key)[1]
    except EntryError as exc:
        warn(f"grid cache entry {path} is damaged ({exc}); recomputing it")
    return False, None


_UNWRITABLE: set = set()  # folders whose write error was reported (once per process)


def store(folder: Path | None, key: str, fn, config, result, seconds: float, device: str = "") -> bool:
    """Write the entry atomically (temporary file in the same folder, fsync, rename).  Returns whether it
    was stored: a result that is not data, or a write error, is reported in one line and not cached."""
    if folder is None:
        return False
    path = entry_path(folder, key)
    try:
        data = pack(key, fn, config, result, seconds, device)
    except (TypeError, ValueError) as exc:
        warn(f"grid run {fn_name(fn)} {json.dumps(config, sort_keys=True)[:200]}: its result is used but not "
             f"cached ({exc})")
        return False
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return True
    except OSError as exc:
        if str(folder) not in _UNWRITABLE:
            _UNWRITABLE.add(str(folder))
            warn(f"grid cache entry {path} could not be written ({type(exc).__name__}: {exc.strerror or exc}); "
                 f"the run's result is used but not cached (further write errors in {folder} are not reported)")
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            Path(tmp).unlink(missing_ok=True)

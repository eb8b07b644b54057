"""Looking after the run cache: what it holds, what can go, and whether every entry is sound.

:func:`scan` lists every file of a cache folder as an :class:`Item` (a run entry with its header, an old
pickle entry, a temporary file, or a damaged/foreign file); nothing is ever unpickled or decoded, only
headers are read (and, with ``verify=True``, every payload re-hashed).  :func:`prune` removes what
``oversmoothing cache prune`` asks for.  Imports only the standard library and this package's grid.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..codehash import library_hash
from .cache import SUFFIX, EntryError, check, read_header

__all__ = ["Item", "scan", "summary", "select", "remove", "STALE_TMP_S"]

#: a temporary file older than this is left over by a killed writer (a live write takes milliseconds)
STALE_TMP_S = 600.0


@dataclass
class Item:
    """One file of the run cache. ``kind``: "run" (a sound entry), "pickle" (an old ``*.pkl`` entry, never
    opened), "tmp" (a writer's temporary file), "damaged" (``reason`` says why) or "foreign"."""

    path: Path
    kind: str
    size: int
    mtime: float
    header: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def written(self) -> float:
        return float(self.header.get("written", self.mtime))


def _item(path: Path, verify: bool) -> Item:
    st = path.stat()
    item = Item(path, "foreign", st.st_size, st.st_mtime)
    if path.suffix == ".pkl":
        item.kind = "pickle"
    elif path.name.startswith(".") and path.suffix == ".tmp":
        item.kind = "tmp"
    elif path.suffix == SUFFIX:
        try:
            item.header = check(path.read_bytes(), path.stem)[0] if verify else read_header(path)
            if not verify and item.header["key"] != path.stem:
                raise EntryError(f"it holds key {item.header['key'][:12]}..., not its file name's")
            item.kind = "run"
        except (EntryError, OSError) as exc:
            item.kind, item.reason = "damaged", str(exc)
    return item


def scan(folder: Path, verify: bool = False) -> list[Item]:
    """Every file under ``folder`` (an absent folder holds none); ``verify``: re-hash each entry's payload."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [_item(p, verify) for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()]


def summary(items: list[Item], lib: str | None = None) -> dict:
    """Counts and bytes: runs by library hash (``current``: the one of this library) and by chapter,
    pickle, temporary and damaged files."""
    lib = lib or library_hash()
    out = {"runs": 0, "bytes": 0, "by_lib": {}, "by_chapter": {}, "pickle": [0, 0], "tmp": [0, 0], "damaged": [0, 0],
           "foreign": [0, 0], "current_lib": lib}
    for it in items:
        if it.kind != "run":
            out[it.kind][0] += 1
            out[it.kind][1] += it.size
            continue
        out["runs"] += 1
        out["bytes"] += it.size
        for name, value in (("by_lib", it.header["lib"]), ("by_chapter", it.header["chapter"])):
            n, size = out[name].get(value, (0, 0))
            out[name][value] = (n + 1, size + it.size)
    return out


def select(items: list[Item], keep_current: bool = False, older_than_days: float | None = None,
           lib: str | None = None, now: float | None = None) -> list[tuple[Item, str]]:
    """What ``cache prune`` removes, each with why: run entries (not those of the current library hash with
    ``keep_current``; only those written more than ``older_than_days`` ago with it), and always old
    pickle entries, damaged entries and temporary files older than :data:`STALE_TMP_S`."""
    lib = lib or library_hash()
    now = time.time() if now is None else now
    out = []
    for it in items:
        if it.kind == "pickle":
            out.append((it, "old pickle entry"))
        elif it.kind == "damaged":
            out.append((it, f"damaged ({it.reason})"))
        elif it.kind == "tmp" and now - it.mtime > STALE_TMP_S:
            out.append((it, "stale temporary file"))
        elif it.kind == "run":
            if keep_current and it.header["lib"] == lib:
                continue
            if older_than_days is not None and now - it.written <= older_than_days * 86400:
                continue
            out.append((it, "current library" if it.header["lib"] == lib else f"library {it.header['lib'][:12]}"))
    return out


def remove(folder: Path, chosen: list[tuple[Item, str]]) -> tuple[int, int]:
    """Delete the chosen files (and the sub-folders left empty); returns (files, bytes) freed."""
    files = size = 0
    for it, _ in chosen:
        try:
            it.path.unlink()
        except FileNotFoundError:
            continue
        files += 1
        size += it.size
    for sub in sorted({it.path.parent for it, _ in chosen}, reverse=True):
        if sub != Path(folder):
            try:
                os.rmdir(sub)
            except OSError:
                pass  # not empty
    return files, size

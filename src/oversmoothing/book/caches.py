"""``oversmoothing cache info|prune|verify``: both caches, the training runs' and the chapters'.

Run cache (``--cache DIR``, default :func:`oversmoothing.grid.cache_dir`): see
:mod:`oversmoothing.grid.maintenance`.  Notebook cache (``--staging DIR``, default ``ROOT/_staging``): every
executed chapter ``<staging>/<profile>/site/<entry>.ipynb`` with its claims file; it is *current* when a
build of that profile (with the device it was built with) would reuse it, i.e. its recorded key is the key
:func:`oversmoothing.book.cache.chapter_key` computes now; *damaged* when its record is missing or its claims
file is not the one recorded.  Nothing here executes a notebook or unpickles anything.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ..grid import maintenance
from .cache import META, _file_sha, chapter_key, environment_digests
from .errors import BookError
from .folders import FolderLock
from .parameters import resolve_parameters
from .toc import chapters, load_profiles

__all__ = ["Executed", "notebooks", "info", "prune", "verify", "size"]


def size(n: int) -> str:
    """Bytes for people: 512 B, 3.4 KB, 26.1 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass
class Executed:
    """An executed chapter of the notebook cache; ``state``: current | out of date | damaged (``reason``)."""

    profile: str
    stem: str
    files: list
    size: int
    state: str
    reason: str = ""


def _record(nb: Path):
    import json

    try:
        meta = json.loads(nb.read_text()).get("metadata", {}).get(META)
    except (OSError, ValueError, AttributeError):
        return None, "the notebook is not readable JSON"
    if not isinstance(meta, dict) or not meta.get("key"):
        return None, "no runner record in its metadata"
    return meta, ""


def notebooks(staging: Path, root: Path | None) -> list[Executed]:
    """Every executed chapter under ``staging``, with its state (``root`` None: currency is not judged)."""
    staging = Path(staging)
    out: list[Executed] = []
    chs = {c.entry: c for c in chapters(root)} if root else {}
    profiles = load_profiles(root) if root else {}
    env = environment_digests(root) if root else {}
    for site in sorted(p for p in staging.glob("*/site") if p.is_dir()):
        profile = site.parent.name
        for nb in sorted(site.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in nb.parts or "_build" in nb.relative_to(site).parts:
                continue
            entry = nb.relative_to(site).with_suffix("").as_posix()
            claims = nb.with_name(nb.stem + ".claims.json")
            files = [p for p in (nb, claims) if p.is_file()]
            ex = Executed(profile, Path(entry).name, files, sum(p.stat().st_size for p in files), "current")
            meta, why = _record(nb)
            if meta is None:
                ex.state, ex.reason = "damaged", why
            elif _file_sha(claims) != meta.get("claims_sha256"):
                ex.state, ex.reason = "damaged", ("its claims file is missing" if not claims.is_file() else
                                                  "its claims file differs from the record (sha256 mismatch)")
            elif root is not None:
                ex.state, ex.reason = _currency(chs.get(entry), meta, profile, profiles, env)
            out.append(ex)
    return out


def _currency(ch, meta, profile, profiles, env) -> tuple[str, str]:
    if ch is None:
        return "out of date", "not a chapter of _toc.yml"
    if profile not in profiles:
        return "out of date", f"profile {profile!r} is not in book/profiles.yml"
    device = (meta.get("parameters") or {}).get("device")
    try:
        params = resolve_parameters(ch, (profiles[profile] or {}).get(ch.stem, {}), device=device)
        key = chapter_key(ch, params, profile, env)
    except BookError as e:
        return "out of date", str(e)
    return ("current", "") if key == meta["key"] else ("out of date", "its notebook, parameters or library changed")


def _run_cache_lines(folder: Path | None, verify: bool = False):
    if folder is None:
        return None, ["run cache: off ($OVERSMOOTHING_GRID_CACHE=off)"]
    items = maintenance.scan(folder, verify=verify)
    return items, []


def info(folder: Path | None, staging: Path, root: Path | None) -> str:
    """The text of ``cache info``."""
    items, lines = _run_cache_lines(folder)
    if items is not None:
        s = maintenance.summary(items)
        lines.append(f"run cache {folder}: {s['runs']} entries, {size(s['bytes'])}")
        for lib, (n, b) in sorted(s["by_lib"].items(), key=lambda kv: kv[0] != s["current_lib"]):
            lines.append(f"  library {lib[:12]} ({'current' if lib == s['current_lib'] else 'old'}): "
                         f"{n} entries, {size(b)}")
        for chapter, (n, b) in sorted(s["by_chapter"].items()):
            lines.append(f"  chapter {chapter}: {n} entries, {size(b)}")
        for kind, label in (("pickle", "old pickle entries (never read; prune removes them)"),
                            ("damaged", "damaged entries"), ("tmp", "temporary files"), ("foreign", "other files")):
            if s[kind][0]:
                lines.append(f"  {label}: {s[kind][0]}, {size(s[kind][1])}")
    lines.append(f"notebook cache {staging}:" + ("" if root else " (no project root: currency not judged)"))
    exs = notebooks(staging, root)
    for profile in sorted({e.profile for e in exs}):
        mine = [e for e in exs if e.profile == profile]
        counts = ", ".join(f"{sum(e.state == st for e in mine)} {st}" for st in ("current", "out of date", "damaged")
                           if any(e.state == st for e in mine))
        lines.append(f"  profile {profile}: {len(mine)} executed chapters, {size(sum(e.size for e in mine))} ({counts})")
        for e in mine:
            lines.append(f"    {e.stem:<34s} {e.state:<11s} {size(e.size):>9s}" + (f"  {e.reason}" if e.reason else ""))
    if not exs:
        lines.append("  no executed chapters")
    return "\n".join(lines)


def prune(folder: Path | None, staging: Path, root: Path | None, keep_current: bool = False,
          older_than: float | None = None, dry_run: bool = False) -> str:
    """Remove what ``cache prune`` selects (see :func:`oversmoothing.grid.maintenance.select`; chapters: every
    executed one, or with ``keep_current`` those not current); returns the text saying what was freed."""
    if keep_current and root is None:
        raise BookError("--keep-current needs the project root (--root) to tell which chapters are current")
    verb = "would free" if dry_run else "freed"
    items, lines = _run_cache_lines(folder, verify=True)
    if items is not None:
        chosen = maintenance.select(items, keep_current=keep_current, older_than_days=older_than)
        for it, why in chosen:
            lines.append(f"  {'would remove' if dry_run else 'removed'} {it.path} ({size(it.size)}, {why})")
        n, b = (len(chosen), sum(it.size for it, _ in chosen)) if dry_run else maintenance.remove(folder, chosen)
        kept = sum(it.kind == "run" for it in items) - sum(it.kind == "run" for it, _ in chosen)
        lines.append(f"run cache {folder}: {verb} {n} files, {size(b)}; {kept} entries kept")
    exs = [e for e in notebooks(staging, root) if not keep_current or e.state != "current"]
    if older_than is not None:
        import time
        exs = [e for e in exs if all(time.time() - p.stat().st_mtime > older_than * 86400 for p in e.files)]
    freed = 0
    for profile in sorted({e.profile for e in exs}):
        mine = [e for e in exs if e.profile == profile]
        lock = FolderLock(Path(staging).resolve() / profile / ".lock", f"the staging folder of profile {profile!r}",
                          wait=False, advice="prune again when the build is done")
        try:
            with lock if not dry_run else _nothing():
                for e in mine:
                    if not dry_run:
                        for p in e.files:
                            p.unlink(missing_ok=True)
                    freed += e.size
                    lines.append(f"  {'would remove' if dry_run else 'removed'} {profile}/{e.stem} "
                                 f"({size(e.size)}, {e.state}{': ' + e.reason if e.reason else ''})")
        except BookError as err:
            lines.append(f"  skipped profile {profile}: {err}")
    lines.append(f"notebook cache {staging}: {verb} {len(exs)} chapters, {size(freed)}")
    return "\n".join(lines)


def _nothing():
    return contextlib.nullcontext()


def verify(folder: Path | None, staging: Path, root: Path | None) -> tuple[str, int]:
    """Re-hash every run entry and every executed chapter's claims record: (text, number damaged)."""
    items, lines = _run_cache_lines(folder, verify=True)
    bad = 0
    if items is not None:
        damaged = [it for it in items if it.kind == "damaged"]
        bad += len(damaged)
        lines += [f"  damaged: {it.path} ({it.reason})" for it in damaged]
        runs = sum(it.kind == "run" for it in items)
        lines.append(f"run cache {folder}: {runs} entries sound, {len(damaged)} damaged")
    exs = notebooks(staging, None)
    damaged_nb = [e for e in exs if e.state == "damaged"]
    bad += len(damaged_nb)
    lines += [f"  damaged: {e.files[0] if e.files else e.stem} ({e.reason})" for e in damaged_nb]
    lines.append(f"notebook cache {staging}: {len(exs) - len(damaged_nb)} chapters sound, {len(damaged_nb)} damaged")
    return "\n".join(lines), bad

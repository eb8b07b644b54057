"""The project, its toc, its chapters and the parameter profiles of ``book/profiles.yml``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import BookError


def find_root(start: str | Path | None = None) -> Path:
    """The project root: the first folder upwards from ``start`` (cwd) holding ``_toc.yml``."""
    p = Path(start or Path.cwd()).resolve()
    for d in (p, *p.parents):
        if (d / "_toc.yml").is_file() and (d / "_config.yml").is_file():
            return d
    raise BookError(f"no _toc.yml/_config.yml found in {p} or its parents (use --root)")


def load_toc(root: Path) -> dict:
    path = Path(root) / "_toc.yml"
    if not path.is_file():
        raise BookError(f"{path} not found")
    return yaml.safe_load(path.read_text()) or {}


def _toc_files(node) -> list[str]:
    """Every ``file`` of the toc, in reading order."""
    out = []
    if isinstance(node, dict):
        if "root" in node:
            out.append(str(node["root"]))
        if "file" in node:
            out.append(str(node["file"]))
        for key in ("parts", "chapters", "sections"):
            out += _toc_files(node.get(key) or [])
    elif isinstance(node, list):
        for item in node:
            out += _toc_files(item)
    return out


def _strip_suffix(f: str) -> str:
    return f[: -len(Path(f).suffix)] if Path(f).suffix in (".ipynb", ".md") else f


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


@dataclass
class Chapter:
    stem: str        # 04_stationary_traps
    entry: str       # the toc entry without suffix: book/04_stationary_traps
    path: Path       # the source notebook

    @property
    def title(self) -> str:
        nb = json.loads(self.path.read_text())
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "markdown":
                for line in _source(cell).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
        return self.stem


def chapters(root: Path, toc: dict | None = None) -> list[Chapter]:
    """The chapters of the book: the toc entries that are notebooks, in reading order."""
    root = Path(root)
    out = []
    for f in _toc_files(load_toc(root) if toc is None else toc):
        entry = _strip_suffix(f)
        nb = root / (entry + ".ipynb")
        if nb.is_file():
            out.append(Chapter(Path(entry).name, entry, nb))
    return out


def resolve_chapter(root: Path, name: str, available: list[Chapter] | None = None) -> Chapter:
    """A chapter by stem (``04_stationary_traps``), number (``4``/``04``) or path."""
    available = chapters(root) if available is None else available
    key = _strip_suffix(str(name).rstrip("/"))
    for ch in available:
        if key in (ch.stem, ch.entry) or Path(key).name == ch.stem:
            return ch
    if key.isdigit():
        hits = [ch for ch in available if ch.stem.split("_")[0].isdigit() and int(ch.stem.split("_")[0]) == int(key)]
        if len(hits) == 1:
            return hits[0]
    names = ", ".join(ch.stem for ch in available) or "(none: add chapters to _toc.yml)"
    raise BookError(f"unknown chapter {name!r}; the chapters of _toc.yml are: {names}")


def load_profiles(root: Path) -> dict:
    path = Path(root) / "book" / "profiles.yml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    data = data or {}
    data.setdefault("default", {})
    return {k: (v or {}) for k, v in data.items()}


def profile_overrides(root: Path, profile: str, profiles: dict | None = None) -> dict:
    profiles = load_profiles(root) if profiles is None else profiles
    if profile not in profiles:
        raise BookError(f"unknown profile {profile!r}; known profiles (book/profiles.yml): {', '.join(profiles)}")
    return profiles[profile]

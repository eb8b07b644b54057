"""Cache keys: what a chapter's result depends on (notebook, parameters, profile, device, library source,
pinned packages, data checksums) and the runner's record in an executed notebook."""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path

from .toc import Chapter

#: the key of the runner's record in an executed notebook's metadata
META = "oversmoothing"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str | None:
    """SHA-256 of a file's bytes, None when there is no such file."""
    try:
        return _sha(Path(path).read_bytes())
    except FileNotFoundError:
        return None


#: the runner's own files (an entry ending in "/" is a folder): chapters never import them, so editing them
#: re-executes nothing
RUNNER_FILES = ("oversmoothing/book/", "oversmoothing/__main__.py")


def _excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    """``rel`` (a posix path) is one of ``exclude`` or lies in one of its folders ("dir/")."""
    return any(rel == e or (e.endswith("/") and rel.startswith(e)) for e in exclude)


def _code_digest(path: Path) -> bytes:
    """A Python module's syntax tree (comments and formatting ignored); other files' bytes."""
    data = path.read_bytes()
    if path.suffix == ".py":
        try:
            return ast.dump(ast.parse(data)).encode()
        except (SyntaxError, ValueError):
            pass
    return data


def tree_hash(folder: Path, exclude: tuple[str, ...] = RUNNER_FILES) -> str:
    """Hash of the library source under ``folder`` (Python files by syntax tree, so a comment or a
    reformatting re-executes nothing), caches and the runner excluded."""
    h = hashlib.sha256()
    if Path(folder).is_dir():
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and not p.suffix == ".pyc" \
                    and not any(s.endswith(".egg-info") for s in p.parts) \
                    and not _excluded(p.relative_to(folder).as_posix(), exclude):
                h.update(str(p.relative_to(folder)).encode() + b"\0" + _code_digest(p) + b"\0")
    return h.hexdigest()


def _lines_digest(path: Path, normalise=lambda ln: ln) -> str:
    """Hash of a file's meaningful lines (comments and blank lines dropped, order ignored); "" if absent."""
    if not Path(path).is_file():
        return ""
    lines = {normalise(ln.split("#", 1)[0].strip()) for ln in Path(path).read_text().splitlines()}
    return _sha("\n".join(sorted(ln for ln in lines if ln)).encode())


def lock_digest(path: Path) -> str:
    """Hash of the pins of requirements.lock (``name==version``, names normalised as pip does)."""
    def pin(ln):
        name, sep, rest = ln.partition("==")
        return re.sub(r"[-_.]+", "-", name.strip().lower()) + sep + rest.replace(" ", "")
    return _lines_digest(path, pin)


def data_digest(root: Path) -> str:
    """Hash of the datasets' checksums (data/SHA256SUMS: the loader verifies every raw file against it)."""
    return _lines_digest(Path(root) / "data" / "SHA256SUMS", lambda ln: " ".join(ln.split()))


_AUTO_DEVICE: list[str] = []


def auto_device() -> str:
    """What ``device = "auto"`` resolves to on this machine ("cuda" or "cpu"), as the chapters resolve it."""
    if not _AUTO_DEVICE:
        if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd", "/proc/driver/nvidia")) \
                and sys.platform.startswith("linux"):
            _AUTO_DEVICE.append("cpu")      # no GPU driver: do not pay for importing torch
        else:
            import torch
            _AUTO_DEVICE.append("cuda" if torch.cuda.is_available() else "cpu")
    return _AUTO_DEVICE[0]


def resolved_device(device: str | None) -> str:
    return auto_device() if device in (None, "auto") else str(device)


def environment_digests(root: Path) -> dict:
    """What every chapter's result depends on besides its notebook and parameters."""
    return {"src": tree_hash(Path(root) / "src"), "lock": lock_digest(Path(root) / "requirements.lock"),
            "data": data_digest(root)}


def _cache_key(ch: Chapter, parameters: dict, profile: str, env: dict, device: str) -> str:
    return _sha(json.dumps({"notebook": _sha(ch.path.read_bytes()), "parameters": parameters,
                            "profile": profile, "device": device, **env}, sort_keys=True).encode())


def executed_record(nb_path: Path, claims_path: Path) -> dict | None:
    """The runner's record of an executed notebook, or None unless the notebook carries one and
    ``claims_path`` is the claims file written with it (absent when the chapter wrote none)."""
    try:
        meta = json.loads(Path(nb_path).read_text()).get("metadata", {}).get(META)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(meta, dict) or not meta.get("key"):
        return None
    if _file_sha(claims_path) != meta.get("claims_sha256"):
        return None
    return meta

"""Cache keys: what a chapter's result depends on (notebook, parameters, profile, device, library source,
pinned packages, data checksums) and the runner's record in an executed notebook."""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from ..codehash import library_hash
from .parameters import Param, parse_parameters
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


def tree_hash(folder: Path) -> str:
    """Hash of the library source under ``folder`` (the project's ``src``): the one library hash of
    :func:`oversmoothing.codehash.library_hash` (every ``*.py`` by its syntax tree without docstrings, the
    runner excluded), the same hash the run cache keys on, so a comment, a docstring or a reformatting
    re-executes nothing and any other edit of the library does."""
    folder = Path(folder)
    if (folder / "oversmoothing").is_dir():
        folder = folder / "oversmoothing"     # this project: exactly the run cache's library hash
    return library_hash(folder) if folder.is_dir() else _sha(b"")


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


def chapter_key(ch: Chapter, params: dict, profile: str, env: dict) -> str:
    """The cache key of chapter ``ch`` executed with the resolved ``params`` in ``profile`` (``env``:
    :func:`environment_digests`); its device is ``params["device"]``, else the notebook's default."""
    dev = params.get("device", parse_parameters(ch.path).get("device", Param("", "auto", "str", "")).default)
    return _cache_key(ch, params, profile, env, resolved_device(dev))


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

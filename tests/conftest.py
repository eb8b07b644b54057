"""Fixtures of the book runner's tests: the whole book built once (smoke profile) and a mini book."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the chapters' training grids (run_grid) cache their runs: the tests never read or fill the developer's cache
os.environ["OVERSMOOTHING_GRID_CACHE"] = tempfile.mkdtemp(prefix="oversmoothing-grid-cache-")
FIXTURE_BOOK = Path(__file__).resolve().parent / "fixtures" / "minibook"


def runner(*args, cwd=None, check=False) -> subprocess.CompletedProcess:
    """``python -m oversmoothing ARGS`` in a subprocess (what a user types)."""
    env = {**os.environ, "OVERSMOOTHING_PROGRESS": "0"}
    mirror = ROOT.parent / "shared" / "datasets"
    if "OVERSMOOTHING_DATA_MIRROR" not in env and (mirror / "SHA256SUMS").is_file():
        env["OVERSMOOTHING_DATA_MIRROR"] = str(mirror)
    proc = subprocess.run([sys.executable, "-m", "oversmoothing", *map(str, args)], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"oversmoothing {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The whole book of _toc.yml built once per session in the smoke profile, outside the
    developer's _build/ and _staging/. Returns the paths the tests read."""
    tmp = tmp_path_factory.mktemp("smoke_book")
    jobs = max(1, min(2, os.cpu_count() or 1))
    runner("--root", ROOT, "build", "--profile", "smoke", "--device", "cpu", "--jobs", jobs,
           "--staging", tmp / "staging", "--out", tmp / "out", "--no-progress", check=True)
    return {"html": tmp / "out" / "_build" / "html", "site": tmp / "staging" / "smoke" / "site", "tmp": tmp}


@pytest.fixture
def minibook(tmp_path) -> Path:
    """A private copy of the fixture book (01_ok works, 02_raises raises, 03_slow sleeps `pause` s)."""
    dst = tmp_path / "minibook"
    shutil.copytree(FIXTURE_BOOK, dst)
    return dst


@pytest.fixture(autouse=True)
def _fresh_grid_memo():
    """Every test starts with run_grid's in-process memo empty (a run a test asks for twice is computed once)."""
    from oversmoothing import grid

    grid._MEMO.clear()
    yield
    grid._MEMO.clear()

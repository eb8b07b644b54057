"""The runner's use of the cores: a LocalCluster of the free cores for the chapters that train (book/pool.py)."""
from pathlib import Path

from oversmoothing.book import pool

BOOK = Path(__file__).resolve().parents[1] / "book"


def _job(stem, **params):
    return {"input": str(next(BOOK.glob(f"{stem}*.ipynb"))), "parameters": params}


def test_workers_for_the_free_cores_only_where_a_chapter_trains(monkeypatch):
    for var in ("OVERSMOOTHING_WORKERS", "OVERSMOOTHING_SCHEDULER", "OVERSMOOTHING_EXECUTOR", "OVERSMOOTHING_ESTIMATE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("oversmoothing.book.cache._AUTO_DEVICE", ["cpu"])
    assert pool.auto_workers([_job("07")], {}, cores=2, busy=0.1) == 2
    assert pool.auto_workers([_job("07"), _job("01")], {}, cores=16, busy=3.4) == 13
    assert pool.auto_workers([_job("01"), _job("02")], {}, cores=16, busy=0) == 0      # forward passes only
    assert pool.auto_workers([_job("07")], {}, cores=2, busy=1.0) == 0                # one free core: in the kernel
    assert pool.auto_workers([_job("07", device="cuda")], {}, cores=16, busy=0) == 0   # a GPU run stays in the kernel
    assert pool.auto_workers([_job("07")], {"OVERSMOOTHING_WORKERS": "1"}, cores=16, busy=0) == 0   # --workers 1
    assert pool.auto_workers([], {}, cores=16, busy=0) == 0
    monkeypatch.setenv("OVERSMOOTHING_ESTIMATE", "/tmp/x")                               # a dry run: in the kernel
    assert pool.auto_workers([_job("07")], {}, cores=16, busy=0) == 0
    monkeypatch.delenv("OVERSMOOTHING_ESTIMATE")
    monkeypatch.setattr("oversmoothing.book.cache._AUTO_DEVICE", ["cuda"])              # device auto on a GPU machine
    assert pool.auto_workers([_job("07")], {}, cores=16, busy=0) == 0

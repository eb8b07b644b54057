"""Scale-out benchmark: a paper-sized slice of chapter 07's grid, local executor vs Dask, same run.

The slice: 8 runs of the 64-layer residual GCN on Cora (hidden 64, Adam lr 0.005, weight decay 5e-4;
4 splits/seeds x {no normalisation, Lipschitz c = 4}), trained exactly as ``gradients.run`` trains them in
chapter 07, through :func:`oversmoothing.grid.run_grid`:

* local : the 8 runs one after another in this process, torch with ``--local-threads`` threads
          (default 1, as the default-profile chapters set; 0 = all cores, torch's default, which on a
          busy machine thrashes: measured 6x slower than 1 thread for this model at load 7 on 2 cores);
* dask  : the same 8 runs on a LocalCluster of ``--workers`` single-threaded worker processes
          (cluster start-up and the workers' imports included in ``dask_total_s``).

Reports ratio = dask wall time / local wall time (target <= 0.6 with 2 workers on 2 cores) and checks
that both executors give the same summaries.  Background load distorts both: the load average is
recorded before and after.  No cache is used (``cache=False``).

Usage:  python benchmarks/bench_scale.py [--epochs 50] [--workers 2] [--local-threads N] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from oversmoothing import grid

def res_gcn_run(cfg: dict) -> dict:
    """One run of chapter 07's residual-GCN grid (``gradients.run``), summary row without wall times."""
    from oversmoothing import datasets
    from oversmoothing.experiments import gradients

    g = grid.per_process(("graph", cfg["dataset"], cfg["split"]),  # once per process, as gradients.sweep does
                         lambda: datasets.load(cfg["dataset"], split=cfg["split"]))
    summary, _ = gradients.run(g, "res_gcn", cfg["depth"], hidden=cfg["hidden"], lipschitz_c=cfg["c"],
                               epochs=cfg["epochs"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], seed=cfg["seed"],
                               record_every=cfg["epochs"], device=cfg["device"], progress=False)
    summary.pop("seconds")
    return summary


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=50, help="epochs per run (chapter 07's paper profile: 200)")
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--local-threads", type=int, default=1, help="torch threads of the local run (0: all cores)")
    ap.add_argument("--dataset", default="cora")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
    os.environ["OVERSMOOTHING_PROGRESS"] = "0"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cfgs = [dict(dataset=a.dataset, depth=a.depth, hidden=64, c=c, split=i, seed=i, epochs=a.epochs, lr=0.005,
                 weight_decay=5e-4)
            for i in range((a.runs + 1) // 2) for c in (None, 4.0)][:a.runs]
    load_before = _load()

    torch.set_num_threads(a.local_threads or cores)
    t0 = time.perf_counter()
    local = grid.run_grid(res_gcn_run, cfgs, executor="local", cache=False, device="cpu")
    t_local = time.perf_counter() - t0

    t0 = time.perf_counter()
    client = grid.executors.client(a.workers, None, "cpu")
    client.wait_for_workers(a.workers)
    t_start = time.perf_counter() - t0
    t1 = time.perf_counter()
    dask = grid.run_grid(res_gcn_run, cfgs, workers=a.workers, cache=False, device="cpu")
    t_dask = time.perf_counter() - t1
    grid.shutdown()

    diffs = [abs(x["test_acc"] - y["test_acc"]) for x, y in zip(local, dask)]
    res = dict(
        slice=f"{len(cfgs)} runs: residual GCN L={a.depth}, hidden 64, {a.epochs} epochs, {a.dataset}, c in (None, 4)",
        local_s=round(t_local, 2), local_threads=torch.get_num_threads(), workers=a.workers,
        dask_startup_s=round(t_start, 2), dask_grid_s=round(t_dask, 2), dask_total_s=round(t_start + t_dask, 2),
        ratio=round((t_start + t_dask) / t_local, 3), ratio_warm_cluster=round(t_dask / t_local, 3), target=0.6,
        max_test_acc_diff=max(diffs), same_results=max(diffs) == 0.0,
        load_before=load_before, load_after=_load(), cores=cores,
        python=platform.python_version(), torch=torch.__version__, machine=platform.machine())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()

"""Library benchmarks, reported as ratios against a baseline measured in the same run.

1. signals: one traced step (forward + backward recording H(k), X(k), B(k), dW(k) for every layer, as fit()
   records its default signals X and B, plus the per-layer measure E of X(k) and B(k), and the optimiser step;
   fit() pays it only at the epochs it records, every other epoch is a plain step) against one plain
   training step (forward, backward, step), vanilla GNN L = 40 on a 2,000-node CSBM.   target <= 1.3x;
   and what fit() costs per epoch when it records every 10th epoch (its traced epoch included), same target
2. residual GCN, 64 layers, one training epoch on Cora: this library's ResidualGCN (precomputed sparse
   GCN operator) against the same network built from PyG's GCNConv (cached normalisation).  target <= 1.0x
3. residual GAT, 64 layers, one training epoch on chameleon_filtered (hidden 32, chapter 07's grid): this library's
   ResidualGAT (models.attention.GATLayer: GATConv's attention as sparse products) against the same network,
   same weights, with PyG's own GATConv message passing.  target <= 1.0x

Timings are medians over interleaved repeats (baseline and candidate alternate, so background load
hits both alike).  Usage:  python benchmarks/bench_library.py [--repeats N] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from oversmoothing import graphs as G
from oversmoothing import measures as M
from oversmoothing import models
from oversmoothing.signals import loss_fn, trace
from oversmoothing.training import fit


def _median_times(fns: dict, repeats: int, warmup: int = 2) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():  # interleaved
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_signals(repeats: int) -> list[dict]:
    rows = []
    for label, g in [("CSBM n=2000, avg degree 20 (sparse P)", G.csbm(2000, 2, 20, ratio=3.0, seed=0)),
                     ("CSBM n=2000, lambda~0.16 (dense P)", G.csbm(2000, 2, 1500, lam=0.16, lam_tol=0.02, seed=0))]:
        model = models.VanillaGNN(g.num_features, 32, g.num_classes, 40, s=1.0, seed=0)
        op = model.operator(g)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        ce = loss_fn("ce")

        def plain():
            opt.zero_grad(set_to_none=True)
            ce(model(g.x, op), g.y, g.train_mask).backward()
            opt.step()

        def traced():
            opt.zero_grad(set_to_none=True)
            _, sig = trace(model, g.x, op, g.y, g.train_mask, keep=("X", "B"))
            for T in sig.X[1:] + sig.B:  # fit()'s default record: E of X(k) and B(k)
                M.E(T)
            opt.step()

        def fit_epochs():  # what a chapter pays per epoch: fit() recording E of X and B every 10th epoch
            fit(model, g, epochs=9, measures=("E",), signals=("X", "B"), record_every=10, device="cpu",
                progress=False, seed=None)

        t = _median_times({"plain": plain, "signals": traced}, repeats)
        rows.append(dict(benchmark="signals vs plain training step (L=40)", setting=label,
                         baseline_s=t["plain"], ours_s=t["signals"], ratio=t["signals"] / t["plain"], target="<= 1.3"))
        t = _median_times({"plain": plain, "fit": fit_epochs}, max(3, repeats // 3))
        rows.append(dict(benchmark="fit(), record_every=10, per epoch vs plain training step (L=40)", setting=label,
                         baseline_s=t["plain"], ours_s=t["fit"] / 10, ratio=t["fit"] / 10 / t["plain"], target="<= 1.3"))
    return rows


class PyGResidualGCN(nn.Module):
    """The same residual GCN as models.ResidualGCN, built from PyG's GCNConv."""

    def __init__(self, in_dim, hidden, out_dim, depth):
        from torch_geometric.nn import GCNConv

        super().__init__()
        self.encoder = nn.Linear(in_dim, hidden)
        self.layers = nn.ModuleList(GCNConv(hidden, hidden, bias=False, cached=True) for _ in range(depth))
        self.decoder = nn.Linear(hidden, out_dim)

    def forward(self, x, edge_index):
        X = self.encoder(x)
        for conv in self.layers:
            X = X + torch.relu(conv(X, edge_index))
        return self.decoder(X)


def bench_residual_gcn(repeats: int) -> list[dict]:
    from oversmoothing.datasets import load

    g = load("cora")
    ours = models.ResidualGCN(g.num_features, 64, g.num_classes, 64, seed=0)
    op = ours.operator(g)
    theirs = PyGResidualGCN(g.num_features, 64, g.num_classes, 64)
    ce = loss_fn("ce")
    opts = {m: torch.optim.Adam(m.parameters(), lr=1e-3) for m in (ours, theirs)}

    def epoch(model, arg):
        def run():
            opts[model].zero_grad(set_to_none=True)
            ce(model(g.x, arg), g.y, g.train_mask).backward()
            opts[model].step()
        return run

    t = _median_times({"pyg": epoch(theirs, g.edge_index), "ours": epoch(ours, op)}, repeats)
    return [dict(benchmark="residual GCN, 64 layers, one epoch", setting="Cora, hidden 64",
                 baseline_s=t["pyg"], ours_s=t["ours"], ratio=t["ours"] / t["pyg"], target="<= 1.0")]


def bench_residual_gat(repeats: int) -> list[dict]:
    from torch_geometric.nn import GATConv

    from oversmoothing.datasets import load

    g = load("chameleon_filtered", split=0)
    ours = models.ResidualGAT(g.num_features, 32, g.num_classes, 64, seed=0)
    theirs = models.ResidualGAT(g.num_features, 32, g.num_classes, 64, seed=0)
    for k, layer in enumerate(theirs.layers):  # PyG's message passing, the same weights
        conv = GATConv(32, 32, heads=1, bias=False, add_self_loops=False)
        conv.load_state_dict(layer.state_dict())
        theirs.layers[k] = conv
    ei = ours.operator(g)
    ce = loss_fn("ce")
    opts = {m: torch.optim.Adam(m.parameters(), lr=1e-3) for m in (ours, theirs)}

    def epoch(model):
        def run():
            opts[model].zero_grad(set_to_none=True)
            ce(model(g.x, ei), g.y, g.train_mask).backward()
            opts[model].step()
        return run

    t = _median_times({"pyg": epoch(theirs), "ours": epoch(ours)}, repeats)
    return [dict(benchmark="residual GAT, 64 layers, one epoch", setting="chameleon_filtered, hidden 32",
                 baseline_s=t["pyg"], ours_s=t["ours"], ratio=t["ours"] / t["pyg"], target="<= 1.0")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = bench_signals(args.repeats) + bench_residual_gcn(args.repeats) + bench_residual_gat(args.repeats)
    env = dict(python=platform.python_version(), torch=torch.__version__, threads=torch.get_num_threads(),
               cpus=os.cpu_count(), device="cpu")
    lines = ["| benchmark | setting | baseline (ms) | ours (ms) | ratio | target |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['setting']} | {1e3 * r['baseline_s']:.1f} | {1e3 * r['ours_s']:.1f} | "
              f"{r['ratio']:.2f}x | {r['target']} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    print(f"\n{env}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "library.md").write_text(table + f"\n\n{env}\n")
    (out / "library.json").write_text(json.dumps(dict(rows=rows, env=env), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

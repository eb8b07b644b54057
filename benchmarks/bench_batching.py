"""Batched training runs against the same runs one after another, in one run (issue 18's hypothesis).

R runs that differ only in their seed (one graph, depth, width and c) are trained

(a) one after another, as ``grid.run_grid`` trains them: the library's model, ``signals.step`` (one forward and
    backward pass) and Adam, once per run;
(b) as ONE batched model: the R runs' weights stacked ([R, d_in, d_out] per layer), one operator product per
    layer for all runs (dense P: one broadcast ``P @ X`` over [R, n, d]; sparse P: the block-diagonal
    I_R (x) P applied to [R n, d]), the R cross-entropies summed, so that each run keeps its own gradients and,
    Adam being elementwise, its own Adam state.

Before anything is timed, the batched model is loaded with the R library models' very weights and its logits are
checked against theirs (float32 rounding, ``--rtol``): the two sides compute the same networks.  Reported: ms per
epoch of (a) for all R runs and of (b), and the ratio b / a (medians of interleaved repeats).  Settings:

* ``res_gcn``: chapter 07's residual GCN, X(k) = X(k-1) + relu(P X(k-1) W(k)), W(k) = c W_raw(k)/||W_raw(k)||_F,
  linear encoder and decoder with biases (sparse GCN operator of a real graph);
* ``gnn``: chapter 04's vanilla GNN, H(k) = P X(k-1) W(k), X(k) = rho(H(k)), no biases, on a dense CSBM.

Usage:  python benchmarks/bench_batching.py [--runs 3 9] [--repeats 7] [--device cpu|cuda] [--tiny]
Writes benchmarks/results/bench_batching.{md,json}.  No target: it measures how much batching pays on a machine
(on this project's 2-core CPU, by a fifth to a quarter: 0.71x-0.91x, see the README's benchmarks).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from oversmoothing import graphs as G
from oversmoothing import models
from oversmoothing.datasets import load
from oversmoothing.devices import resolve_device
from oversmoothing.graphs import to_scipy
from oversmoothing.models.layers import propagate
from oversmoothing.signals import step

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_library import _median_times  # noqa: E402  (interleaved repeats, medians)


def _stack(tensors) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))


def _block_diagonal(P: torch.Tensor, R: int) -> torch.Tensor:
    """I_R (x) P, stored as the library stores its operators (a sparse CSR tensor for a sparse P)."""
    return G._to_torch(sp.block_diag([to_scipy(P)] * R), P.device)


class BatchedResidualGCN(nn.Module):
    """R residual GCNs (``models.ResidualGCN``, hard Frobenius normalisation) side by side, from their weights."""

    def __init__(self, nets, c: float):
        super().__init__()
        self.c = c
        self.W_in = _stack(n.encoder.weight for n in nets)                          # [R, d_in, d]
        self.b_in = _stack(n.encoder.bias.unsqueeze(0) for n in nets)               # [R, 1, d]
        self.W_raw = nn.ParameterList(_stack(n.layers[k].parametrizations.weight.original for n in nets)
                                      for k in range(len(nets[0].layers)))          # L x [R, d, d]
        self.W_out = _stack(n.decoder.weight for n in nets)                         # [R, d, C]
        self.b_out = _stack(n.decoder.bias.unsqueeze(0) for n in nets)              # [R, 1, C]

    def forward(self, x, P_R):
        R, d = self.W_in.shape[0], self.W_in.shape[2]
        X = torch.matmul(x, self.W_in) + self.b_in                                   # [R, n, d]
        n = X.shape[1]
        for W_raw in self.W_raw:
            W = self.c * W_raw / torch.linalg.vector_norm(W_raw, dim=(1, 2), keepdim=True)
            H = propagate(P_R, torch.bmm(X, W).reshape(R * n, d)).reshape(R, n, d)  # (I_R (x) P)(X W)
            X = X + torch.relu(H)
        return torch.bmm(X, self.W_out) + self.b_out                                 # [R, n, C]


class BatchedVanillaGNN(nn.Module):
    """R vanilla GNNs (``models.VanillaGNN``, no biases) side by side, from their weights."""

    def __init__(self, nets):
        super().__init__()
        self.rho = nets[0].rho
        self.W = nn.ParameterList(_stack(n.layers[k].weight for n in nets) for k in range(len(nets[0].layers)))

    def forward(self, x, P):
        X = x.expand(self.W[0].shape[0], *x.shape)                                   # [R, n, d_in]
        for k, W in enumerate(self.W, start=1):
            H = torch.matmul(P, torch.bmm(X, W))                                     # P X(k-1) W(k), every run
            X = self.rho(H) if k < len(self.W) else H
        return X


def _setting(name: str, tiny: bool):
    """(graph, seed -> one library model, library models -> the batched model, label) of a setting."""
    if name == "res_gcn":
        g = load("chameleon_filtered", split=0)
        d, L, c = (16, 8, 4.0) if tiny else (64, 64, 4.0)

        def make(seed):
            return models.ResidualGCN(g.num_features, d, g.num_classes, L, lipschitz_c=c, seed=seed)

        return g, make, lambda nets: BatchedResidualGCN(nets, c), f"residual GCN, chameleon_filtered, L={L}, d={d}, c={c:g}"
    if name == "gnn":
        n, deg = (120, 90) if tiny else (500, 400)
        g = G.csbm(n, 2, deg, lam=0.16 if not tiny else 0.3, lam_tol=0.03, seed=0, dim=16, mean_sep=2.0)
        d, L = (8, 6) if tiny else (32, 40)

        def make(seed):
            return models.VanillaGNN(g.num_features, d, g.num_classes, L, activation="centred_softplus", s=1.7,
                                     seed=seed)

        return g, make, BatchedVanillaGNN, f"vanilla GNN, dense CSBM n={n}, L={L}, d={d}"
    raise ValueError(f"unknown setting {name!r}; choose res_gcn or gnn")


def bench(name: str, R: int, repeats: int, device, tiny: bool, rtol: float) -> dict:
    g, make, batched, label = _setting(name, tiny)
    g = g.to(device)
    nets = [make(seed).to(device) for seed in range(R)]
    op = nets[0].operator(g, device)
    op_b = _block_diagonal(op, R) if op is not None and op.layout == torch.sparse_csr else op
    big = batched(nets).to(device)
    with torch.no_grad():  # the same networks: the batched logits are the R models' logits
        want = torch.stack([net(g.x, op) for net in nets])
        got = big(g.x, op_b)
    err = float(((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).cpu())
    if not err <= rtol:
        raise SystemExit(f"{label}: the batched model's logits differ from the R models' by {err:.2e} "
                         f"(relative, > --rtol {rtol:g}): not the same networks, nothing timed")
    mask, y = g.train_mask, g.y
    opts = [torch.optim.Adam(net.parameters(), lr=0.005) for net in nets]
    opt_b = torch.optim.Adam(big.parameters(), lr=0.005)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)  # a step is timed to its end

    def one_by_one():
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            step(net, g.x, op, y, mask, loss="ce")
            opt.step()
        sync()

    def batched_step():
        opt_b.zero_grad(set_to_none=True)
        logits = big(g.x, op_b)[:, mask]                                             # [R, m, C]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[mask].repeat(R), reduction="sum") / int(mask.sum())
        loss.backward()                                                              # = sum of the R mean losses
        opt_b.step()
        sync()

    t = _median_times({"one": one_by_one, "batched": batched_step}, repeats)  # interleaved: load hits both alike
    return dict(setting=label, runs=R, device=str(device), one_by_one_ms=1e3 * t["one"], batched_ms=1e3 * t["batched"],
                ratio=t["batched"] / t["one"], logits_rel_err=err)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[3, 9], help="runs R per group (default 3 9)")
    ap.add_argument("--settings", nargs="+", default=["res_gcn", "gnn"], help="res_gcn and/or gnn")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timed epochs of each side (median)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1, as a build worker)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="largest relative logit difference accepted")
    ap.add_argument("--tiny", action="store_true", help="small sizes (a check that it runs, not a measurement)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if any(r < 1 for r in args.runs):
        ap.error(f"--runs must be positive, got {args.runs}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = [bench(s, R, args.repeats, device, args.tiny, args.rtol) for s in args.settings for R in args.runs]
    lines = [f"Batched runs vs one by one ({platform.processor() or platform.machine()}, {device}, "
             f"{args.threads} thread(s), {time.strftime('%Y-%m-%d %H:%M')}, medians of {args.repeats} interleaved epochs)",
             "", "| setting | runs R | one by one, R runs (ms/epoch) | batched (ms/epoch) | batched / one by one |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['runs']} | {r['one_by_one_ms']:.1f} | {r['batched_ms']:.1f} | **{r['ratio']:.2f}x** |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_batching.md").write_text(text)
    (args.out / "bench_batching.json").write_text(json.dumps(rows, indent=1))
    print(text)


if __name__ == "__main__":
    main()

"""What chapter 09 (open questions Q1-Q5, beyond the papers) runs.

* Q1 (do the weights stay bounded?): :func:`weight_bounds` reduces a training grid of paper 1's networks
  (:func:`oversmoothing.experiments.traps.train_graphs`, which records ||W(k)||_2 at every recorded epoch) to one
  row per run: lambda max_k ||W(k)||_2 at the start, its largest value, the first epoch it reaches 1, the growth
  max ||W|| / s, joined with the run's trap status;
* Q2 (homophily and expansion): :func:`csbm_sweep` draws CSBMs from heterophilic to homophilic at one average
  degree (same labels, features and masks for every ratio of a seed), :func:`homophily` is the edge homophily;
* Q2, Q3 (residual GCNs, other normalisations): :func:`residual_grid` trains residual networks
  (``models.build("paper2.res_gcn", ..., lipschitz_c=, lipschitz_mode=, norm=)``) through
  :func:`oversmoothing.grid.run_grid`, each run with its float64 diagnostics at initialisation (:func:`probe`:
  forward growth and gradient expansion) and the same diagnostics at the end of training; :func:`normalisations`
  names the variants of Q3;
* Q4 (backward oversmoothing beyond GCNs): :func:`backward_grid` gives chapter 2's per-layer measures of
  B(k) = dL/dH(k) in one float64 pass (optionally after a few epochs), relative to the constant rows and to the
  limit direction of P^T (:func:`limit_profile`);
* Q5 (the trap on real graphs): :func:`centred` (the features minus their mean, chapter 4's preprocessing) and
  :func:`vanilla_grid` (chapter 4's training runs for any registered vanilla network, e.g. the GCN operator
  ``"paper1.gnn_gcn"``), read by :func:`~oversmoothing.experiments.traps.run_table`.

The answers are :mod:`oversmoothing.judges.questions`'.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from .. import graphs as G
from .. import measures
from ..grid import plain, run_grid
from ..models import build
from ..signals import trace
from ..training import fit
from .traps import KINDS, chance_loss, run_table, train_graphs

__all__ = ["trap_grid", "weight_bounds", "weight_trajectories", "homophily", "csbm_sweep", "expansion_sweep",
           "expansion_parts", "real_expansion_parts", "normalisations", "probe", "residual_run", "residual_grid", "limit_profile", "rel_limit", "backward_profile",
           "backward_grid", "centred", "vanilla_grid"]


# ---------------------------------------------------------------------------------------------------- Q1, Q5

def trap_grid(graphs: dict, nets, threshold: float, *, names: dict | None = None, **train_kw):
    """Chapter 4's training runs on several graphs, each with its own model seed: ``graphs`` {(label, seed):
    Graph}, ``nets`` [(kind, depth)] with kind "GNN" or "MLP", every net trained on every graph with that seed
    (:func:`~oversmoothing.experiments.traps.train_graphs`, the very runs of chapters 04-05, so the run cache is
    shared; with ``names`` {kind: registry name}, e.g. {"GNN": "paper1.gnn_gcn"}, :func:`vanilla_grid`).
    ``train_kw``: hidden, activation, init, s, lr, epochs, device.  Returns (epochs, layers, runs): the two
    history tables (column graph = the label) and the :func:`~oversmoothing.experiments.traps.run_table` keyed by
    graph, model and seed, each run against its graph's :func:`~oversmoothing.experiments.traps.chance_loss`."""
    EP, LA = [], []
    for (label, seed), g in graphs.items():
        runs = [dict(kind=k, depth=int(L), seed=int(seed)) for k, L in nets]
        if names:
            e, la = vanilla_grid({label: g}, [dict(r, name=names.get(r["kind"], KINDS[r["kind"]])) for r in runs],
                                 **train_kw)
        else:
            e, la = train_graphs({label: g}, runs, **train_kw)
        EP.append(e)
        LA.append(la)
    EP, LA = pd.concat(EP, ignore_index=True), pd.concat(LA, ignore_index=True)
    chance = {key: chance_loss(g) for key, g in graphs.items()}
    return EP, LA, run_table(EP, LA, ["graph", "model", "seed"], lambda r: chance[r["graph"], r["seed"]], threshold)


# ---------------------------------------------------------------------------------------------------- Q1

def weight_bounds(runs: pd.DataFrame, layers: pd.DataFrame, lam, keys=("graph", "model", "seed"),
                  bound: float = 1.0) -> pd.DataFrame:
    """One row per run of a training grid: ``runs`` (a :func:`~oversmoothing.experiments.traps.run_table` keyed by
    ``keys``) joined with its weights' history from ``layers`` (``w_spec`` = ||W(k)||_2 per recorded epoch).

    ``lam``: lambda of P, a number or {graph key: lambda}.  Columns added: ``s0`` (max_k ||W(k)||_2 at the first
    recorded epoch), ``w_max`` (the largest over epochs and layers), ``growth`` = w_max / s0, ``slam0`` and
    ``slam_max`` (the same times lambda), ``cross_epoch`` (the first epoch at which lambda max_k ||W(k)||_2 >=
    ``bound``; NaN if never) and ``slam_end`` (at the last recorded epoch)."""
    keys = list(keys)
    w = layers.loc[layers["layer"] >= 1].groupby(keys + ["epoch"])["w_spec"].max().reset_index()
    rows = []
    for vals, d in w.groupby(keys):
        sel = dict(zip(keys, vals if isinstance(vals, tuple) else (vals,)))
        lm = float(lam[sel["graph"]] if isinstance(lam, dict) else lam)
        d = d.sort_values("epoch")
        over = d.loc[d["w_spec"] * lm >= bound, "epoch"]
        s0, wmax = float(d["w_spec"].iloc[0]), float(d["w_spec"].max())
        rows.append(dict(sel, lam=lm, s0=s0, w_max=wmax, growth=wmax / s0 if s0 > 0 else float("nan"),
                         slam0=lm * s0, slam_max=lm * wmax, slam_end=lm * float(d["w_spec"].iloc[-1]),
                         cross_epoch=float(over.iloc[0]) if len(over) else float("nan")))
    return runs.merge(pd.DataFrame(rows), on=keys, how="left")


def weight_trajectories(layers: pd.DataFrame, lam, keys=("graph", "model", "seed")) -> pd.DataFrame:
    """lambda max_k ||W(k)||_2 at every recorded epoch of every run (column ``slam``); ``lam`` a number or
    {graph key: lambda}."""
    keys = list(keys)
    w = layers.loc[layers["layer"] >= 1].groupby(keys + ["epoch"])["w_spec"].max().reset_index()
    w["slam"] = w["w_spec"] * (w["graph"].map(lam) if isinstance(lam, dict) else float(lam))
    return w


# ---------------------------------------------------------------------------------------------------- Q2

def homophily(graph) -> float:
    """Edge homophily: the fraction of (directed) edges whose two end nodes have the same label."""
    src, dst = graph.edge_index
    return float((graph.y[src] == graph.y[dst]).double().mean()) if graph.num_edges else float("nan")


def csbm_sweep(ratios, seeds, n: int, avg_degree: float, **kw) -> dict:
    """{(ratio, seed): Graph}: one two-class CSBM per p_in/p_out ``ratio`` (below 1: heterophilic) and seed, all at
    the expected ``avg_degree`` (:func:`oversmoothing.graphs.csbm`, ``kw``: dim, mean_sep, ...).  For one seed the
    labels, features and masks are the same at every ratio (the draws that make them do not depend on the ratio;
    only the edges change), so a network with P = I sees the same problem at every ratio.  Each graph's meta has
    ``ratio``, ``seed``, ``homophily`` and ``lambda_gcn`` (the largest |eigenvalue| of the GCN operator after the
    top one)."""
    out = {}
    for r in ratios:
        for s in seeds:
            g = G.csbm(n, 2, avg_degree, ratio=float(r), seed=int(s), **kw)
            g.meta.update(ratio=float(r), seed=int(s), homophily=homophily(g),
                          lambda_gcn=G.second_eigenvalue(G.gcn(g)))
            out[float(r), int(s)] = g
    return out


def expansion_sweep(csbms: dict, real: dict, *, epochs: int, real_epochs: int = 0, **kw):
    """Q2's runs of paper 2's residual GCN and of its P = I twin (:func:`residual_grid`, ``kw``: hidden, depth,
    lr, weight_decay, device).  ``csbms``: :func:`csbm_sweep`'s graphs, the residual GCN trained ``epochs`` on
    each; the twin once per seed (on the first ratio's graph: its labels, features and masks are those of every
    ratio, and it does not see the edges; its row has ratio NaN).  ``real``: {(dataset, seed): Graph}, both
    networks probed at initialisation and trained ``real_epochs`` (0: not trained).  Returns (sweep, real) rows
    with arch ("res_gcn", "res_mlp"), seed, ratio or dataset, homophily (and lambda_gcn on the sweep)."""
    rows = [residual_grid(g, [dict(model="paper2.res_gcn", arch="res_gcn", seed=sd, ratio=r,
                                   homophily=g.meta["homophily"], lambda_gcn=g.meta["lambda_gcn"])], epochs=epochs, **kw)
            for (r, sd), g in csbms.items()]
    first = {}
    for (r, sd), g in csbms.items():
        first.setdefault(sd, g)
    rows += [residual_grid(g, [dict(model="paper2.res_mlp", arch="res_mlp", seed=sd, ratio=float("nan"))],
                           epochs=epochs, **kw) for sd, g in first.items()]
    real_rows = [residual_grid(g, [dict(model=f"paper2.{a}", arch=a, seed=sd, dataset=ds, homophily=homophily(g))
                                   for a in ("res_gcn", "res_mlp")], epochs=real_epochs, **kw)
                 for (ds, sd), g in real.items()]
    return pd.concat(rows, ignore_index=True), pd.concat(real_rows, ignore_index=True)


def expansion_parts(sweep: pd.DataFrame) -> pd.DataFrame:
    """What the graph adds to the expansion on :func:`expansion_sweep`'s CSBM rows: one row per (ratio, seed) with
    ``gcn`` and ``mlp`` = log10 r of the residual GCN and of its twin (a twin given once per seed, ratio NaN, serves
    every ratio), ``g`` = gcn - mlp, and ``homophily_bin`` = the ratio's mean edge homophily (2 decimals)."""
    gcn = sweep.loc[sweep["arch"] == "res_gcn", ["ratio", "homophily", "seed", "init_log10_expansion"]].rename(
        columns={"init_log10_expansion": "gcn"})
    mlp = sweep.loc[sweep["arch"] == "res_mlp", ["ratio", "seed", "init_log10_expansion"]].rename(
        columns={"init_log10_expansion": "mlp"})
    if mlp["ratio"].isna().all():
        out = gcn.merge(mlp.drop(columns="ratio"), on="seed", how="left")
    else:
        out = gcn.merge(mlp, on=["ratio", "seed"], how="left")
    out["g"] = out["gcn"] - out["mlp"]
    out["homophily_bin"] = out.groupby("ratio")["homophily"].transform("mean").round(2)
    return out


def real_expansion_parts(real: pd.DataFrame) -> pd.DataFrame:
    """The same on :func:`expansion_sweep`'s real-graph rows: one row per (dataset, seed) with gcn, mlp, g and the
    dataset's edge homophily."""
    key = ["dataset", "seed"]
    gcn = real.loc[real["arch"] == "res_gcn"].set_index(key)
    mlp = real.loc[real["arch"] == "res_mlp"].set_index(key)["init_log10_expansion"]
    out = pd.DataFrame({"gcn": gcn["init_log10_expansion"], "mlp": mlp.reindex(gcn.index), "homophily": gcn["homophily"]})
    out["g"] = out["gcn"] - out["mlp"]
    return out.reset_index()


# ---------------------------------------------------------------------------------------------------- Q2, Q3

def normalisations(c: float = 1.0) -> dict:
    """Q3's variants of the residual GCN, {label: build options}: none, paper 2's Frobenius normalisation in its
    hard (c W/||W||_F) and soft (W/max(1, ||W||_F/c)) forms, spectral normalisation (c W/||W||_2, torch's
    ``spectral_norm``), LayerNorm and PairNorm of every branch before the activation."""
    return {"none": {}, "Frobenius (hard)": dict(lipschitz_c=c, lipschitz_mode="hard"),
            "Frobenius (soft)": dict(lipschitz_c=c, lipschitz_mode="soft"),
            "spectral": dict(lipschitz_c=c, lipschitz_mode="spectral"),
            "LayerNorm": dict(norm="layernorm"), "PairNorm": dict(norm="pairnorm")}


def _log10(x: float) -> float:
    if not math.isfinite(x):
        return float("nan") if math.isnan(x) else math.inf
    return math.log10(x) if x > 0 else -math.inf


def _diagnostics(norm_X, mu_G) -> dict:
    """Forward growth log10 ||X(L)||/||X(0)|| and gradient expansion log10 mu(G(1))/mu(G(L)) (chapters 6-7)."""
    return dict(log10_growth=_log10(norm_X[-1] / norm_X[0]) if norm_X[0] > 0 else float("nan"),
                log10_expansion=_log10(mu_G[1] / mu_G[-1]) if mu_G[-1] > 0 else float("nan"))


def probe(graph, name: str, depth: int, *, hidden: int = 32, seed: int = 0, **options) -> dict:
    """One forward and one backward pass at initialisation, in float64, of ``models.build(name, ...)`` on
    ``graph``'s training loss: ``log10_growth`` = log10 ||X(L)||_F/||X(0)||_F (the forward face of the expansion,
    chapter 7), ``log10_expansion`` = log10 mu(G(1))/mu(G(L)) with G(k) = dL/dX(k) (chapter 6's ratio r: above
    2, a 100-fold expansion towards the input), ``rel_mu_X_L`` = mu(X(L))/||X(L)||_F (forward oversmoothing) and
    ``max_logit``."""
    model = build(name, graph.num_features, hidden, graph.num_classes, depth, seed=seed, **options).double()
    op = model.operator(graph)
    if isinstance(op, torch.Tensor) and op.is_floating_point():
        op = op.to(torch.float64)
    _, sig = trace(model, graph.x.double(), op, graph.y, graph.train_mask)
    norm_X = [float(torch.linalg.norm(X)) for X in sig.X]
    mu_G = [measures.mu(Gk) if Gk is not None else float("nan") for Gk in sig.G]
    return dict(**_diagnostics(norm_X, mu_G), rel_mu_X_L=measures.rel_mu(sig.X[-1]),
                max_logit=float(sig.logits.abs().max()))


def residual_run(config: dict, graph) -> dict:
    """One run of :func:`residual_grid` (a task of :func:`oversmoothing.grid.run_grid`): :func:`probe` at
    initialisation, then (``epochs`` > 0) Adam full batch with the diagnostics recorded again at the last epoch
    (float32).  Returns one row: the config's labels, ``init_*`` and ``end_*`` diagnostics, final ``train_acc``,
    ``test_acc`` (at the epoch of best validation accuracy), ``best_train_acc``, ``final_loss``, ``diverged``."""
    cfg = dict(config)
    name, depth, hidden, seed = cfg["model"], cfg["depth"], cfg["hidden"], cfg["seed"]
    options = dict(cfg.get("options") or {})
    row = {k: v for k, v in cfg.items() if k not in ("options", "device")}
    row.update({f"init_{k}": v for k, v in probe(graph, name, depth, hidden=hidden, seed=seed, **options).items()})
    epochs = cfg.get("epochs", 0)
    if not epochs:
        return row
    model = build(name, graph.num_features, hidden, graph.num_classes, depth, seed=seed, **options)
    h = fit(model, graph, epochs=epochs, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0),
            measures=("mu", "norm"), signals=("X", "G"), record_every=epochs, device=cfg.get("device", "cpu"),
            seed=seed, progress=False, desc=f"{name} L={depth}")
    ep = h.epochs.loc[~h.epochs["diverged"]]
    last = h.layers.loc[h.layers["epoch"] == h.layers["epoch"].max()].sort_values("layer")
    end = _diagnostics(last["norm_X"].to_numpy(float), last["mu_G"].to_numpy(float))
    row.update({f"end_{k}": v for k, v in end.items()})
    nan = float("nan")
    row.update(train_acc=float(ep["train_acc"].iloc[-1]) if len(ep) else nan,
               best_train_acc=float(ep["train_acc"].max()) if len(ep) else nan,
               test_acc=float(ep.loc[ep["val_acc"].idxmax(), "test_acc"]) if len(ep) else nan,
               final_loss=float(ep["loss"].iloc[-1]) if len(ep) else nan, diverged=h.diverged)
    return row


def residual_grid(graph, configs, *, device="auto", **common) -> pd.DataFrame:
    """:func:`residual_run` for every dict of ``configs`` on ``graph`` (keys: model (a registry name), depth,
    seed, optionally options (build keywords: lipschitz_c, lipschitz_mode, norm, ...), epochs, and any label;
    ``common`` (hidden, epochs, lr, weight_decay, labels) fills in what a config leaves out); each run is a task
    of :func:`oversmoothing.grid.run_grid` (cached, resumable).  One row per run."""
    configs = [plain(dict(common) | dict(c)) for c in configs]
    return pd.DataFrame(list(run_grid(residual_run, configs, inputs={"graph": graph}, device=str(device),
                                      desc="residual runs")))


# ---------------------------------------------------------------------------------------------------- Q4

def limit_profile(model, graph) -> torch.Tensor:
    """The node profile u of the limit u b^T that the backward products P^T ... P^T of ``model``'s aggregation
    converge to, for a signal whose rows are equal (an oversmoothed forward pass makes every attention score over
    a node's neighbours equal, so attention is then the mean over them, P = D_in^{-1} A): u = the in-degree of
    each node in the edges the model propagates on (attention layers, their self-loops included); 1 for
    paper 1's bi-stochastic P and for P = I; sqrt(d + 1) for the GCN operator."""
    kind = getattr(model, "propagation", "identity")
    n = graph.num_nodes
    if kind in ("identity", "bistochastic"):
        return torch.ones(n, dtype=torch.float64)
    if kind == "gcn":
        return (torch.bincount(graph.edge_index[0], minlength=n).double() + 1.0).sqrt()
    op = model.operator(graph)
    return torch.bincount(op[1].cpu(), minlength=n).double()


def rel_limit(B: torch.Tensor, u: torch.Tensor) -> float:
    """||B - u_hat u_hat^T B||_F / ||B||_F, u_hat = u/||u||: how far B is from a matrix u b^T (every feature
    column proportional to the node profile u).  With u = 1 it is chapter 2's mu(B)/||B||_F."""
    B = B.double()
    u = (u.double() / torch.linalg.norm(u.double())).to(B.device)
    nrm = float(torch.linalg.norm(B))
    return float(torch.linalg.norm(B - torch.outer(u, u @ B))) / nrm if nrm > 0 else float("nan")


def backward_profile(config: dict, graph) -> pd.DataFrame:
    """One task of :func:`backward_grid`: build ``config["model"]`` (depth, hidden, seed, options; dropout 0),
    train it ``config["epochs"]`` Adam epochs (0: at initialisation), then one float64 forward/backward pass.
    One row per layer k = 1..L: ``rel_mu_B`` = mu(B(k))/||B(k)||_F (chapter 2), ``rel_lim_B`` = :func:`rel_limit`
    of B(k) against :func:`limit_profile`, ``E_B``, ``norm_B`` and ``rel_mu_X`` = mu(X(k))/||X(k)||_F."""
    cfg = dict(config)
    options = dict(cfg.get("options") or {})
    model = build(cfg["model"], graph.num_features, cfg["hidden"], graph.num_classes, cfg["depth"], seed=cfg["seed"],
                  **options)
    if cfg.get("epochs", 0):
        fit(model, graph, epochs=cfg["epochs"], lr=cfg.get("lr", 0.01), measures=(), signals=(),
            device=cfg.get("device", "cpu"), seed=cfg["seed"], progress=False)
    model = model.cpu().double()
    op = model.operator(graph)
    if isinstance(op, torch.Tensor) and op.is_floating_point():
        op = op.to(torch.float64)
    _, sig = trace(model, graph.x.double(), op, graph.y, graph.train_mask)
    u = limit_profile(model, graph)
    rows = [dict(layer=k, rel_mu_B=measures.rel_mu(B), rel_lim_B=rel_limit(B, u), E_B=measures.E(B),
                 norm_B=float(torch.linalg.norm(B.double())), rel_mu_X=measures.rel_mu(sig.X[k]))
            for k, B in enumerate(sig.B, start=1)]
    labels = {k: v for k, v in cfg.items() if k not in ("options", "device") and not isinstance(v, (dict, list))}
    return pd.DataFrame(rows).assign(**labels)


def backward_grid(graph, configs, *, device="auto", **common) -> pd.DataFrame:
    """:func:`backward_profile` for every dict of ``configs`` (model, depth, seed, optionally options, epochs,
    labels; ``common`` fills in hidden, lr, epochs) on ``graph``, through :func:`oversmoothing.grid.run_grid`;
    the per-layer rows stacked."""
    configs = [plain(dict(common) | dict(c)) for c in configs]
    out = run_grid(backward_profile, configs, inputs={"graph": graph}, device=str(device), desc="backward profiles")
    return pd.concat(list(out), ignore_index=True)


# ---------------------------------------------------------------------------------------------------- Q5

def centred(graph):
    """The same graph with the features' mean row removed, x_i <- x_i - (1/n) sum_j x_j (chapter 4's standard
    preprocessing: no node-independent offset that P keeps whole)."""
    return replace(graph, x=graph.x - graph.x.mean(0, keepdim=True), meta=dict(graph.meta, centred=True))


def vanilla_run(config: dict, graph) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run of :func:`vanilla_grid`: chapter 4's training run (:func:`~oversmoothing.experiments.traps.train_grid`)
    of the registered network ``config["run"]["name"]``; returns its (epochs, layers) tables, tagged."""
    cfg = config["run"]
    model = build(cfg["name"], graph.num_features, config["hidden"], graph.num_classes, cfg["depth"],
                  activation=cfg["activation"], init=cfg["init"], s=cfg["s"], seed=cfg["seed"])
    h = fit(model, graph, epochs=config["epochs"], lr=cfg["lr"], loss=cfg["loss"], measures=(), signals=(),
            record_every=config["record_every"], device=config["device"], seed=cfg["seed"], progress=False,
            desc=f"{cfg['kind']} L={cfg['depth']}")
    tags = {("objective" if k == "loss" else k): v for k, v in cfg.items()}
    tags.update(model=f"{cfg['kind']} L={cfg['depth']}", diverged_at=h.diverged_at)
    return h.epochs.assign(**tags), h.layers.assign(**tags)


def vanilla_grid(graphs: dict, runs, *, hidden: int = 32, activation: str = "centred_softplus",
                 init: str = "orthogonal", s: float = 1.0, epochs: int = 100, lr: float = 0.01, loss: str = "ce",
                 device="auto", record_every: int = 1):
    """Chapter 4's training grid for any registered vanilla network: every run of ``runs`` (dicts with ``name``
    (a registry name, e.g. "paper1.gnn_gcn"), ``kind`` (the label: "GNN" or "MLP"), ``depth``, ``seed``) on every
    graph of ``graphs`` ({key: Graph}).  Returns (epochs, layers) like
    :func:`~oversmoothing.experiments.traps.train_graphs` (columns graph, model "GNN L=40", seed, ...), so that
    :func:`~oversmoothing.experiments.traps.run_table` and the judges read them the same way."""
    EP, LA = [], []
    for key, g in graphs.items():
        shared = plain(dict(hidden=hidden, epochs=epochs, record_every=record_every))
        configs = [dict(shared, run=plain(dict(activation=activation, init=init, s=s, lr=lr, loss=loss) | dict(r)))
                   for r in runs]
        res = run_grid(vanilla_run, configs, inputs={"graph": g}, device=str(device), desc="training runs")
        EP += [e.assign(graph=key) for e, _ in res]
        LA += [la.assign(graph=key) for _, la in res]
    return pd.concat(EP, ignore_index=True), pd.concat(LA, ignore_index=True)

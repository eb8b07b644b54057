"""What chapter 08 runs: depth sweeps of the classic remedies for oversmoothing (built from PyG's layers,
:mod:`oversmoothing.models.remedies`), model selection on validation, and the GCN operator's limit.

The remedies by their chapter names (:data:`REMEDIES`; each is ``models.build("remedy.<name>", ...)``, whose
registry entry names its P = I twin):

=================  ===========================================================================
``gcn``            plain GCN (Kipf & Welling) generalised to depth L: GCNConv, ReLU, dropout;
                   the last GCNConv outputs the logits.  L = 2 is the textbook 2-layer GCN.
``residual``       :class:`oversmoothing.models.ResidualGCN`: X(k) = X(k-1) + relu(P X(k-1) W(k)).
``lipschitz``      the same with paper 2's Lipschitz normalisation W <- c W/||W||_F; c from
                   :func:`oversmoothing.models.lipschitz_c_rule` (c^2 L/d = 1) unless ``c=`` is given.
``mlp``            the plain GCN's P = I twin (same layers, init and dropout): the control.
``jknet``          GCNConv+ReLU stack read out by PyG's ``JumpingKnowledge('cat')`` (Xu et al. 2018).
``dropedge``       plain GCN whose edges are dropped at random (p = 0.3) at every training pass (Rong et al. 2020).
``pairnorm``       plain GCN with PyG's ``PairNorm`` after every hidden GCNConv (Zhao & Akoglu 2020).
``appnp``          2-layer MLP, then L steps of APPNP's personalised-PageRank propagation (Klicpera et al. 2019).
``gcnii``          PyG's GCN2Conv, initial residual and identity mapping (Chen et al. 2020).
``gat``            plain GAT: PyG's single-head GATConv, ELU, dropout (no residual).
``transformer``    plain graph transformer: PyG's single-head TransformerConv, ReLU, dropout.
=================  ===========================================================================

* :func:`depth_sweep` trains every remedy at every depth, seed and dropout rate and summarises each run
  (:func:`summarise`: accuracy, forward E(X(L)), backward E(B(k_mid)), gradient norms, at init and at the end);
* :func:`choose_by_validation` picks one option (the dropout rate) per run by validation accuracy;
* :func:`gcn_power_limit` checks numerically what powers of the GCN operator converge to.

The verdict (C12) is :mod:`oversmoothing.judges.remedies`'.
"""
from __future__ import annotations

import torch

from ..graphs import Graph, gcn_matrix

__all__ = ["REMEDIES", "remedy", "choose_by_validation", "gcn_power_limit", "depth_run", "depth_sweep", "summarise",
           "middle_layer", "SWEEP_MEASURES"]

#: chapter 08's remedies by name -> their registry names
REMEDIES = {name: f"remedy.{name}" for name in ("gcn", "mlp", "residual", "jknet", "dropedge", "pairnorm", "appnp",
                                               "gcnii", "lipschitz", "gat", "transformer")}


def remedy(name: str) -> str:
    """The registry name of the remedy ``name`` (a key of :data:`REMEDIES`)."""
    if name not in REMEDIES:
        raise ValueError(f"unknown remedy {name!r}; choose one of {sorted(REMEDIES)}")
    return REMEDIES[name]


# ----------------------------------------------------------------------------- the GCN operator's limit
def gcn_power_limit(edge_index: torch.Tensor, num_nodes: int, steps=(10, 100, 1000, 10000), seed: int = 0):
    """What powers of the GCN operator P = D~^{-1/2}(A+I)D~^{-1/2} converge to, checked numerically.

    P is symmetric with spectrum in (-1, 1]; its eigenvalue 1 has one eigenvector per connected
    component c, u_c = D~^{1/2} 1_c / ||D~^{1/2} 1_c||, so P^k x -> sum_c u_c u_c^T x: within a component the
    limit's entries are proportional to sqrt(d_i + 1), *not* constant.  For a random x >= 0 (float64) and
    each k in ``steps`` this returns one row with the largest over components (of >= 2 nodes) of the
    relative spread std/mean of (P^k x)_i / sqrt(d_i+1) (-> 0) and of (P^k x)_i itself (stays > 0 on an
    irregular graph): a DataFrame with columns k, spread_over_sqrt_deg, spread_raw."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    P = gcn_matrix(edge_index, num_nodes)                   # the GCN operator (graphs.gcn_matrix)
    ei = edge_index.cpu().numpy()
    A = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(num_nodes, num_nodes))
    deg = np.asarray(A.astype(bool).sum(1)).ravel() + 1.0   # d_i + 1
    _, comp = connected_components(A, directed=False)
    big = [c for c in np.unique(comp) if (comp == c).sum() >= 2]
    v = np.random.default_rng(seed).random(num_nodes)
    rows, done = [], 0

    def spread(z):
        return max(float(np.std(z[comp == c]) / abs(np.mean(z[comp == c]))) for c in big)

    for k in sorted(steps):
        for _ in range(k - done):
            v = P @ v
        done = k
        rows.append(dict(k=k, spread_over_sqrt_deg=spread(v / np.sqrt(deg)), spread_raw=spread(v)))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- choosing on validation
def choose_by_validation(summary, option: str = "dropout", keys=("model", "depth", "seed"),
                         score: str = "val_acc"):
    """For each group ``keys`` of a sweep's summary keep the run whose ``option`` (e.g. the dropout
    rate) has the best validation score ``score`` (ties: the smallest option value).  Test accuracy is
    never looked at, so the choice is a fair model selection."""
    ranked = summary.sort_values([score, option], ascending=[False, True], kind="mergesort")
    return ranked.groupby(list(keys), sort=False).head(1).sort_values(list(keys)).reset_index(drop=True)


# ----------------------------------------------------------------------------- depth sweep
SWEEP_MEASURES = ("E", "rel_mu", "rel_mu_gcn")


def middle_layer(depth: int) -> int:
    """The layer k = max(1, L // 2) whose backward signal E(B(k)) the sweep reports (paper 1: the
    middle layers, far from both the input and the output, are where B(k) oversmooths most)."""
    return max(1, depth // 2)


def _best(ep, upto=None):
    """The epoch row of best validation accuracy (first one on ties) among epochs <= ``upto``."""
    e = ep if upto is None else ep[ep["epoch"] <= upto]
    return e.loc[e["val_acc"].idxmax()] if e["val_acc"].notna().any() else e.iloc[-1]


def summarise(history, name: str, depth: int, seed: int, budgets=()) -> dict:
    """One row of a depth sweep from a :class:`~oversmoothing.training.History` recorded with
    measures :data:`SWEEP_MEASURES` and signals ("X", "B"): accuracy (test at the best validation epoch,
    that validation accuracy, and final), forward E(X(L)), backward E(B(k_mid)) and the median over layers
    of ||dL/dW(k)||_F, each at initialisation (``_init``) and at the last recorded epoch (``_end``).
    For each b in ``budgets``: ``test_acc_<b>ep``, ``val_acc_<b>ep``, the same selection among epochs <= b
    (what a run of only b epochs would have reported)."""
    import numpy as np

    ep, lay = history.epochs, history.layers
    best = _best(ep)
    k_mid = middle_layer(depth)
    row = dict(model=name, depth=depth, seed=seed, test_acc=float(best["test_acc"]),
               val_acc=float(best["val_acc"]), best_epoch=int(best["epoch"]),
               final_test_acc=float(ep["test_acc"].iloc[-1]), train_acc=float(ep["train_acc"].iloc[-1]),
               final_loss=float(ep["loss"].iloc[-1]), diverged=history.diverged,
               seconds=float(ep["seconds"].sum()))
    for b in budgets:
        bb = _best(ep, b)
        row[f"test_acc_{b}ep"], row[f"val_acc_{b}ep"] = float(bb["test_acc"]), float(bb["val_acc"])
    for tag, e in (("init", lay["epoch"].min()), ("end", lay["epoch"].max())):
        at = lay[lay["epoch"] == e].set_index("layer")
        for m in SWEEP_MEASURES:
            row[f"{m}_X_L_{tag}"] = float(at.loc[depth, f"{m}_X"])
            row[f"{m}_X_0_{tag}"] = float(at.loc[0, f"{m}_X"])
            row[f"{m}_B_mid_{tag}"] = float(at.loc[k_mid, f"{m}_B"])
        g = at.loc[1:, "grad_norm"].to_numpy(dtype=float)
        row[f"grad_norm_{tag}"] = float(np.nanmedian(g)) if np.isfinite(g).any() else float("nan")
    return row


def depth_run(config: dict, graph: Graph):
    """One run of :func:`depth_sweep` (a task of :func:`oversmoothing.grid.run_grid`): model ``name`` at
    ``depth``, ``seed``, ``dropout`` (None: the model's default).  Returns (summary row, layers, epochs)."""
    from ..models import build
    from ..training import fit

    name, depth, seed, p, epochs = config["name"], config["depth"], config["seed"], config["dropout"], config["epochs"]
    kw = dict(config["model_kw"], **({} if p is None else {"dropout": p}))
    model = build(remedy(name), graph.num_features, config["hidden"], graph.num_classes, depth, seed=seed, **kw)
    hist = fit(model, graph, epochs=epochs, lr=config["lr"], weight_decay=config["weight_decay"],
               measures=SWEEP_MEASURES, signals=("X", "B"), record_every=config["record_every"] or max(epochs, 1),
               device=config["device"], seed=seed, desc=f"{name} L={depth} p={p} seed={seed}")
    tag = dict(model=name, depth=depth, seed=seed, dropout=float("nan") if p is None else p)
    return (dict(summarise(hist, name, depth, seed, config["budgets"]), dropout=tag["dropout"]),
            hist.layers.assign(**tag), hist.epochs.assign(**tag))


def depth_sweep(graph, names, depths, seeds=(0,), *, dropouts=(None,), hidden: int = 16, epochs: int = 100,
                lr: float = 0.01, weight_decay: float = 5e-4, record_every: int | None = None, budgets=(),
                device="auto", progress: bool | None = None, model_kw: dict | None = None):
    """Train every model of ``names`` at every depth, seed and dropout rate on ``graph`` (Adam,
    cross-entropy, full batch) and record forward/backward diagnostics; each run is a task of
    :func:`oversmoothing.grid.run_grid` (cached, resumable, on Dask when the runner was given ``--workers``).
    ``dropouts``: rates passed as ``dropout=`` (``None``: the model's default, recorded as NaN).

    Returns ``(summary, layers, epochs)``: ``summary`` has one row per run (see :func:`summarise`, with
    ``budgets``) and a ``dropout`` column; ``layers`` and ``epochs`` concatenate the runs' ``History.layers``
    and ``History.epochs`` with columns model, depth, seed, dropout added.  ``record_every`` defaults to
    ``epochs`` (record at initialisation and at the end)."""
    import pandas as pd

    from ..grid import plain, run_grid

    model_kw = model_kw or {}
    shared = plain(dict(hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay, record_every=record_every,
                        budgets=list(budgets)))
    configs = [dict(shared, name=name, depth=plain(depth), dropout=plain(p), seed=plain(seed),
                    model_kw=plain(model_kw.get(name, {})))
               for name in names for depth in depths for p in dropouts for seed in seeds]
    results = run_grid(depth_run, configs, inputs={"graph": graph}, device=str(device), desc="training runs",
                       progress=progress)
    return (pd.DataFrame([row for row, _, _ in results]), pd.concat([la for _, la, _ in results], ignore_index=True),
            pd.concat([ep for _, _, ep in results], ignore_index=True))

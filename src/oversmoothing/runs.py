"""Train one (dataset, architecture, depth, Lipschitz constant, split, seed) configuration and
summarise it in one row: the helper of paper 2's chapters (06 gradient similarity, 07 Lipschitz
remedies).

* :func:`make_model` builds the three architectures of paper 2 by name:
  ``"gcn"`` (deep GCN without residual connections, ReLU: ``VanillaGNN(propagation="gcn")``),
  ``"res_gcn"`` (:class:`~oversmoothing.models.ResidualGCN`) and ``"res_gat"``
  (:class:`~oversmoothing.models.ResidualGAT`), each optionally Lipschitz-normalised
  (W <- c W/||W||_F on every propagation layer);
* :func:`run` trains it with :func:`~oversmoothing.training.fit`, recording mu and rel_mu of the
  representations X(k) and of the gradients G(k) = dL/dX(k), and returns (summary row, History);
* :func:`sweep` runs a list of configurations and stacks the summary rows in one DataFrame;
* :func:`similarity_summary` reduces one run's per-layer similarities to one number per column;
* :func:`rank_comparison` compares two predictors of an outcome by Spearman's rho with a
  bootstrap confidence interval for the difference of their absolute values.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .graphs import Graph, load
from .models import ResidualGAT, ResidualGCN, VanillaGNN
from .training import fit

__all__ = ["ARCHITECTURES", "make_model", "similarity_summary", "run", "sweep", "rank_comparison"]

ARCHITECTURES = {"gcn": "GCN (no residual)", "res_gcn": "residual GCN", "res_gat": "residual GAT"}
SIM_COLUMNS = ("mu_X", "mu_G", "rel_mu_X", "rel_mu_G")


def make_model(arch: str, in_dim: int, hidden: int, out_dim: int, depth: int, *,
               lipschitz_c: float | None = None, dropout: float = 0.0, seed: int = 0):
    """Paper 2's architectures by name (see the module docstring); ``depth`` = number of
    propagation layers L (for ``"gcn"`` the last one outputs the logits)."""
    if arch == "gcn":
        return VanillaGNN(in_dim, hidden, out_dim, depth, activation="relu", propagation="gcn",
                          lipschitz_c=lipschitz_c, seed=seed)
    if arch == "res_gcn":
        return ResidualGCN(in_dim, hidden, out_dim, depth, dropout=dropout, lipschitz_c=lipschitz_c, seed=seed)
    if arch == "res_gat":
        return ResidualGAT(in_dim, hidden, out_dim, depth, dropout=dropout, lipschitz_c=lipschitz_c, seed=seed)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")


def _geomean(v) -> float:
    v = np.asarray(v, dtype=float)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return float("inf") if np.any(np.isinf(v)) or np.any(np.isnan(v)) else float("nan")
    if np.any(v <= 0):
        return 0.0
    return float(np.exp(np.mean(np.log(v))))


def similarity_summary(layers: pd.DataFrame, columns=SIM_COLUMNS) -> dict:
    """One number per similarity column of one run's ``History.layers``: the geometric mean over
    the layers k = 1..L of the column, at the last recorded epoch whose values are all finite
    (a diverged run is summarised just before its NaN/Inf).  Also ``<col>_first`` (layer 1) and
    ``<col>_last`` (layer L) at that epoch, and ``<col>_growth`` = the geometric mean over layers
    at that epoch divided by the one at epoch 0 (how much the similarity grew during training)."""
    out = {}
    la = layers.loc[layers["layer"] >= 1]
    for col in columns:
        if col not in la:
            continue
        ok = la.groupby("epoch")[col].apply(lambda v: bool(np.all(np.isfinite(v.to_numpy(float)))))
        good = ok[ok].index
        if len(good) == 0:
            out.update({col: float("nan"), f"{col}_first": float("nan"), f"{col}_last": float("nan"),
                        f"{col}_growth": float("nan")})
            continue
        e = good.max()
        at = la.loc[la.epoch == e].sort_values("layer")[col].to_numpy(float)
        at0 = la.loc[la.epoch == la.epoch.min()].sort_values("layer")[col].to_numpy(float)
        g, g0 = _geomean(at), _geomean(at0)
        out.update({col: g, f"{col}_first": float(at[0]), f"{col}_last": float(at[-1]),
                    f"{col}_growth": g / g0 if g0 and math.isfinite(g0) else float("nan")})
    return out


def run(dataset: str | Graph, arch: str, depth: int, *, hidden: int = 32, lipschitz_c: float | None = None,
        epochs: int = 100, lr: float = 0.005, weight_decay: float = 5e-4, dropout: float = 0.0,
        split: int | None = 0, seed: int = 0, measures=("mu", "rel_mu"), signals=("X", "G"),
        record_every: int = 10, device="auto", progress=None):
    """Train ``arch`` with ``depth`` layers on ``dataset`` (a name for :func:`oversmoothing.graphs.load`
    with ``split``, or a :class:`Graph`) and return ``(summary, history)``.

    summary: dataset, arch, depth, c (``lipschitz_c``, None = no normalisation), split, seed,
    diverged / diverged_at, final train accuracy, ``test_acc`` = test accuracy at the epoch of best
    validation accuracy (finite epochs only), ``final_test_acc``, wall time, and the similarity
    summaries of :func:`similarity_summary`.  Divergence (NaN/Inf) is recorded, never raised."""
    graph = dataset if isinstance(dataset, Graph) else load(dataset, split=split)
    if isinstance(dataset, Graph):  # the graph knows which split it carries
        split = graph.meta.get("split", split)
    model = make_model(arch, graph.num_features, hidden, graph.num_classes, depth, lipschitz_c=lipschitz_c,
                       dropout=dropout, seed=seed)
    h = fit(model, graph, epochs=epochs, lr=lr, weight_decay=weight_decay, measures=measures, signals=signals,
            record_every=record_every, device=device, seed=seed, progress=progress,
            desc=f"{arch} L={depth} c={lipschitz_c}")
    ep = h.epochs.loc[~h.epochs["diverged"]]
    if len(ep):
        best = ep.loc[ep["val_acc"].idxmax()]
        test_acc, final_test, train_acc = float(best["test_acc"]), float(ep["test_acc"].iloc[-1]), float(ep["train_acc"].iloc[-1])
    else:
        test_acc = final_test = train_acc = float("nan")
    summary = dict(dataset=graph.name, arch=arch, depth=depth, c=lipschitz_c, split=split, seed=seed,
                   hidden=hidden, epochs=epochs, diverged=h.diverged, diverged_at=h.diverged_at,
                   train_acc=train_acc, test_acc=test_acc, final_test_acc=final_test,
                   seconds=h.meta["wall_time_s"])
    summary.update(similarity_summary(h.layers))
    return summary, h


def sweep(configs, **common) -> pd.DataFrame:
    """:func:`run` for every dict of ``configs`` (keys: dataset, arch, depth and any keyword of
    :func:`run`, overriding ``common``); returns the summary rows as one DataFrame.  Graphs are
    loaded once per (dataset, split)."""
    graphs, rows = {}, []
    for cfg in configs:
        cfg = dict(common) | dict(cfg)
        name, split = cfg.pop("dataset"), cfg.get("split", 0)
        if isinstance(name, str):
            if (name, split) not in graphs:
                graphs[(name, split)] = load(name, split=split)
            name = graphs[(name, split)]
        summary, _ = run(name, cfg.pop("arch"), cfg.pop("depth"), **cfg)
        rows.append(summary)
    return pd.DataFrame(rows)


def rank_comparison(df: pd.DataFrame, outcome: str, a: str, b: str, *, n_boot: int = 2000,
                    seed: int = 0) -> dict:
    """Spearman's rho of ``outcome`` with predictor ``a`` and with predictor ``b`` over the rows of
    ``df`` (rows where any of the three is NaN are dropped; +Inf, a diverged similarity, ranks
    highest), and a percentile bootstrap 95% interval (``n_boot`` resamples of the rows) of
    |rho_a| - |rho_b|."""
    from scipy.stats import spearmanr

    d = df[[outcome, a, b]].astype(float)
    d = d.loc[d.notna().all(axis=1)]
    y, xa, xb = (d[c].to_numpy() for c in (outcome, a, b))
    finite = lambda v: np.where(np.isinf(v), np.finfo(float).max, v)  # noqa: E731
    xa, xb = finite(xa), finite(xb)

    def rhos(idx):
        ra = spearmanr(xa[idx], y[idx]).statistic
        rb = spearmanr(xb[idx], y[idx]).statistic
        return ra, rb

    n = len(y)
    ra, rb = rhos(np.arange(n))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        r1, r2 = rhos(idx)
        if np.isfinite(r1) and np.isfinite(r2):
            diffs.append(abs(r1) - abs(r2))
    lo, hi = (np.percentile(diffs, [2.5, 97.5]) if diffs else (float("nan"), float("nan")))
    return {"n": n, f"rho_{a}": float(ra), f"rho_{b}": float(rb), "diff": float(abs(ra) - abs(rb)),
            "ci_low": float(lo), "ci_high": float(hi)}

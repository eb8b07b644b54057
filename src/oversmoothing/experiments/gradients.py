"""Train one (dataset, architecture, depth, Lipschitz constant, split, seed) configuration and
summarise it in one row: the helper of paper 2's chapters (06 gradient similarity, 07 Lipschitz
remedies).

* paper 2's architectures by name (:data:`ARCHITECTURES`): ``"gcn"`` (deep GCN without residual connections,
  ReLU), ``"res_gcn"`` (:class:`~oversmoothing.models.ResidualGCN`), ``"res_gat"``
  (:class:`~oversmoothing.models.ResidualGAT`) and the twins ``"mlp"``, ``"res_mlp"`` (P = I), each built by
  ``models.build(model_name(arch), ...)`` and optionally Lipschitz-normalised (W <- c W/||W||_F);
* :func:`run` trains it with :func:`~oversmoothing.training.fit`, recording mu and rel_mu of the
  representations X(k) and of the gradients G(k) = dL/dX(k), and returns (summary row, History);
* :func:`sweep` runs a list of configurations and stacks the summary rows in one DataFrame;
* :func:`similarity_summary` reduces one run's per-layer similarities to one number per column;
* :func:`init_scale` measures, in one float64 forward pass at initialisation, how much the residual
  layers grow the representation and whether float32 would overflow; :func:`residual_growth` predicts
  that growth from a mean-field recursion (the arithmetic behind "c^2 L/d" and the 512-layer overflow);
* :func:`init_gradients` / :func:`init_summary`: one forward and backward pass at initialisation (chapter 06),
  memoised by :class:`InitProbes`; :func:`decay_rows` sets the GCN beside its MLP twin (claim C8's table);
  :func:`epoch_profiles` picks a training run's layer profiles for the figures;
* :func:`rank_comparison` compares two predictors of an outcome by Spearman's rho with a
  bootstrap confidence interval for the difference of their absolute values;
  :func:`partial_spearman` / :func:`compare_predictors` do the same within strata (dataset, depth) and
  given a baseline predictor (the final training loss), i.e. "does the similarity add to the loss";
  :func:`predictor_row` puts one such comparison in a table row (claim C11's table).

The verdicts (C8-C11) are :mod:`oversmoothing.judges.gradients`' and :mod:`oversmoothing.judges.lipschitz`'.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..datasets import DATASETS, load
from ..graphs import Graph
from ..models import build, he_rescale_, normalisations
from ..training import fit
from ..grid import per_process, plain, run_grid

__all__ = ["ARCHITECTURES", "ARCHITECTURES_WITH_CONTROLS", "model_name", "similarity_summary", "run", "sweep", "init_scale", "residual_growth",
           "partial_spearman", "compare_predictors", "rank_comparison", "init_gradients", "init_summary", "InitProbes",
           "decay_rows", "normalised_mu", "precision_disagreement", "has_finite_epoch", "epoch_profiles",
           "small_component_mask", "small_component_share", "normalisation_label", "residual_reading", "predictor_row",
           "AUTHORS_SETUP", "authors_data", "authors_config", "authors_runs", "soft_twins"]

ARCHITECTURES = {"gcn": "GCN (no residual)", "res_gcn": "residual GCN", "res_gat": "residual GAT",
                 "res_mlp": "residual MLP (P = I)"}
#: the same with the GCN's P = I twin; every architecture's twin is ``models.twin(model_name(arch))``
ARCHITECTURES_WITH_CONTROLS = {**ARCHITECTURES, "mlp": "MLP (GCN with P = I)"}
SIM_COLUMNS = ("mu_X", "mu_G", "rel_mu_X", "rel_mu_G")


def model_name(arch: str) -> str:
    """The registry name (:data:`oversmoothing.models.MODELS`) of paper 2's architecture ``arch`` (a key of
    :data:`ARCHITECTURES_WITH_CONTROLS`): ``"paper2.<arch>"``."""
    if arch not in ARCHITECTURES_WITH_CONTROLS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES_WITH_CONTROLS)}")
    return f"paper2.{arch}"


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
    ``<col>_last`` (layer L) at that epoch, ``<col>_init`` = the geometric mean over layers at epoch 0
    (initialisation), and ``<col>_growth`` = the geometric mean over layers at that epoch divided by
    the one at epoch 0 (how much the similarity grew during training)."""
    out = {}
    la = layers.loc[layers["layer"] >= 1]
    for col in columns:
        if col not in la:
            continue
        ok = la.groupby("epoch")[col].apply(lambda v: bool(np.all(np.isfinite(v.to_numpy(float)))))
        good = ok[ok].index
        if len(good) == 0:
            out.update({col: float("nan"), f"{col}_first": float("nan"), f"{col}_last": float("nan"),
                        f"{col}_init": float("nan"), f"{col}_growth": float("nan")})
            continue
        e = good.max()
        at = la.loc[la.epoch == e].sort_values("layer")[col].to_numpy(float)
        at0 = la.loc[la.epoch == la.epoch.min()].sort_values("layer")[col].to_numpy(float)
        g, g0 = _geomean(at), _geomean(at0)
        out.update({col: g, f"{col}_first": float(at[0]), f"{col}_last": float(at[-1]), f"{col}_init": g0,
                    f"{col}_growth": g / g0 if g0 and math.isfinite(g0) else float("nan")})
    return out


def run(dataset: str | Graph, arch: str, depth: int, *, hidden: int = 32, lipschitz_c: float | None = None,
        epochs: int = 100, lr: float = 0.005, weight_decay: float = 5e-4, dropout: float = 0.0,
        split: int | None = 0, seed: int = 0, measures=("mu", "rel_mu"), signals=("X", "G"),
        record_every: int = 10, device="auto", progress=None, activation: str | None = None,
        branch_scale: float = 1.0, lipschitz_mode: str = "hard", encoder: str = "linear", decoder: str = "linear",
        branch_bias: bool = False, patience: int | None = None, normalise_features: bool = False,
        random_split_seed: int | None = None):
    """Train ``arch`` with ``depth`` layers on ``dataset`` (a name for :func:`oversmoothing.datasets.load`
    with ``split``, ``normalise_features`` and ``random_split_seed``, or a :class:`Graph`) and return
    ``(summary, history)``.

    summary: dataset, arch, depth, c (``lipschitz_c``, None = no normalisation), split, seed,
    diverged / diverged_at, final train accuracy, ``test_acc`` = test accuracy at the epoch of best
    validation accuracy (finite epochs only), ``final_test_acc``, ``init_loss`` and ``final_loss``
    (training loss at epoch 0 and at the last finite epoch), wall time, and the similarity
    summaries of :func:`similarity_summary`; ``epochs_run`` (the last epoch: below ``epochs`` when early
    stopping with ``patience`` ended the run), ``best_epoch`` and ``train_acc_best`` (the epoch of best
    validation accuracy and the training accuracy there), ``min_raw_ratio`` (the smallest ||W_raw||_F / c any
    normalised weight had at any forward pass; inf without normalisation: above 1 the soft and hard forms
    coincide, :class:`~oversmoothing.models.FrobeniusNormalisation`).  ``activation``, ``branch_scale``,
    ``lipschitz_mode``, ``encoder``, ``decoder`` and ``branch_bias`` are passed to the model (they appear in the
    row).  Divergence (NaN/Inf) is recorded, never raised."""
    graph = dataset if isinstance(dataset, Graph) else load(dataset, split=split, normalise_features=normalise_features,
                                                            random_split_seed=random_split_seed)
    if isinstance(dataset, Graph) or random_split_seed is not None:  # the graph knows which split it carries
        split = graph.meta.get("split", split)
    model = build(model_name(arch), graph.num_features, hidden, graph.num_classes, depth, lipschitz_c=lipschitz_c,
                  dropout=dropout, seed=seed, activation=activation, branch_scale=branch_scale,
                  **_form_options(lipschitz_mode, encoder, decoder, branch_bias))
    h = fit(model, graph, epochs=epochs, lr=lr, weight_decay=weight_decay, measures=measures, signals=signals,
            record_every=record_every, device=device, seed=seed, progress=progress,
            desc=f"{arch} L={depth} c={lipschitz_c}", patience=patience)
    ep = h.epochs.loc[~h.epochs["diverged"]]
    if len(ep):
        best = ep.loc[ep["val_acc"].idxmax()]
        test_acc, final_test, train_acc = float(best["test_acc"]), float(ep["test_acc"].iloc[-1]), float(ep["train_acc"].iloc[-1])
        best_epoch, train_best = int(best["epoch"]), float(best["train_acc"])
    else:
        test_acc = final_test = train_acc = train_best = float("nan")
        best_epoch = None
    losses = ep["loss"].to_numpy(float)
    ratios = [n.min_ratio for n in normalisations(model)]
    summary = dict(dataset=graph.name, arch=arch, depth=depth, c=lipschitz_c, split=split, seed=seed,
                   hidden=hidden, epochs=epochs, activation=activation or "default", branch_scale=branch_scale,
                   lipschitz_mode=lipschitz_mode if lipschitz_c is not None else "none",
                   diverged=h.diverged, diverged_at=h.diverged_at,
                   train_acc=train_acc, test_acc=test_acc, final_test_acc=final_test,
                   init_loss=float(losses[0]) if len(losses) else float("nan"),
                   final_loss=float(losses[-1]) if len(losses) else float("nan"),
                   epochs_run=int(h.epochs["epoch"].iloc[-1]), best_epoch=best_epoch, train_acc_best=train_best,
                   min_raw_ratio=min(ratios) if ratios else math.inf,
                   seconds=h.meta["wall_time_s"])
    summary.update(similarity_summary(h.layers))
    return summary, h


def _form_options(lipschitz_mode="hard", encoder="linear", decoder="linear", branch_bias=False) -> dict:
    """The model options of :func:`run` that differ from the book's form (none for the book's form, so that the
    networks without residual connections, which take none of them, are built as before)."""
    given = dict(lipschitz_mode=lipschitz_mode, encoder=encoder, decoder=decoder, branch_bias=branch_bias)
    book = dict(lipschitz_mode="hard", encoder="linear", decoder="linear", branch_bias=False)
    return {k: v for k, v in given.items() if v != book[k]}


def run_task(config: dict, graph: Graph):
    """One run of :func:`run_all` (a task of :func:`oversmoothing.grid.run_grid`): (summary, history)."""
    cfg = dict(config)
    return run(graph, cfg.pop("arch"), cfg.pop("depth"), **cfg)


def sweep_run(config: dict) -> dict:
    """One run of :func:`sweep` (a task of :func:`oversmoothing.grid.run_grid`): its summary row.  The
    dataset is loaded once per process and (name, split)."""
    cfg = dict(config)
    name, split = cfg.pop("dataset"), cfg.get("split", 0)
    norm, rseed = cfg.pop("normalise_features", False), cfg.pop("random_split_seed", None)
    graph = per_process(("dataset", name, split, norm, rseed),
                        lambda: load(name, split=split, normalise_features=norm, random_split_seed=rseed))
    summary, _ = run_task(cfg, graph)
    return summary


def _grid_configs(configs, common: dict) -> tuple[list[dict], str]:
    """The configs with ``common`` under them (JSON-able), and the device taken out of ``common``."""
    common = dict(common)
    device = str(common.pop("device", "auto"))
    return [plain(dict(common) | dict(cfg)) for cfg in configs], device


def run_all(graph: Graph, configs, **common) -> list:
    """:func:`run` on ``graph`` for every dict of ``configs`` (keys: arch, depth and any keyword of :func:`run`,
    overriding ``common``); returns the list of ``(summary, history)``.  Each run is a task of
    :func:`oversmoothing.grid.run_grid` (cached, resumable, on Dask when the runner was given ``--workers``)."""
    configs, device = _grid_configs(configs, common)
    return list(run_grid(run_task, configs, inputs={"graph": graph}, device=device, desc="training runs"))


def sweep(configs, **common) -> pd.DataFrame:
    """:func:`run` for every dict of ``configs`` (keys: dataset (a name), arch, depth and any keyword of
    :func:`run`, overriding ``common``); returns the summary rows as one DataFrame.  Each run is a task
    of :func:`oversmoothing.grid.run_grid` (cached, resumable, on Dask when the runner was given ``--workers``)."""
    configs, device = _grid_configs(configs, common)
    for cfg in configs:
        if not isinstance(cfg.get("dataset"), str):
            raise TypeError(f"sweep: dataset must be a dataset name (one of {', '.join(DATASETS)}), got "
                            f"{type(cfg.get('dataset')).__name__}; train a Graph object with run_all()")
    return pd.DataFrame(list(run_grid(sweep_run, configs, device=device, desc="training runs")))


def init_scale(graph: Graph, arch: str, depth: int, *, hidden: int = 64, lipschitz_c: float | None = None,
               seed: int = 0, activation: str | None = None, branch_scale: float = 1.0, lipschitz_mode: str = "hard",
               encoder: str = "linear", decoder: str = "linear", branch_bias: bool = False) -> dict:
    """One forward pass at initialisation in float64 (so that a float32 overflow can be measured, not
    only detected).  Returns ``log10_growth`` = log10 ||X(L)||_F/||X(0)||_F, ``max_logit`` = the largest
    |logit|, and ``float32_ok`` = whether every representation and logit stays below float32's largest
    value (3.4e38), i.e. whether the float32 forward pass is finite.  The form options are :func:`run`'s."""
    import torch

    from ..models import Trace

    model = build(model_name(arch), graph.num_features, hidden, graph.num_classes, depth, lipschitz_c=lipschitz_c,
                  seed=seed, activation=activation, branch_scale=branch_scale,
                  **_form_options(lipschitz_mode, encoder, decoder, branch_bias)).double()
    op = model.operator(graph)
    if op is not None and op.is_floating_point():
        op = op.to(torch.float64)
    record = Trace()
    with torch.no_grad():
        logits = model(graph.x.double(), op, trace=record)
    big = float(np.finfo(np.float32).max)
    peak = max(float(X.abs().max()) for X in record.X + [logits])
    x0, xl = float(torch.linalg.norm(record.X[0])), float(torch.linalg.norm(record.X[-1]))
    return dict(arch=arch, depth=depth, hidden=hidden, c=lipschitz_c, seed=seed, branch_scale=branch_scale,
                lipschitz_mode=lipschitz_mode, activation=activation or "default", log10_growth=math.log10(xl / x0) if xl > 0 else -math.inf,
                max_logit=float(logits.abs().max()), float32_ok=bool(peak < big and math.isfinite(peak)))


def residual_growth(c, hidden: int, depth: int, *, activation: str = "relu", branch_scale: float = 1.0,
                    cos0: float = 0.0, nodes: int = 60) -> np.ndarray:
    """Mean-field prediction of log10 ||x(k)||/||x(0)||, k = 0..L, for one row x in R^d of the residual
    layers x(k) = x(k-1) + alpha rho(x(k-1) W(k)) at initialisation, where W(k) has i.i.d. zero-mean
    entries with ||W(k)||_F = c (variance c^2/d^2) and P is taken as the identity on x (exact for the
    residual MLP; for a GCN it ignores the contraction of P, which the drift below makes small).

    Given x, the entries h_j of x W are i.i.d. N(0, v) with v = c^2 q/d^2, q = ||x||^2.  With
    m = 1^T x/sqrt(d) (the component along the all-ones direction) and z ~ N(0, 1):

        m' = m + alpha sqrt(d) E[rho(sqrt(v) z)]
        q' = q + 2 alpha sqrt(d) m E[rho(sqrt(v) z)] + alpha^2 d E[rho(sqrt(v) z)^2]

    (the cross term uses E<x, rho(h)> = sum_j x_j E rho(h_j)).  For ReLU, E rho = sqrt(v/(2 pi)) and
    E rho^2 = v/2: the branch adds a positive mean that turns x towards the all-ones direction
    (m/sqrt(q) -> a*, about 0.9 for c/sqrt(d) = 1/2), after which q grows by 1 + 2 a* b/sqrt(2 pi) + b^2/2
    per layer (b = alpha c/sqrt(d)), i.e. log ||x(L)|| ~ L alpha a* c/sqrt(2 pi d): the drift, linear in
    c/sqrt(d), dominates the c^2/(2d) term of a zero-mean branch.  For an odd rho (tanh) the drift vanishes and q grows by at most
    alpha^2 d per layer (|tanh| <= 1).  ``cos0`` = m/sqrt(q) at k = 0; expectations by Gauss-Hermite
    quadrature with ``nodes`` points.  ``c`` may be an array: the result then has shape c.shape + (L + 1,)."""
    from numpy.polynomial.hermite_e import hermegauss

    import torch

    from ..models import ACTIVATIONS

    z, w = hermegauss(nodes)
    w = w / w.sum()
    rho = ACTIVATIONS[activation]
    c = np.asarray(c, dtype=float)
    d, a = float(hidden), float(branch_scale)
    q, m = np.ones_like(c), np.full_like(c, float(cos0))
    out = [np.zeros_like(c)]
    for _ in range(depth):
        h = np.sqrt(c * c * q / (d * d))[..., None] * z
        r = rho(torch.from_numpy(h)).numpy()
        e1, e2 = r @ w, (r * r) @ w
        m, q = m + a * math.sqrt(d) * e1, q + 2 * a * math.sqrt(d) * m * e1 + a * a * d * e2
        out.append(0.5 * np.log10(q))
    return np.stack(out, axis=-1)


def _centred_ranks(values: np.ndarray, groups) -> np.ndarray:
    """Column-wise ranks of ``values`` [n, k] within each group of row indices, centred on the group's
    mean rank and divided by the group's size (strata of different sizes weigh alike per row)."""
    from scipy.stats import rankdata

    out = np.zeros_like(values, dtype=float)
    for g in groups:
        r = rankdata(values[g], axis=0)
        out[g] = (r - r.mean(0)) / len(g)
    return out


def _partial_rank_corr(V: np.ndarray, groups) -> float:
    """Partial Pearson correlation of columns 0 and 1 of the within-group centred ranks of ``V``,
    given its columns 2.. (linear regression on their ranks)."""
    R = _centred_ranks(V, groups)
    ry, rx = R[:, 0], R[:, 1]
    if R.shape[1] > 2:
        Z = np.column_stack([np.ones(len(R)), R[:, 2:]])
        ry = ry - Z @ np.linalg.lstsq(Z, ry, rcond=None)[0]
        rx = rx - Z @ np.linalg.lstsq(Z, rx, rcond=None)[0]
    ry, rx = ry - ry.mean(), rx - rx.mean()
    sy, sx = np.linalg.norm(ry), np.linalg.norm(rx)
    return float(ry @ rx / (sy * sx)) if sy > 0 and sx > 0 else float("nan")


def _prepared(df: pd.DataFrame, cols, strata):
    """Rows of ``df`` with no NaN in ``cols`` (+Inf, a diverged value, ranks highest), as an array, and the
    row indices of each stratum."""
    d = df[list(cols) + list(strata)].copy()
    d = d.loc[d[list(cols)].astype(float).notna().all(axis=1)].reset_index(drop=True)
    V = d[list(cols)].to_numpy(float)
    V = np.where(np.isinf(V), np.sign(V) * np.finfo(float).max, V)
    groups = [np.arange(len(d))] if not strata else [np.asarray(ix) for ix in d.groupby(list(strata)).indices.values()]
    return V, groups


def partial_spearman(df: pd.DataFrame, y: str, x: str, given=(), strata=()) -> float:
    """Spearman correlation of ``y`` with ``x`` given the columns ``given`` and within ``strata``.

    Every column is rank-transformed within each stratum (a group of rows with equal ``strata``
    columns, e.g. dataset and depth) and centred there; ``y`` and ``x`` ranks are then regressed
    linearly on the ``given`` ranks over all rows and the result is the Pearson correlation of the
    two residuals.  Without ``given`` it is the pooled within-stratum Spearman's rho; with one
    ``given`` column z it equals (r_yx - r_yz r_xz)/sqrt((1 - r_yz^2)(1 - r_xz^2)) on the ranks.
    It answers "does x add to the ``given`` predictors in ranking y?".  Rows with a NaN are dropped."""
    V, groups = _prepared(df, [y, x, *given], strata)
    if len(V) < 3 + len(given):
        return float("nan")
    return _partial_rank_corr(V, groups)


def compare_predictors(df: pd.DataFrame, outcome: str, a: str, b: str, *, given=(), strata=(),
                       n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`partial_spearman` of ``outcome`` with predictor ``a`` and with ``b`` (same ``given`` and
    ``strata``, rows complete in all of them), their difference |rho_a| - |rho_b| and its percentile
    bootstrap 95% interval (``n_boot`` resamples of the rows within each stratum)."""
    given = list(given)
    V, groups = _prepared(df, [outcome, a, b, *given], strata)
    Va, Vb = V[:, [0, 1, *range(3, V.shape[1])]], V[:, [0, 2, *range(3, V.shape[1])]]
    nan = float("nan")
    ra, rb = (_partial_rank_corr(W, groups) if len(V) >= 3 + len(given) else nan for W in (Va, Vb))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot if len(V) >= 3 + len(given) else 0):
        idx = [rng.choice(g, len(g)) for g in groups]
        flat = np.concatenate(idx)
        new_groups, start = [], 0
        for g in idx:
            new_groups.append(np.arange(start, start + len(g)))
            start += len(g)
        r1, r2 = _partial_rank_corr(Va[flat], new_groups), _partial_rank_corr(Vb[flat], new_groups)
        if np.isfinite(r1) and np.isfinite(r2):
            diffs.append(abs(r1) - abs(r2))
    lo, hi = (np.percentile(diffs, [2.5, 97.5]) if diffs else (nan, nan))
    return {"n": len(V), f"rho_{a}": ra, f"rho_{b}": rb, "diff": abs(ra) - abs(rb), "ci_low": float(lo),
            "ci_high": float(hi)}


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


# ----------------------------------------------------------------------------- chapter 06: controls at initialisation


def init_gradients(graph: Graph, arch: str, depth: int, *, hidden: int = 32, seed: int = 0, he: bool = False,
                   dtype=None, device="cpu") -> dict:
    """One forward and one backward pass at initialisation (no training) of ``arch`` (a key of
    :data:`ARCHITECTURES_WITH_CONTROLS`) on ``graph``'s training loss, in ``dtype`` (float32 by default;
    float64 to see whether a NaN is only float32's).  Returns

    * ``loss``, ``max_logit`` (largest |logit|), ``forward_finite`` (every logit finite);
    * ``layers``: one row per layer k = 0..L with, for the gradient G(k) = dL/dX(k):
      ``finite_G`` (every entry finite), ``norm_G`` = ||G(k)||_F, ``mu_G`` = mu(G(k)),
      ``rel_mu_G`` = mu(G)/||G||_F and ``rel_mu_gcn_G`` (distance from the GCN operator's limit subspace,
      relative; NaN where G(k) is not finite or zero), ``max_G`` = max |G(k)_ij|, ``small_share_G`` (see
      :func:`small_component_share`); and ``norm_X`` = ||X(k)||_F,
      ``max_X`` = max |X(k)_ij|."""
    import torch

    from ..measures import mu, rel_mu, rel_mu_gcn
    from ..signals import trace
    from ..training import resolve_device

    dtype = dtype or torch.float32
    dev = resolve_device(device)
    model = build(model_name(arch), graph.num_features, hidden, graph.num_classes, depth, seed=seed)
    if he:
        he_rescale_(model)
    model = model.to(device=dev, dtype=dtype)
    g = graph.to(dev)
    op = model.operator(g, dev)
    if isinstance(op, torch.Tensor) and op.is_floating_point():
        op = op.to(dtype)
    _, sig = trace(model, g.x.to(dtype), op, g.y, g.train_mask)
    rows, small = [], small_component_mask(g.edge_index, g.num_nodes)
    for k, G in enumerate(sig.G):
        ok = G is not None and bool(torch.isfinite(G).all())
        nrm = float(torch.linalg.norm(G.double())) if ok else float("nan")
        rows.append(dict(layer=k, finite_G=ok, norm_G=nrm, mu_G=mu(G) if ok else float("nan"),
                         rel_mu_G=rel_mu(G) if ok and nrm > 0 else float("nan"),
                         rel_mu_gcn_G=rel_mu_gcn(G, g.edge_index) if ok and nrm > 0 else float("nan"),
                         max_G=float(G.abs().max()) if ok else float("nan"),
                         small_share_G=small_component_share(G, None, mask=small) if ok else float("nan"),
                         norm_X=float(torch.linalg.norm(sig.X[k].double())), max_X=float(sig.X[k].abs().max())))
    logits = sig.logits
    return dict(arch=arch, depth=depth, seed=seed, he=he, dtype=str(dtype).replace("torch.", ""), loss=sig.loss,
                max_logit=float(logits.abs().max()), forward_finite=bool(torch.isfinite(logits).all()),
                layers=pd.DataFrame(rows))


def init_summary(res: dict) -> dict:
    """One row for one :func:`init_gradients` result: its settings, the forward numbers, how many G(k) are
    finite, ``ratio`` = mu(G(1))/mu(G(L)) (below 1: the gradient similarity shrinks towards the input;
    above 1: it expands), ``spearman`` = Spearman's rho between k and mu(G(k)) over k = 1..L, and layer 1's
    ``rel_mu_G1``, ``rel_mu_gcn_G1``, ``small_share_G1`` and layer 0's ``norm_G0`` = ||G(0)||_F (NaN where not finite)."""
    from scipy.stats import spearmanr

    la = res["layers"]
    hid = la.loc[la.layer >= 1].sort_values("layer")
    m = hid["mu_G"].to_numpy(float)
    ok = bool(np.all(np.isfinite(m)))
    at = lambda col, k: float(la.loc[la.layer == k, col].iloc[0])  # noqa: E731
    return dict(arch=res["arch"], depth=res["depth"], seed=res["seed"], he=res["he"], dtype=res["dtype"],
                loss=res["loss"], max_logit=res["max_logit"], forward_finite=res["forward_finite"],
                finite_G=int(la["finite_G"].sum()), layers_G=len(la),
                ratio=float(m[0] / m[-1]) if ok and m[-1] > 0 else float("nan"),
                spearman=float(spearmanr(np.arange(1, len(m) + 1), m).statistic) if ok else float("nan"),
                rel_mu_G1=at("rel_mu_G", 1), rel_mu_gcn_G1=at("rel_mu_gcn_G", 1), small_share_G1=at("small_share_G", 1),
                norm_G0=at("norm_G", 0))


def small_component_mask(edge_index, n: int, max_size: int = 2):
    """Boolean tensor [n]: the nodes in connected components of at most ``max_size`` nodes."""
    import scipy.sparse as sp
    import torch
    from scipy.sparse.csgraph import connected_components

    ei = edge_index.detach().cpu().numpy()
    _, lab = connected_components(sp.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n)), directed=False)
    return torch.from_numpy(np.bincount(lab)[lab] <= max_size)


def small_component_share(G, edge_index, max_size: int = 2, mask=None) -> float:
    """Fraction of ||G||_F^2 on the rows of nodes in connected components of at most ``max_size`` nodes
    (``mask``: :func:`small_component_mask`, if already computed).  Such a node's row is its own component's
    limit direction, so a gradient concentrated there is "close to the GCN's limit subspace" without any node
    becoming alike another (CiteSeer has many)."""
    small = small_component_mask(edge_index, G.shape[0], max_size) if mask is None else mask
    sq = G.detach().double().cpu().pow(2).sum(1)
    total = float(sq.sum())
    return float(sq[small].sum()) / total if total > 0 else float("nan")


class InitProbes:
    """:func:`init_gradients` memoised: ``probe(arch, depth, seed, he=False, dtype=float32, graph=None)`` runs
    the forward and backward pass at initialisation once per (graph, arch, depth, seed, he, dtype) and keeps it
    (the chapter reads the same probe for its tables, figures and verdicts); ``graph`` defaults to the one
    given here.  :meth:`summary` is :func:`init_summary` of that probe."""

    def __init__(self, graph: Graph, *, hidden: int = 32, device="cpu"):
        self.graph, self.hidden, self.device, self._done = graph, hidden, device, {}

    def __call__(self, arch: str, depth: int, seed: int, he: bool = False, dtype=None, graph: Graph | None = None) -> dict:
        import torch

        g, dtype = self.graph if graph is None else graph, dtype or torch.float32
        key = (g.name, arch, depth, seed, he, dtype)
        if key not in self._done:
            self._done[key] = init_gradients(g, arch, depth, hidden=self.hidden, seed=seed, he=he, dtype=dtype,
                                             device=self.device)
        return self._done[key]

    def summary(self, arch: str, depth: int, seed: int, he: bool = False, dtype=None, graph: Graph | None = None) -> dict:
        return init_summary(self(arch, depth, seed, he, dtype, graph))


def decay_rows(probe: InitProbes, depth: int, seeds, *, he: bool = False, dtype=None, graph: Graph | None = None) -> list[dict]:
    """One row per seed of the GCN beside its MLP twin (P = I) at initialisation (chapter 06, claim C8):
    ``r_GCN``, ``r_MLP`` = mu(G(1))/mu(G(L)) of each, ``graph_part`` = r_GCN/r_MLP (what the graph adds to the
    decay), ``spearman_GCN`` (Spearman's rho of k and mu(G(k)) in the GCN), the relative distance of G(1) from
    the GCN operator's limit subspace in both (``rel_gcn_G1_GCN``, ``rel_gcn_G1_MLP``), the GCN's mu(G(1))/||G(1)||_F
    (``rel_mu_G1_GCN``) and its share of ||G(1)||_F^2 on components of at most two nodes (``small_share_G1_GCN``)."""
    rows = []
    for s in seeds:
        g, m = probe.summary("gcn", depth, s, he, dtype, graph), probe.summary("mlp", depth, s, he, dtype, graph)
        rows.append(dict(data=(probe.graph if graph is None else graph).name, L=depth, init="He" if he else "Glorot",
                         seed=s, r_GCN=g["ratio"], r_MLP=m["ratio"], graph_part=g["ratio"] / m["ratio"],
                         spearman_GCN=g["spearman"], rel_gcn_G1_GCN=g["rel_mu_gcn_G1"], rel_gcn_G1_MLP=m["rel_mu_gcn_G1"],
                         rel_mu_G1_GCN=g["rel_mu_G1"], small_share_G1_GCN=g["small_share_G1"]))
    return rows


def normalised_mu(res: dict) -> tuple[np.ndarray, np.ndarray]:
    """(k, mu(G(k))/mu(G(L))) for k = 1..L of one :func:`init_gradients` result (1 at the output layer)."""
    la = res["layers"].loc[lambda d: d.layer >= 1]
    return la.layer.to_numpy(), (la.mu_G / la.mu_G.iloc[-1]).to_numpy(float)


def precision_disagreement(res32: dict, res64: dict) -> float:
    """The largest factor between the float32 and the float64 ||G(k)||_F of the same network (two
    :func:`init_gradients` results), over the layers where both are finite and positive (NaN if none)."""
    a, b = (r["layers"].norm_G.to_numpy(float) for r in (res32, res64))
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    return float(np.max(np.maximum(a[ok] / b[ok], b[ok] / a[ok]))) if ok.any() else float("nan")


def _finite_epochs(hist, col: str) -> pd.Series:
    la = hist.layers.loc[hist.layers.layer >= 1]
    return la.groupby("epoch")[col].apply(lambda v: np.isfinite(v.to_numpy(float)).all())


def has_finite_epoch(hist, col: str = "mu_G") -> bool:
    """Whether some recorded epoch of a training History has a finite ``col`` at every layer k >= 1 (a run
    that overflows at epoch 0 has none, hence nothing to draw)."""
    return bool(_finite_epochs(hist, col).any())


def epoch_profiles(hist, col: str, n_lines: int = 3) -> pd.DataFrame:
    """The layer profiles (k >= 1) of ``col`` of a training History at its first, middle and last epochs whose
    values are all finite (at most ``n_lines``), with a column ``when`` ("epoch 40").  For a relative measure
    (``rel_*``) the value is NaN where the signal itself is exactly zero (mu/||.||_F is 0/0 there)."""
    la = hist.layers.loc[hist.layers.layer >= 1].copy()
    finite = _finite_epochs(hist, col)
    eps = finite[finite].index.to_numpy()
    if len(eps) == 0:
        return la.iloc[:0].assign(when=[])
    pick = sorted({eps[0], eps[len(eps) // 2], eps[-1]})[:n_lines]
    out = la.loc[la.epoch.isin(pick)].copy()
    if col.startswith("rel_"):
        out.loc[out[col[4:]] == 0, col] = np.nan
    out["when"] = "epoch " + out.epoch.astype(str)
    return out


# ----------------------------------------------------------------------------- chapter 07: readings and predictors


def normalisation_label(c, alpha: float = 1.0, act: str | None = "default") -> str:
    """How chapter 07's tables and legends name a run: "no normalisation" (``c`` None/NaN) or "c = 4", with
    ", tanh branch" for another activation and ", alpha = 0.125" for a scaled branch."""
    s = "no normalisation" if pd.isna(c) else f"c = {c:g}"
    if act not in ("default", None):
        s += f", {act} branch"
    if alpha != 1.0:
        s += f", alpha = {alpha:.3g}"
    return s


def residual_reading(options: dict, depth: int) -> dict:
    """The keyword arguments of :func:`run` / :func:`init_scale` for one reading of the residual form at
    ``depth`` layers: ``branch_scale`` "sqrt" becomes alpha = 1/sqrt(L) and "lin" alpha = 1/L; the rest
    (e.g. ``activation="tanh"``) is passed on unchanged."""
    v = dict(options)
    if "branch_scale" in v:
        v["branch_scale"] = 1 / math.sqrt(depth) if v["branch_scale"] == "sqrt" else 1 / depth
    return v


def predictor_row(test: str, result: dict, a: str, b: str) -> dict:
    """One row of the predictor comparison table from a :func:`compare_predictors` / :func:`rank_comparison`
    result comparing columns ``a`` (the gradient similarity) and ``b`` (the representation similarity):
    test, n, rho_grad, rho_repr, diff = |rho_grad| - |rho_repr|, ci_low, ci_high."""
    return dict(test=test, n=result["n"], rho_grad=result[f"rho_{a}"], rho_repr=result[f"rho_{b}"], diff=result["diff"],
                ci_low=result["ci_low"], ci_high=result["ci_high"])


# ----------------------------------------------------------------------------- chapter 07: the authors' own forms

#: the training setup and network form of paper 2's first author's public code for deep residual GNNs
#: (``ml-postech/reverse-gnn``: ``src/run_resgnn_rep.py`` for the optimiser, budget and early stopping,
#: ``src/model_resgnn_rep.py`` for the encoder, the blocks and the decoder, ``src/spectral_norm_gnn.py`` for the
#: soft normalisation), as keyword arguments of :func:`run`; the data side is :func:`authors_data`
AUTHORS_SETUP = dict(hidden=256, lr=0.005, weight_decay=0.0, dropout=0.0, epochs=1000, patience=100,
                     lipschitz_mode="soft", encoder="linear_relu", decoder="mlp", branch_bias=True)


def authors_data(dataset: str, run_index: int, seed: int = 0) -> dict:
    """The data keywords of :func:`run` for run ``run_index`` in the authors' setup: Cora and CiteSeer with
    row-normalised features (PyG's ``NormalizeFeatures``) and a random 60/20/20 split drawn with seed
    ``seed + run_index``; every other dataset with its raw features and its ``run_index``-th stored split (the
    Platonov et al. splits of the filtered Chameleon/Squirrel, as the authors' loader reads them)."""
    if DATASETS[dataset][1] == "planetoid":
        return dict(split=None, normalise_features=True, random_split_seed=seed + run_index)
    return dict(split=run_index)


def authors_config(dataset: str, arch: str, depth: int, lipschitz_c: float | None, run_index: int, seed: int = 0,
                   **overrides) -> dict:
    """One configuration of :func:`sweep` in the authors' setup (:data:`AUTHORS_SETUP`, :func:`authors_data`),
    weights seeded with ``seed + run_index``; only the first and the last epoch are traced.  ``overrides``
    replace entries of the setup (e.g. a smaller ``epochs`` for a smoke build)."""
    cfg = dict(AUTHORS_SETUP, **overrides)
    cfg.update(dataset=dataset, arch=arch, depth=depth, lipschitz_c=lipschitz_c, seed=seed + run_index,
               record_every=cfg["epochs"], **authors_data(dataset, run_index, seed))
    return cfg


def soft_twins(configs, done: pd.DataFrame, **common) -> pd.DataFrame:
    """The soft-form twin (``lipschitz_mode="soft"``) of every normalised configuration of ``configs`` whose
    hard-form run is the same-position row of ``done`` (``done = sweep(configs, **common)``).

    Where that hard run's raw norms stayed above c at every forward pass (``min_raw_ratio > 1``) the soft run
    performs the same floating-point operations from the same initial weights
    (:class:`~oversmoothing.models.FrobeniusNormalisation`), so its row is the hard run's with
    ``lipschitz_mode="soft"`` and ``coincides=True``; every other twin is trained (``coincides=False``).
    Unnormalised configurations have no twin.  Returns one row per twin, in the order of ``configs``."""
    rows, todo = [], []
    for cfg, (_, row) in zip(configs, done.iterrows()):
        if cfg.get("lipschitz_c") is None or cfg.get("lipschitz_mode", "hard") != "hard":
            continue
        if row["min_raw_ratio"] > 1:
            rows.append(dict(row, lipschitz_mode="soft", coincides=True))
        else:
            rows.append(None)
            todo.append(dict(cfg, lipschitz_mode="soft"))
    trained = sweep(todo, **common) if todo else pd.DataFrame()
    it = iter(trained.to_dict("records"))
    out = [r if r is not None else dict(next(it), coincides=False) for r in rows]
    return pd.DataFrame(out)


def authors_runs(datasets, depths, constants, n_runs: int, *, seed: int = 0, device="auto", arch: str = "res_gcn",
                 **overrides):
    """Train ``arch`` in the authors' setup (:func:`authors_config`) for every dataset, depth, constant of
    ``constants`` (None: no normalisation) and run index 0..``n_runs``-1; each run is a task of
    :func:`oversmoothing.grid.run_grid` (cached).  Returns ``(rows, histories)``: the summary rows as one DataFrame
    and a dict {(dataset, depth, c, run index): History} for the figures."""
    rows, hists = [], {}
    for d in datasets:
        for i in range(n_runs):
            data = authors_data(d, i, seed)
            graph = load(d, split=data.get("split"), normalise_features=data.get("normalise_features", False),
                         random_split_seed=data.get("random_split_seed"))
            cfgs = []
            for L in depths:
                for c in constants:
                    cfg = authors_config(d, arch, L, c, i, seed, **overrides)
                    for k in ("dataset", "split", "normalise_features", "random_split_seed"):
                        cfg.pop(k, None)   # the graph carries them
                    cfgs.append(cfg)
            for cfg, (summary, hist) in zip(cfgs, run_all(graph, cfgs, device=device)):
                rows.append(dict(summary, run=i))
                hists[(d, cfg["depth"], cfg["lipschitz_c"], i)] = hist
    return pd.DataFrame(rows), hists

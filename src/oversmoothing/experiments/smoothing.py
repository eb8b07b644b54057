"""What chapters 01-03 run (paper 1, Sections 3-4): per-layer signals of random-weight vanilla GNNs
beside their MLP twins (P = I), over several graph and weight seeds, and the rates fitted on them.

* :func:`csbm_draws`     several draws of one CSBM (the first tuned to a target lambda, the others the same
                         p_in/p_out with other seeds);
* :func:`layer_profile`  one float64 forward (and backward) pass -> one row per layer with E, mu/||.||_F and the
                         norms of X(k), its constant part, B(k) = dL/dH(k) and dL/dW(k);
* :func:`profile_grid`   layer_profile over graphs (one seed each) x networks (GNN, MLP) x depths x s (or s*lambda);
* :func:`fit_rate`, :func:`end_rate`, :func:`fit_theorem2`   the per-layer rates and Theorem 2's two-term shape;
* :func:`thirds`, :func:`valley_table`    C3's measurements of a backward profile;
* :func:`power_curve`, :func:`steps_below`  E(P^k X)/E(X) of a random signal and the steps it takes to fall (C13);
* :func:`dirichlet_dense`  the Dirichlet energy of a signal on a dense graph, through P;
* :func:`traced_pass`, :func:`backward_table`   chapter 02's traced passes and their per-layer backward rows (C2).

The verdicts on these measurements (C1-C3, C13) are :mod:`oversmoothing.judges.forward`'s and
:mod:`oversmoothing.judges.backward`'s.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .. import graphs as G
from .. import measures, signals
from ..models import build
from .traps import vanilla

__all__ = ["csbm_draws", "layer_profile", "profile_grid", "fit_rate", "layer_rates", "end_rate", "fit_theorem2", "thirds",
           "valley_table", "power_curve", "steps_below", "dirichlet_dense", "traced_pass", "backward_table"]


def csbm_draws(seeds, n: int, avg_degree: float, lam: float | None = None, *, ratio: float | None = None, **kw) -> list:
    """One CSBM graph per seed, all from the same model (same p_in/p_out): ``ratio`` = p_in/p_out if given, else
    the ratio that makes ``seeds[0]``'s draw have lambda = ``lam`` (bisection, :func:`oversmoothing.graphs.csbm`);
    the other seeds' lambdas are then close to ``lam``. ``kw`` goes to :func:`~oversmoothing.graphs.csbm` (e.g.
    ``means``, ``centre``, ``dim``). Each graph's measured lambda is in ``graph.meta['lambda']``, its p_in/p_out in
    ``graph.meta['ratio']`` and its seed in ``graph.meta['seed']``."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("csbm_draws needs at least one seed")
    if (lam is None) == (ratio is None):
        raise ValueError("give exactly one of lam and ratio")
    out = []
    for i, s in enumerate(seeds):
        if ratio is None:
            g = G.csbm(n, 2, avg_degree, lam=lam, seed=s, **kw)
            ratio = g.meta["ratio"]
        else:
            g = G.csbm(n, 2, avg_degree, ratio=ratio, seed=s, **kw)
        g.meta.update(seed=s, ratio=ratio)
        out.append(g)
    return out


def _const_norm(X: torch.Tensor) -> float:
    """||1 xbar^T||_F = sqrt(n) ||xbar||, the norm of the constant (node-independent) part of X."""
    return math.sqrt(X.shape[0]) * float(torch.linalg.norm(X.double().mean(0)))


def layer_profile(model, graph, op=None, *, backward: bool = True, device=None) -> pd.DataFrame:
    """One forward (and backward) pass of ``model`` in float64 on ``graph`` (cross-entropy on its training nodes).

    ``op``: the float64 propagation operator (built here when None; the MLP, ``propagation='identity'``, has
    none). One row per layer k = 0..L with

        E_X, rel_mu_X = mu(X)/||X||_F, norm_X = ||X||_F, const_X = ||1 xbar^T||_F  of X(k)  (X(L) = H(L), the logits)
        E_B, rel_mu_B, norm_B  of B(k) = dL/dH(k),  grad_norm = ||dL/dW(k)||_F            (k >= 1, with ``backward``)
    """
    model = model.double().to(device)
    g = graph.to(device)
    if model.propagation == "identity":
        op = None
    elif op is None:
        op = G.propagation(g, model.propagation, device, dtype=torch.float64)
    with torch.set_grad_enabled(backward):
        _, sig = signals.trace(model, g.x.double(), op, g.y, g.train_mask, backward=backward)
    rows = []
    for k, X in enumerate(sig.X):
        row = dict(layer=k, E_X=measures.E(X), rel_mu_X=measures.rel_mu(X), norm_X=float(torch.linalg.norm(X.double())),
                   const_X=_const_norm(X))
        if backward and k >= 1:
            B = sig.B[k - 1]
            row.update(E_B=measures.E(B), rel_mu_B=measures.rel_mu(B), norm_B=float(torch.linalg.norm(B.double())),
                       grad_norm=float(torch.linalg.norm(sig.dW[k - 1].double())))
        rows.append(row)
    return pd.DataFrame(rows)


def profile_grid(graphs, depths, *, s=None, s_lambda=None, kinds=("GNN", "MLP"), hidden: int = 32,
                 activation: str = "centred_softplus", init: str = "gaussian", backward: bool = True,
                 device=None) -> pd.DataFrame:
    """:func:`layer_profile` of random-weight networks for every graph x kind x depth x scale.

    Graph i (seed ``graph.meta['seed']``, default i) gets weights drawn with the same seed, so a "seed" is a new
    graph and new weights. The scale is either ``s`` (list: spectral norm of every W(k)) or ``s_lambda`` (list:
    s = s_lambda / lambda of each graph). kinds: "GNN" (P = I - (D-A)/d_max) and/or "MLP" (P = I, same weights).
    init: "gaussian" (Gaussian rescaled to ||W||_2 = s) or "orthogonal" (every singular value s), see
    ``oversmoothing.models.build("paper1.gnn", ...)``. Returns the stacked rows tagged with seed, lambda, kind, L,
    scale (the requested s or s_lambda), s, s_lambda, activation and init.
    """
    if (s is None) == (s_lambda is None):
        raise ValueError("give exactly one of s and s_lambda")
    scales = list(s if s is not None else s_lambda)
    depths = [depths] if isinstance(depths, int) else list(depths)
    out = []
    for i, g in enumerate(graphs):
        seed = int(g.meta.get("seed", i))
        lam = float(g.meta["lambda"]) if "lambda" in g.meta else G.second_eigenvalue(G.bistochastic(g))
        op = G.propagation(g.to(device), "bistochastic", device, dtype=torch.float64)
        for L in depths:
            for x in scales:
                s_k = x if s is not None else x / lam
                for kind in kinds:
                    model = build(vanilla(kind), g.num_features, hidden, g.num_classes, L, activation=activation,
                                         init=init, s=s_k, seed=seed)
                    df = layer_profile(model, g, op if kind == "GNN" else None, backward=backward, device=device)
                    out.append(df.assign(seed=seed, **{"lambda": lam}, kind=kind, L=L, scale=x, s=s_k,
                                         s_lambda=s_k * lam, activation=activation, init=init))
    return pd.concat(out, ignore_index=True)


def fit_rate(values, k=None) -> tuple[float, float]:
    """Per-layer rate r and R^2 of the least-squares fit  log v_k = log c + k log r  (v_k ~ c r^k).

    ``k``: the layer indices of ``values`` (default 0, 1, ...). Non-positive or non-finite values are left out;
    fewer than 2 points left gives (nan, nan). R^2 is 1 for an exact geometric sequence."""
    v = np.asarray(values, dtype=float)
    k = np.arange(len(v), dtype=float) if k is None else np.asarray(k, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    x, y = k[ok], np.log(v[ok])
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    r2 = 1.0 - resid.var() / y.var() if y.var() > 0 else 1.0
    return float(np.exp(slope)), float(r2)


def layer_rates(profiles: pd.DataFrame, column: str, kmax: int, by=("seed", "kind", "L", "scale")) -> pd.DataFrame:
    """:func:`fit_rate` of ``column`` on layers k = 0..kmax of every profile in ``profiles`` (one group per ``by``):
    one row per group with its keys, ``rate`` and ``R2``."""
    rows = []
    for keys, d in profiles.groupby(list(by)):
        d = d[d.layer <= kmax].sort_values("layer")
        r, r2 = fit_rate(d[column].to_numpy(), d.layer.to_numpy())
        rows.append(dict(zip(by, keys if isinstance(keys, tuple) else (keys,)), rate=r, R2=r2))
    return pd.DataFrame(rows)


def end_rate(values, side: str, n_layers: int, valid=None) -> float:
    """Per-layer decay rate at one end of a layer profile ``values`` = (v_1, ..., v_L) (layer k = 1..L).

    side="out": fit v_k ~ c r^(L-k) on the ``n_layers`` layers next to the output (the backward smoothing from
    the output, Theorem 2's (lambda s)^(L-k) term); side="in": v_k ~ c r^k on the ``n_layers`` layers next to the
    input (the (lambda s)^k term). r < 1 means the values fall away from that end. ``valid`` (booleans, same
    length) drops points, e.g. those at float64 rounding level; nan when fewer than 2 points remain."""
    v = np.asarray(values, dtype=float)
    L = len(v)
    k = np.arange(1, L + 1)
    ok = np.ones(L, bool) if valid is None else np.asarray(valid, bool)
    if side == "out":
        sel = slice(max(L - n_layers, 0), L)
        return fit_rate(np.where(ok, v, np.nan)[sel], (L - k)[sel])[0]
    if side == "in":
        sel = slice(0, min(n_layers, L))
        return fit_rate(np.where(ok, v, np.nan)[sel], k[sel])[0]
    raise ValueError(f"side must be 'out' or 'in', got {side!r}")


def fit_theorem2(values, lam: float, s: float, valid=None) -> tuple[float, float, float]:
    """Fit Theorem 2's shape a (lambda s)^(L-k) + b (lambda s)^k (:func:`oversmoothing.measures.theorem2_bound`)
    to ``values`` = (v_1..v_L) by least squares on log10, over a, b > 0, using the ``valid`` points only.
    Returns (a, b, rms of the log10 residuals)."""
    from scipy.optimize import least_squares

    v = np.asarray(values, dtype=float)
    L = len(v)
    k = np.arange(1, L + 1)
    ok = np.isfinite(v) & (v > 0) & (np.ones(L, bool) if valid is None else np.asarray(valid, bool))
    if ok.sum() < 2:
        return float("nan"), float("nan"), float("nan")
    y = np.log10(v[ok])
    x0 = [float(np.log10(v[ok][-1])), float(np.log10(v[ok][0]))]

    def resid(p):
        return np.log10(measures.theorem2_bound(lam, s, k[ok], L, a=10 ** p[0], b=10 ** p[1])) - y

    res = least_squares(resid, x0=x0)
    return float(10 ** res.x[0]), float(10 ** res.x[1]), float(np.sqrt(np.mean(res.fun ** 2)))


def thirds(values) -> tuple[float, float, float]:
    """Means of log10(values) over the first, middle and last third of the layers (numpy.array_split);
    values <= 0 are clipped to 1e-300."""
    logs = np.log10(np.clip(np.asarray(values, dtype=float), 1e-300, None))
    return tuple(float(t.mean()) for t in np.array_split(logs, 3))


def valley_table(profiles: pd.DataFrame, column: str, n_layers: int, floor: float,
                 by=("seed", "kind", "L")) -> pd.DataFrame:
    """C3's measurements of the backward profile ``column`` (e.g. "E_B" or "rel_mu_B") of every network.

    One row per group: ``first/middle/last`` (:func:`thirds` of the values over layers 1..L), ``middle_lowest``
    (the middle third has the lowest mean log10), ``k_star`` (the layer of the minimum), the end rates ``r_in`` and
    ``r_out`` (:func:`end_rate` on ``n_layers`` layers, leaving out the layers where mu(B)/||B||_F < ``floor``, i.e.
    at float64 rounding level), ``q`` = lambda s and ``rates_ok`` (both end rates <= q), and Theorem 2's fitted
    shape ``a, b, rms`` (:func:`fit_theorem2`)."""
    rows = []
    for keys, d in profiles[profiles.layer >= 1].groupby(list(by)):
        d = d.sort_values("layer")
        v = d[column].to_numpy()
        valid = (d.rel_mu_B > floor).to_numpy()
        lam, s = float(d["lambda"].iloc[0]), float(d.s.iloc[0])
        t = thirds(v)
        r_in, r_out = end_rate(v, "in", n_layers, valid), end_rate(v, "out", n_layers, valid)
        a, b, rms = fit_theorem2(v, lam, s, valid)
        rows.append(dict(zip(by, keys), first=t[0], middle=t[1], last=t[2], middle_lowest=t[1] < min(t[0], t[2]),
                         k_star=int(d.layer.iloc[int(np.argmin(v))]), r_in=r_in, r_out=r_out, q=lam * s,
                         rates_ok=bool(r_in <= lam * s and r_out <= lam * s), a=a, b=b, rms=rms))
    return pd.DataFrame(rows)


def power_curve(P, X: torch.Tensor, steps: int) -> np.ndarray:
    """E(P^k X) / E(X) for k = 0..steps (chapter 01's speed of smoothing; E(P^k X) <= lambda^k E(X))."""
    out, Y = [1.0], X
    e0 = measures.E(X)
    for _ in range(steps):
        Y = P @ Y
        out.append(measures.E(Y) / e0)
    return np.array(out)


def steps_below(curve, level: float = 1e-2) -> float:
    """The first k at which ``curve`` (e.g. :func:`power_curve`) is below ``level`` (k_1% for 1e-2); inf if never."""
    below = np.nonzero(np.asarray(curve) < level)[0]
    return float(below[0]) if below.size else math.inf


def dirichlet_dense(X: torch.Tensor, P: torch.Tensor, d_max: float) -> float:
    """Dirichlet energy D(X) = sum over edges ||x_i - x_j||^2 of a graph with P = I - (D - A)/d_max, through
    D - A = d_max (I - P): D(X) = d_max tr(Xc^T (I - P) Xc), Xc = X centred (the same number as
    :func:`oversmoothing.measures.dirichlet`, without materialising one row per edge of a dense graph)."""
    Xc = X - X.mean(0, keepdim=True)
    return d_max * float((Xc * (Xc - P @ Xc)).sum())


def traced_pass(model, graph, op=None, device=None):
    """The signals of one float64 forward/backward pass of a copy of ``model`` on ``graph`` (cross-entropy on the
    training nodes; the model itself is left as it is). ``op``: the float64 propagation operator (unused by the
    MLP, ``propagation='identity'``). Returns (:class:`~oversmoothing.signals.Signals`, the operator used)."""
    import copy

    m = copy.deepcopy(model).double().to(device)
    op = None if m.propagation == "identity" else op
    g = graph.to(device)
    _, sig = signals.trace(m, g.x.double(), op, g.y, g.train_mask)
    return sig, op


def backward_table(sig, op, activation: str) -> pd.DataFrame:
    """Chapter 02's per-layer rows of one traced pass (:func:`traced_pass`), k = 1..L:

        E_B, norm_B = ||B(k)||_F, rel_mu_B = mu(B)/||B||_F of B(k) = dL/dH(k);  rel_mu_X of X(k);
        lin_err    eps_k, B(k) against its linear prediction 1 c_k^T o (P^T B(k+1) W(k+1)^T)
                   (:func:`oversmoothing.signals.linear_backward_error`);
        mean_meas, mean_pred   ||b(k)|| (the node-average of B(k)) and ||b_hat(k)|| predicted from the average
                   output error alone (:func:`oversmoothing.signals.backward_mean_prediction`);
        mean_err   ||b(k) - b_hat(k)|| / ||b(k)||;   limit_err  ||B(k) - 1 b_hat(k)^T||_F / ||B(k)||_F.
    """
    lin = signals.linear_backward_error(sig, op, activation)
    pred = signals.backward_mean_prediction(sig, activation)
    rows = []
    for k in range(1, len(sig.B) + 1):
        B, X = sig.B[k - 1], sig.X[k]
        b, bp = B.mean(0), pred[k - 1]
        rows.append(dict(layer=k, E_B=measures.E(B), norm_B=float(torch.linalg.norm(B)), rel_mu_B=measures.rel_mu(B),
                         rel_mu_X=measures.rel_mu(X), lin_err=lin[k - 1], mean_meas=float(torch.linalg.norm(b)),
                         mean_pred=float(torch.linalg.norm(bp)), mean_err=float(torch.linalg.norm(b - bp) / torch.linalg.norm(b)),
                         limit_err=float(torch.linalg.norm(B - bp[None, :]) / torch.linalg.norm(B))))
    return pd.DataFrame(rows)

"""Judges of chapter 01: C1 (forward oversmoothing like (s lambda)^k) and C13 (the spectral gap sets the speed).

* :func:`judge_c1` on the fitted per-layer rates r of E(X(k)) (:func:`oversmoothing.experiments.smoothing.layer_rates`)
  of random-weight GNNs and their MLP twins (P = I), per seed, at several s*lambda; its per-seed rule is
  :func:`forward_verdict`, its per-reading table :func:`c1_summary`;
* :func:`judge_c13` on the steps k_1% that E(P^k X)/E(X) takes to fall below 1% on graphs of different
  spectral gaps 1 - lambda (:func:`oversmoothing.experiments.smoothing.steps_below`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, reading, seeds_agree
from ..report import verdict_of

__all__ = ["C1Criterion", "C13Criterion", "forward_verdict", "c1_summary", "judge_c1", "judge_c13"]

C1_CLAIM = "Forward: E(X(k)) decays exponentially, about like (s*lambda)^k, when s*lambda < 1; not when s > 1/lambda."
C13_CLAIM = "Oversmoothing speed is set by the spectral gap: dense graphs smooth in a few steps, sparse ones slowly."


@dataclass(frozen=True)
class C1Criterion:
    """C1, judged per seed on the rate r of E(X(k)) ~ c r^k (fit R^2) at each tested s*lambda:

    (a) *decay*: every s*lambda < 1 has R^2 >= ``r2_min`` and r <= s*lambda (no slower than the bound);
    (b) *escape*: for SOME (``escape="some"``) or EVERY (``escape="every"``) tested s*lambda > 1, r >= ``no_decay``;
    (c) *control*: the MLP (P = I, same weights) fails (a).
    (a)+(b)+(c): reproduced; (a), or (a)+(b) with an MLP that passes (a): partly reproduced; else not reproduced."""

    r2_min: float = 0.9
    escape: str = "some"
    no_decay: float = 1.0

    def __post_init__(self):
        if self.escape not in ("some", "every"):
            raise ValueError(f"escape must be 'some' or 'every', got {self.escape!r}")

    @property
    def text(self) -> str:
        return (f"per seed: (a) every s*lambda<1: R2>={self.r2_min:g} and r<=s*lambda; (b) {self.escape.upper()} "
                f"s*lambda>1: r>={self.no_decay:g} (no decay); (c) the MLP fails (a). (a)+(b)+(c): reproduced; (a): partly")


@dataclass(frozen=True)
class C13Criterion:
    """C13 on k_1%, the steps E(P^k X)/E(X) of a random Gaussian X takes to fall below 0.01: k_1% is non-decreasing
    in lambda (graphs sorted by lambda), k_1% <= ``fast`` on every dense graph and > ``slow`` on every sparse one.
    All three: reproduced; otherwise not reproduced; not judged without both a dense and a sparse graph."""

    fast: int = 5
    slow: int = 20

    @property
    def text(self) -> str:
        return ("k_1% (steps for E(P^k X)/E(X) < 0.01, random Gaussian X) non-decreasing in lambda, "
                f"<= {self.fast:g} for the dense graphs (complete, CSBM), > {self.slow:g} for the sparse ones (ring, Cora)")


def _decays(s_lambda, rate, r2, criterion: C1Criterion) -> bool:
    """Part (a): every s*lambda < 1 is tested and has R^2 >= r2_min and r <= s*lambda."""
    below = s_lambda < 1
    return bool(below.any() and ((r2[below] >= criterion.r2_min) & (rate[below] <= s_lambda[below])).all())


def forward_verdict(s_lambda, rate, r2, criterion: C1Criterion = C1Criterion(), *, control=None) -> dict:
    """C1's criterion on ONE network's fitted rates r (and fit R^2) of E(X(k)) at several s*lambda.

    decays  : (a) for every s*lambda < 1 the decay is exponential (R^2 >= r2_min) and at least as fast as the bound,
              r <= s*lambda (the paper: s lambda < 1 is sufficient for oversmoothing);
    escapes : (b) s*lambda > 1 lets E(X(k)) escape (r >= no_decay) for SOME tested s*lambda (the paper says that then
              oversmoothing *may* not happen) or for EVERY one (``criterion.escape="every"``, a stricter reading);
    control : (c) optional (rate, r2) of the same networks with P = I (the MLP) at the same s*lambda. If the MLP
              "decays" by (a), the (s lambda)^k decay is not a graph effect and "reproduced" drops to
              "partly reproduced"; the result carries ``control_decays``.
    verdict : (a)+(b) -> "reproduced"; (a) only -> "partly reproduced"; otherwise "not reproduced". With no
              s*lambda < 1 (or none > 1) tested, the missing part counts as not shown.
    """
    sl, r, q = (np.asarray(a, dtype=float) for a in (s_lambda, rate, r2))
    decays = _decays(sl, r, q, criterion)
    hit = r[sl > 1] >= criterion.no_decay
    escapes = bool(hit.size and (hit.any() if criterion.escape == "some" else hit.all()))
    verdict = (REPRODUCED if escapes else PARTLY) if decays else NOT_REPRODUCED
    out = dict(decays=decays, escapes=escapes, verdict=verdict)
    if control is not None:
        c_rate, c_r2 = (np.asarray(a, dtype=float) for a in control)
        out["control_decays"] = _decays(sl, c_rate, c_r2, criterion)
        if out["control_decays"] and verdict == REPRODUCED:
            out["verdict"] = PARTLY
    return out


def _per_seed(rates: pd.DataFrame, criterion: C1Criterion) -> dict:
    """:func:`forward_verdict` of every seed's GNN rates, with the MLP of the same seed (same s*lambda) as the control."""
    out = {}
    for sd, d in rates.groupby("seed"):
        gnn = d[d.kind == "GNN"]
        mlp = d[d.kind == "MLP"].set_index("s_lambda").reindex(gnn.s_lambda)
        out[sd] = forward_verdict(gnn.s_lambda, gnn.rate, gnn.R2, criterion, control=(mlp.rate, mlp.R2))
    return out


def _rate_ranges(rates: pd.DataFrame, where, kind: str = "GNN") -> str:
    """'s*lambda=x: r=min..max' over seeds, for the s*lambda values selected by ``where``."""
    d = rates[(rates.kind == kind) & where(rates.s_lambda)].groupby("s_lambda").rate
    return "; ".join(f"s*lambda={sl:g}: r={lo:.3f}..{hi:.3f}" for sl, lo, hi in zip(d.min().index, d.min(), d.max()))


def _case(entry, criterion: C1Criterion) -> tuple[pd.DataFrame, C1Criterion]:
    """A reading: a rates table, judged by ``criterion``, or (rates table, its own criterion)."""
    return entry if isinstance(entry, tuple) else (entry, criterion)


def c1_summary(tables: dict, criterion: C1Criterion = C1Criterion()) -> pd.DataFrame:
    """C1 under every reading: ``tables`` maps a reading's name ("headline" first) to its rates table (columns
    seed, kind GNN/MLP, s_lambda, rate, R2), or to (rates table, its own criterion), e.g. the stricter escape.

    One row per reading: the seeds' combined verdict (:func:`~oversmoothing.judges.seeds_agree`) and its detail,
    how many seeds pass (a) ``decays`` and (b) ``escapes``, how many MLPs pass (a) ``mlp_decays``, and the GNN's
    rate ranges over seeds below and above s*lambda = 1."""
    rows = []
    for name, entry in tables.items():
        rates, crit = _case(entry, criterion)
        v = _per_seed(rates, crit).values()
        agree = seeds_agree([x["verdict"] for x in v])
        rows.append(dict(reading=name, verdict=agree.verdict, seeds=agree.detail, decays=sum(x["decays"] for x in v),
                         escapes=sum(x["escapes"] for x in v), mlp_decays=sum(x["control_decays"] for x in v),
                         rates_below_1=_rate_ranges(rates, lambda x: x < 1), rates_above_1=_rate_ranges(rates, lambda x: x > 1)))
    return pd.DataFrame(rows).set_index("reading")


def _c1_key(rates: pd.DataFrame, verdict: str, criterion: C1Criterion) -> str:
    """The verdict matrix's key number: the GNN's largest rate at s*lambda < 1 where reproduced (that rate where
    not reproduced); where partly, the largest rate above 1 (no escape), or under the EVERY reading the s*lambda > 1
    that still decays most."""
    g = rates[rates.kind == "GNN"]
    below, above = g[g.s_lambda < 1].rate, g[g.s_lambda > 1]
    if criterion.escape == "every" and verdict != REPRODUCED and len(above):
        lo = above.loc[above.rate.idxmin()]
        return f"r={lo.rate:.2f} at sλ={lo.s_lambda:g}"
    if verdict == REPRODUCED:
        return f"r ≤ {below.max():.3f} (sλ<1)"
    if verdict == NOT_REPRODUCED:
        return f"sλ<1: r ≤ {below.max():.2f}"
    return f"sλ>1: r ≤ {above.rate.max():.2f}" if len(above) else ""


def judge_c1(tables: dict, criterion: C1Criterion = C1Criterion(), *, setting: str = "", fit_layers: int = 8,
             settings: dict | None = None) -> Verdict:
    """Claim C1 on the rates of E(X(k)) (:func:`c1_summary`'s ``tables``; ``tables["headline"]`` is the headline).

    Per seed, :func:`forward_verdict` under ``criterion`` (see :class:`C1Criterion`); the seeds combine by
    :func:`~oversmoothing.judges.seeds_agree`. Every other entry of ``tables`` is a reading, judged the same way,
    with the setting text ``settings[name]``. ``setting`` (the network, graph and weights) and ``fit_layers`` (the
    rates were fitted on k = 0..fit_layers) go into the measured text. The verdict rests on every rate and R^2 of
    the headline table; the metrics are the GNN's mean rate at each s*lambda and, where the table has a
    ``rel_rate`` column, that of mu(X)/||X||_F at the largest s*lambda."""
    settings = settings or {}
    summary = c1_summary(tables, criterion)
    rates, _ = _case(tables["headline"], criterion)
    head = summary.loc["headline"]
    n = rates.seed.nunique()
    readings = []
    for name, r in summary.drop(index="headline").iterrows():
        r_rates, r_criterion = _case(tables[name], criterion)
        readings.append(reading(name, settings.get(name, ""), verdict_of(r.verdict, r_rates[["rate", "R2"]].to_numpy()),
                                f"{r.seeds}; GNN rates {r.rates_below_1}; {r.rates_above_1}; MLP passes (a) on {r.mlp_decays} seeds",
                                _c1_key(r_rates, r.verdict, r_criterion)))
    measured = (f"{head.verdict}, {head.seeds} ({setting}); fitted rate r of E(X(k)) on k<={fit_layers}, range over seeds, "
                f"GNN: {head.rates_below_1}; {head.rates_above_1}. (a) holds on {head.decays}, (b) on {head.escapes} of {n} "
                f"seeds; MLP (P = I) passes (a) on {head.mlp_decays} seeds (its rates at s*lambda<1: "
                + _rate_ranges(rates, lambda x: x < 1, kind="MLP") + ")")
    gnn = rates[rates.kind == "GNN"]
    metrics = {f"C1 GNN rate at s*lambda={sl:g} (mean over seeds)": gnn[gnn.s_lambda == sl].rate.mean()
               for sl in dict.fromkeys(rates.s_lambda)}
    if "rel_rate" in rates and len(gnn):
        top = gnn.s_lambda.max()
        metrics[f"C1 GNN relative-measure rate at s*lambda={top:g} (mean over seeds)"] = gnn[gnn.s_lambda == top].rel_rate.mean()
    return Verdict("C1", C1_CLAIM, measured, criterion.text, head.verdict, key=_c1_key(rates, head.verdict, criterion),
                   numbers=rates[["rate", "R2"]].to_numpy(), readings=readings, metrics=metrics)


def judge_c13(spectra: pd.DataFrame, criterion: C13Criterion = C13Criterion(), *,
              dense=("complete", "CSBM")) -> Verdict:
    """Claim C13 on ``spectra`` (index: graph names; columns ``lambda`` and ``k_1% measured``, inf where E(P^k X)/E(X)
    never fell below 0.01): the graphs whose name starts with one of ``dense`` are the dense ones, the others
    sparse. See :class:`C13Criterion`. The verdict rests on the lambdas (k_1% = inf is a measurement: never);
    the metrics are every graph's lambda."""
    order = spectra.sort_values("lambda")
    names = {n: n.replace("$", "") for n in order.index}
    k1 = order["k_1% measured"].to_numpy(dtype=float)
    is_dense = np.array([n.startswith(tuple(dense)) for n in order.index], dtype=bool)
    measured = "; ".join(f"{names[n]}: lambda={r['lambda']:.4g}, k_1%={r['k_1% measured']:g}" for n, r in order.iterrows())
    metrics = {f"C13 lambda {names[n]}": r["lambda"] for n, r in order.iterrows()}
    if not (is_dense.any() and (~is_dense).any()):
        return Verdict("C13", C13_CLAIM, measured + " (needs a dense and a sparse graph)", criterion.text, NOT_JUDGED,
                       numbers=order["lambda"].to_numpy(), metrics=metrics)
    monotone = bool(np.all(k1[1:] >= k1[:-1]))     # inf >= inf: two graphs that never smooth keep the order
    fast = bool((k1[is_dense] <= criterion.fast).all())
    slow = bool((k1[~is_dense] > criterion.slow).all())
    key = f"k1% {k1[is_dense].max():g} vs {k1[~is_dense].min():g}".replace("inf", "∞")
    return Verdict("C13", C13_CLAIM, measured, criterion.text, monotone and fast and slow, key=key,
                   numbers=order["lambda"].to_numpy(), metrics=metrics)

"""Judges of chapters 02-03: C2 (backward oversmoothing) and C3 (the middle-layer peak, Theorem 2).

* :func:`judge_c2` on chapter 02's per-layer backward rows (:func:`oversmoothing.experiments.smoothing.backward_table`
  of every seed, network and snapshot); its per-seed rule is :func:`c2_parts`;
* :func:`judge_c3` on chapter 03's valley tables (:func:`oversmoothing.experiments.smoothing.valley_table`); its
  per-seed rule is :func:`valley_verdict`, its per-reading table :func:`c3_summary`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..report import verdict_of
from . import NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, reading, seeds_agree

__all__ = ["C2Criterion", "C3Criterion", "c2_parts", "judge_c2", "valley_verdict", "c3_summary", "judge_c3"]

C2_CLAIM = ("Backward: E(B(k)) also decays from the output towards the input; once the forward signal is oversmoothed the "
            "backward recursion is approximately linear, B(k) ~ c P^T B(k+1) W(k+1)^T, and its limit is set by the average "
            "output error 1^T B(L).")
C3_CLAIM = ("Backward oversmoothing peaks at the middle layers (both k and L-k large); the Theorem 2 bound has one term in "
            "(lambda s)^k and one in (lambda s)^(L-k).")


def _sci(x: float) -> str:
    """1e-3, not 0.001 or 1e-03."""
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


@dataclass(frozen=True)
class C2Criterion:
    """C2, per seed, on the GNN at every snapshot (initialisation, after training), with B(k) = dL/dH(k):

    (a) *decay*: mu(B(k))/||B(k)||_F falls by >= ``gnn_decades`` orders of magnitude from k = L to k = L/2, and the
        MLP's (P = I, same weights: the control) by < ``mlp_decades``;
    (b) *linear regime*: eps_k <= ``linear_tol`` at every forward-oversmoothed layer k < L, i.e. where
        mu(X(k))/||X(k)||_F < ``smoothed_below``;
    (c) *limit*: there the node-average b(k) predicted from the average output error alone is within a relative
        ``limit_tol``, and ||B(L/2) - 1 b_hat^T||_F / ||B(L/2)||_F <= ``limit_tol``.
    All three: reproduced; one or two: partly reproduced; none: not reproduced."""

    gnn_decades: float = 3.0
    mlp_decades: float = 1.0
    linear_tol: float = 1e-3
    limit_tol: float = 1e-3
    smoothed_below: float = 1e-3

    @property
    def text(self) -> str:
        return (f"per seed: (a) GNN's mu(B)/||B|| drops >= {self.gnn_decades:g} decades from k=L to L/2 and the MLP's "
                f"(P = I control) < {self.mlp_decades:g}; (b) eps_k <= {_sci(self.linear_tol)} on forward-oversmoothed "
                f"layers; (c) predicted average error <= {_sci(self.limit_tol)} there and ||B(L/2) - 1 b_hat^T||/||B(L/2)|| "
                f"<= {_sci(self.limit_tol)}. All: reproduced; some: partly")


def c2_parts(rows: pd.DataFrame, criterion: C2Criterion = C2Criterion()) -> dict:
    """C2's three parts on ONE seed's :func:`~oversmoothing.experiments.smoothing.backward_table` rows (columns net
    GNN/MLP, when, layer 1..L, rel_mu_B, rel_mu_X, lin_err, mean_err, limit_err): the booleans ``gnn_decay``,
    ``mlp_control``, ``linear``, ``limit``, the numbers ``drop`` ({(net, when): decades}), ``n_smooth`` (the
    forward-oversmoothed GNN layers), ``lin_max``, ``mean_max``, ``limit_mid`` (GNN, worst snapshot),
    ``mlp_limit_mid`` (MLP, best snapshot), and the ``verdict`` (see :class:`C2Criterion`)."""
    L = int(rows.layer.max())
    mid = L // 2
    at = lambda net, w, k, col: float(rows[(rows.net == net) & (rows.when == w) & (rows.layer == k)][col].iloc[0])  # noqa: E731
    ws = list(dict.fromkeys(rows.when))
    drop = {(net, w): np.log10(at(net, w, L, "rel_mu_B") / at(net, w, mid, "rel_mu_B")) for net in ["GNN", "MLP"] for w in ws}
    smooth = rows[(rows.net == "GNN") & (rows.rel_mu_X < criterion.smoothed_below) & (rows.layer < L)]
    out = dict(gnn_decay=all(drop["GNN", w] >= criterion.gnn_decades for w in ws),
               mlp_control=all(drop["MLP", w] < criterion.mlp_decades for w in ws),
               linear=bool(len(smooth)) and bool((smooth.lin_err <= criterion.linear_tol).all()),
               limit=(bool(len(smooth)) and bool((smooth.mean_err <= criterion.limit_tol).all())
                      and all(at("GNN", w, mid, "limit_err") <= criterion.limit_tol for w in ws)),
               drop=drop, n_smooth=len(smooth), lin_max=smooth.lin_err.max(), mean_max=smooth.mean_err.max(),
               limit_mid=max(at("GNN", w, mid, "limit_err") for w in ws),
               mlp_limit_mid=min(at("MLP", w, mid, "limit_err") for w in ws))
    n_ok = sum([out["gnn_decay"] and out["mlp_control"], out["linear"], out["limit"]])
    out["verdict"] = REPRODUCED if n_ok == 3 else (PARTLY if n_ok else NOT_REPRODUCED)
    return out


def _c2_key(parts: list) -> str:
    """The verdict matrix's key number: the GNN's decades of decay (range over seeds and snapshots), or the part
    that fails."""
    gnn = [v for p in parts for (n, w), v in p["drop"].items() if n == "GNN"]
    if all(p["gnn_decay"] and p["mlp_control"] for p in parts) and not all(p["linear"] for p in parts):
        return f"eps_k ≤ {max(p['lin_max'] for p in parts):.0e}"
    if all(p["gnn_decay"] and p["mlp_control"] and p["linear"] for p in parts) and not all(p["limit"] for p in parts):
        return f"limit err {max(p['limit_mid'] for p in parts):.0e}"
    if gnn and all(p["gnn_decay"] for p in parts) and not all(p["mlp_control"] for p in parts):
        return f"MLP {max(v for p in parts for (n, w), v in p['drop'].items() if n == 'MLP'):.1f} dec."
    return f"{min(gnn):.1f}-{max(gnn):.1f} dec." if gnn else ""


def _c2(rows: pd.DataFrame, criterion: C2Criterion):
    """(verdict, measured text, numbers, per-seed parts, key) of C2 on the rows of every seed."""
    parts = [c2_parts(d, criterion) for _, d in rows.groupby("seed")]
    head, agree = seeds_agree([p["verdict"] for p in parts])
    drops = lambda net: ", ".join(f"{v:.1f}" for p in parts for (n, w), v in p["drop"].items() if n == net)  # noqa: E731
    worst = lambda k, f=max: f(p[k] for p in parts) if parts else float("nan")  # noqa: E731
    measured = (f"{head}, {agree}; (a) decades of decay of mu(B)/||B|| from k=L to k=L/2, GNN: {drops('GNN')}; "
                f"control MLP (P = I): {drops('MLP')} (GNN >= {criterion.gnn_decades:g} on {sum(p['gnn_decay'] for p in parts)}, "
                f"MLP < {criterion.mlp_decades:g} on {sum(p['mlp_control'] for p in parts)} of {len(parts)} seeds); "
                f"(b) max eps_k on the forward-oversmoothed GNN layers: {worst('lin_max'):.1e}; "
                f"(c) max error of the predicted average there: {worst('mean_max'):.1e}, "
                f"distance to the constant limit at k=L/2: {worst('limit_mid'):.1e} "
                f"(MLP: {worst('mlp_limit_mid', min):.2f})")
    numbers = [v for p in parts for v in list(p["drop"].values()) + [p["lin_max"], p["mean_max"], p["limit_mid"]]]
    return head, measured, numbers, parts, _c2_key(parts)


def judge_c2(rows: pd.DataFrame, criterion: C2Criterion = C2Criterion(), *, setting: str = "",
             readings: dict | None = None) -> Verdict:
    """Claim C2 on the backward rows of every seed (:func:`c2_parts`' columns plus ``seed``), per seed by
    :class:`C2Criterion`, the seeds combined by :func:`~oversmoothing.judges.seeds_agree`. ``setting`` (depth,
    activation, s*lambda, graph, snapshots) opens the measured text. ``readings``: {name: (setting text, rows)},
    each judged the same way. The verdict rests on every seed's decades of decay, largest eps_k, largest error of
    the predicted average and distance to the constant limit; the metrics are the GNN's smallest and the MLP's
    largest decades of decay and the largest eps_k."""
    head, measured, numbers, parts, key = _c2(rows, criterion)
    out = []
    for name, (r_setting, r_rows) in (readings or {}).items():
        r_head, r_measured, r_numbers, _, r_key = _c2(r_rows, criterion)
        out.append(reading(name, r_setting, verdict_of(r_head, r_numbers), r_measured, r_key))
    decades = lambda net: [v for p in parts for (n, w), v in p["drop"].items() if n == net]  # noqa: E731
    metrics = {"C2 GNN decades of decay of mu(B)/||B|| from L to L/2 (min over seeds)": min(decades("GNN"), default=np.nan),
               "C2 MLP decades of decay of mu(B)/||B|| from L to L/2 (max over seeds)": max(decades("MLP"), default=np.nan),
               "C2 max linearisation error on oversmoothed layers": max((p["lin_max"] for p in parts), default=np.nan)}
    return Verdict("C2", C2_CLAIM, f"{setting}: {measured}" if setting else measured, criterion.text, head, key=key,
                   numbers=numbers, readings=out, metrics=metrics)


@dataclass(frozen=True)
class C3Criterion:
    """C3, per seed, on every depth L >= ``min_depth`` (the paper exempts shallow networks):

    (i) *peak*: the middle third of the layers has the lowest mean log10 of the peak measure (headline:
        mu(B(k))/||B(k)||_F);
    (ii) *two terms*: both end rates r_in, r_out of the rate measure (headline: the absolute E(B(k)), which
        Theorem 2 bounds by a (lambda s)^(L-k) + b (lambda s)^k) are <= lambda s;
    (iii) *control*: the MLP (P = I, same weights and depth) does not show the peak (i).
    (i)+(ii)+(iii): reproduced; (i) or (ii): partly reproduced; neither: not reproduced."""

    min_depth: int = 20

    @property
    def text(self) -> str:
        return (f"per seed, every L>={self.min_depth}: (i) the middle third has the lowest mean log10 mu(B(k))/||B(k)||; "
                "(ii) end rates r_in, r_out of E(B(k)) <= lambda*s; (iii) the MLP shows no such peak. "
                "(i)+(ii)+(iii): reproduced; (i) or (ii): partly")


def valley_verdict(peak: pd.DataFrame, rates: pd.DataFrame | None = None, control: pd.DataFrame | None = None) -> dict:
    """C3's rule on ONE seed's :func:`~oversmoothing.experiments.smoothing.valley_table` rows (the judged depths):
    (i) ``peak``: the middle third is lowest at every depth (rows ``peak``); (ii) ``rates``: both end rates <= lambda s
    at every depth (rows ``rates``, default ``peak``, e.g. the table of another measure). Both: "reproduced"; one:
    "partly reproduced"; neither: "not reproduced". ``control`` (the peak rows of the same networks with P = I): if
    the MLP shows the middle-layer peak too, it is not a GNN effect and "reproduced" drops to "partly reproduced"."""
    rates = peak if rates is None else rates
    ok_peak, ok_rates = bool(len(peak) and peak.middle_lowest.all()), bool(len(rates) and rates.rates_ok.all())
    verdict = REPRODUCED if ok_peak and ok_rates else (PARTLY if ok_peak or ok_rates else NOT_REPRODUCED)
    out = dict(peak=ok_peak, rates=ok_rates, verdict=verdict)
    if control is not None:
        out["control_peak"] = bool(len(control) and control.middle_lowest.all())
        if out["control_peak"] and verdict == REPRODUCED:
            out["verdict"] = PARTLY
    return out


def _case(entry, criterion: C3Criterion) -> tuple[pd.DataFrame, pd.DataFrame, C3Criterion]:
    """A reading: (peak table, rates table), judged by ``criterion``, or (peak, rates, its own criterion)."""
    return entry if len(entry) == 3 else (*entry, criterion)


def _judged(table: pd.DataFrame, criterion: C3Criterion, kind: str | None = "GNN") -> pd.DataFrame:
    t = table[table.L >= criterion.min_depth]
    return t if kind is None else t[t.kind == kind]


def _per_seed(peak: pd.DataFrame, rates: pd.DataFrame, criterion: C3Criterion) -> list:
    """:func:`valley_verdict` per seed on the judged depths, with the MLP of the same seed (if any) as the control."""
    peak, rates = _judged(peak, criterion, None), _judged(rates, criterion, None)
    return [valley_verdict(d[d.kind == "GNN"], rates[(rates.seed == sd) & (rates.kind == "GNN")],
                           d[d.kind == "MLP"] if (d.kind == "MLP").any() else None)
            for sd, d in peak.groupby("seed")]


def _describe(peak: pd.DataFrame, rates: pd.DataFrame, criterion: C3Criterion) -> str:
    """Per judged depth: the GNN's mean log10 of the peak measure over the thirds (mean over seeds) and the range over
    seeds of the end rates of the rate measure."""
    p, r = _judged(peak, criterion), _judged(rates, criterion)
    return "; ".join(f"L={L}: thirds {d['first'].mean():.1f}/{d.middle.mean():.1f}/{d['last'].mean():.1f}, "
                     f"r_in {e.r_in.min():.3f}..{e.r_in.max():.3f}, r_out {e.r_out.min():.3f}..{e.r_out.max():.3f}"
                     for (L, d), (_, e) in zip(p.groupby("L"), r.groupby("L")))


def _c3_numbers(peak: pd.DataFrame, rates: pd.DataFrame, criterion: C3Criterion) -> np.ndarray:
    """What a C3 verdict rests on: the GNN's end rates (rate table) and thirds (peak table) at the judged depths."""
    return np.r_[_judged(rates, criterion)[["r_in", "r_out"]].to_numpy().ravel(),
                 _judged(peak, criterion)[["first", "middle", "last"]].to_numpy().ravel()]


def c3_summary(tables: dict, criterion: C3Criterion = C3Criterion()) -> pd.DataFrame:
    """C3 under every reading: ``tables`` maps a reading's name ("headline" first) to (peak table, rates table) of
    :func:`~oversmoothing.experiments.smoothing.valley_table` (e.g. (relative, absolute) for the headline), or to
    (peak, rates, its own criterion), e.g. a smaller ``min_depth``.

    One row per reading: the seeds' combined verdict (:func:`~oversmoothing.judges.seeds_agree`) and its detail,
    how many seeds pass (i) ``peak`` and (ii) ``rates``, how many MLPs show the peak ``mlp_peak`` ("-" where the
    tables hold no MLP), how many seeds ``n``, and the ``measured`` thirds and end rates per depth."""
    rows = []
    for name, entry in tables.items():
        peak, rates, crit = _case(entry, criterion)
        v = _per_seed(peak, rates, crit)
        agree = seeds_agree([x["verdict"] for x in v])
        rows.append(dict(reading=name, verdict=agree.verdict, seeds=agree.detail, peak=sum(x["peak"] for x in v),
                         rates=sum(x["rates"] for x in v),
                         mlp_peak=(sum(x["control_peak"] for x in v) if all("control_peak" in x for x in v) else "-"),
                         n=len(v), measured=_describe(peak, rates, crit)))
    return pd.DataFrame(rows).set_index("reading")


def _c3_key(r) -> str:
    """The verdict matrix's key number: seeds with the middle-layer peak (i), or with the rates (ii) where those are fewer."""
    return f"r ≤ λs on {r.rates}/{r.n}" if r.rates < r.peak else f"mid peak {r.peak}/{r.n}"


def judge_c3(tables: dict, criterion: C3Criterion = C3Criterion(), *, setting: str = "",
             settings: dict | None = None) -> Verdict:
    """Claim C3 on the valley tables of :func:`c3_summary` (``tables["headline"]`` is the headline), per seed by
    :func:`valley_verdict` on the depths L >= ``criterion.min_depth`` (see :class:`C3Criterion`), the seeds combined
    by :func:`~oversmoothing.judges.seeds_agree`. Every other entry is a reading, judged the same way, with the
    setting text ``settings[name]``; ``setting`` (activation, graph, s*lambda) goes into the measured text. The
    verdict rests on the GNN's end rates and thirds at the judged depths; the metrics are the largest r_out and r_in,
    the mean lambda s and the number of seeds with the peak."""
    settings = settings or {}
    summary = c3_summary(tables, criterion)
    head = summary.loc["headline"]
    peak, rates, _ = _case(tables["headline"], criterion)
    readings = [reading(name, settings.get(name, ""), verdict_of(r.verdict, _c3_numbers(*_case(tables[name], criterion))),
                        f"{r.seeds}; (i) on {r.peak}, (ii) on {r.rates} seeds, MLP peak on {r.mlp_peak}; {r.measured}",
                        _c3_key(r))
                for name, r in summary.drop(index="headline").iterrows()]
    q = _judged(rates, criterion, None).q
    measured = (f"{head.verdict}, {head.seeds} ({setting}, L>={criterion.min_depth}); (i) peak on {head.peak}, (ii) rates "
                f"<= lambda*s on {head.rates} of {head.n} seeds; MLP shows the peak on {head.mlp_peak}. Mean log10 "
                f"mu(B)/||B|| over first/middle/last third (mean over seeds), end rates of E(B) (range): {head.measured}; "
                f"lambda*s={q.min():.3f}..{q.max():.3f}")
    g = _judged(rates, criterion)
    metrics = {"C3 r_out of E(B) (max over seeds and judged L)": g.r_out.max(),
               "C3 r_in of E(B) (max over seeds and judged L)": g.r_in.max(),
               "C3 lambda*s": g.q.mean(), "C3 seeds with the peak": head.peak}
    return Verdict("C3", C3_CLAIM, measured, criterion.text, head.verdict, key=_c3_key(head),
                   numbers=_c3_numbers(peak, rates, criterion), readings=readings, metrics=metrics)

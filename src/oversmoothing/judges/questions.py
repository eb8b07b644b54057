"""Judges of chapter 09: answers to the open questions Q1-Q5 (DESIGN.md), beyond the papers.

An open question is answered by a statement of ours, judged like a claim (criterion fixed before measuring, a
frozen dataclass whose ``text`` is shown beside the answer, >= 3 seeds, the P = I twin as control where the
statement is about graphs) but with the answers of :data:`oversmoothing.report.QUESTION_VERDICTS`: "holds",
"partly holds", "does not hold".  Every seed is judged on its own and the seeds are combined by the book's one
rule, :func:`~oversmoothing.judges.seeds_agree` (read through :func:`agree`: holds <-> reproduced).

=====  ============================================================================================
Q1     :func:`judge_q1`  the weights of the deep GNN stay in the theory's region, lambda max_k ||W(k)||_2 < 1
Q2     :func:`judge_q2`  the residual GCN's gradient expansion depends on homophily (beyond its P = I twin)
Q3     :func:`judge_q3`  other normalisations tame the expansion and train as well as paper 2's Frobenius one
Q4     :func:`judge_q4`  backward oversmoothing appears in deep GATs and graph transformers (not in their twins)
Q5     :func:`judge_q5`  chapter 4's trap (Figure 1 of paper 1) appears on real graphs (chapter 4's C4 test)
=====  ============================================================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..report import verdict_of
from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Agreement, Verdict, from_parts, reading, seeds_agree
from ..experiments.questions import expansion_parts, real_expansion_parts
from .traps import C4Criterion, judge_c4

__all__ = ["HOLDS", "PARTLY_HOLDS", "DOES_NOT_HOLD", "answer", "agree", "Q1Criterion", "Q2Criterion", "Q3Criterion",
           "Q4Criterion", "judge_q1", "judge_q2", "judge_q3", "judge_q4", "judge_q5", "decades_of_decay", "flips"]

HOLDS, PARTLY_HOLDS, DOES_NOT_HOLD = "holds", "partly holds", "does not hold"
_ANSWER = {REPRODUCED: HOLDS, PARTLY: PARTLY_HOLDS, NOT_REPRODUCED: DOES_NOT_HOLD}
_CLAIM = {v: k for k, v in _ANSWER.items()}


def answer(verdict) -> str:
    """A claim's verdict as an answer: reproduced -> holds, partly reproduced -> partly holds, not reproduced ->
    does not hold (True/False as reproduced/not reproduced); "not judged" and "not judged: non-finite" stay."""
    v = verdict_of(verdict)
    return _ANSWER.get(v, v)


def _words(text: str) -> str:
    """A measured text's claim verdicts in answer words ("reproduced on 2/3 seeds" -> "holds on 2/3 seeds")."""
    return re.sub(r"(not reproduced|partly reproduced|reproduced)", lambda m: _ANSWER[m.group(1)], text)


def agree(answers) -> Agreement:
    """:func:`~oversmoothing.judges.seeds_agree` on answers (holds / partly holds / does not hold, or claim
    verdicts): the same rule, answered in the same words."""
    a = seeds_agree([_CLAIM.get(verdict_of(x), verdict_of(x)) for x in answers])
    return Agreement(answer(a.verdict), a.k, a.n, _words(a.detail))


def _by_seed(a: Agreement) -> str:
    return "" if a.k == a.n else f"; by seed: {a.detail}"


def _part(ok) -> str:
    """One seed's answer from its parts (booleans): all hold, some, none (:func:`~oversmoothing.judges.from_parts`)."""
    return answer(from_parts(*ok))


def _span(v, fmt="{:.2f}") -> str:
    v = [x for x in np.asarray(v, dtype=float).ravel()]
    if not v:
        return "-"
    lo, hi = fmt.format(min(v)), fmt.format(max(v))
    return lo if lo == hi else f"{lo} to {hi}"


# ---------------------------------------------------------------------------------------------------- Q1

@dataclass(frozen=True)
class Q1Criterion:
    """Q1, per deep-GNN run (one per seed): the weights stay in Theorem 1-3's region if lambda max_k ||W(k)||_2 <
    ``bound`` at every recorded epoch of training (held: *holds*; left: *does not hold*).  An *escape* is a run
    whose trap status is "trained" or "not trapped"; it escapes *by growth* if it started below ``bound`` and
    crossed it.  The P = I control (a reading): the bound is kept *because of the graph* if the deep GNN's
    weights grow (max ||W|| / s) by at most ``control_ratio`` times the growth of the deep MLP's on the same seed."""

    bound: float = 1.0
    control_ratio: float = 0.5

    @property
    def text(self) -> str:
        return (f"per seed, the deep GNN keeps lambda max_k ||W(k)||_2 < {self.bound:g} at every recorded epoch: holds; "
                f"leaves it: does not hold; seeds combined by seeds_agree. Escapes (trained or not trapped) are counted, "
                f"and those that crossed {self.bound:g} from below are escapes by growth")


_ESCAPED = ("trained", "not trapped")


def _q1_runs(t: pd.DataFrame, model: str, c: Q1Criterion) -> tuple[Agreement, dict]:
    d = t.loc[t["model"] == model]
    kept = d["slam_max"] < c.bound
    esc = d["status"].isin(_ESCAPED)
    growth = esc & (d["slam0"] < c.bound) & d["cross_epoch"].notna()
    a = agree([HOLDS if k else DOES_NOT_HOLD for k in kept])
    return a, dict(n=len(d), kept=int(kept.sum()), escaped=int(esc.sum()), by_growth=int(growth.sum()),
                   trapped=int((d["status"] == "trapped").sum()), slam0=_span(d["slam0"]), slam_max=_span(d["slam_max"]),
                   max=float(d["slam_max"].max()) if len(d) else float("nan"))


def _q1_text(s: dict, model: str, bound: float) -> str:
    return (f"{model}: lambda max||W||_2 {s['slam0']} at init, largest {s['slam_max']} (below {bound:g} in {s['kept']}/{s['n']}); "
            f"trapped {s['trapped']}/{s['n']}, escapes {s['escaped']}, of which by growth past 1/lambda {s['by_growth']}")


def judge_q1(bounds: pd.DataFrame, criterion: Q1Criterion = Q1Criterion(), *, deep: int, shallow: int, setting: str = "",
             readings: dict | None = None) -> Verdict:
    """Q1: do the weights stay bounded (s lambda < 1) while the ``deep``-layer vanilla GNN trains, and does any
    escape from the trap come from s growing past 1/lambda?

    ``bounds``: :func:`oversmoothing.experiments.questions.weight_bounds` of a grid with the models "GNN L=deep",
    "GNN L=shallow" and "MLP L=deep" (one run per seed).  The answer is :class:`Q1Criterion` on the deep GNN's runs;
    the shallow GNN and the deep MLP are quoted.  Readings: the shallow GNN under the same criterion, the P = I
    control (does the graph keep the weights small?), then ``readings`` {name: (bounds, setting)} judged like the
    headline on their deep GNN."""
    c = criterion
    dg, sg, ml = f"GNN L={deep}", f"GNN L={shallow}", f"MLP L={deep}"
    a, s = _q1_runs(bounds, dg, c)
    _, sh = _q1_runs(bounds, sg, c)
    g = bounds.set_index(["graph", "seed", "model"])["growth"]
    ratio = (bounds.loc[bounds.model == dg].set_index(["graph", "seed"])["growth"]
             / bounds.loc[bounds.model == ml].set_index(["graph", "seed"])["growth"]).dropna()
    mlp_growth = bounds.loc[bounds.model == ml, "growth"]
    measured = (f"{setting + ': ' if setting else ''}{_q1_text(s, dg, c.bound)}{_by_seed(a)}; {sg}: largest "
                f"{sh['slam_max']} (kept in {sh['kept']}/{sh['n']}); weight growth max||W||/s: {dg} "
                f"{_span(bounds.loc[bounds.model == dg, 'growth'])}, {ml} (P = I) {_span(mlp_growth)}")
    rd = [reading(f"shallow GNN (L = {shallow})", f"the same criterion on the trained {sg}",
                  agree([HOLDS if k else DOES_NOT_HOLD for k in bounds.loc[bounds.model == sg, "slam_max"] < c.bound]).verdict,
                  _q1_text(sh, sg, c.bound), f"sλ max {sh['max']:.2f}"),
          reading("P = I control", f"the bound is kept by the graph: the deep GNN's weight growth <= {c.control_ratio:g} x "
                  "the deep MLP's (same seed)",
                  verdict_of(agree([HOLDS if r <= c.control_ratio else DOES_NOT_HOLD for r in ratio]).verdict, ratio.to_numpy()),
                  f"growth ratio GNN/MLP {_span(ratio)} over {len(ratio)} seeds",
                  f"GNN/MLP ×{ratio.median():.2f}" if len(ratio) else "")]
    for name, (t, reading_setting) in (readings or {}).items():
        ra, rs = _q1_runs(t, dg, c)
        rd.append(reading(name, reading_setting, verdict_of(ra.verdict, t["slam_max"].to_numpy()),
                          _q1_text(rs, dg, c.bound) + _by_seed(ra), f"sλ max {rs['max']:.2f}"))
    metrics = {"q1_deep_gnn_max_slam": s["max"], "q1_shallow_gnn_max_slam": sh["max"],
               "q1_deep_gnn_escapes": s["escaped"], "q1_escapes_by_growth": s["by_growth"],
               "q1_growth_ratio_gnn_mlp": float(ratio.median()) if len(ratio) else float("nan")}
    return Verdict("Q1", f"While the deep vanilla GNN (L = {deep}) trains, its weights stay in the theory's region "
                         "(s lambda < 1), and no escape from the trap comes from s growing past 1/lambda.",
                   measured, c.text, a.verdict, key=f"sλ ≤ {s['max']:.2f}", numbers=bounds["slam_max"].to_numpy(),
                   readings=rd, metrics=metrics)


# ---------------------------------------------------------------------------------------------------- Q2

@dataclass(frozen=True)
class Q2Criterion:
    """Q2, with the graph's part of the expansion g = log10 r(residual GCN) - log10 r(residual MLP, P = I), r =
    mu(G(1))/mu(G(L)) at initialisation: (a) on the CSBM sweep of every seed, g varies by at least ``decades``
    (max - min over the ratios); (b) on the real graphs of every seed, the mean g of the homophilic graphs and of
    the heterophilic ones differ by at least ``decades``.  (a) and (b): holds; one: partly holds; neither: does
    not hold.  The trainability reading: the residual GCN's mean final train accuracy on the homophilic CSBMs
    (edge homophily >= ``homophilic``) and on the heterophilic ones (<= 1 - ``homophilic``) differ by at least
    ``accuracy``, on every seed."""

    decades: float = 1.0
    homophilic: float = 0.7
    accuracy: float = 0.1

    @property
    def text(self) -> str:
        return (f"per seed, g = log10 r(res GCN) - log10 r(res MLP twin): (a) g varies by >= {self.decades:g} decade over "
                f"the CSBM sweep; (b) homophilic and heterophilic real graphs differ in mean g by >= {self.decades:g} "
                "decade; both: holds; one: partly holds; neither: does not hold")


def judge_q2(sweep: pd.DataFrame, real: pd.DataFrame, criterion: Q2Criterion = Q2Criterion(), *, homophilic,
             heterophilic, setting: str = "", readings: dict | None = None) -> Verdict:
    """Q2: does the residual GCN's gradient expansion depend on homophily?

    ``sweep``: :func:`~oversmoothing.experiments.questions.residual_grid` rows of the CSBM sweep (columns arch
    "res_gcn"/"res_mlp", ratio, homophily, seed, init_log10_expansion, train_acc for the trained GCN runs); the
    twin's rows may be given for every ratio or once per seed (ratio NaN: its problem does not change with the
    ratio).  ``real``: the same on the datasets (column dataset) named in ``homophilic`` / ``heterophilic``.
    Per seed (a) and (b) of :class:`Q2Criterion`; seeds combined by seeds_agree.  Readings: trainability on the
    CSBM sweep, then ``readings`` {name: (sweep, real, setting)} judged like the headline."""
    c = criterion

    def one(sw, re_):
        g_sw = expansion_parts(sw)
        g_re = real_expansion_parts(re_)
        per_seed, detail = [], []
        for s in sorted(g_sw["seed"].unique()):
            a_ = g_sw.loc[g_sw.seed == s, "g"]
            rs = g_re.loc[g_re.seed == s].set_index("dataset")["g"]
            hom, het = rs.reindex(list(homophilic)).mean(), rs.reindex(list(heterophilic)).mean()
            ok_a, ok_b = bool(a_.max() - a_.min() >= c.decades), bool(abs(hom - het) >= c.decades)
            per_seed.append(_part([ok_a, ok_b]))
            detail.append((float(a_.max() - a_.min()), float(hom - het)))
        return agree(per_seed), g_sw, g_re, detail

    a, g_sw, g_re, detail = one(sweep, real)
    by_h = g_sw.groupby("homophily_bin")["g"].mean()
    real_g = g_re.groupby("dataset")["g"].mean()
    measured = (f"{setting + ': ' if setting else ''}graph part g of log10 mu(G(1))/mu(G(L)) (res GCN minus res MLP twin), "
                f"CSBM sweep by edge homophily: " + ", ".join(f"h={h:.2f}: {v:+.2f}" for h, v in by_h.items())
                + f" (range per seed {_span([d[0] for d in detail])} decades; res GCN log10 r {_span(g_sw['gcn'])}, twin "
                f"{_span(g_sw['mlp'])}); real graphs: " + ", ".join(f"{k}: {v:+.2f}" for k, v in real_g.items())
                + f" (homophilic minus heterophilic {_span([d[1] for d in detail])} decades){_by_seed(a)}")
    rd = [_trainability(sweep, c)]
    if "train_acc" in real and real["train_acc"].notna().any():
        rd.append(_real_trainability(real, c, homophilic, heterophilic))
    for name, (sw, re_, reading_setting) in (readings or {}).items():
        ra, r_sw, _, rdet = one(sw, re_)
        rd.append(reading(name, reading_setting, verdict_of(ra.verdict, r_sw["g"].to_numpy()),
                          f"range over the sweep {_span([d[0] for d in rdet])} decades, homophilic minus heterophilic "
                          f"{_span([d[1] for d in rdet])}{_by_seed(ra)}", f"Δg {_span([d[0] for d in rdet], '{:.1f}')}"))
    numbers = list(g_sw["g"]) + list(g_re["g"])
    metrics = {"q2_csbm_range_decades": float(np.mean([d[0] for d in detail])),
               "q2_real_hom_minus_het_decades": float(np.mean([d[1] for d in detail]))}
    return Verdict("Q2", "The residual GCN's gradient expansion depends on homophily: it changes by a decade or more "
                         "from heterophilic to homophilic graphs, beyond what its P = I twin shows.",
                   measured, c.text, a.verdict, key=f"Δg ≤ {max(max(abs(d[0]), abs(d[1])) for d in detail):.2f} dec."
                   if detail else "", numbers=numbers, readings=rd, metrics=metrics)


def _trainability(sw: pd.DataFrame, c: Q2Criterion):
    gcn = sw.loc[(sw["arch"] == "res_gcn") & sw["train_acc"].notna()] if "train_acc" in sw else sw.iloc[:0]
    if not len(gcn):
        return reading("trainability", "not trained in this run", None, "no training runs", "")
    per_seed, diffs = [], []
    for _, d in gcn.groupby("seed"):
        hom = d.loc[d.homophily >= c.homophilic, "train_acc"].mean()
        het = d.loc[d.homophily <= 1 - c.homophilic, "train_acc"].mean()
        diffs.append(float(hom - het))
        per_seed.append(HOLDS if abs(hom - het) >= c.accuracy else DOES_NOT_HOLD)
    a = agree(per_seed)
    twin = sw.loc[(sw["arch"] == "res_mlp") & sw["train_acc"].notna(), "train_acc"] if "train_acc" in sw else []
    by_h = gcn.groupby(gcn.groupby("ratio")["homophily"].transform("mean").round(2))["train_acc"].mean()
    return reading("trainability", f"the residual GCN's final train accuracy on homophilic (h >= {c.homophilic:g}) and "
                   f"heterophilic (h <= {1 - c.homophilic:.1f}) CSBMs differs by >= {c.accuracy:g} on every seed",
                   verdict_of(a.verdict, diffs),
                   "final train accuracy by homophily: " + ", ".join(f"h={h:.2f}: {v:.2f}" for h, v in by_h.items())
                   + f" (homophilic minus heterophilic {_span(diffs)}; P = I twin {_span(twin)}){_by_seed(a)}",
                   f"Δacc {np.mean(diffs):+.2f}")


def _real_trainability(real: pd.DataFrame, c: Q2Criterion, homophilic, heterophilic):
    """The trainability reading on the real graphs (when they were trained): the residual GCN's mean final train
    accuracy on the homophilic graphs minus that on the heterophilic ones, per seed, >= ``accuracy`` in size."""
    gcn = real.loc[(real["arch"] == "res_gcn") & real["train_acc"].notna()]
    per_seed, diffs = [], []
    for _, d in gcn.groupby("seed"):
        acc = d.set_index("dataset")["train_acc"]
        diff = float(acc.reindex(list(homophilic)).mean() - acc.reindex(list(heterophilic)).mean())
        diffs.append(diff)
        per_seed.append(HOLDS if abs(diff) >= c.accuracy else DOES_NOT_HOLD)
    a = agree(per_seed)
    by_ds = gcn.groupby("dataset")["train_acc"].mean()
    return reading("trainability, real graphs", f"the residual GCN's final train accuracy on the homophilic and the "
                   f"heterophilic real graphs differs by >= {c.accuracy:g} on every seed", verdict_of(a.verdict, diffs),
                   ", ".join(f"{k}: {v:.2f}" for k, v in by_ds.items()) + f" (difference {_span(diffs)}){_by_seed(a)}",
                   f"Δacc {np.mean(diffs):+.2f}" if diffs else "")


# ---------------------------------------------------------------------------------------------------- Q3

@dataclass(frozen=True)
class Q3Criterion:
    """Q3, per seed: the unnormalised residual GCN must expand (log10 r >= ``decades``), else not judged.  An
    alternative normalisation *tames the expansion as well* if at initialisation its forward growth log10
    ||X(L)||/||X(0)|| < ``decades`` and its gradient expansion log10 mu(G(1))/mu(G(L)) < ``decades`` (chapter 6's
    100-fold bar), and after training its final train accuracy and its test accuracy are at least the reference's
    (paper 2's hard Frobenius form, same seed) minus ``margin``.  Every alternative does: holds; some: partly
    holds; none: does not hold."""

    decades: float = 2.0
    margin: float = 0.05
    reference: str = "Frobenius (hard)"
    baseline: str = "none"
    backward_only: bool = False

    @property
    def text(self) -> str:
        fwd = "" if self.backward_only else f"forward growth < {self.decades:g} decades and "
        return (f"per seed, each alternative to {self.reference}: {fwd}gradient expansion log10 r < {self.decades:g} at init, "
                f"train and test accuracy >= {self.reference}'s - {self.margin:g}; all alternatives: holds; some: partly "
                f"holds; none: does not hold; not judged unless the unnormalised network expands (log10 r >= {self.decades:g})")


def _tames(row, ref, c: Q3Criterion, when: str = "init") -> bool:
    diag = row[f"{when}_log10_expansion"] < c.decades and (c.backward_only or row[f"{when}_log10_growth"] < c.decades)
    return bool(diag and row["train_acc"] >= ref["train_acc"] - c.margin and row["test_acc"] >= ref["test_acc"] - c.margin)


def _q3(runs: pd.DataFrame, c: Q3Criterion, when: str = "init"):
    alts = [v for v in dict.fromkeys(runs["variant"]) if v not in (c.reference, c.baseline)]
    per_seed, ok = [], {v: 0 for v in alts}
    for _, d in runs.groupby("seed"):
        d = d.set_index("variant")
        if c.baseline not in d.index or c.reference not in d.index or d.loc[c.baseline, "init_log10_expansion"] < c.decades:
            per_seed.append(NOT_JUDGED)
            continue
        t = {v: _tames(d.loc[v], d.loc[c.reference], c, when) for v in alts if v in d.index}
        for v, x in t.items():
            ok[v] += int(x)
        per_seed.append(_part(list(t.values())))
    return agree(per_seed), ok, runs["seed"].nunique()


def judge_q3(runs: pd.DataFrame, criterion: Q3Criterion = Q3Criterion(), *, setting: str = "",
             readings: dict | None = None) -> Verdict:
    """Q3: do other normalisations (soft Frobenius, spectral, LayerNorm, PairNorm) tame gradient expansion as
    well as paper 2's (hard) Frobenius normalisation, by the forward and backward diagnostics and by accuracy?

    ``runs``: :func:`~oversmoothing.experiments.questions.residual_grid` rows with a ``variant`` column (the keys
    of :func:`~oversmoothing.experiments.questions.normalisations`), one per (variant, seed).  Readings: the
    backward diagnostic only, the diagnostics at the end of training, then ``readings`` {name: (runs, setting)}."""
    c = criterion
    a, ok, n = _q3(runs, c)
    m = runs.groupby("variant", sort=False)[["init_log10_growth", "init_log10_expansion", "train_acc", "test_acc"]].mean()
    measured = (f"{setting + ': ' if setting else ''}mean over {n} seeds (forward growth / gradient expansion in decades at "
                "init; final train / test accuracy): " + "; ".join(
                    f"{v}: {r.init_log10_growth:.1f} / {r.init_log10_expansion:.1f}; {r.train_acc:.2f} / {r.test_acc:.2f}"
                    for v, r in m.iterrows())
                + ". As well as the reference on " + ", ".join(f"{v} {k}/{n}" for v, k in ok.items()) + _by_seed(a))
    from dataclasses import replace

    rd = []
    for name, cc, when, text in [("backward only", replace(c, backward_only=True), "init",
                                  "the forward growth is not asked (a linear growth, as LayerNorm's, is no expansion)"),
                                 ("end of training", c, "end", "the diagnostics after training instead of at init")]:
        ra, rok, _ = _q3(runs, cc, when)
        rd.append(reading(name, text, ra.verdict, ", ".join(f"{v} {k}/{n}" for v, k in rok.items()) + _by_seed(ra),
                          f"{sum(v == n for v in rok.values())}/{len(rok)} tame"))
    for name, (t, reading_setting) in (readings or {}).items():
        ra, rok, rn = _q3(t, c)
        rd.append(reading(name, reading_setting, ra.verdict, ", ".join(f"{v} {k}/{rn}" for v, k in rok.items())
                          + _by_seed(ra), f"{sum(v == rn for v in rok.values())}/{len(rok)} tame"))
    metrics = {f"q3_{v.split(' ')[0].lower()}{'_soft' if 'soft' in v else ''}_train_acc": float(r.train_acc)
               for v, r in m.iterrows()}
    metrics.update({"q3_alternatives_taming": sum(k == n for k in ok.values())})
    cols = ["init_log10_growth", "init_log10_expansion", "train_acc", "test_acc"]
    return Verdict("Q3", "Other normalisations (soft Frobenius, spectral normalisation, LayerNorm, PairNorm) tame the "
                         "deep residual GCN's expansion and train it as well as paper 2's Frobenius normalisation.",
                   measured, c.text, a.verdict, key=f"{sum(k == n for k in ok.values())}/{len(ok)} tame",
                   numbers=runs.loc[runs.variant != c.baseline, cols].to_numpy(), readings=rd, metrics=metrics)


# ---------------------------------------------------------------------------------------------------- Q4

def decades_of_decay(profile: pd.DataFrame, column: str, depth: int) -> float:
    """log10 of ``column`` at layer L over its value at layer L/2 (chapter 2's C2 (a)): how many decades the
    measure of B(k) falls from the output side to the middle."""
    v = profile.set_index("layer")[column]
    hi, mid = float(v.loc[depth]), float(v.loc[depth // 2])
    if mid <= 0:
        return float("inf") if hi > 0 else float("nan")
    return float(np.log10(hi / mid))


@dataclass(frozen=True)
class Q4Criterion:
    """Q4, chapter 2's C2 (a) per architecture and seed: the measure of B(k) (``column``) falls by at least
    ``decades`` from k = L to k = L/2 while the P = I twin's falls by less than ``control``.  Both architectures:
    holds; one: partly holds; neither: does not hold."""

    decades: float = 3.0
    control: float = 1.0
    column: str = "rel_lim_B"

    @property
    def text(self) -> str:
        what = {"rel_lim_B": "distance of B(k) from P^T's limit direction u b^T (relative)",
                "rel_mu_B": "mu(B(k))/||B(k)||_F (constant rows)"}.get(self.column, self.column)
        return (f"per seed and architecture, the {what} falls >= {self.decades:g} decades from k = L to L/2 and the P = I "
                f"twin's < {self.control:g}; both architectures: holds; one: partly holds; neither: does not hold")


def _q4(profiles: pd.DataFrame, c: Q4Criterion, archs: dict):
    per_seed, dec = [], {}
    for s, d in profiles.groupby("seed"):
        parts = []
        for arch, tw in archs.items():
            L = int(d.loc[d.model == arch, "depth"].iloc[0])
            g = decades_of_decay(d.loc[d.model == arch], c.column, L)
            t = decades_of_decay(d.loc[d.model == tw], c.column, L)
            dec.setdefault(arch, []).append((g, t))
            parts.append(g >= c.decades and t < c.control)
        per_seed.append(_part(parts))
    return agree(per_seed), dec


def _q4_text(dec: dict, names: dict) -> str:
    return "; ".join(f"{names.get(a, a)}: {_span([x[0] for x in v], '{:.1f}')} decades (twin {_span([x[1] for x in v], '{:.1f}')})"
                     for a, v in dec.items())


def judge_q4(profiles: pd.DataFrame, criterion: Q4Criterion = Q4Criterion(), *, archs: dict, names: dict | None = None,
             setting: str = "", readings: dict | None = None) -> Verdict:
    """Q4: does backward oversmoothing appear in deep GATs and graph transformers, against their P = I twins?

    ``profiles``: :func:`~oversmoothing.experiments.questions.backward_grid` rows (columns model, depth, seed,
    layer and the measures); ``archs`` {registry name: its twin's name}; ``names`` their labels.  Per seed
    :class:`Q4Criterion`; seeds combined by seeds_agree.  Readings: chapter 2's measure (constant rows), then
    ``readings`` {name: (profiles, setting)} judged like the headline."""
    c, names = criterion, names or {}
    a, dec = _q4(profiles, c, archs)
    measured = f"{setting + ': ' if setting else ''}decay of B(k)'s {c.column} from k = L to L/2: {_q4_text(dec, names)}{_by_seed(a)}"
    from dataclasses import replace

    rows = replace(c, column="rel_mu_B")
    ra, rdec = _q4(profiles, rows, archs)
    rd = [reading("constant rows (chapter 2)", "chapter 2's mu(B(k))/||B(k)||_F, against the constant rows 1 b^T",
                  verdict_of(ra.verdict, [x for v in rdec.values() for x in v]), _q4_text(rdec, names) + _by_seed(ra),
                  " / ".join(f"{np.mean([x[0] for x in v]):.1f}" for v in rdec.values()) + " dec.")]
    for name, (t, reading_setting) in (readings or {}).items():
        rr, rdd = _q4(t, c, archs)
        rd.append(reading(name, reading_setting, verdict_of(rr.verdict, [x for v in rdd.values() for x in v]),
                          _q4_text(rdd, names) + _by_seed(rr),
                          " / ".join(f"{np.mean([x[0] for x in v]):.1f}" for v in rdd.values()) + " dec."))
    metrics = {f"q4_{names.get(k, k).split(' ')[0].lower()}_decades": float(np.mean([x[0] for x in v])) for k, v in dec.items()}
    return Verdict("Q4", "Backward oversmoothing (chapter 2's C2 (a)) appears in deep GATs and graph-transformer "
                         "(TransformerConv) stacks, and not in their P = I twins.",
                   measured, c.text, a.verdict,
                   key=" / ".join(f"{np.mean([x[0] for x in v]):.1f}" for v in dec.values()) + " dec.",
                   numbers=[x for v in dec.values() for x in v], readings=rd, metrics=metrics)


# ---------------------------------------------------------------------------------------------------- Q5

def _as_answer(v):
    """A C4 verdict (and its readings) in answer words."""
    return v.__class__(**{**vars(v), "verdict": answer(v.verdict), "measured": _words(v.measured),
                          "readings": [r.__class__(**{**vars(r), "verdict": answer(r.verdict),
                                                      "measured": _words(r.measured)}) for r in v.readings]})


def judge_q5(runs: pd.DataFrame, criterion: C4Criterion = C4Criterion(), *, shallow: int, deep: int, lambdas: dict,
             setting: str = "", readings: dict | None = None) -> Verdict:
    """Q5: does chapter 4's trap (paper 1's Figure 1: the deep GNN trapped, the shallow GNN trained, the deep MLP
    not trapped) appear on real graphs?

    ``runs``: a :func:`~oversmoothing.experiments.traps.run_table` keyed by graph (the dataset), model and seed;
    judged by :func:`~oversmoothing.judges.traps.judge_c4` (each (dataset, seed) on its own, seeds_agree), its
    answer in Q words; the per-dataset answers and ``lambdas`` ({dataset: lambda of P}) are quoted.
    ``readings``: {name: (runs, setting)} as for judge_c4."""
    v = judge_c4(runs, criterion, shallow=shallow, deep=deep, setting=setting, readings=readings)
    per = {d: answer(judge_c4(t, criterion, shallow=shallow, deep=deep).verdict) for d, t in runs.groupby("graph", sort=False)}
    q = _as_answer(v)
    q.id = "Q5"
    q.claim = (f"Chapter 4's trap appears on real graphs: the deep vanilla GNN (L = {deep}) is trapped while the "
               f"shallow one (L = {shallow}) trains and the deep MLP is not trapped.")
    q.criterion = ("chapter 4's C4 test on each (dataset, seed): " + _words(criterion.text))
    q.measured = (q.measured + "; per dataset: " + ", ".join(f"{d} {a} (lambda of P {lambdas.get(d, float('nan')):.4f})"
                                                            for d, a in per.items()))
    q.metrics = {k.replace("c4_", "q5_"): val for k, val in v.metrics.items()}
    return q


def flips(claims) -> str:
    """Markdown: for every recorded answer (:class:`oversmoothing.report.Claim` or :class:`Verdict`), the readings
    whose answer differs from the headline's, e.g. "**Q4** partly holds; *constant rows (chapter 2)*: does not hold"
    (every answer a reading changes is named beside the headline); "" if none does."""
    lines = []
    for c in claims:
        other = [r for r in c.readings if r.verdict != c.verdict and r.verdict != NOT_JUDGED]
        if other:
            lines.append(f"* **{c.id}** {c.verdict}; " + "; ".join(f"*{r.name}*: {r.verdict}" for r in other))
    return ("Readings that change the answer:\n\n" + "\n".join(lines)) if lines else ""

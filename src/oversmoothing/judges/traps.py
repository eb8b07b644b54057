"""Judges of chapters 04-05: C4 (the deep GNN is trapped), C5 (Theorem 3, Proposition 2), C6 (Corollary 2),
C7 (the weight scale).

Each judge reads tables of runs measured by :mod:`oversmoothing.experiments.traps`: one row per training run
(:func:`~oversmoothing.experiments.traps.run_table`, with its ``status`` from
:func:`~oversmoothing.experiments.traps.trap_status`) or per solved network
(:func:`~oversmoothing.experiments.traps.last_layer_summary`).  It judges every seed on its own (for C4 a
graph draw and model seed; for C5-C7 a graph draw, whose model seed is the graph seed) and combines the seeds
by :func:`~oversmoothing.judges.seeds_agree`; the per-seed verdicts are added to the measured text where
they differ.  The readings of a claim are judged by the same code on their own tables.

Notation: L the depth, W(k) the weight of layer k, dL/dW(k) its gradient, s the initial spectral norm
||W(k)||_2, lambda the second eigenvalue in modulus of the propagation P, "chance" the loss of the best
constant prediction (:func:`~oversmoothing.experiments.traps.chance_loss`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Agreement, Verdict, not_judged, reading, seeds_agree
from ..report import verdict_of

from ..experiments.traps import TRAP_STATUSES

__all__ = ["C4Criterion", "C5Criterion", "C6Criterion", "C7Criterion", "judge_c4", "judge_c5", "judge_c6", "judge_c7",
           "count_status", "control_trains", "delay_table", "c7_key"]

#: the statuses of a deep-MLP run that count as "not trapped" (an explosion, "did not train", is no control)
ESCAPED = ("trained", "not trapped")


def _e(x: float) -> str:
    """A threshold in the short scientific form of the criteria: 1e-4, 2.5e-3."""
    mantissa, exponent = f"{x:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _by_seed(detail: Agreement) -> str:
    """The per-seed verdicts, added to the measured text where the seeds disagree."""
    return "" if detail.k == detail.n else f"; by seed: {detail.detail}"


def count_status(table: pd.DataFrame, model: str, statuses) -> tuple[int, int]:
    """(number of runs of ``model`` whose status is in ``statuses``, number of runs of ``model``)."""
    d = table.loc[table["model"] == model]
    statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    return int(d["status"].isin(statuses).sum()), len(d)


# ---------------------------------------------------------------------------------------------------- C4

@dataclass(frozen=True)
class C4Criterion:
    """C4: a run is *trapped* if every layer's ||dL/dW(k)||_F < ``near_zero`` at some epoch and the loss stays
    >= ``loss_frac`` x chance from then to the end; *trained* if it ends with train accuracy >= ``trained_acc``
    (:func:`~oversmoothing.experiments.traps.trap_status` applies these); "within a few epochs" means the trap
    starts by epoch ``few_epochs``."""

    near_zero: float = 0.01
    few_epochs: int = 20
    loss_frac: float = 0.95
    trained_acc: float = 0.9
    #: an initialisation is part of the headline where its deep MLP (the P = I control) is trained or not trapped in
    #: more than this fraction of its runs; under the others both networks lose the signal and nothing is specific
    #: to the graph (they are readings)
    control_trains: float = 0.5

    @property
    def text(self) -> str:
        return (f"every deep-GNN run trapped (all layers' grad < {self.near_zero:g} and loss >= {self.loss_frac:g} chance "
                f"from then to the end), every shallow-GNN run train acc >= {self.trained_acc:g}, every deep-MLP run not "
                f"trapped; traps by epoch {self.few_epochs}: reproduced; all hold but later, or on some (graph, seed) "
                f"only: partly; judged on every init whose deep MLP is not trapped in > {self.control_trains:.0%} of its "
                "runs (the other inits: readings)")


class _Contrast(NamedTuple):
    verdict: str
    counts: str
    key: str
    agreement: Agreement


def _contrast_one(runs: pd.DataFrame, c: C4Criterion, deep_gnn: str, shallow_gnn: str, deep_mlp: str) -> str:
    """C4 on the runs of ONE graph and model seed: the deep GNN trapped, the shallow GNN trained and the deep
    MLP not trapped (all three): reproduced if the trap starts by epoch ``few_epochs``, else partly
    reproduced; one of them fails: not reproduced; a network missing: not judged."""
    deep, shallow, mlp = (runs.loc[runs["model"] == m] for m in (deep_gnn, shallow_gnn, deep_mlp))
    if min(len(deep), len(shallow), len(mlp)) == 0:
        return NOT_JUDGED
    if not ((deep["status"] == "trapped").all() and (shallow["status"] == "trained").all()
            and mlp["status"].isin(ESCAPED).all()):
        return NOT_REPRODUCED
    return REPRODUCED if (pd.to_numeric(deep["status_epoch"]) <= c.few_epochs).all() else PARTLY


def _pair_verdicts(runs: pd.DataFrame, c: C4Criterion, shallow: int, deep: int) -> list[str]:
    """:func:`_contrast_one` on every (graph, seed) of ``runs``."""
    deep_gnn, shallow_gnn, deep_mlp = f"GNN L={deep}", f"GNN L={shallow}", f"MLP L={deep}"
    return [_contrast_one(d, c, deep_gnn, shallow_gnn, deep_mlp) for _, d in runs.groupby(["graph", "seed"], sort=False)]


def control_trains(runs: pd.DataFrame, c: C4Criterion, deep: int) -> tuple[bool, int, int]:
    """(does the deep MLP, the P = I control, train under this init: escaped in > ``c.control_trains`` of its runs,
    escaped count, run count), from a C4 run table."""
    m, n = count_status(runs, f"MLP L={deep}", ESCAPED)
    return bool(n and m > c.control_trains * n), m, n


def _contrast(runs: pd.DataFrame, c: C4Criterion, shallow: int, deep: int) -> _Contrast:
    """C4 on a run table: every (graph, seed) judged by :func:`_contrast_one`, combined by seeds_agree; the
    counts over all runs, and the key number: the first part that fails (the shallow GNN trains, the deep MLP
    escapes, the deep GNN is trapped, early), else the deep GNN's trapped count."""
    deep_gnn, shallow_gnn, deep_mlp = f"GNN L={deep}", f"GNN L={shallow}", f"MLP L={deep}"
    agreement = seeds_agree(_pair_verdicts(runs, c, shallow, deep))
    t, n_t = count_status(runs, deep_gnn, "trapped")
    sh, n_s = count_status(runs, shallow_gnn, "trained")
    m, n_m = count_status(runs, deep_mlp, ESCAPED)
    ep = pd.to_numeric(runs.loc[(runs["model"] == deep_gnn) & (runs["status"] == "trapped"), "status_epoch"])
    fast = int((ep <= c.few_epochs).sum())
    counts = (f"{deep_gnn} trapped {t}/{n_t} (by epoch {c.few_epochs}: {fast}/{n_t}); {shallow_gnn} trained {sh}/{n_s}; "
              f"{deep_mlp} not trapped {m}/{n_m}")
    if sh < n_s:
        key = f"L={shallow} trained {sh}/{n_s}"
    elif m < n_m:
        key = f"MLP trapped {n_m - m}/{n_m}"
    elif t == n_t and fast < n_t:
        key = f"by ep. {c.few_epochs}: {fast}/{n_t}"
    else:
        key = f"trapped {t}/{n_t}"
    return _Contrast(agreement.verdict, counts, key, agreement)


def _runs_text(t: pd.DataFrame) -> str:
    return ", ".join(f"{x.model}: {x.status} (loss {x.final_loss:.3f}, acc {x.train_acc:.2f})" for x in t.itertuples())


def _size(t: pd.DataFrame) -> str:
    return f"{t['graph'].nunique()} graph{'s' if t['graph'].nunique() != 1 else ''} x {t['seed'].nunique()} seeds"


def judge_c4(runs: pd.DataFrame, criterion: C4Criterion = C4Criterion(), *, shallow: int, deep: int, setting: str = "",
             readings: dict | None = None, init: str = "", inits: dict | None = None) -> Verdict:
    """C4 (Figure 1): the ``deep``-layer vanilla GNN is trapped within a few epochs, the ``shallow`` one trains,
    and the MLP of depth ``deep`` (P = I) is not trapped.

    ``runs``: a :func:`~oversmoothing.experiments.traps.run_table` keyed by graph, model ("GNN L=40") and seed.
    On each (graph, seed): all three hold and the trap starts by epoch ``few_epochs``: reproduced; all three
    hold, later: partly reproduced; otherwise not reproduced.  The pairs combine by seeds_agree (reproduced on
    every pair: reproduced; on some: partly reproduced).  ``setting``: the measured text's opening (graph,
    activation, init, budget); ``readings``: {name: (runs, setting)}, each judged the same way.

    ``init`` (the name of ``runs``' initialisation) and ``inits`` ({name: (runs, setting)}: the same networks under
    other initialisations, same optimiser): the claim is about the graph, so it is judged on every init under which
    the P = I control trains (:func:`control_trains`); every (init, graph, seed) is one verdict for seeds_agree.  The
    inits whose deep MLP is trapped as well are left out of the headline (the contrast cannot be seen there; if no
    init lets the control train, every init is judged) and, like every other init, are readings.  A reading whose
    verdict differs from the headline's is named in the measured text."""
    c = _contrast(runs, criterion, shallow, deep)
    dg = runs.loc[runs["model"] == f"GNN L={deep}"]
    measured = (f"{setting + ', ' if setting else ''}{_size(runs)}: {c.counts}{_by_seed(c.agreement)}; "
                f"deep-GNN final loss {dg.final_loss.min():.3f}-{dg.final_loss.max():.3f} (chance {dg.chance.mean():.3f}), "
                f"largest loss change over the last quarter {dg.tail_change.max():.1e}")
    verdict, key, numbers = c.verdict, c.key, runs[["final_loss", "train_acc"]].to_numpy()
    rd, metrics = [], {}
    if inits:
        candidates = {init or "headline init": (runs, setting)} | dict(inits)
        gate = {name: control_trains(t, criterion, deep) for name, (t, _) in candidates.items()}
        judged = [n for n, g in gate.items() if g[0]] or list(candidates)
        left = [n for n in candidates if n not in judged]
        agreement = seeds_agree([v for n in judged for v in _pair_verdicts(candidates[n][0], criterion, shallow, deep)])
        verdict = agreement.verdict
        parts = {n: _contrast(candidates[n][0], criterion, shallow, deep) for n in candidates}
        not_under = [f"{n} (deep MLP not trapped in {gate[n][1]}/{gate[n][2]} runs: both networks lose the signal, "
                     "no contrast to see)" for n in left]
        opening = ((f"judged on the inits under which the deep MLP (P = I) trains: {', '.join(judged)}" if any(
            g[0] for g in gate.values()) else f"no init lets the deep MLP (P = I) train: judged on every init, {', '.join(judged)}")
                   + (f"; not under {', '.join(not_under)}" if left else "")
                   + f"; every (init, graph, seed) judged on its own: {agreement.detail}, hence {agreement.verdict}. ")
        measured = opening + f"{init or 'headline init'}: {measured}" + "".join(
            f"; {n} ({_size(candidates[n][0])}): {parts[n].counts}{_by_seed(parts[n].agreement)}" for n in judged
            if n != (init or "headline init"))
        failing = [parts[n].key for n in judged if parts[n].verdict != REPRODUCED]
        key = failing[0] if failing else f"holds {len(judged)}/{len(candidates)} inits"
        numbers = np.concatenate([candidates[n][0][["final_loss", "train_acc"]].to_numpy() for n in judged])
        for name, (t, init_setting) in inits.items():
            r = parts[name]
            where = ("not in the headline: the P = I control is trapped too" if name not in judged else
                     "in the headline: the P = I control trains" if gate[name][0] else
                     "in the headline: no init lets the P = I control train")
            rd.append(reading(name, f"{init_setting} ({where})",
                              verdict_of(r.verdict, t[["final_loss", "train_acc"]].to_numpy()),
                              f"{_size(t)}: {r.counts}{_by_seed(r.agreement)}; {_runs_text(t)}", r.key))
        metrics["c4_inits_judged"] = float(len(judged))
        for name, (t, _) in candidates.items():
            slug = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
            metrics[f"c4_mlp_escaped_fraction_{slug}"] = gate[name][1] / gate[name][2] if gate[name][2] else float("nan")
    for name, (t, reading_setting) in (readings or {}).items():
        r = _contrast(t, criterion, shallow, deep)
        rd.append(reading(name, reading_setting, verdict_of(r.verdict, t[["final_loss", "train_acc"]].to_numpy()),
                          f"{r.counts}{_by_seed(r.agreement)}; {_runs_text(t)}", r.key))
    other = [r for r in rd if r.verdict != verdict_of(verdict, numbers)]
    if other:
        measured += "; readings with another verdict: " + ", ".join(f"{r.name} ({r.verdict})" for r in other)
    metrics.update({f"c4_{m.replace(' ', '').replace('=', '')}_{st.replace(' ', '_')}_fraction":
                    float((runs.loc[runs["model"] == m, "status"] == st).mean())
                    for m, st in ((f"GNN L={deep}", "trapped"), (f"GNN L={shallow}", "trained"), (f"MLP L={deep}", "trapped"))})
    metrics["c4_deep_gnn_median_trap_epoch"] = float(pd.to_numeric(dg["status_epoch"]).median())
    return Verdict("C4", f"Deep vanilla GNN (L = {deep}) on a CSBM with lambda ~ 0.16: gradients fall to near zero in every "
                         f"layer within a few epochs while the loss stays high; shallow (L = {shallow}) trains; an MLP of the "
                         "same depth does not get trapped.",
                   measured, criterion.text, verdict, key=key, numbers=numbers, readings=rd, metrics=metrics)


# ---------------------------------------------------------------------------------------------------- C5, C6

def _s_lambda_of(s_lambda, graph) -> float:
    """s*lambda of ``graph``: ``s_lambda`` is one number or a mapping {graph: s*lambda} (NaN: not defined)."""
    v = s_lambda.get(graph, np.nan) if hasattr(s_lambda, "get") else s_lambda
    return float(np.nan if v is None else v)


def _per_graph(solved: pd.DataFrame, s_lambda, judge_one) -> Agreement:
    """``judge_one`` (a table of one graph -> verdict) on every graph of ``solved``, "not judged" where
    s*lambda < 1 does not hold (outside Theorem 3's assumption); combined by seeds_agree."""
    return seeds_agree([not_judged(judge_one(d), _s_lambda_of(s_lambda, g) < 1)
                        for g, d in solved.groupby("graph", sort=False)])


def _solved_setting(setting: str, s_lambda: float) -> str:
    inside = s_lambda < 1
    return setting + f"; s*lambda = {s_lambda:.2f}" + ("" if inside else " > 1: outside Theorem 3's assumption")


@dataclass(frozen=True)
class C5Criterion:
    """C5 (Theorem 3 and Proposition 2), after W(L) alone is solved: every layer of the deep GNN is stationary,
    ||dL/dW(k)||_F < ``still``, while the deep MLP is not at a trap: some layer's gradient > ``moving``, or its
    loss < ``loss_frac`` x chance (a good fit, where every gradient vanishes because the fit is perfect).
    ``gradient_only``: the previous edition's MLP control, a gradient > ``moving`` whatever the loss."""

    still: float = 1e-4
    moving: float = 1e-2
    loss_frac: float = 0.95
    gradient_only: bool = False

    @property
    def control(self) -> str:
        return (f"some deep-MLP layer grad > {_e(self.moving)} whatever its loss" if self.gradient_only else
                f"the deep MLP not trapped (some layer grad > {_e(self.moving)}, or loss < {self.loss_frac:g} chance)")

    @property
    def text(self) -> str:
        return (f"on every graph and for both losses, after W(L) is solved: every deep-GNN layer grad < {_e(self.still)}, "
                f"and {self.control}; judged where s*lambda < 1")


def _stationary(solved: pd.DataFrame, c: C5Criterion, deep: int):
    """C5 on ONE graph (every loss): True/False, None (not judged) if a network is missing."""
    gnn, mlp = solved.loc[solved.model == f"GNN L={deep}"], solved.loc[solved.model == f"MLP L={deep}"]
    if len(gnn) == 0 or len(mlp) == 0:
        return None
    still = bool((gnn[["grad_last_layer", "max_grad_other_layers"]].max(axis=1) < c.still).all())
    moving = mlp.max_grad_other_layers > c.moving
    return still and bool(moving.all() if c.gradient_only else (moving | (mlp.ratio < c.loss_frac)).all())


def _stationary_text(solved: pd.DataFrame, c: C5Criterion, deep: int) -> tuple[str, str]:
    """(measured, key) of C5 on a table: the deep GNN's largest layer gradient; the deep MLP's other layers'
    gradients, loss/chance and how many of its networks are not trapped.  The key: the deep GNN's largest
    gradient; the deep MLP's smallest where only its gradient counts and it is too small."""
    gnn, mlp = solved.loc[solved.model == f"GNN L={deep}"], solved.loc[solved.model == f"MLP L={deep}"]
    g_max = gnn[["grad_last_layer", "max_grad_other_layers"]].max().max()
    free = (mlp.max_grad_other_layers > c.moving) | (mlp.ratio < c.loss_frac)
    text = (f"deep GNN: largest layer gradient {g_max:.1e}; deep MLP: other layers' largest gradient "
            f"{mlp.max_grad_other_layers.min():.1e}-{mlp.max_grad_other_layers.max():.1e}, loss/chance "
            f"{mlp.ratio.min():.3f}-{mlp.ratio.max():.3f} (not trapped in {int(free.sum())}/{len(mlp)})")
    if c.gradient_only and not (mlp.max_grad_other_layers > c.moving).all():
        return text, f"MLP grad {mlp.max_grad_other_layers.min():.1e}"
    return text, f"GNN grad {g_max:.1e}"


def judge_c5(solved: pd.DataFrame, criterion: C5Criterion = C5Criterion(), *, deep: int, s_lambda, prop2: pd.DataFrame,
             readings: dict | None = None) -> Verdict:
    """C5: once the last layer is trained, the whole deep GNN is at a near-stationary point; the MLP is not.

    ``solved``: a :func:`~oversmoothing.experiments.traps.last_layer_summary` of the ``deep``-layer GNN and MLP
    (both losses, every graph).  On each graph, for both losses: every deep-GNN layer's ||dL/dW(k)||_F <
    ``still`` and the deep MLP not trapped (:class:`C5Criterion`): reproduced, else not reproduced; "not
    judged" where s*lambda >= 1 (``s_lambda``: a number or {graph: s*lambda}; NaN where no s bounds the
    weights); the graphs combine by seeds_agree.  ``prop2``: :func:`~oversmoothing.experiments.traps.proposition2`'s
    table, quoted.  Readings: the previous edition's gradient-only MLP control on the same table, then
    ``readings`` {name: (solved, setting, s*lambda)}."""
    agreement = _per_graph(solved, s_lambda, lambda d: _stationary(d, criterion, deep))
    text, key = _stationary_text(solved, criterion, deep)
    p = prop2.set_index(["model", "layer"]).grad
    measured = (f"{solved.graph.nunique()} graphs x {solved.loss_fn.nunique()} losses, L = {deep}, W(L) solved exactly: "
                f"{text}{_by_seed(agreement)}; Proposition 2 by hand: MLP dL/dW(1) = {p[('MLP', 1)]:.3g}, dL/dW(2) = "
                f"{p[('MLP', 2)]:.1e}; oversmoothed GNN: {p[('GNN', 1)]:.1e}, {p[('GNN', 2)]:.1e}")
    grads = ["grad_last_layer", "max_grad_other_layers"]
    grad_only = replace(criterion, gradient_only=True)
    g = _per_graph(solved, s_lambda, lambda d: _stationary(d, grad_only, deep))
    g_text, g_key = _stationary_text(solved, grad_only, deep)
    rd = [reading("gradient-only MLP control", f"the previous edition's criterion: {grad_only.control}",
                  verdict_of(g.verdict, solved[grads].to_numpy()), g_text + _by_seed(g), g_key)]
    for name, (t, setting, sl) in (readings or {}).items():
        a = _per_graph(t, sl, lambda d: _stationary(d, criterion, deep))
        r_text, r_key = _stationary_text(t, criterion, deep)
        rd.append(reading(name, _solved_setting(setting, sl), verdict_of(a.verdict, t[grads].to_numpy()),
                          r_text + _by_seed(a), r_key))
    gnn = solved.loc[solved.model == f"GNN L={deep}"]
    metrics = {"c5_deep_gnn_max_grad": gnn[grads].max().max(),
               "c5_deep_mlp_min_other_grad": solved.loc[solved.model == f"MLP L={deep}"].max_grad_other_layers.min()}
    return Verdict("C5", "Once the last layer is trained, the whole GNN is at a near-stationary point; an MLP is not "
                         "(Proposition 2's counter-example).",
                   measured, criterion.text, agreement.verdict, key=key, numbers=solved[grads].to_numpy(), readings=rd,
                   metrics=metrics)


@dataclass(frozen=True)
class C6Criterion:
    """C6 (Corollary 2): the last-layer-solved deep GNN's loss >= ``loss_frac`` x chance for both losses, i.e.
    >= sigma_y^2 - delta with delta = (1 - ``loss_frac``) sigma_y^2 for the regression loss."""

    loss_frac: float = 0.95

    @property
    def text(self) -> str:
        return (f"last-layer-solved deep GNN: loss >= {self.loss_frac:g} x chance for both losses on every graph "
                f"(delta = {1 - self.loss_frac:g} sigma_y^2)")


def _at_chance(solved: pd.DataFrame, c: C6Criterion, deep: int):
    """C6 on ONE graph (every loss): True/False, None (not judged) if the deep GNN is missing."""
    t = solved.loc[solved.model == f"GNN L={deep}"]
    return bool((t.ratio >= c.loss_frac).all()) if len(t) else None


def _at_chance_text(solved: pd.DataFrame, deep: int) -> tuple[str, str]:
    t = solved.loc[solved.model == f"GNN L={deep}"]
    return ("loss/chance " + ", ".join(f"{r.loss_fn}: {r.ratio:.3f}" for r in t.itertuples()),
            f"loss/chance {t.ratio.min():.2f}")


def judge_c6(solved: pd.DataFrame, runs: pd.DataFrame, criterion: C6Criterion = C6Criterion(), *, deep: int, s_lambda,
             readings: dict | None = None) -> Verdict:
    """C6: the trapped points have loss >= sigma_y^2 - delta, near chance.

    ``solved`` as for :func:`judge_c5`; on each graph, the deep GNN's loss / chance >= ``loss_frac`` for every
    loss: reproduced, else not reproduced; "not judged" where s*lambda >= 1; the graphs combine by seeds_agree.
    ``runs`` (chapter 04's Adam run table) gives the Adam-trapped deep GNNs' final loss / chance, quoted.
    ``readings``: {name: (solved, setting, s*lambda)}."""
    agreement = _per_graph(solved, s_lambda, lambda d: _at_chance(d, criterion, deep))
    text, key = _at_chance_text(solved, deep)
    dg = runs.loc[runs["model"] == f"GNN L={deep}"]
    r = dg.final_loss / dg.chance
    trapped = int((dg.status == "trapped").sum())
    measured = (f"last-layer-solved deep GNN on {solved.graph.nunique()} graphs: {text}{_by_seed(agreement)}; Adam-trapped "
                f"deep GNNs: final CE / chance {r.min():.3f}-{r.max():.3f} ({trapped}/{len(dg)} trapped)")
    rd = []
    for name, (t, setting, sl) in (readings or {}).items():
        a = _per_graph(t, sl, lambda d: _at_chance(d, criterion, deep))
        r_text, r_key = _at_chance_text(t, deep)
        rd.append(reading(name, _solved_setting(setting, sl), verdict_of(a.verdict, t.ratio.to_numpy()),
                          r_text + _by_seed(a), r_key))
    return Verdict("C6", "Such trapped points have loss >= sigma_y^2 - delta, i.e. near chance level.",
                   measured, criterion.text, agreement.verdict, key=key, numbers=solved.ratio.to_numpy(), readings=rd,
                   metrics={"c6_min_loss_ratio": solved.loc[solved.model == f"GNN L={deep}"].ratio.min()})


# ---------------------------------------------------------------------------------------------------- C7

@dataclass(frozen=True)
class C7Criterion:
    """C7 on the runs of one graph: per s, the GNN's trap epoch is the median over its runs (a run that trained
    or is "not trapped" counts as never trapped, +inf; a run that did not train is left out: an explosion is not
    an escape).  An s *counts* only if every MLP run from that s (the P = I control) is trained or not trapped
    and some GNN run is left.  The trap is *delayed* among some s if its epoch is non-decreasing in s and larger
    at the largest than at the smallest.  Delayed among >= ``min_counted`` counted s: reproduced; not delayed
    over the whole grid, or among the counted s: not reproduced; delayed over the grid but fewer than
    ``min_counted`` s count, or fewer than 2 s with a GNN run left: not judged."""

    min_counted: int = 2

    @property
    def text(self) -> str:
        n = self.min_counted
        return ("s counts only where the same-depth MLP is not trapped in any run; GNN trap epoch (median over runs; "
                "never = inf; did-not-train runs left out) non-decreasing in s and larger at the largest counted s: "
                f"reproduced with >= {n} counted s; no delay at all, or none among counted s: not reproduced; a delay but "
                f"< {n} counted s: not judged")


def _status_counts(runs: pd.DataFrame) -> str:
    """"trapped 2, trained 1": how many of ``runs`` have each status."""
    return ", ".join(f"{st} {int((runs.status == st).sum())}" for st in TRAP_STATUSES if (runs.status == st).any())


def delay_table(runs: pd.DataFrame, s_col: str = "s") -> pd.DataFrame:
    """The per-s table C7 is judged on, from a run table with columns ``kind`` (GNN/MLP), ``s_col``, ``status``
    and ``status_epoch``: the GNN's median trap epoch (never trapped: inf; no GNN run left: NaN), the GNN's and
    MLP's status counts, and ``counts`` (the s counts: every MLP run escaped and some GNN run is left)."""
    rows = []
    for s, d in runs.groupby(s_col):
        gnn, mlp = d.loc[d["kind"] == "GNN"], d.loc[d["kind"] == "MLP"]
        ok = gnn.loc[gnn["status"] != "did not train"]
        ep = ok.apply(lambda r: r["status_epoch"] if r["status"] == "trapped" else np.inf, axis=1)
        rows.append({s_col: s, "gnn_trap_epoch": float(np.median(ep)) if len(ep) else np.nan,
                     "gnn": _status_counts(gnn), "mlp": _status_counts(mlp),
                     "counts": bool(len(mlp) and mlp["status"].isin(ESCAPED).all() and len(ok))})
    return pd.DataFrame(rows, columns=[s_col, "gnn_trap_epoch", "gnn", "mlp", "counts"]).sort_values(s_col)


def _delayed(epochs) -> bool:
    """The trap epochs (in increasing s; NaN left out) are non-decreasing and larger at the end than at the start."""
    v = np.asarray(epochs, dtype=float)
    v = v[~np.isnan(v)]
    return bool(len(v) >= 2 and all(b >= a for a, b in zip(v[:-1], v[1:])) and v[-1] > v[0])


def _delay_verdict(per_s: pd.DataFrame, c: C7Criterion) -> str:
    """C7's rule (:class:`C7Criterion`) on one graph's :func:`delay_table`."""
    counted = per_s.loc[per_s["counts"], "gnn_trap_epoch"].to_numpy()
    if per_s["gnn_trap_epoch"].notna().sum() < 2:  # (almost) every GNN run exploded: nothing to compare
        return NOT_JUDGED
    if not _delayed(per_s["gnn_trap_epoch"]):
        return NOT_REPRODUCED
    if len(counted) >= c.min_counted:
        return REPRODUCED if _delayed(counted) else NOT_REPRODUCED
    return NOT_JUDGED


def _delay_text(per_s: pd.DataFrame, s_col: str = "s") -> str:
    fmt = lambda v: "never" if np.isinf(v) else ("-" if np.isnan(v) else f"{v:g}")  # noqa: E731
    return ("GNN trap epoch by s: " + ", ".join(f"{r[s_col]:g}: {fmt(r['gnn_trap_epoch'])}" for _, r in per_s.iterrows())
            + "; s where the same-depth MLP is not trapped: "
            + (", ".join(f"{v:g}" for v in per_s.loc[per_s["counts"], s_col]) or "none"))


def c7_key(per_s: pd.DataFrame) -> str:
    """The verdict matrix's key number, from a :func:`delay_table`: the GNN's trap epochs (never: ∞) over the s
    the MLP escapes where two or more do (what the verdict then rests on), else over every s."""
    fmt = lambda v: "∞" if np.isinf(v) else ("-" if np.isnan(v) else f"{v:g}")  # noqa: E731
    ep = per_s.gnn_trap_epoch.to_numpy(dtype=float)
    if np.isnan(ep).all():
        return "no GNN trained"
    counted = per_s.loc[per_s.counts]
    if len(counted) >= 2:
        key = "trap ep " + "/".join(fmt(v) for v in counted.gnn_trap_epoch)
        longer = key + f" s≥{counted.s.min():g}"
        return longer if len(longer) <= 16 else key
    if len(set(ep)) == 1 and np.isfinite(ep[0]):
        return f"trap at ep. {ep[0]:g}"
    return "trap ep " + "/".join(fmt(v) for v in ep)


class _Delay(NamedTuple):
    verdict: str
    per_s: pd.DataFrame
    numbers: np.ndarray
    agreement: Agreement


def _delay(runs: pd.DataFrame, c: C7Criterion, budget: int) -> _Delay:
    """C7 on a run table: each graph judged on its own :func:`delay_table`, the graphs combined by seeds_agree;
    the numbers: the counted trap epochs of every graph (never trapped: ``budget`` + 1, beyond the budget)."""
    tables = [delay_table(d) for _, d in runs.groupby("graph", sort=False)]
    agreement = seeds_agree([_delay_verdict(t, c) for t in tables])
    counted = [t.loc[t["counts"], "gnn_trap_epoch"].replace(np.inf, budget + 1).to_numpy() for t in tables]
    return _Delay(agreement.verdict, delay_table(runs), np.concatenate(counted) if counted else np.array([]), agreement)


def judge_c7(runs: pd.DataFrame, criterion: C7Criterion = C7Criterion(), *, budget: int, setting: str = "",
             lambda_w: pd.Series | None = None, readings: dict | None = None, target_lambda: float = 0.84) -> Verdict:
    """C7: a larger initial spectral norm s delays or prevents the deep GNN's trap, *as a GNN effect* (where the
    MLP of the same depth, from the same s, is not trapped).

    ``runs``: a :func:`~oversmoothing.experiments.traps.s_grid` run table (columns graph, kind, s, status,
    status_epoch) trained for ``budget`` epochs.  Each graph is judged by :class:`C7Criterion` on its own
    :func:`delay_table`; the graphs combine by seeds_agree.  The measured text and key give the medians over
    every run.  ``setting``: the measured text's opening; ``lambda_w`` ({s: lambda max_k ||W(k)||_2 reached}):
    the bounded-weights observation, quoted beside the verdict (not part of it); ``readings``: {name: (runs,
    setting)}, each judged the same way; ``target_lambda``: the paper's lambda, quoted in the claim."""
    d = _delay(runs, criterion, budget)
    opening = ", ".join(x for x in (setting, f"{runs['graph'].nunique()} graphs", f"{budget} Adam epochs") if x)
    measured = f"{opening}: {_delay_text(d.per_s)}{_by_seed(d.agreement)}"
    if lambda_w is not None:
        measured += (". Observation: lambda * max_k ||W(k)||_2 reaches "
                     + ", ".join(f"{v:.2f} (s={k:g})" for k, v in lambda_w.items()) + " (assumption < 1; not part of the verdict)")
    rd = []
    for name, (t, reading_setting) in (readings or {}).items():
        r = _delay(t, criterion, budget)
        statuses = ", ".join(f"{k} s={sv:.3g}: " + "/".join(sorted(set(x.status)))
                             for (k, sv), x in t.groupby(["kind", "s"]))
        rd.append(reading(name, reading_setting, verdict_of(r.verdict, r.numbers),
                          f"{_delay_text(r.per_s)}{_by_seed(r.agreement)}; runs: {statuses}", c7_key(r.per_s)))
    # never trapped (or no GNN run left): beyond the budget
    metrics = {f"c7_gnn_trap_epoch_s{sv:g}": e if np.isfinite(e) else budget + 1
               for sv, e in d.per_s.set_index("s").gnn_trap_epoch.items()}
    metrics["c7_counted_s"] = int(d.per_s.counts.sum())
    if lambda_w is not None:
        metrics["c7_max_lambda_wspec"] = float(lambda_w.max())
    s_text = ", ".join(f"{v:g}" for v in sorted(runs["s"].unique()))
    return Verdict("C7", f"Larger initial spectral norm s delays or prevents the collapse (s = {s_text}, lambda ~ "
                         f"{target_lambda:g}); the weights' spectral norm stays bounded during training (the paper's assumption).",
                   measured, criterion.text, d.verdict, key=c7_key(d.per_s), numbers=d.numbers, readings=rd, metrics=metrics)

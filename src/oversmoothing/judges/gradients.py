"""Judges of chapters 06-07: C8, C9 (gradient oversmoothing and expansion), C11 (gradient similarity as a predictor).

Notation (paper 2): G(k) = dL/dX(k) is the gradient of the training loss with respect to the representations of
layer k = 0..L, mu(G) = ||G - 1 1^T G/n||_F its distance from the constant rows, and

    r = mu(G(1)) / mu(G(L))

how much the gradient similarity changes from the output layer back to the first (r < 1: it shrinks towards the
input, "gradient oversmoothing"; r > 1: it expands).  The P = I twin of a network (the MLP, or the residual MLP)
is the same network from the same seed with the graph replaced by the identity; r_GCN/r_MLP is what the graph
adds.  C8 and C9 are judged per seed and the seeds combined by :func:`~oversmoothing.judges.seeds_agree`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from . import NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree

__all__ = ["C8Criterion", "C9Criterion", "C11Criterion", "c8_seed_verdicts", "c8_key", "c9_seed_verdicts",
           "judge_c8", "judge_c9", "judge_c11", "predicts_better"]

#: how the per-seed verdicts of C8 and C9 are combined (:func:`~oversmoothing.judges.seeds_agree`), in words
SEEDS_RULE = "per seed; the verdict all seeds share, else partly if some seed reproduces"


def _e(values) -> str:
    """Numbers as 8.8e-12, 6.7e-12, ..."""
    return ", ".join(f"{x:.1e}" for x in values)


def _range(values) -> str:
    """min-max with two decimals."""
    return f"{min(values):.2f}-{max(values):.2f}"


def _agreement(agreed, suffix: str = "") -> str:
    """How the seeds of a :func:`~oversmoothing.judges.seeds_agree` verdict agree: "3 of 3 seeds agree", or the count
    of each verdict where they do not."""
    if agreed.n and agreed.k == agreed.n:
        return f"{agreed.n} of {agreed.n} seeds{suffix}"
    return f"seeds disagree ({agreed.detail})" if agreed.n else "no seeds"


def _bar(x) -> str:
    """A threshold as the criteria write it: 0.9, 100, 1e-3."""
    return f"{x:.0e}".replace("e-0", "e-") if 0 < abs(x) < 0.01 else f"{x:g}"


def _num(x) -> str:
    return f"{x:.2f}" if x >= 0.01 else f"{x:.0e}"


def _span(values) -> str:
    """min-max in the fewest characters: one number when both print alike."""
    lo, hi = _num(min(values)), _num(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


# ----------------------------------------------------------------------------------------------------------- C8


@dataclass(frozen=True)
class C8Criterion:
    """C8 on one seed, with r = mu(G(1))/mu(G(L)):

    (a) the decay: Spearman(k, mu(G(k))) >= ``spearman`` in the GCN and r_GCN/r_MLP <= ``graph_bar`` (what the
        graph adds to its twin's decay; ``controlled=False``: r_GCN alone, the first edition's test);
    (b) the rows become alike: the relative distance of G(1) from the GCN operator's limit subspace,
        ||G(1) - U U^T G(1)||_F / ||G(1)||_F (column ``rel_col``; "rel_mu_G1_GCN": mu(G(1))/||G(1)||_F, the
        distance from the constant rows), is below ``rel_bar``.

    (a) and (b): reproduced; one: partly reproduced; neither: not reproduced."""

    spearman: float = 0.9
    graph_bar: float = 1e-3
    rel_bar: float = 0.5
    rel_col: str = "rel_gcn_G1_GCN"
    controlled: bool = True

    @property
    def text(self) -> str:
        return (f"(a) Spearman(k, mu(G(k))) >= {_bar(self.spearman)} and r_GCN/r_MLP <= {_bar(self.graph_bar)} (what the "
                f"graph adds); (b) relative distance of G(1) from P's limit subspace < {_bar(self.rel_bar)}. Both: reproduced; "
                f"one: partly; {SEEDS_RULE}.")


def c8_seed_verdicts(rows: pd.DataFrame, criterion: C8Criterion = C8Criterion()) -> list[str]:
    """C8's verdict for every seed (row) of a :func:`~oversmoothing.experiments.gradients.decay_rows` table."""
    out = []
    for _, r in rows.iterrows():
        decay = r.graph_part if criterion.controlled else r.r_GCN
        out.append(from_parts(r.spearman_GCN >= criterion.spearman and decay <= criterion.graph_bar,
                              r[criterion.rel_col] < criterion.rel_bar))
    return out


def c8_key(rows: pd.DataFrame, criterion: C8Criterion = C8Criterion()) -> str:
    """The verdict matrix's key number: what the graph adds to the decay (r_GCN/r_MLP; r_GCN without the twin),
    or the relative distance of G(1) where the decay passes in every seed and (b) fails in some."""
    if not len(rows):
        return ""
    decay = rows.graph_part if criterion.controlled else rows.r_GCN
    decay_ok = all(s >= criterion.spearman and d <= criterion.graph_bar for s, d in zip(rows.spearman_GCN, decay))
    rel = rows[criterion.rel_col]
    if decay_ok and not (rel < criterion.rel_bar).all():
        lo, hi = f"{min(rel):.2f}", f"{max(rel):.2f}"
        return ("P-lim. " if criterion.rel_col == "rel_gcn_G1_GCN" else "rel_mu ") + (lo if lo == hi else f"{lo}-{hi}")
    return f"graph ×{_span(rows.graph_part)}" if criterion.controlled else f"r_GCN ≤ {max(rows.r_GCN):.0e}"


def _c8_reading(name: str, setting: str, rows: pd.DataFrame, criterion: C8Criterion):
    agreed = seeds_agree(c8_seed_verdicts(rows, criterion))
    return reading(name, setting, agreed.verdict,
                   f"{_agreement(agreed)}; r_GCN = {_e(rows.r_GCN)}, r_MLP = {_e(rows.r_MLP)}, "
                   f"graph part = {_e(rows.graph_part)}; rel. forms of G(1): P-limit {_range(rows.rel_gcn_G1_GCN)}, "
                   f"constant rows {_range(rows.rel_mu_G1_GCN)}; share of ||G(1)||^2 on components of <= 2 "
                   f"nodes {_range(rows.small_share_G1_GCN)}", c8_key(rows, criterion))


def judge_c8(table: pd.DataFrame, criterion: C8Criterion = C8Criterion(), *, dataset: str, depth: int,
             reading_depth: int, reading_dataset: str) -> Verdict:
    """C8, "gradients oversmooth during back-propagation, most in the early layers", on chapter 06's
    :func:`~oversmoothing.experiments.gradients.decay_rows` table (columns data, L, init, seed, ...): the GCN of
    ``depth`` layers on ``dataset`` with Glorot's weights, each seed by ``criterion`` (:class:`C8Criterion`), the
    seeds combined by :func:`~oversmoothing.judges.seeds_agree`.

    Readings, by the same rule: *no control* (r_GCN <= 1e-3 alone, (b) against the constant rows), *He init*
    (rows with init "He"), *any graph-added decay* (r_GCN/r_MLP <= 1), *rel_mu (constant rows)* ((b) with
    mu(G(1))/||G(1)||_F), *L = reading_depth* (the rows of that depth) and *dataset reading_dataset* (its rows;
    the headline rows again when it is ``dataset``)."""
    main = table.loc[table.data == dataset]
    at_depth = main.loc[main.L == depth]
    glorot, he = at_depth.loc[at_depth.init == "Glorot"], at_depth.loc[at_depth.init == "He"]
    deep = main.loc[main.L == reading_depth]
    other = table.loc[table.data == reading_dataset] if reading_dataset != dataset else glorot
    agreed = seeds_agree(c8_seed_verdicts(glorot, criterion))
    c = criterion
    readings = [
        _c8_reading("no control", f"first edition: r_GCN <= {_bar(c.graph_bar)} without the twin; rel_mu of G(1) < "
                    f"{_bar(c.rel_bar)}", glorot, replace(c, controlled=False, rel_col="rel_mu_G1_GCN")),
        _c8_reading("He init", "hidden weights times sqrt(2); same criterion against the twin", he, c),
        _c8_reading("any graph-added decay", "(a) only asks r_GCN/r_MLP < 1", glorot, replace(c, graph_bar=1.0)),
        _c8_reading("rel_mu (constant rows)", "(b) with mu(G(1))/||G(1)||_F", glorot, replace(c, rel_col="rel_mu_G1_GCN")),
        _c8_reading(f"L = {reading_depth}", f"L = {reading_depth}, float64, seed {int(deep.seed.iloc[0]) if len(deep) else '-'}",
                    deep, c),
        _c8_reading(f"dataset {reading_dataset}", f"{reading_dataset} instead of {dataset}, same criterion", other, c)]
    seeds = [int(s) for s in glorot.seed]
    return Verdict(
        "C8", "Gradients oversmooth during back-propagation, most in the early layers (mu of the gradients).",
        f"GCN without residuals, L={depth}, {dataset}, epoch 0, seeds {seeds}: mu(G(1))/mu(G(L)) = {_e(glorot.r_GCN)} "
        f"(Spearman {_range(glorot.spearman_GCN)}), MLP twin (P = I) {_e(glorot.r_MLP)}, so the graph's part r_GCN/r_MLP is "
        f"{_e(glorot.graph_part)} (He init: {_e(he.graph_part)}); relative distance of G(1) from P's limit subspace "
        f"{_range(glorot.rel_gcn_G1_GCN)} (twin {_range(glorot.rel_gcn_G1_MLP)}). {_agreement(agreed, ' agree')}.",
        criterion.text, agreed.verdict, key=c8_key(glorot, criterion),
        numbers=list(glorot.graph_part) + list(glorot.rel_gcn_G1_GCN) + list(glorot.spearman_GCN), readings=readings,
        metrics={"C8_ratio_gcn": glorot.r_GCN.median(), "C8_ratio_mlp": glorot.r_MLP.median(),
                 "C8_graph_part": glorot.graph_part.median(), "C8_graph_part_he": he.graph_part.median(),
                 "C8_rel_mu_gcn_G1": glorot.rel_gcn_G1_GCN.median()})


# ----------------------------------------------------------------------------------------------------------- C9


@dataclass(frozen=True)
class C9Criterion:
    """C9 on one seed, with r = mu(G(1))/mu(G(L)):

    (a) the expansion is caused by the residual connections: r >= ``expansion`` in the residual GCN while the
        same GCN without them has r <= ``plain_max``;
    (b) deep GATs reach NaN: some residual GAT has a non-finite G(k) in ``dtype`` at initialisation (or, in
        float32, diverged when trained).

    (a) and (b): reproduced; one: partly reproduced; neither: not reproduced.  The reading *graph-specific*
    asks instead r_res_GCN >= ``graph_factor`` r_res_MLP (the graph, not the residual form, expands)."""

    expansion: float = 100.0
    plain_max: float = 1.0
    dtype: str = "float32"
    graph_factor: float = 10.0

    @property
    def text(self) -> str:
        return (f"(a) residual GCN r >= {self.expansion:g} while the plain GCN's r <= {self.plain_max:g}; (b) some residual "
                f"GAT has a non-finite G(k) in {self.dtype}. Both: reproduced; one: partly; {SEEDS_RULE}.")


def _gat_nan(gat: pd.DataFrame, seed, dtype: str, diverged_seeds=()) -> bool:
    """(b) for one seed: some residual GAT of ``gat`` has fewer finite G(k) than its L + 1 (or, in float32, a
    GAT of this seed diverged in training)."""
    g = gat.loc[(gat.seed == seed) & (gat.dtype == dtype)]
    return bool((g.finite_G < g.depth + 1).any()) or (dtype == "float32" and seed in set(diverged_seeds))


def c9_seed_verdicts(c9: pd.DataFrame, gat: pd.DataFrame, criterion: C9Criterion = C9Criterion(),
                     diverged_seeds=()) -> list[str]:
    """C9's verdict for every seed (row) of chapter 06's ``c9`` table (columns seed, r_res_GCN, r_GCN) with the
    residual GATs' probes ``gat`` (columns depth, seed, dtype, finite_G); ``diverged_seeds``: the seeds of
    trained residual GATs that diverged."""
    return [from_parts(r.r_res_GCN >= criterion.expansion and r.r_GCN <= criterion.plain_max,
                       _gat_nan(gat, r.seed, criterion.dtype, diverged_seeds)) for _, r in c9.iterrows()]


def judge_c9(c9: pd.DataFrame, gat: pd.DataFrame, criterion: C9Criterion = C9Criterion(), *, depth: int,
             diverged_seeds=()) -> Verdict:
    """C9, "residual connections cause gradient expansion: gradient similarity diverges, deep GATs reach NaN", on
    chapter 06's tables at initialisation: ``c9`` (one row per seed: seed, r_res_GCN, r_res_MLP, r_GCN, r_MLP of
    the ``depth``-layer networks) and ``gat`` (one row per residual GAT probe: depth, seed, dtype, loss, max_logit,
    forward_finite, finite_G, norm_G0); each seed by ``criterion`` (:class:`C9Criterion`), the seeds combined by
    :func:`~oversmoothing.judges.seeds_agree`.  The GAT numbers shown are those of the deepest GAT.

    Readings: *graph-specific* (r_res_GCN >= 10 r_res_MLP per seed) and *float64* ((b) in float64)."""
    gmax = int(gat.depth.max()) if len(gat) else 0
    g32 = gat.loc[(gat.depth == gmax) & (gat.dtype == "float32")]
    g64 = gat.loc[(gat.depth == gmax) & (gat.dtype == "float64")]
    agreed = seeds_agree(c9_seed_verdicts(c9, gat, criterion, diverged_seeds))
    graph = seeds_agree([from_parts(r.r_res_GCN >= criterion.graph_factor * r.r_res_MLP) for _, r in c9.iterrows()])
    f64 = seeds_agree(c9_seed_verdicts(c9, gat, replace(criterion, dtype="float64"), diverged_seeds))
    readings = [
        reading("graph-specific", f"the residual GCN must expand at least {criterion.graph_factor:g}x more than its "
                "residual MLP twin (P = I)", graph.verdict,
                f"{_agreement(graph)}; r residual GCN {_e(c9.r_res_GCN)}, residual MLP {_e(c9.r_res_MLP)}",
                f"graph ×{_span(c9.r_res_GCN / c9.r_res_MLP)}" if len(c9) else ""),
        reading("float64", "(b) judged in float64", f64.verdict,
                f"{_agreement(f64)}; residual GAT L={gmax}: finite G(k) {list(g64.finite_G)} of {gmax + 1}, "
                f"||G(0)|| = {_e(g64.norm_G0)}", f"finite G {min(g64.finite_G)}/{gmax + 1}" if len(g64) else "")]
    expands = all(r.r_res_GCN >= criterion.expansion and r.r_GCN <= criterion.plain_max for _, r in c9.iterrows())
    # the key number: the residual GCN's smallest expansion, or float32's finite G(k) where (a) holds and (b) does not
    key = (f"finite G {min(g32.finite_G)}/{gmax + 1}" if expands and len(g32) and min(g32.finite_G) == gmax + 1
           else f"r_res ≥ {min(c9.r_res_GCN):.0e}" if len(c9) else "")
    seeds = [int(s) for s in c9.seed]
    return Verdict(
        "C9", "Residual connections cause gradient expansion: gradient similarity diverges, deep GATs reach NaN.",
        f"epoch 0, L={depth}, seeds {seeds}: mu(G(1))/mu(G(L)) residual GCN {_e(c9.r_res_GCN)} (without residuals "
        f"{_e(c9.r_GCN)}; residual MLP twin {_e(c9.r_res_MLP)}, so the graph's part is {_e(c9.r_res_GCN / c9.r_res_MLP)}). "
        f"Residual GAT L={gmax}, float32: forward finite in {int(g32.forward_finite.sum())} of {len(g32)} seeds (loss "
        f"{_e(g32.loss)}, largest logit {_e(g32.max_logit)}), finite G(k) {list(g32.finite_G)} of {gmax + 1}; "
        f"float64: {list(g64.finite_G)} finite. {_agreement(agreed, ' agree')}.",
        criterion.text, agreed.verdict, key=key,
        numbers=list(c9.r_res_GCN) + list(c9.r_GCN) + list(g32.finite_G), readings=readings,
        metrics={"C9_ratio_res_gcn": c9.r_res_GCN.median(), "C9_ratio_res_mlp": c9.r_res_MLP.median(),
                 "C9_gat_finite_G_float32": g32.finite_G.median(), "C9_gat_loss_float32": g32.loss.median(),
                 "C9_gat_norm_G0_float64": g64.norm_G0.median()})


# ---------------------------------------------------------------------------------------------------------- C11


@dataclass(frozen=True)
class C11Criterion:
    """C11 on comparisons of two predictors of test accuracy, Spearman's rho_grad (gradient similarity) and
    rho_repr (representation similarity), each with a 95% bootstrap interval [ci_low, ci_high] of
    diff = |rho_grad| - |rho_repr|: the gradient similarity "predicts better" when diff > ``margin`` and
    ci_low > ``margin``.  Both tests (at initialisation; at the end of training given the final loss):
    reproduced; one of them, or both point estimates diff > ``margin``: partly reproduced; else not reproduced."""

    margin: float = 0.0

    @property
    def text(self) -> str:
        m = f"{self.margin:g}"
        return (f"within strata: |rho_grad| - |rho_repr| > {m} with 95% bootstrap interval above {m}, both at "
                f"initialisation and given the final training loss (one of the two, or both point estimates > {m}: partly)")


def predicts_better(row, criterion: C11Criterion = C11Criterion()) -> str:
    """One comparison (a :func:`~oversmoothing.experiments.gradients.predictor_row`): reproduced if diff and its
    interval's lower end exceed the margin, partly reproduced if only diff does, else not reproduced."""
    if row["diff"] > criterion.margin:
        return REPRODUCED if row["ci_low"] > criterion.margin else PARTLY
    return NOT_REPRODUCED


def _rhos(row) -> str:
    return (f"{row['rho_grad']:.2f} vs {row['rho_repr']:.2f}, diff {row['diff']:.2f} "
            f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]")


def judge_c11(at_init: dict, given_loss: dict, relative: dict, pooled: dict, criterion: C11Criterion = C11Criterion(),
              *, rho_loss: float, rho_G_loss: float, strata=("dataset", "arch", "depth")) -> Verdict:
    """C11, "gradient similarity predicts test accuracy better than representation similarity", on four
    :func:`~oversmoothing.experiments.gradients.predictor_row` comparisons: ``at_init`` (mu at initialisation,
    within ``strata``), ``given_loss`` (mu at the end of training, partial correlation given the final loss,
    within strata), and for the readings ``relative`` (mu/||.||_F at initialisation) and ``pooled`` (the
    previous edition's end-of-training comparison, all runs pooled).  ``rho_loss``: rho(test accuracy, final
    loss) within strata; ``rho_G_loss``: pooled rho(mu_G at the end, final loss) (shown, not judged)."""
    ok_init, ok_end = (predicts_better(r, criterion) == REPRODUCED for r in (at_init, given_loss))
    both_positive = at_init["diff"] > criterion.margin and given_loss["diff"] > criterion.margin
    verdict = REPRODUCED if ok_init and ok_end else PARTLY if ok_init or ok_end or both_positive else NOT_REPRODUCED
    readings = [
        reading("end of training, pooled", "previous edition: mu at the last epoch, all runs pooled, no baseline",
                predicts_better(pooled, criterion), f"{pooled['n']} runs: rho grad vs repr {_rhos(pooled)}; "
                f"rho(mu_G, final loss) = {rho_G_loss:.2f}", f"Δρ = {pooled['diff']:.2f}"),
        reading("relative measure", "mu/||.||_F at initialisation, within strata", predicts_better(relative, criterion),
                f"rho grad vs repr {_rhos(relative)}", f"Δρ = {relative['diff']:.2f}")]
    return Verdict(
        "C11", "Gradient similarity predicts test accuracy better than representation similarity.",
        f"{at_init['n']} runs, strata ({', '.join(strata)}). At init: rho(test acc, mu) grad vs repr {_rhos(at_init)}; "
        f"end of training given the final loss: {_rhos(given_loss)}; the final loss alone: rho = {rho_loss:.2f}",
        criterion.text, verdict, key=f"Δρ {at_init['diff']:.2f} / {given_loss['diff']:.2f}",  # at init / given the loss
        numbers=[at_init["diff"], given_loss["diff"]], readings=readings,
        metrics={"rho_init_mu_G": at_init["rho_grad"], "rho_init_mu_X": at_init["rho_repr"],
                 "partial_rho_end_mu_G_given_loss": given_loss["rho_grad"],
                 "partial_rho_end_mu_X_given_loss": given_loss["rho_repr"]})

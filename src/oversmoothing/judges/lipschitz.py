"""Judges of chapter 07: C10a, C10b (Lipschitz normalisation lets deep residual GNNs train).

Lipschitz (Frobenius) normalisation replaces every residual branch's weight by W <- c W/||W||_F, so that
||W||_2 <= c; the residual GCN X(k) = X(k-1) + ReLU(P X(k-1) W(k)) is then (1 + c)-Lipschitz per layer.  A network
*fits the training set* when its mean final training accuracy over its runs is at least the criterion's ``fit``
(0.9); a run that diverged counts as accuracy 0.  The tables are chapter 07's: ``main`` (one row per trained run:
dataset, arch, depth, c (NaN: no normalisation), seed, train_acc, test_acc), ``read512`` (the residual forms at
the deepest L, at initialisation, indexed by reading), ``init`` (:func:`~oversmoothing.experiments.gradients.init_scale`
rows).

Two readings come from the same first author's public code for deep residual GNNs (``ml-postech/reverse-gnn``):
*soft normalisation* (W <- W/max(1, ||W||_F/c), ``src/spectral_norm_gnn.py``) and *authors' setup* (their width,
optimiser, budget with early stopping, data handling and encoder/decoder, ``src/run_resgnn_rep.py`` and
``src/model_resgnn_rep.py``).  Where one of them changes the headline verdict, the measured text says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from . import NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree
from ..report import verdict_of

from ..experiments.gradients import ARCHITECTURES

__all__ = ["C10aCriterion", "C10bCriterion", "mean_train_acc", "c10a_table", "residual_form_verdict", "judge_c10a",
           "judge_c10b", "form_reading", "SOFT", "AUTHORS", "AUTHORS_SETTING", "flip_note", "metric_name"]

#: the names of the two readings in the authors' own forms (the same for C10a and C10b)
SOFT, AUTHORS = "soft normalisation", "authors' setup"
#: what the authors' setup changes, in words (:data:`oversmoothing.experiments.gradients.AUTHORS_SETUP`)
AUTHORS_SETTING = ("ml-postech/reverse-gnn's setup: width 256, Adam lr 0.005, no weight decay or dropout, up to 1000 "
                   "epochs with early stopping (patience 100, validation accuracy), ReLU encoder, Linear-ReLU-Linear "
                   "decoder, GCNConv bias, soft normalisation; Cora/CiteSeer row-normalised with random 60/20/20 splits")


def flip_note(headline: str, readings, names=(SOFT, AUTHORS)) -> str:
    """The sentence a headline carries when a reading of ``names`` gives another (judged) verdict than
    ``headline``: " The authors' setup gives: partly reproduced (L=64 acc 1.00)." (empty when none does)."""
    out = []
    for r in readings:
        if r.name in names and r.verdict in (REPRODUCED, PARTLY, NOT_REPRODUCED) and r.verdict != headline:
            out.append(f"the {r.name} reading gives {r.verdict}" + (f" ({r.key})" if r.key else ""))
    return (" Verdict changed by a reading in the authors' own form: " + "; ".join(out) + ".") if out else ""


def metric_name(arch: str, dataset: str, depth: int, tail: str, headline: str | None) -> str:
    """``train_acc_<arch>_L<depth>_<tail>`` for the headline dataset (``headline``; None: every dataset), and
    ``train_acc_<arch>_<dataset>_L<depth>_<tail>`` for the others (so that several datasets do not overwrite one
    another's numbers, while the default profile's names stay as they were)."""
    mid = "" if headline is None or dataset == headline else f"_{dataset}"
    return f"train_acc_{arch}{mid}_L{depth}_{tail}"


def mean_train_acc(runs: pd.DataFrame, arch: str, dataset: str, depth: int, c: float | None) -> tuple[float, int]:
    """(mean final training accuracy, number of runs) of ``arch`` on ``dataset`` at ``depth`` layers with
    Lipschitz constant ``c`` (None: no normalisation); a diverged run (NaN) counts as 0."""
    sel = (runs.arch == arch) & (runs.dataset == dataset) & (runs.depth == depth)
    sel &= runs.c.isna() if c is None else (runs.c == c)
    return float(runs.loc[sel, "train_acc"].fillna(0).mean()), int(sel.sum())


@dataclass(frozen=True)
class C10aCriterion:
    """C10a on every (architecture, dataset, depth) of the grid: the best constant c tried reaches a mean training
    accuracy >= ``fit`` while the unnormalised network stays below ``fit`` (after ``epochs`` epochs).  The
    configurations are combined by :func:`~oversmoothing.judges.seeds_agree`: all: reproduced; some: partly
    reproduced; none: not reproduced."""

    fit: float = 0.9
    epochs: int = 200

    @property
    def text(self) -> str:
        return (f"every (arch, dataset, depth): best c reaches mean train acc >= {self.fit:g} and no normalisation stays "
                f"below {self.fit:g} ({self.epochs} epochs)")


def c10a_table(main: pd.DataFrame, criterion: C10aCriterion = C10aCriterion()) -> pd.DataFrame:
    """One row per (arch, dataset, depth) of the residual GCN and GAT grids: ``none`` (mean training accuracy
    without normalisation, diverged runs as 0), ``n`` (its runs), ``best_c`` and ``best`` (the constant with the
    highest mean training accuracy of its finite runs, and that accuracy) and ``ok`` (C10a holds there)."""
    rows = []
    for arch in ("res_gcn", "res_gat"):
        for (d, L), g in main.loc[main.arch == arch].groupby(["dataset", "depth"]):
            none, n_none = mean_train_acc(main, arch, d, L, None)
            best = g.loc[g.c.notna()].groupby("c")["train_acc"].mean().dropna()
            best_c, top = (float(best.idxmax()), float(best.max())) if len(best) else (math.nan, math.nan)
            rows.append(dict(arch=arch, dataset=d, depth=L, none=none, n=n_none, best_c=best_c, best=top,
                             ok=bool(top >= criterion.fit and none < criterion.fit)))
    return pd.DataFrame(rows, columns=["arch", "dataset", "depth", "none", "n", "best_c", "best", "ok"])


def _c10a_measured(checks: pd.DataFrame) -> str:
    return "; ".join(f"{ARCHITECTURES[r.arch]} {r.dataset} L={r.depth}: no normalisation {r.none:.2f}, c={r.best_c:g} "
                     f"{r.best:.2f}" for r in checks.itertuples())


def _c10a_key(checks: pd.DataFrame) -> str:
    # the unnormalised networks' best (worst case) -> the best c's worst configuration
    return f"{checks.none.max():.2f} → {checks.best.min():.2f}" if len(checks) else ""


def _c10a_reading(name: str, setting: str, runs: pd.DataFrame, criterion: C10aCriterion, note: str = ""):
    checks = c10a_table(runs, criterion)
    if not len(checks):
        return reading(name, setting, None, "no runs", "")
    numbers = checks[["none", "best"]].to_numpy()
    finite = bool(pd.notna(numbers).all() and (abs(numbers) < math.inf).all())
    verdict = seeds_agree([REPRODUCED if ok else NOT_REPRODUCED for ok in checks.ok]).verdict if finite else None
    return reading(name, setting, verdict, _c10a_measured(checks) + note, _c10a_key(checks))


def _coincide_note(soft: pd.DataFrame) -> str:
    if "coincides" not in soft or not len(soft):
        return ""
    k, n = int(soft.coincides.astype(bool).sum()), len(soft)
    return (f" ({k}/{n} soft runs are their hard runs, whose raw ||W||_F stayed above c at every step; smallest "
            f"||W_raw||_F/c {soft.min_raw_ratio.min():.2f})")


def judge_c10a(main: pd.DataFrame, criterion: C10aCriterion = C10aCriterion(), *, small_c: float, depth: int,
               dataset: str | None = None, soft: pd.DataFrame | None = None,
               authors: pd.DataFrame | None = None, authors_criterion: C10aCriterion | None = None) -> Verdict:
    """C10a, "Lipschitz normalisation with some c lets residual GCNs and GATs of 64/128 layers fit the training set
    where the unnormalised network does not", on the trained runs ``main``, each (arch, dataset, depth) by
    ``criterion`` (:class:`C10aCriterion`, :func:`c10a_table`).  The measured text also counts the runs of the
    residual GCN with ``small_c`` at ``depth`` layers (the first depth) that fit.  ``dataset``: the headline
    dataset, whose metrics keep the plain names (:func:`metric_name`).

    Readings: *soft normalisation* (``soft``: the soft-form twins of the normalised runs of ``main``, column
    ``coincides`` as :func:`~oversmoothing.experiments.gradients.soft_twins` writes it, judged beside the
    unnormalised runs of ``main``) and *authors' setup* (``authors``: normalised and unnormalised runs in that
    setup, judged by ``authors_criterion``, default ``criterion``)."""
    checks = c10a_table(main, criterion)
    agreed = seeds_agree([REPRODUCED if ok else NOT_REPRODUCED for ok in checks.ok])
    small = main.loc[(main.arch == "res_gcn") & (main.depth == depth) & (main.c == small_c), "train_acc"]
    measured = (_c10a_measured(checks)
                + f" (train acc; c={small_c:g} at L={depth}: {int((small >= criterion.fit).sum())}/{len(small)} seeds fit)")
    metrics = {}
    for r in checks.itertuples():
        metrics[metric_name(r.arch, r.dataset, r.depth, "none", dataset)] = r.none
        metrics[metric_name(r.arch, r.dataset, r.depth, f"c{r.best_c:g}", dataset)] = r.best
    readings = []
    if soft is not None and len(soft):
        runs = pd.concat([main.loc[main.c.isna()], soft], ignore_index=True)
        readings.append(_c10a_reading(SOFT, "W <- W/max(1, ||W||_F/c) instead of c W/||W||_F, every normalised run of "
                                      "the grid", runs, criterion, _coincide_note(soft)))
    if authors is not None and len(authors):
        crit = authors_criterion or criterion
        r = _c10a_reading(AUTHORS, AUTHORS_SETTING + f"; depths {sorted(set(authors.depth))}", authors, crit,
                          f" (train acc when early stopping ended the run, epochs {_epochs(authors)})")
        readings.append(r)
        for row in c10a_table(authors, crit).itertuples():
            metrics[metric_name(row.arch, row.dataset, row.depth, "none_authors", dataset)] = row.none
            metrics[metric_name(row.arch, row.dataset, row.depth, f"c{row.best_c:g}_authors", dataset)] = row.best
    return Verdict(
        "C10a", "Lipschitz (Frobenius) normalisation lets residual GCNs and GATs of 64/128 layers fit the training set "
        "where the unnormalised network does not (some c).", measured + flip_note(agreed.verdict, readings),
        criterion.text, agreed.verdict, key=_c10a_key(checks), numbers=checks[["none", "best"]].to_numpy(),
        readings=readings, metrics=metrics)


def _epochs(runs: pd.DataFrame) -> str:
    """The epochs the runs of a table lasted: "175-217" (or one number)."""
    if "epochs_run" not in runs or not len(runs):
        return "?"
    lo, hi = int(runs.epochs_run.min()), int(runs.epochs_run.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


@dataclass(frozen=True)
class C10bCriterion:
    """C10b with the paper's constant ``c`` and the papers' residual form X + ReLU(PXW): a mean training accuracy
    >= ``fit`` at every trained depth (``epochs`` epochs), and at ``overflow_depth`` layers a finite float32 forward
    pass at initialisation (a network whose logits overflow before the first update cannot train; where that depth
    is trained, >= ``fit`` there too).  Every part: reproduced; some: partly reproduced; none: not reproduced."""

    c: float = 4.0
    fit: float = 0.9
    epochs: int = 200
    overflow_depth: int = 512

    @property
    def text(self) -> str:
        return (f"c = {self.c:g}, X + ReLU(PXW): mean train acc >= {self.fit:g} at every trained depth ({self.epochs} "
                f"epochs) and a finite float32 forward pass at L = {self.overflow_depth}")


def _trained_acc(runs: pd.DataFrame | None, name: str) -> float | None:
    """The training accuracy (diverged: 0) of the run of reading ``name`` in ``runs``, None if there is none."""
    if runs is None or not len(runs) or not (runs.reading == name).any():
        return None
    return float(runs.loc[runs.reading == name, "train_acc"].fillna(0).iloc[0])


def residual_form_verdict(acc: float, finite: bool, deep_acc: float | None, fit: float = 0.9) -> str:
    """C10b under another reading of the residual form, with c = 4: trained at the first depth (training accuracy
    ``acc``) and at the deepest one (``deep_acc``): both fit: reproduced, one: partly, none: not reproduced;
    where the deepest is examined at initialisation only (``deep_acc`` None), at best partly reproduced: partly if
    the first depth fits and the deepest forward pass is ``finite`` in float32, else not reproduced."""
    if deep_acc is not None:
        return from_parts(acc >= fit, deep_acc >= fit)
    return PARTLY if acc >= fit and finite else NOT_REPRODUCED


def judge_c10b(main: pd.DataFrame, read512: pd.DataFrame, long_run: pd.DataFrame, init: pd.DataFrame,
               criterion: C10bCriterion = C10bCriterion(), *, dataset: str, depths, long_epochs: int,
               predicted_growth: float, forms=(), deep_runs: pd.DataFrame | None = None,
               soft: pd.DataFrame | None = None, soft_init=None, authors: pd.DataFrame | None = None,
               authors_init=None, authors_dataset: str | None = None) -> Verdict:
    """C10b, "with c = 4 it does so at 64/128/512 layers", on the residual GCN with c = ``criterion.c`` on
    ``dataset``: the trained runs ``main`` at ``depths``, ``read512`` (rows "literal" and one per residual-form
    reading, at ``criterion.overflow_depth`` layers at initialisation: max_logit, float32_ok, and the training
    accuracy at the first depth in column ``train_acc_L<depths[0]>``), and ``deep_runs`` (column ``reading``) where
    the deepest networks were trained.  ``predicted_growth``: the mean-field log10 growth at the deepest L (shown).

    Readings: *long_epochs epochs* (``long_run``, one run at the first depth: partly reproduced if it fits, the
    deepest network being unchanged), one per trained residual form of ``forms`` (:func:`residual_form_verdict`),
    and *wider network* (``init`` rows at the deepest L, shown, not judged).  In the authors' own forms
    (:func:`form_reading`): *soft normalisation* (``soft``: soft-form runs with c, at the depths trained; ``soft_init``:
    the soft form at the deepest L at initialisation, max_logit and float32_ok) and *authors' setup* (``authors``,
    ``authors_init`` the same in that setup, on ``authors_dataset``, default ``dataset``)."""
    c, fit, L_max, L0 = criterion.c, criterion.fit, criterion.overflow_depth, depths[0]
    lit = {L: mean_train_acc(main, "res_gcn", dataset, L, c)[0] for L in depths
           if mean_train_acc(main, "res_gcn", dataset, L, c)[1] > 0}
    literal = read512.loc["literal"]
    finite = bool(literal["float32_ok"])
    deep_lit = _trained_acc(deep_runs, "literal")
    ok_deep = finite and (deep_lit is None or deep_lit >= fit)
    verdict = from_parts(*[a >= fit for a in lit.values()], ok_deep)
    seeds = main.loc[(main.arch == "res_gcn") & (main.depth == L0) & (main.c == c), "train_acc"]
    measured = (", ".join(f"L={L}: train acc {a:.2f}" for L, a in lit.items())
                + f" ({int((seeds >= fit).sum())}/{len(seeds)} seeds fit at L={L0}); L={L_max}: largest logit at init "
                f"{literal['max_logit']:.2g} ({'finite' if finite else 'overflows'} in float32; "
                f"mean field predicts 10^{predicted_growth:.0f} growth)")
    # the key number: the trained depth that fails to fit, else the float32 overflow at the deepest L
    fails = {L: a for L, a in lit.items() if a < fit}
    if fails:
        key = f"L={min(fails, key=fails.get)} acc {min(fails.values()):.2f}"
    elif not finite:
        key = f"L{L_max} logit {literal['max_logit']:.0e}"
    elif not ok_deep:
        key = f"L={L_max} no fit"
    else:
        key = f"acc ≥ {min(lit.values()):.2f}" if lit else ""

    long_acc, long_test = long_run.train_acc.iloc[0], long_run.test_acc.iloc[0]
    readings = [reading(f"{long_epochs} epochs", f"c = {c:g}, L = {L0}, {long_epochs} epochs instead of {criterion.epochs} (1 seed)",
                        PARTLY if long_acc >= fit else NOT_REPRODUCED,
                        f"train acc {long_acc:.2f}, test {long_test:.2f} at L={L0}; L={L_max} unchanged (overflow at init)"
                        if not ok_deep else f"train acc {long_acc:.2f}", f"L={L0} acc {long_acc:.2f}")]
    for name in forms:
        acc, fin = float(read512.loc[name, f"train_acc_L{L0}"]), bool(read512.loc[name, "float32_ok"])
        deep = _trained_acc(deep_runs, name)
        logit = read512.loc[name, "max_logit"]
        readings.append(reading(
            name, f"c = {c:g}; trained at L = {L0}, L = {L_max} " + ("trained" if deep is not None else "at initialisation only"),
            residual_form_verdict(acc, fin, deep, fit),
            f"train acc L={L0}: {acc:.2f}; L={L_max}: largest logit {logit:.2g}, {'finite' if fin else 'overflows'} in float32"
            + (f", train acc {deep:.2f}" if deep is not None else ""),
            f"L={L_max} acc {deep:.2f}" if acc >= fit and deep is not None and deep < fit
            else f"L{L_max} logit {logit:.0e}" if acc >= fit and not fin else f"L={L0} acc {acc:.2f}"))
    wide = init.loc[(init.depth == L_max) & (init.c == c) & (init.arch == "res_gcn")].sort_values("hidden")
    readings.append(reading("wider network", f"c = {c:g}, L = {L_max}, widths {list(wide.hidden)} at initialisation", None,
                            "; ".join(f"d={r.hidden}: largest logit {r.max_logit:.2g}" for r in wide.itertuples()),
                            f"logit ≥ {wide.max_logit.min():.0e}" if len(wide) else ""))
    metrics = {f"train_acc_L{L}_c{c:g}": a for L, a in lit.items()}
    metrics[f"train_acc_L{L0}_c{c:g}_{long_epochs}ep"] = long_acc
    metrics[f"log10_max_logit_L{L_max}_c{c:g}"] = math.log10(literal["max_logit"])
    if soft is not None and len(soft) and soft_init is not None:
        r, accs = form_reading(SOFT, "W <- W/max(1, ||W||_F/c) instead of c W/||W||_F", soft, soft_init, criterion,
                               dataset)
        readings.append(replace(r, measured=r.measured + _coincide_note(soft.loc[soft.c == c])))
        metrics.update({f"train_acc_L{L}_c{c:g}_soft": a for L, a in accs.items()})
    if authors is not None and len(authors) and authors_init is not None:
        r, accs = form_reading(AUTHORS, AUTHORS_SETTING, authors, authors_init, criterion, authors_dataset or dataset)
        readings.append(replace(r, measured=r.measured + f" (early stopping ended the runs at epochs "
                                f"{_epochs(authors.loc[authors.c == c])})"))
        metrics.update({f"train_acc_L{L}_c{c:g}_authors": a for L, a in accs.items()})
        metrics[f"log10_max_logit_L{L_max}_c{c:g}_authors"] = math.log10(float(authors_init["max_logit"]))
    verdict = verdict_of(verdict, list(lit.values()))
    return Verdict("C10b", "With c = 4 it does so at 64/128/512 layers (Cora, CiteSeer, Chameleon, Squirrel).",
                   measured + flip_note(verdict, readings), criterion.text, verdict, key=key, numbers=list(lit.values()),
                   readings=readings, metrics=metrics)


def form_reading(name: str, setting: str, runs: pd.DataFrame, init_row, criterion: C10bCriterion, dataset: str):
    """C10b in one of the authors' forms: the residual GCN with c = ``criterion.c`` trained at the depths of ``runs``
    (mean training accuracy per depth, diverged runs as 0) and ``init_row`` (max_logit, float32_ok) at
    ``criterion.overflow_depth`` layers at initialisation (trained too when ``runs`` has that depth).  The headline's
    rule, every depth fits and the deepest forward pass is finite in float32: reproduced, some: partly, none: not;
    where the deepest network is only examined at initialisation, at best *partly reproduced* (as for the
    residual forms).  Returns (the :class:`Reading`, {depth: mean training accuracy})."""
    c, fit, L_max = criterion.c, criterion.fit, criterion.overflow_depth
    sel = runs.loc[(runs.arch == "res_gcn") & (runs.dataset == dataset) & (runs.c == c)]
    accs = {int(L): float(g.train_acc.fillna(0).mean()) for L, g in sel.groupby("depth")}
    n = {int(L): len(g) for L, g in sel.groupby("depth")}
    finite = bool(init_row["float32_ok"])
    parts = [a >= fit for L, a in accs.items()]
    if L_max not in accs:
        parts.append(finite)
    verdict = from_parts(*parts) if parts else None
    if verdict == REPRODUCED and L_max not in accs:
        verdict = PARTLY
    if any(not math.isfinite(a) for a in accs.values()):
        verdict = None
    fails = {L: a for L, a in accs.items() if a < fit}
    logit = float(init_row["max_logit"])
    key = (f"L={min(fails, key=fails.get)} acc {min(fails.values()):.2f}" if fails
           else f"L{L_max} logit {logit:.0e}" if not finite else f"acc ≥ {min(accs.values()):.2f}" if accs else "")
    measured = (", ".join(f"L={L}: train acc {a:.2f} ({n[L]} run{'s' if n[L] > 1 else ''})" for L, a in accs.items())
                + f"; L={L_max} at init: largest logit {logit:.2g}, {'finite' if finite else 'overflows'} in float32")
    return reading(name, f"c = {c:g}; {setting}; trained at L = {', '.join(map(str, accs)) or 'none'}", verdict,
                   measured, key), accs

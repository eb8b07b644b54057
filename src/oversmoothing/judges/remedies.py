"""Judges of chapter 08: C12 (plain GCN accuracy against depth, with its P = I control).

C12 (the background note the book follows): *a plain GCN on Cora works with 2 layers, degrades with 8 and is
near chance with 64.*  With acc(L) the test accuracy (at the epoch of best validation accuracy) of the plain
GCN of depth L, averaged over the runs, and chance the majority-class rate of the test set, the claim is three
tests at the shallow, middle and deepest depth L_lo < L_mid < L_hi (:class:`C12Criterion`):

    works         acc(L_lo)  >= a_works
    degrades      acc(L_mid) <= acc(L_lo) - delta
    near chance   acc(L_hi)  <= chance + epsilon

all three: reproduced; one or two: partly reproduced; none: not reproduced (:func:`oversmoothing.judges.from_parts`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..report import verdict_of
from . import NOT_REPRODUCED, REPRODUCED, Verdict, count_agreeing, from_parts, reading

__all__ = ["C12_CLAIM", "C12Criterion", "c12_tests", "is_near_chance", "judge_c12"]

C12_CLAIM = "Plain GCN on Cora: 2 layers work, 8 degrade, 64 near chance (background note)."


@dataclass(frozen=True)
class C12Criterion:
    """C12's thresholds, fixed before measuring, and the depths they speak about.

    ``depths``: the plain GCN's depths; L_lo = depths[0], L_mid = depths[len // 2], L_hi = depths[-1] (the
    claim's 2, 8 and 64).  ``works`` = a_works (the 2-layer GCN's usual ~0.81 on Cora minus a margin),
    ``degrade`` = delta, ``near_chance`` = epsilon (see the module docstring)."""

    depths: tuple = (2, 8, 64)
    works: float = 0.75
    degrade: float = 0.05
    near_chance: float = 0.10

    def __post_init__(self):
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        if not self.depths:
            raise ValueError("C12Criterion needs at least one depth")

    @property
    def lo(self) -> int:
        return self.depths[0]

    @property
    def mid(self) -> int:
        return self.depths[len(self.depths) // 2]

    @property
    def hi(self) -> int:
        return self.depths[-1]

    @property
    def text(self) -> str:
        return (f"acc({self.lo}) >= {self.works:.2f}, acc({self.mid}) <= acc({self.lo}) - {self.degrade:.2f}, "
                f"acc({self.hi}) <= chance + {self.near_chance:.2f} (all three: reproduced; some: partly)")


def is_near_chance(acc: float, chance: float, criterion: C12Criterion) -> bool:
    """The third test alone: acc <= chance + epsilon (also the P = I control's test)."""
    return bool(acc <= chance + criterion.near_chance)


def c12_tests(acc, chance: float, criterion: C12Criterion) -> tuple[bool, bool, bool]:
    """(works, degrades, near chance) on accuracies ``acc`` indexed by depth (a mapping or a Series)."""
    lo, mid, hi = acc[criterion.lo], acc[criterion.mid], acc[criterion.hi]
    return bool(lo >= criterion.works), bool(mid <= lo - criterion.degrade), is_near_chance(hi, chance, criterion)


def _verdict(acc, chance: float, criterion: C12Criterion, runs=()) -> str:
    """The three tests combined by :func:`~oversmoothing.judges.from_parts`; "not judged: non-finite" if one
    of the accuracies ``acc`` is, or one of the single ``runs`` accuracies they average."""
    return verdict_of(from_parts(*c12_tests(acc, chance, criterion)), [acc[d] for d in criterion.depths] + list(runs))


def _mean(table: pd.DataFrame, column: str, depths) -> tuple[pd.Series, list]:
    """The mean of ``column`` over the runs at each depth, and the runs' own values at ``depths`` (the mean
    skips a NaN run; the verdict must not: it rests on every run)."""
    return table.groupby("depth")[column].mean(), table.loc[table["depth"].isin(depths), column].tolist()


def _key(acc, criterion: C12Criterion) -> str:
    return "→".join(f"{acc[d]:.2f}" for d in (criterion.lo, criterion.mid, criterion.hi))


def judge_c12(runs: pd.DataFrame, chance: float, criterion: C12Criterion = C12Criterion(), *,
              hidden: int, dropout: float, epochs: int, control: pd.DataFrame | None = None,
              short_epochs: int | None = None) -> Verdict:
    """Claim C12 on the plain GCN's runs (a :func:`oversmoothing.experiments.remedies.depth_sweep` summary:
    one row per run with columns depth, seed, test_acc, and ``test_acc_<short_epochs>ep``).

    The verdict is the three tests on the **mean** accuracy over the runs at each depth of
    ``criterion.depths``; the same tests on each seed alone give the per-seed verdicts, and the measured text
    says how many of them equal the verdict of the mean (:func:`oversmoothing.judges.count_agreeing`; the seeds
    are not combined: the headline stays the verdict of the mean).  ``hidden``,
    ``dropout``, ``epochs`` describe the runs in the measured text.  Readings:

    * ``short_epochs`` = b: the same tests on the same runs' best-validation epoch among the first b epochs;
    * ``control`` (the runs of the plain GCN's P = I twin): "L_hi near chance" as an effect of the graph:
      reproduced iff the GCN passes the near-chance test at L_hi and the MLP twin at L_hi does NOT (absent if
      the control has no run at L_hi).

    Numbers: the mean accuracies and every run's own (and the twin's); an inf/NaN one makes the verdict (of the
    claim, or of the reading it enters) "not judged: non-finite".
    Metrics: ``test_acc_L<d>`` (and ``_<b>ep``) per depth, ``test_acc_mlp_L<L_hi>``, ``chance``,
    ``c12_seeds_agreeing``."""
    depths, hi = criterion.depths, criterion.hi
    missing = sorted(set(depths) - set(runs["depth"]))
    if missing:
        raise ValueError(f"C12: no plain-GCN run at depth(s) {missing}")
    mean, each = _mean(runs, "test_acc", depths)
    ok = c12_tests(mean, chance, criterion)
    numbers = [mean[d] for d in depths] + each
    seeds = list(dict.fromkeys(runs["seed"]))
    per_seed = [_verdict(runs[runs["seed"] == s].set_index("depth")["test_acc"], chance, criterion) for s in seeds]
    agree, n = count_agreeing(per_seed, verdict_of(from_parts(*ok), numbers))
    readings, metrics = [], {}
    if short_epochs is not None:
        short, short_each = _mean(runs, f"test_acc_{short_epochs}ep", depths)
        readings.append(reading(f"{short_epochs} epochs",
                                f"the same runs, best validation epoch among the first {short_epochs}",
                                _verdict(short, chance, criterion, short_each),
                                ", ".join(f"L={d}: {short[d]:.3f}" for d in depths), _key(short, criterion)))
    if control is not None and hi in set(control["depth"]):
        mlp_each = control.loc[control["depth"] == hi, "test_acc"]
        mlp = float(mlp_each.mean())
        mlp_near = is_near_chance(mlp, chance, criterion)
        numbers += [mlp, *mlp_each]
        gcn_hi = [mean[hi], *runs.loc[runs["depth"] == hi, "test_acc"]]
        readings.append(reading(
            "P = I control",
            f"'{hi} near chance' as an effect of the graph: the MLP twin at L = {hi} must NOT be near chance "
            f"(same test, acc <= chance + {criterion.near_chance:.2f})",
            verdict_of(REPRODUCED if ok[2] and not mlp_near else NOT_REPRODUCED, [*gcn_hi, mlp, *mlp_each]),
            f"GCN {mean[hi]:.3f}, MLP twin {mlp:.3f} (mean of {control['seed'].nunique()}), chance {chance:.3f}",
            f"MLP {mlp:.2f}{'≈' if mlp_near else '>'}chance"))
        metrics[f"test_acc_mlp_L{hi}"] = mlp
    spread = {d: runs.loc[runs["depth"] == d, "test_acc"] for d in depths}
    measured = (f"mean test accuracy over {n} runs, hidden {hidden}, dropout {dropout:g}, {epochs} epochs: "
                + ", ".join(f"L={d}: {mean[d]:.3f} ({spread[d].min():.3f}-{spread[d].max():.3f})" for d in depths)
                + f"; chance = {chance:.3f}; per seed: {agree} of {n} seeds give the same verdict "
                  f"({', '.join(per_seed)})")
    for d in depths:
        metrics[f"test_acc_L{d}"] = float(mean[d])
        if short_epochs is not None:
            metrics[f"test_acc_L{d}_{short_epochs}ep"] = float(short[d])
    metrics.update(chance=float(chance), c12_seeds_agreeing=agree)
    return Verdict("C12", C12_CLAIM, measured, criterion.text, from_parts(*ok), key=_key(mean, criterion),
                   numbers=numbers, readings=readings, metrics=metrics)

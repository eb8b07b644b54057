"""The claims room: every verdict of the book is decided here, by tested library code.

One judge per claim (``judge_c1`` ... ``judge_c13``), grouped by topic:

=====================================  =====================================================
:mod:`~oversmoothing.judges.forward`     C1 (E(X(k)) ~ (s lambda)^k), C13 (the spectral gap sets the speed)
:mod:`~oversmoothing.judges.backward`    C2 (backward oversmoothing), C3 (the middle-layer peak)
:mod:`~oversmoothing.judges.traps`       C4-C7 (stationary traps, Proposition 2, Corollary 2, the weight scale)
:mod:`~oversmoothing.judges.gradients`   C8, C9 (gradient oversmoothing and expansion), C11 (the predictor)
:mod:`~oversmoothing.judges.lipschitz`   C10a, C10b (Lipschitz normalisation)
:mod:`~oversmoothing.judges.remedies`    C12 (plain GCN accuracy against depth)
=====================================  =====================================================

A judge takes the chapter's measured tables and a *criterion* (a small frozen dataclass of the thresholds,
fixed before measuring, whose ``text`` is shown beside the verdict) and returns a :class:`Verdict`: the
verdict, the measured text, the key number of the report's matrix, the named metrics, the readings, and the
numbers the verdict rests on (one of them inf or NaN makes it "not judged: non-finite").  A chapter's claims
cell only calls the judges and records their verdicts (:meth:`oversmoothing.report.ClaimsTable.record`).

Two rules are shared by every judge:

* :func:`seeds_agree`, the one rule for combining seeds (or runs): the common verdict when all agree,
  otherwise "partly reproduced" if at least one reproduced (fully or partly), else "not reproduced"; any
  other verdict (not judged, non-finite) wins outright.  It says "k/n seeds" beside the verdict.
* :func:`not_judged`: a claim outside the setting it speaks about (e.g. Theorem 3 where s lambda >= 1) is
  "not judged", with the reason in the measured text.

Whether a chapter judges at all (``judge_claims``; the smoke profile's sizes are too small) is decided once,
by :class:`~oversmoothing.report.ClaimsTable`: the judges always run, so the smoke build exercises them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..report import NON_FINITE, VERDICTS, Reading, verdict_of

__all__ = ["Verdict", "Agreement", "seeds_agree", "count_agreeing", "not_judged", "from_parts", "reading",
           "REPRODUCED", "PARTLY", "NOT_REPRODUCED", "NOT_JUDGED", "NON_FINITE", "VERDICTS"]

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_JUDGED = "reproduced", "partly reproduced", "not reproduced", "not judged"
_JUDGED = (NOT_REPRODUCED, PARTLY, REPRODUCED)


@dataclass
class Verdict:
    """One claim judged: what :meth:`oversmoothing.report.ClaimsTable.record` writes into the claims table."""

    id: str                  # C1..C13 (DESIGN.md), Q1..Q5
    claim: str               # the paper's claim, in its words
    measured: str            # the measured figure, with numbers
    criterion: str           # what counts as reproduced, fixed before measuring
    verdict: str | bool | None   # one of VERDICTS (True/False/None: reproduced/not reproduced/not judged)
    key: str = ""            # the one short number the report's verdict matrix shows
    numbers: object = None   # the measurements the verdict rests on (a non-finite one: "not judged: non-finite")
    readings: list = field(default_factory=list)   # Reading objects (or dicts) under other readings
    metrics: dict = field(default_factory=dict)    # named key numbers of the run (sweeps gather them)

    def __post_init__(self):
        self.verdict = verdict_of(self.verdict, self.numbers)
        self.readings = [r if isinstance(r, Reading) else Reading(**r) for r in self.readings]


def reading(name: str, setting: str, verdict, measured: str, key: str = "") -> Reading:
    """The claim judged under one other reading (``verdict`` True/False/None or a verdict string)."""
    return Reading(name, setting, verdict_of(verdict), measured, key)


@dataclass(frozen=True)
class Agreement:
    """What :func:`seeds_agree` decided: the combined verdict, how many of the n seeds gave it, and the detail."""

    verdict: str
    k: int
    n: int
    detail: str

    def __iter__(self):  # verdict, detail = seeds_agree(...)
        return iter((self.verdict, self.detail))


def seeds_agree(verdicts) -> Agreement:
    """The one rule for combining the verdicts of several seeds (or runs, or graphs).

    * every seed gives the same verdict: that verdict, detail "n/n seeds";
    * some seed is not judged (or non-finite): that verdict, the first such one (nothing can be claimed of
      a set of seeds one of which could not be judged);
    * otherwise "partly reproduced" if at least one seed reproduced fully or partly, else "not reproduced";
      detail: the count of each verdict, e.g. "reproduced on 2/3 seeds, partly reproduced on 1/3".

    ``k`` is the number of seeds whose own verdict equals the combined one (0 when mixed and none equals it)."""
    v = [verdict_of(x) for x in verdicts]
    if not v:
        return Agreement(NOT_JUDGED, 0, 0, "0 seeds")
    n = len(v)
    if all(x == v[0] for x in v):
        return Agreement(v[0], n, n, f"{n}/{n} seeds")
    odd = [x for x in v if x not in _JUDGED]
    counts = {x: v.count(x) for x in dict.fromkeys(v)}
    detail = ", ".join(f"{x} on {c}/{n}" + (" seeds" if i == 0 else "") for i, (x, c) in enumerate(counts.items()))
    if odd:
        return Agreement(odd[0], v.count(odd[0]), n, detail)
    head = PARTLY if any(x in (REPRODUCED, PARTLY) for x in v) else NOT_REPRODUCED
    return Agreement(head, v.count(head), n, detail)


def count_agreeing(verdicts, verdict: str) -> tuple[int, int]:
    """(how many of ``verdicts`` equal ``verdict``, how many there are): "k of n seeds give the same verdict"."""
    v = [verdict_of(x) for x in verdicts]
    return sum(x == verdict_of(verdict) for x in v), len(v)


def from_parts(*parts: bool) -> str:
    """A claim of several parts: all hold -> reproduced, some -> partly reproduced, none -> not reproduced."""
    return REPRODUCED if all(parts) else PARTLY if any(parts) else NOT_REPRODUCED


def not_judged(verdict, inside: bool):
    """``verdict`` where the claim's setting holds (``inside``), else None ("not judged": e.g. Theorem 3's
    s lambda < 1 does not hold, so nothing it says can be tested there)."""
    return verdict if inside else None

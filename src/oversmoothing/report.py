"""What every chapter ends with: its claims table (shown and written as JSON) and its provenance.

The runner sets ``OVERSMOOTHING_CLAIMS`` to the path of the JSON file it expects next to the
executed notebook (and ``OVERSMOOTHING_PROFILE``); run by hand, a chapter writes
``<chapter>.claims.json`` in the working directory.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

__all__ = ["KEY_WIDTH", "CLAIM_VERDICTS", "QUESTION_VERDICTS", "Claim", "ClaimsTable", "Provenance", "Reading", "VERDICTS", "NON_FINITE", "md_cell", "verdict_of"]

NON_FINITE = "not judged: non-finite"
#: verdicts on a paper's claim (C1-C13)
CLAIM_VERDICTS = ("reproduced", "not reproduced", "partly reproduced")
#: answers to an open question beyond the papers (Q1-Q5, chapter 09): a statement of ours, not the papers'
QUESTION_VERDICTS = ("holds", "does not hold", "partly holds")
VERDICTS = CLAIM_VERDICTS + QUESTION_VERDICTS + ("not judged", NON_FINITE)
#: the longest key number a claim or reading may carry (a cell of the report's verdict matrix)
KEY_WIDTH = 16


def short_key(key) -> str:
    """A claim's key number as stored: a string, stripped, at most :data:`KEY_WIDTH` characters. A longer
    key is truncated (its last kept character replaced by "…") rather than refused, so that a chapter whose
    numbers happen to format long still finishes and saves its verdicts."""
    key = " ".join(str(key or "").split())
    return key if len(key) <= KEY_WIDTH else key[: KEY_WIDTH - 1] + "…"


def _finite(numbers) -> bool:
    """True if every number in ``numbers`` (scalars, or nested lists/arrays of them) is finite."""
    import numpy as np

    if numbers is None:
        return True
    try:
        a = np.asarray(numbers, dtype=float)
    except (TypeError, ValueError):
        return all(_finite(x) for x in numbers)
    return bool(np.isfinite(a).all())


def verdict_of(verdict: str | bool | None, numbers=None) -> str:
    """The verdict string: True/False -> reproduced/not reproduced, None -> not judged; and
    :data:`NON_FINITE` whenever one of the ``numbers`` the verdict rests on is inf or NaN."""
    if not _finite(numbers):
        return NON_FINITE
    if isinstance(verdict, bool):
        return "reproduced" if verdict else "not reproduced"
    if verdict is None:
        return "not judged"
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return verdict


def glue(name: str, value):
    """Bind a number of this run to the chapter's prose: a markdown cell writes ``{glue:text}`name:.2f```
    and the book shows the value computed when the chapter was executed (myst-nb's ``glue``), so the text
    follows ``-p`` and the profiles.  Without myst-nb (a notebook opened elsewhere) nothing is recorded.
    Returns ``value``; numpy/torch scalars are stored as Python numbers."""
    value = value.item() if hasattr(value, "item") else value
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value, display=False)
    return value


def md_cell(v) -> str:
    """Text for a Markdown table cell: no newlines, ``|`` escaped, ``*`` escaped outside ``$math$``
    (``s*lambda ... r*s`` would otherwise turn into italics)."""
    parts = str(v).replace("\n", " ").split("$")
    parts = [p.replace("*", "\\*") if i % 2 == 0 else p for i, p in enumerate(parts)]
    return "$".join(parts).replace("|", "\\|").strip()


@dataclass
class Reading:
    """The claim judged under one reasonable reading of what the paper leaves open."""

    name: str        # short name, the same across claims where it means the same (e.g. "uncentred features")
    setting: str     # what changes under this reading
    verdict: str     # one of VERDICTS
    measured: str    # the numbers under this reading
    key: str = ""    # the one short number that best states the result (<= KEY_WIDTH characters; longer is cut)

    def __post_init__(self):
        self.verdict = verdict_of(self.verdict)
        self.key = short_key(self.key)


@dataclass
class Claim:
    id: str          # C1..C13 (DESIGN.md)
    claim: str       # the paper's claim, in its words
    measured: str    # the measured figure, with numbers
    criterion: str   # what would count as reproduced, fixed before looking
    verdict: str     # one of VERDICTS
    readings: list[Reading] = field(default_factory=list)  # the headline reading first is not repeated here
    key: str = ""    # the one short number that best states the result (<= KEY_WIDTH characters; longer is cut)

    def __post_init__(self):
        self.key = short_key(self.key)
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass
class Provenance:
    """Seed, device, versions and wall time of one chapter run."""

    seed: int
    device: str
    parameters: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def versions(self) -> dict:
        import numpy
        import torch
        import torch_geometric

        from . import __version__

        return {"python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "torch_geometric": torch_geometric.__version__, "numpy": numpy.__version__,
                "oversmoothing": __version__}

    @staticmethod
    def executor() -> str:
        """Where the chapter's training grids ran: "local", "dask: N workers" or "dask: <scheduler address>"."""
        if os.environ.get("OVERSMOOTHING_AUTO_WORKERS"):
            return f"dask: {os.environ['OVERSMOOTHING_AUTO_WORKERS']} local workers (the build's free cores)"
        if os.environ.get("OVERSMOOTHING_SCHEDULER"):
            return f"dask: {os.environ['OVERSMOOTHING_SCHEDULER']}"
        workers = os.environ.get("OVERSMOOTHING_WORKERS", "")
        return f"dask: {workers} workers" if workers.isdigit() and int(workers) > 1 else "local"

    def as_dict(self) -> dict:
        return {"seed": self.seed, "device": str(self.device), "profile": os.environ.get("OVERSMOOTHING_PROFILE", "manual"),
                "wall_time_s": round(time.perf_counter() - self.started, 2), "executor": self.executor(),
                **self.versions(), "parameters": self.parameters}

    def show(self) -> None:
        d = self.as_dict()
        print(" | ".join(f"{k}: {v}" for k, v in d.items() if k != "parameters"))


class ClaimsTable:
    """Collects the chapter's verdicts and key numbers; ``show()`` renders them, ``save()`` writes the JSON.

    JSON layout: ``{chapter, claims: [{id, claim, measured, criterion, verdict, readings: [{name, setting,
    verdict, measured, key}], key}], metrics: {name: number}, provenance: {...}}``; ``key`` is the one short
    number the report's verdict matrix shows ("" where none was given: the report then guesses one from
    ``measured``).
    """

    def __init__(self, chapter: str, provenance: Provenance | None = None, judge: bool = True):
        self.chapter, self.provenance, self.claims, self.metrics = chapter, provenance, [], {}
        self.judge = bool(judge)  # False (the chapter's judge_claims): every verdict is recorded as "not judged"

    def record(self, v) -> Claim:
        """Record a judge's :class:`~oversmoothing.judges.Verdict` (claim, measured, criterion, verdict, key,
        readings) and its metrics.  When this table does not judge (``judge=False``) the verdict and every
        reading's verdict are "not judged" (still "not judged: non-finite" where a number it rests on is)."""
        readings = v.readings if self.judge else [replace(r, verdict="not judged") for r in v.readings]
        c = self.add(v.id, v.claim, v.measured, v.criterion, v.verdict if self.judge else None, numbers=v.numbers,
                     readings=readings, key=v.key)
        for name, value in v.metrics.items():
            self.metric(name, value)
        return c

    def add(self, id: str, claim: str, measured: str, criterion: str, verdict: str | bool | None,
            numbers=None, readings: list[Reading | dict] | None = None, key: str = "") -> Claim:
        """Record one claim. ``numbers``: the measurements the verdict rests on; if any is inf or NaN the
        verdict is :data:`NON_FINITE` whatever was passed. ``readings``: the verdict under other readings
        (dicts may carry a ``key`` too). ``key``: the one short number that best states the result, for the
        report's verdict matrix (at most :data:`KEY_WIDTH` characters; a longer one is truncated with "…")."""
        c = Claim(id, claim, measured, criterion, verdict_of(verdict, numbers),
                  [r if isinstance(r, Reading) else Reading(**r) for r in (readings or [])], key=key)
        self.claims.append(c)
        return c

    def metric(self, name: str, value) -> float:
        """A named key number of this run (sweeps gather metrics as columns); non-finite values are kept as NaN."""
        v = float(value)
        self.metrics[name] = v if math.isfinite(v) else float("nan")
        return v

    def to_markdown(self) -> str:
        head = "| claim | paper says | measured | criterion | verdict |\n|---|---|---|---|---|\n"
        out = head + "".join(f"| {c.id} | {md_cell(c.claim)} | {md_cell(c.measured)} | {md_cell(c.criterion)} "
                             f"| **{c.verdict}** |\n" for c in self.claims)
        rd = [(c, r) for c in self.claims for r in c.readings]
        if rd:
            out += ("\n**Other readings** of what the papers leave open (the verdict above is the headline reading):\n\n"
                    "| claim | reading | setting | measured | verdict |\n|---|---|---|---|---|\n")
            out += "".join(f"| {c.id} | {md_cell(r.name)} | {md_cell(r.setting)} | {md_cell(r.measured)} | **{r.verdict}** |\n"
                           for c, r in rd)
        return out

    def show(self):
        from IPython.display import Markdown, display

        display(Markdown(self.to_markdown()))

    def path(self) -> Path:
        return Path(os.environ.get("OVERSMOOTHING_CLAIMS", f"{self.chapter}.claims.json"))

    def as_dict(self) -> dict:
        return {"chapter": self.chapter, "claims": [asdict(c) for c in self.claims],
                "metrics": {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()},
                "provenance": self.provenance.as_dict() if self.provenance else {}}

    def save(self) -> Path:
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + f".{os.getpid()}.part")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str))
        os.replace(tmp, p)
        return p

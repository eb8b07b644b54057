"""What every chapter ends with: its claims table (shown and written as JSON) and its provenance.

The runner sets ``OVERSMOOTHING_CLAIMS`` to the path of the JSON file it expects next to the
executed notebook (and ``OVERSMOOTHING_PROFILE``); run by hand, a chapter writes
``<chapter>.claims.json`` in the working directory.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Claim", "ClaimsTable", "Provenance", "VERDICTS", "md_cell"]

VERDICTS = ("reproduced", "not reproduced", "partly reproduced", "not judged")


def md_cell(v) -> str:
    """Text for a Markdown table cell: no newlines, ``|`` escaped, ``*`` escaped outside ``$math$``
    (``s*lambda ... r*s`` would otherwise turn into italics)."""
    parts = str(v).replace("\n", " ").split("$")
    parts = [p.replace("*", "\\*") if i % 2 == 0 else p for i, p in enumerate(parts)]
    return "$".join(parts).replace("|", "\\|").strip()


@dataclass
class Claim:
    id: str          # C1..C13 (DESIGN.md)
    claim: str       # the paper's claim, in its words
    measured: str    # the measured figure, with numbers
    criterion: str   # what would count as reproduced, fixed before looking
    verdict: str     # one of VERDICTS

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass
class Provenance:
    """Seed, device, versions and wall time of one chapter run."""

    seed: int
    device: str
    started: float = field(default_factory=time.perf_counter)

    def versions(self) -> dict:
        import numpy
        import torch
        import torch_geometric

        from . import __version__

        return {"python": platform.python_version(), "torch": torch.__version__,
                "torch_geometric": torch_geometric.__version__, "numpy": numpy.__version__,
                "oversmoothing": __version__}

    def as_dict(self) -> dict:
        return {"seed": self.seed, "device": str(self.device), "profile": os.environ.get("OVERSMOOTHING_PROFILE", "manual"),
                "wall_time_s": round(time.perf_counter() - self.started, 2), **self.versions()}

    def show(self) -> None:
        d = self.as_dict()
        print(" | ".join(f"{k}: {v}" for k, v in d.items()))


class ClaimsTable:
    """Collects the chapter's verdicts; ``show()`` renders them, ``save()`` writes the JSON."""

    def __init__(self, chapter: str, provenance: Provenance | None = None):
        self.chapter, self.provenance, self.claims = chapter, provenance, []

    def add(self, id: str, claim: str, measured: str, criterion: str, verdict: str | bool | None) -> Claim:
        if isinstance(verdict, bool):
            verdict = "reproduced" if verdict else "not reproduced"
        elif verdict is None:
            verdict = "not judged"
        c = Claim(id, claim, measured, criterion, verdict)
        self.claims.append(c)
        return c

    def to_markdown(self) -> str:
        head = "| claim | paper says | measured | criterion | verdict |\n|---|---|---|---|---|\n"
        return head + "".join(f"| {c.id} | {md_cell(c.claim)} | {md_cell(c.measured)} | {md_cell(c.criterion)} "
                              f"| **{c.verdict}** |\n" for c in self.claims)

    def show(self):
        from IPython.display import Markdown, display

        display(Markdown(self.to_markdown()))

    def path(self) -> Path:
        return Path(os.environ.get("OVERSMOOTHING_CLAIMS", f"{self.chapter}.claims.json"))

    def save(self) -> Path:
        out = {"chapter": self.chapter, "claims": [asdict(c) for c in self.claims],
               "provenance": self.provenance.as_dict() if self.provenance else {}}
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".part")
        tmp.write_text(json.dumps(out, indent=2))
        os.replace(tmp, p)
        return p

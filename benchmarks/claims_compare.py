"""Two builds' claims JSON compared chapter by chapter: verdicts (headline and every reading) equal, and every
metric within ``ATOL + RTOL |reference|`` (two devices, thread counts or code versions round float32 differently).
Used by bench_build.py (old code vs new code) and bench_gpu.py (CPU vs CUDA)."""
from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["RTOL", "ATOL", "load", "compare", "verdicts"]

RTOL, ATOL = 0.05, 0.02


def load(folder: Path) -> dict:
    """{chapter stem: claims JSON} of the ``*.claims.json`` files in ``folder``."""
    return {p.name.split(".")[0]: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.claims.json"))}


def verdicts(claims: dict) -> list:
    """(claim id, verdict, [reading name, verdict] ...) of a chapter's claims JSON."""
    return [(c["id"], c["verdict"], [(r.get("name"), r["verdict"]) for r in c.get("readings", [])])
            for c in claims.get("claims", [])]


def compare(ref: dict, new: dict, rtol: float = RTOL, atol: float = ATOL) -> dict:
    """Per chapter of ``ref``: verdicts equal, the metrics outside the tolerance, the largest relative difference
    (``{"missing": True}`` for a chapter ``new`` lacks)."""
    out = {}
    for stem, a in ref.items():
        b = new.get(stem)
        if b is None:
            out[stem] = {"missing": True}
            continue
        bad, worst = [], 0.0
        for k, x in a.get("metrics", {}).items():
            y = b.get("metrics", {}).get(k)
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                if (x is None) != (y is None):
                    bad.append(k)
                continue
            worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
            if abs(x - y) > atol + rtol * abs(x):
                bad.append(k)
        va, vb = verdicts(a), verdicts(b)
        out[stem] = {"verdicts_equal": va == vb, "metrics_outside_tolerance": bad, "largest_relative_difference": worst,
                     "verdict_changes": [(x, y) for x, y in zip(va, vb) if x != y]}
    return out

"""Judges of chapter 01: C1 (forward oversmoothing like (s lambda)^k) and C13 (the spectral gap sets the speed)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree

__all__ = ["forward_verdict"]


def forward_verdict(s_lambda, rate, r2, *, escape: str = "some", r2_min: float = 0.9, control=None) -> dict:
    """C1's criterion on one network's fitted rates r (and fit R^2) of E(X(k)) at several s*lambda.

    decays  : for every s*lambda < 1 the decay is exponential (R^2 >= r2_min) and at least as fast as the bound,
              r <= s*lambda  (the paper: s lambda < 1 is sufficient for oversmoothing);
    escapes : s*lambda > 1 lets E(X(k)) escape (r >= 1) for SOME tested s*lambda (``escape="some"``: the paper
              says that then oversmoothing *may* not happen) or for EVERY one (``escape="every"``, a stricter
              reading).
    control : optional (rate, r2) of the same networks with P = I (the MLP) at the same s*lambda. If the MLP
              "decays" by the same test, the (s lambda)^k decay is not a graph effect and "reproduced" drops to
              "partly reproduced"; the result carries ``control_decays``.
    verdict : both -> "reproduced"; decays only -> "partly reproduced"; otherwise "not reproduced". With no
              s*lambda < 1 (or none > 1) tested, the missing part counts as not shown.
    """
    if escape not in ("some", "every"):
        raise ValueError(f"escape must be 'some' or 'every', got {escape!r}")
    sl, r, q = (np.asarray(a, dtype=float) for a in (s_lambda, rate, r2))
    below, above = sl < 1, sl > 1
    decays = bool(below.any() and ((q[below] >= r2_min) & (r[below] <= sl[below])).all())
    hit = r[above] >= 1
    escapes = bool(above.any() and (hit.any() if escape == "some" else hit.all()))
    verdict = ("reproduced" if escapes else "partly reproduced") if decays else "not reproduced"
    out = dict(decays=decays, escapes=escapes, verdict=verdict)
    if control is not None:
        c_rate, c_r2 = (np.asarray(a, dtype=float) for a in control)
        out["control_decays"] = bool(below.any() and ((c_r2[below] >= r2_min) & (c_rate[below] <= sl[below])).all())
        if out["control_decays"] and verdict == "reproduced":
            out["verdict"] = "partly reproduced"
    return out

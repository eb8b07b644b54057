"""Judges of chapters 02-03: C2 (backward oversmoothing) and C3 (the middle-layer peak, Theorem 2)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree

__all__ = ["valley_verdict"]


def valley_verdict(peak: pd.DataFrame, rates: pd.DataFrame | None = None, control: pd.DataFrame | None = None) -> dict:
    """C3's criterion on one seed's :func:`valley_table` rows (the judged depths): (i) ``peak``: the middle third
    is lowest at every depth (rows ``peak``); (ii) ``rates``: both end rates <= lambda s at every depth (rows
    ``rates``, default ``peak``, e.g. the table of another measure). Both: "reproduced"; one: "partly reproduced";
    neither: "not reproduced". ``control`` (the peak rows of the same networks with P = I): if the MLP shows the
    middle-layer peak too, it is not a GNN effect and "reproduced" drops to "partly reproduced"."""
    rates = peak if rates is None else rates
    ok_peak, ok_rates = bool(len(peak) and peak.middle_lowest.all()), bool(len(rates) and rates.rates_ok.all())
    verdict = "reproduced" if ok_peak and ok_rates else ("partly reproduced" if ok_peak or ok_rates else "not reproduced")
    out = dict(peak=ok_peak, rates=ok_rates, verdict=verdict)
    if control is not None:
        out["control_peak"] = bool(len(control) and control.middle_lowest.all())
        if out["control_peak"] and verdict == "reproduced":
            out["verdict"] = "partly reproduced"
    return out

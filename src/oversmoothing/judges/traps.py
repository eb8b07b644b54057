"""Judges of chapters 04-05: C4 (the deep GNN is trapped), C5 (Theorem 3, Proposition 2), C6 (Corollary 2), C7 (the weight scale)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED, Verdict, from_parts, reading, seeds_agree

from ..experiments.traps import TRAP_STATUSES

__all__ = ["count_status", "judge_depth_contrast", "judge_delay"]


def count_status(table: pd.DataFrame, model: str, statuses) -> tuple[int, int]:
    """(number of runs of ``model`` whose status is in ``statuses``, number of runs of ``model``)."""
    d = table.loc[table["model"] == model]
    statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    return int(d["status"].isin(statuses).sum()), len(d)


def judge_depth_contrast(table: pd.DataFrame, deep_gnn: str, shallow_gnn: str, deep_mlp: str,
                         few_epochs: int) -> tuple[str, str]:
    """Claim C4 on a :func:`run_table` (column ``model`` like "GNN L=40"): ``(verdict, counts)``.

    reproduced: EVERY deep-GNN run "trapped" by epoch ``few_epochs``, every shallow-GNN run "trained",
    every deep-MLP run "trained" or "not trapped" (the P = I control; "did not train" does not count);
    partly reproduced: all three hold in every run but some trap is later, or each holds in >= 2/3 of the runs;
    otherwise not reproduced."""
    t, n_t = count_status(table, deep_gnn, "trapped")
    s, n_s = count_status(table, shallow_gnn, "trained")
    m, n_m = count_status(table, deep_mlp, ("trained", "not trapped"))
    ep = table.loc[(table["model"] == deep_gnn) & (table["status"] == "trapped"), "status_epoch"]
    fast = int((ep <= few_epochs).sum())
    counts = (f"{deep_gnn} trapped {t}/{n_t} (by epoch {few_epochs}: {fast}/{n_t}); {shallow_gnn} trained {s}/{n_s}; "
              f"{deep_mlp} not trapped {m}/{n_m}")
    if min(n_t, n_s, n_m) == 0:
        return "not judged", counts
    if t == n_t and s == n_s and m == n_m:
        return ("reproduced" if fast == n_t else "partly reproduced"), counts
    if 3 * t >= 2 * n_t and 3 * s >= 2 * n_s and 3 * m >= 2 * n_m:
        return "partly reproduced", counts
    return "not reproduced", counts


def judge_delay(table: pd.DataFrame, s_col: str = "s") -> tuple[str, str, pd.DataFrame]:
    """Claim C7 on a :func:`run_table` with columns ``kind`` (GNN/MLP), ``s_col`` and the runs' statuses:
    does a larger initial spectral norm s delay or prevent the deep GNN's trap, *as a GNN effect*?

    Per s: the GNN's trap epoch is the median over its runs (a run that trained or is "not trapped" counts
    as never trapped, +inf; "did not train" runs are left out: an explosion is not an escape). An s
    *counts* only if every MLP run at that s (the P = I control) is "trained" or "not trapped" and some
    GNN run is left. Verdict:

    * "not reproduced" if the GNN's trap epoch is not delayed at all over the whole grid (non-decreasing
      in s and larger at the largest s than at the smallest), or if >= 2 s count and it is not delayed
      among them;
    * "reproduced" if >= 2 s count and it is delayed among them;
    * "not judged" if it is delayed over the grid but fewer than 2 s count (the MLP shows the same trap,
      so no GNN-specific comparison is left), or if fewer than 2 s have a GNN run that did train.

    Returns (verdict, text, per-s table)."""
    rows = []
    for s, d in table.groupby(s_col):
        gnn, mlp = d.loc[d["kind"] == "GNN"], d.loc[d["kind"] == "MLP"]
        ok = gnn.loc[gnn["status"] != "did not train"]
        ep = ok.apply(lambda r: r["status_epoch"] if r["status"] == "trapped" else np.inf, axis=1)
        rows.append({s_col: s, "gnn_trap_epoch": float(np.median(ep)) if len(ep) else np.nan,
                     "gnn": ", ".join(f"{st} {int((gnn.status == st).sum())}" for st in TRAP_STATUSES if (gnn.status == st).any()),
                     "mlp": ", ".join(f"{st} {int((mlp.status == st).sum())}" for st in TRAP_STATUSES if (mlp.status == st).any()),
                     "counts": bool(len(mlp) and mlp["status"].isin(("trained", "not trapped")).all() and len(ok))})
    per_s = pd.DataFrame(rows).sort_values(s_col)

    def delayed(v):
        v = v[~np.isnan(v)]
        return bool(len(v) >= 2 and all(b >= a for a, b in zip(v[:-1], v[1:])) and v[-1] > v[0])

    fmt = lambda v: "never" if np.isinf(v) else ("-" if np.isnan(v) else f"{v:g}")  # noqa: E731
    text = ("GNN trap epoch by s: " + ", ".join(f"{r[s_col]:g}: {fmt(r['gnn_trap_epoch'])}" for _, r in per_s.iterrows())
            + "; s where the same-depth MLP is not trapped: " + (", ".join(f"{v:g}" for v in per_s.loc[per_s["counts"], s_col]) or "none"))
    counted = per_s.loc[per_s["counts"], "gnn_trap_epoch"].to_numpy()
    if per_s["gnn_trap_epoch"].notna().sum() < 2:  # (almost) every GNN run exploded: nothing to compare
        verdict = "not judged"
    elif not delayed(per_s["gnn_trap_epoch"].to_numpy()):
        verdict = "not reproduced"
    elif len(counted) >= 2:
        verdict = "reproduced" if delayed(counted) else "not reproduced"
    else:
        verdict = "not judged"
    return verdict, text, per_s

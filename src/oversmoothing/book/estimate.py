"""``oversmoothing build --dry-run``: what a build would do and how long it would take, before it runs.

Every chapter the build would execute (not in the chapter cache) is executed once in a *dry* mode
(``$OVERSMOOTHING_ESTIMATE``): every training run trains at most 2 epochs, timed, and nothing enters the run
cache (:mod:`oversmoothing.training`, :mod:`oversmoothing.grid`); the training runs already in the run cache cost
nothing.  The estimate of a chapter is its dry wall time minus its dry training time, plus every training run's
timed epochs scaled to its planned epochs; with the workers a build starts (:mod:`oversmoothing.book.pool`) the
training part is divided by the workers times their measured efficiency (two workers on two cores: 0.63x the
time of one, so 0.79).  The executed dry notebooks are thrown away.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from .cache import chapter_key, environment_digests, executed_record
from .execute import _run_jobs
from .parameters import _check_device, _check_profile_chapters, resolve_parameters
from .pool import auto_workers
from .runs import _point_job
from .toc import chapters, find_root, load_profiles, profile_overrides, resolve_chapter

__all__ = ["dry_run", "summarise_log", "EFFICIENCY"]

#: the speed-up of N single-threaded workers is about N x EFFICIENCY (measured: 2 workers, 0.63x the time)
EFFICIENCY = 0.79


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def full_seconds(fit: dict) -> float:
    """One dry fit's time scaled to its planned budget of E epochs (E + 1 passes, the last one only recorded):
    the time outside the epochs, the first epoch as timed (it carries the warm-up), then each further epoch at the
    dry run's time for an epoch of its kind, recorded (traced: every ``record_every``-th and the last) or not."""
    secs, rec = fit.get("epoch_seconds"), fit.get("recorded")
    planned = fit["planned_epochs"]
    if not secs:  # a log without per-epoch times: every epoch at the mean
        return fit["seconds"] / max(1, fit["trained_epochs"]) * (planned + 1)
    every = max(1, int(fit.get("record_every") or 1))
    later_rec = [t for t, r in zip(secs[1:], rec[1:]) if r]
    plain = [t for t, r in zip(secs[1:], rec[1:]) if not r]
    t_rec = _mean(later_rec) if later_rec else secs[0]
    t_plain = _mean(plain) if plain else t_rec
    n_rec = planned // every + 1 + (planned % every != 0)  # epochs 0, every, 2 every, ... and the last
    outside = max(0.0, fit["seconds"] - sum(secs))
    return outside + secs[0] + (n_rec - 1) * t_rec + (planned + 1 - n_rec) * t_plain


def summarise_log(lines: list[dict]) -> dict:
    """From a dry chapter's log: training runs (and how many the run cache holds), planned epochs, the seconds the
    dry runs trained and the seconds their full budgets would take (:func:`full_seconds`); ``early_stopping_s`` is
    the part of it from runs with early stopping, counted at their full budget (an upper bound: where they stop is
    not known before they run)."""
    fits = [r for r in lines if r.get("kind") == "fit"]
    grids = [r for r in lines if r.get("kind") == "grid"]
    trained = sum(r["seconds"] for r in fits)
    full = [full_seconds(r) for r in fits]
    return {"runs": sum(g["runs"] for g in grids), "cached": sum(g["cached"] for g in grids),
            "fits": len(fits), "epochs": sum(r["planned_epochs"] for r in fits), "dry_training_s": trained,
            "training_s": sum(full),
            "early_stopping_s": sum(t for t, r in zip(full, fits) if r.get("patience") is not None)}


def dry_run(root=None, profile: str = "default", device: str | None = None, chapters_=None, progress: bool = True,
            staging=None, out=sys.stdout) -> list[dict]:
    """Estimate the build of ``profile`` chapter by chapter (printed as a table to ``out``); returns the rows."""
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    profiles = load_profiles(root)
    overrides = profile_overrides(root, profile, profiles)
    all_chs = chapters(root)
    _check_profile_chapters(profile, overrides, all_chs)
    chs = [resolve_chapter(root, c, all_chs) for c in chapters_] if chapters_ else all_chs
    env = environment_digests(root)
    site = (Path(staging) if staging else root / "_staging").resolve() / profile / "site"
    rows, jobs, tmp = [], [], Path(tempfile.mkdtemp(prefix="oversmoothing-dry-run-"))
    try:
        for ch in chs:
            params = resolve_parameters(ch, overrides.get(ch.stem, {}), device=device)
            record = executed_record(site / (ch.entry + ".ipynb"), site / (ch.entry + ".claims.json"))
            if record is not None and record.get("key") == chapter_key(ch, params, profile, env):
                rows.append({"chapter": ch.stem, "status": "cached", "estimate_s": 0.0})
                continue
            folder = tmp / ch.stem
            folder.mkdir()
            job = _point_job(root, ch, folder, params, profile, ch.stem, command="dry run")
            job["env"]["OVERSMOOTHING_ESTIMATE"] = str(folder / "estimate.jsonl")
            jobs.append((ch, job))
        workers = auto_workers([j for _, j in jobs], {}) or 1
        import os
        os.environ["OVERSMOOTHING_ESTIMATE"] = str(tmp / "runner.jsonl")   # no workers for the dry run itself
        try:
            results = _run_jobs([j for _, j in jobs], 1, f"dry run ({profile})", progress, {}) if jobs else []
        finally:
            os.environ.pop("OVERSMOOTHING_ESTIMATE", None)
        for (ch, job), res in zip(jobs, results):
            log = Path(job["env"]["OVERSMOOTHING_ESTIMATE"])
            lines = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
            s = summarise_log(lines)
            other = max(0.0, res["seconds"] - s["dry_training_s"])
            speedup = workers * EFFICIENCY if workers > 1 else 1
            est = other + s["training_s"] / speedup
            rows.append({"chapter": ch.stem, "status": "ok" if res["ok"] else f"dry run failed: {res.get('error', '?')}",
                         **s, "other_s": other, "estimate_s": est if res["ok"] else float("nan"),
                         "early_stopping_estimate_s": s["early_stopping_s"] / speedup, "workers": workers})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows.sort(key=lambda r: [c.stem for c in chs].index(r["chapter"]))
    _print(rows, profile, workers if jobs else 1, out)
    return rows


def _fmt_s(s: float) -> str:
    return "-" if s != s else (f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s")


def _print(rows: list[dict], profile: str, workers: int, out) -> None:
    print(f"dry run, profile {profile}: estimated wall time on this machine ({workers} training "
          f"worker{'s' if workers > 1 else ''})", file=out)
    print(f"  {'chapter':<28s} {'training runs':>14s} {'in run cache':>13s} {'epochs':>8s} {'estimate':>10s}", file=out)
    total = 0.0
    for r in rows:
        if r["status"] == "cached":
            print(f"  {r['chapter']:<28s} {'(chapter cached: not re-executed)':>47s} {_fmt_s(0.0):>10s}", file=out)
            continue
        total += r["estimate_s"] if r["estimate_s"] == r["estimate_s"] else 0.0
        note = "" if r["status"] == "ok" else f"   {r['status'][:80]}"
        if r["status"] == "ok" and r.get("early_stopping_estimate_s", 0) >= 1:
            note = f"   of which {_fmt_s(r['early_stopping_estimate_s'])}: runs with early stopping, at their full budget"
        print(f"  {r['chapter']:<28s} {r.get('runs', 0):>14d} {r.get('cached', 0):>13d} {r.get('epochs', 0):>8d} "
              f"{_fmt_s(r['estimate_s']):>10s}{note}", file=out)
    print(f"  {'total':<28s} {'':>37s} {_fmt_s(total):>10s}", file=out)
    if any(r.get("early_stopping_estimate_s", 0) >= 1 for r in rows if r["status"] == "ok"):
        print("  runs with early stopping are counted at their full budget (an upper bound: where they stop is not "
              "known before they run)", file=out)
    if profile == "paper":
        print("  the paper profile uses the papers' sizes and wants a GPU (make book PROFILE=paper DEVICE=cuda); the "
              "estimate above is for this machine's CPU", file=out)

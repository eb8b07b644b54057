"""Run one chapter with parameters; sweep a grid of parameters into one table."""
from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import re
import shutil
from pathlib import Path

from .errors import BookError, BuildFailed, Interrupted
from .execute import _failure_message, _run_jobs, _signals_deferred, _write_json
from .folders import FolderLock, new_folder
from .parameters import (_check_device, _check_jobs, _check_profile_chapters, parse_assignment, parse_parameters,
                         resolve_parameters, scale_out_env, split_values)
from .toc import Chapter, chapters, find_root, profile_overrides, resolve_chapter


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _point_job(root: Path, ch: Chapter, folder: Path, params: dict, profile: str, name: str,
               command: str = "run") -> dict:
    how = f"{command}, profile {profile}"
    tmp = folder / ".tmp"
    return {"name": name, "input": str(ch.path), "parameters": params, "how": how,
            "out_nb": str(folder / f"{ch.stem}.ipynb"), "out_json": str(folder / f"{ch.stem}.claims.json"),
            "tmp_nb": str(tmp / f"{ch.stem}.ipynb"), "result": str(tmp / f"{ch.stem}.result.json"),
            "failed_nb": str(folder / f"{ch.stem}.FAILED.ipynb"),
            "log": str(folder / f"{ch.stem}.kernel.log"),
            "cwd": str(folder),
            "env": {"OVERSMOOTHING_CLAIMS": str(tmp / f"{ch.stem}.claims.json"),
                    "OVERSMOOTHING_PROFILE": profile, "OVERSMOOTHING_PROGRESS": "0"}}


def _output_folder(root: Path, out, name: str) -> tuple[Path, bool]:
    """The folder of a run or sweep: ``out`` as given, else a new one under ``_runs`` (and whether it is new)."""
    if out:
        folder = Path(out).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return folder, False
    return new_folder(root / "_runs", f"{name}-{_stamp()}"), True


def _folder_lock(folder: Path) -> FolderLock:
    return FolderLock(folder / ".lock", f"the output folder {folder}", wait=False,
                      advice="use another --out folder")


def run_chapter(chapter: str, assignments: list[str] = (), root: str | Path | None = None,
                profile: str = "default", device: str | None = None, out: str | Path | None = None,
                progress: bool = True, workers: int | None = None, scheduler: str | None = None,
                tls: dict | None = None) -> Path:
    """One chapter with parameters; returns the folder holding the notebook and its claims JSON."""
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    scale = scale_out_env(workers, scheduler, tls)
    ch = resolve_chapter(root, chapter)
    profiles = profile_overrides(root, profile)
    _check_profile_chapters(profile, profiles, chapters(root))
    params = resolve_parameters(ch, profiles.get(ch.stem, {}), [parse_assignment(a) for a in assignments],
                                device=device)
    folder, fresh = _output_folder(root, out, ch.stem)
    try:
        with _folder_lock(folder):
            job = _point_job(root, ch, folder, params, profile, ch.stem)
            res = _run_jobs([job], 1, f"run {ch.stem}", progress, scale)[0]
            shutil.rmtree(folder / ".tmp", ignore_errors=True)
            _write_json(folder / "parameters.json", params)
    except Interrupted:
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)     # nothing half-written stays behind
        raise
    (folder / ".lock").unlink(missing_ok=True)
    if not res["ok"]:
        raise BuildFailed(_failure_message(ch.stem, ch.path, res))
    return folder


def sweep(chapter: str, grid: list[str], root: str | Path | None = None, profile: str = "default",
          device: str | None = None, jobs: int = 1, out: str | Path | None = None, progress: bool = True,
          resume: str | Path | None = None, plot: str | None = None, workers: int | None = None,
          scheduler: str | None = None, tls: dict | None = None):
    """Run the chapter at every point of the grid; gather one table. Returns (folder, DataFrame, failures).

    One row per point: the swept parameters, status, wall time, one column per metric the chapter recorded
    (``claims.metric``) and one ``verdict_<claim>`` column per claim (results.csv). With ``seed`` swept,
    summary.csv holds each metric's mean, sd and count over seeds per value of the other parameters;
    ``plot=METRIC`` draws it against the first other swept parameter (plot.png). ``resume=DIR`` re-uses a
    sweep folder: points that finished with the same parameters are read back, the others run.

    Interrupted: the points that finished are kept and the table is written (the others' status
    is "cancelled") before :class:`Interrupted` is raised."""
    import pandas as pd

    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    scale = scale_out_env(workers, scheduler, tls)
    _check_jobs(jobs)
    ch = resolve_chapter(root, chapter)
    profiles = profile_overrides(root, profile)
    _check_profile_chapters(profile, profiles, chapters(root))
    overrides = profiles.get(ch.stem, {})
    axes: dict[str, list[str]] = {}
    for a in grid:
        name, raw = parse_assignment(a)
        axes[name] = split_values(raw)
    if not axes:
        raise BookError("sweep needs at least one -p name=v1,v2,...")
    empty = [n for n, v in axes.items() if not v]
    if empty:
        raise BookError(f"sweep: -p {empty[0]}= has no values; give v1,v2,...")
    if plot is not None and not [n for n in axes if n != "seed"]:
        raise BookError(f"sweep --plot {plot}: sweep at least one parameter other than seed to plot against")
    if resume is not None:
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise BookError("sweep: give --resume DIR or --out DIR, not both")
        if not (Path(resume) / "results.csv").is_file():
            raise BookError(f"sweep --resume {resume}: not a sweep folder (no results.csv there)")
        out = resume
    info = parse_parameters(ch.path)
    points = []
    for combo in itertools.product(*axes.values()):
        assign = list(zip(axes, combo))
        params = resolve_parameters(ch, overrides, assign, device=device, params=info)
        points.append(({n: params[n] for n in axes}, params))
    folder, _ = _output_folder(root, out, f"sweep-{ch.stem}")
    jobs_ = []
    for i, (swept, params) in enumerate(points):
        tag = "_".join(f"{k}-{re.sub(r'[^A-Za-z0-9.+-]', '', str(v))}" for k, v in swept.items())
        jobs_.append(_point_job(root, ch, folder / f"{i:03d}_{tag}"[:120], params, profile, f"{i:03d} {tag}",
                                "sweep"))
    done = {j["name"]: r for j in jobs_ if resume is not None and (r := _finished_point(j)) is not None}
    interrupted = None
    with _folder_lock(folder):
        todo = [j for j in jobs_ if j["name"] not in done]
        try:
            results = _run_jobs(todo, jobs, f"sweep {ch.stem}", progress, scale)
        except Interrupted as e:
            interrupted, results = e, e.results
        got = {**done, **{r["name"]: r for r in results}}
        results = [got.get(j["name"], {"name": j["name"], "ok": False, "seconds": None, "cancelled": True,
                                       "error": "cancelled (interrupted)"}) for j in jobs_]
        rows = []
        for (swept, _), job, res in zip(points, jobs_, results):
            shutil.rmtree(Path(job["cwd"]) / ".tmp", ignore_errors=True)
            if res["ok"] and job["name"] not in done:
                _write_json(Path(job["cwd"]) / "parameters.json", job["parameters"])
            rows.append(_sweep_row(swept, job, res))
        df = pd.DataFrame(rows)
        with _signals_deferred():
            _write_sweep_tables(folder, df, list(axes), plot)
    (folder / ".lock").unlink(missing_ok=True)
    if interrupted is not None:
        raise Interrupted(f"{interrupted}; the table of the finished points: {folder / 'results.csv'}",
                          interrupted.results)
    failed = [r for r in results if not r["ok"]]
    return folder, df, [_failure_message(ch.stem, ch.path, r) for r in failed]


def _finished_point(job: dict) -> dict | None:
    """A sweep point that finished before with the same parameters (its result, read back), else None."""
    folder = Path(job["cwd"])
    try:
        same = json.loads((folder / "parameters.json").read_text()) == json.loads(json.dumps(job["parameters"]))
    except (OSError, ValueError):
        return None
    if not (same and Path(job["out_nb"]).is_file()):
        return None
    seconds = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        seconds = json.loads(Path(job["out_nb"]).read_text())["metadata"]["papermill"]["duration"]
    return {"name": job["name"], "ok": True, "seconds": seconds, "resumed": True}


def _sweep_row(swept: dict, job: dict, res: dict) -> dict:
    """One point of a sweep as one row: swept parameters, status, wall time, metrics, verdict per claim."""
    status = "ok" if res["ok"] else ("cancelled" if res.get("cancelled") else "failed")
    row = {**{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in swept.items()},
           "status": status, "resumed": bool(res.get("resumed")), "wall_time_s": res["seconds"]}
    record = {}
    if res["ok"] and Path(job["out_json"]).is_file():
        record = json.loads(Path(job["out_json"]).read_text())
    for name, value in (record.get("metrics") or {}).items():
        row[name] = float("nan") if value is None else value
    for c in record.get("claims", []):
        row[f"verdict_{c.get('id', '')}"] = c.get("verdict", "")
    row["notebook"] = job["out_nb"] if res["ok"] else res.get("failed_nb", "")
    row["error"] = "" if res["ok"] else res.get("error", "")
    return row


def _write_sweep_tables(folder: Path, df, axes: list[str], plot: str | None) -> None:
    """results.csv (+ parquet if available); with seed swept, summary.csv (mean, sd, n of every metric over
    seeds); with ``plot``, plot.png of that metric's mean +- sd against the first other swept parameter."""
    df.to_csv(folder / "results.csv", index=False)
    try:
        df.to_parquet(folder / "results.parquet", index=False)
    except (ImportError, ValueError):
        pass   # parquet needs pyarrow/fastparquet; the CSV is always written
    skip = set(axes) | {"status", "resumed", "wall_time_s", "notebook", "error"}
    metrics = [c for c in df.columns if c not in skip and not c.startswith("verdict_")
               and df[c].dtype.kind in "fiu"]
    if plot is not None and plot not in metrics:
        raise BookError(f"sweep --plot {plot}: no such metric; the chapter recorded: {', '.join(metrics) or 'none'}")
    ok = df[df["status"] == "ok"]
    others = [a for a in axes if a != "seed"]
    if "seed" in axes and metrics and len(ok):
        summary = (ok.groupby(others, dropna=False)[metrics] if others else ok[metrics].groupby(lambda _: 0))
        summary = summary.agg(["mean", "std", "count"])
        summary.columns = [f"{m}_{stat.replace('std', 'sd').replace('count', 'n')}" for m, stat in summary.columns]
        summary.reset_index(drop=not others).to_csv(folder / "summary.csv", index=False)
    if plot is not None:
        from .. import figures

        x = others[0]
        stats = ok.groupby(x)[plot].agg(["mean", "std", "count"]).reset_index()
        figures.use_style()
        fig, ax = figures.subplots(width=5.0, height=3.5)
        ax.errorbar(stats[x], stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=3)
        ax.set_xlabel(figures.label_for(x))
        ax.set_ylabel(figures.label_for(plot) + (" (mean ± sd over seeds)" if "seed" in axes else ""))
        ax.set_title(f"{plot} against {x}")
        fig.savefig(folder / "plot.png", dpi=150)
        figures.plt.close(fig)

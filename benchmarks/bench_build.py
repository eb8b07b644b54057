"""Wall time of the book build: smoke profile from scratch, a rebuild with nothing changed, and
(with --default) the default profile from scratch. Targets (2 CPU cores): smoke < 5 min,
default < 20 min, no-change rebuild < 15 s.

    .venv/bin/python benchmarks/bench_build.py [--default] [--jobs 2] [--cores 2]

Builds into benchmarks/results/ (never the developer's _build/ or _staging/) and writes the table
to benchmarks/results/build_times.{csv,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"smoke build": 300, "rebuild, nothing changed": 15, "default build": 1200}


def timed_build(profile: str, jobs: int, cores: int | None, fresh: bool) -> tuple[float, dict]:
    staging, out = RESULTS / "staging", RESULTS / f"out-{profile}"
    if fresh:
        shutil.rmtree(staging / profile, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "oversmoothing", "--root", str(ROOT), "build", "--profile", profile,
           "--device", "cpu", "--jobs", str(jobs), "--staging", str(staging), "--out", str(out), "--no-progress"]
    pre = (lambda: os.sched_setaffinity(0, set(range(cores)))) if cores else None
    env = {**os.environ, "OVERSMOOTHING_PROGRESS": "0", "OVERSMOOTHING_GRID_CACHE": "off"}  # every run trains
    mirror = ROOT.parent / "shared" / "datasets"
    if (mirror / "SHA256SUMS").is_file():
        env.setdefault("OVERSMOOTHING_DATA_MIRROR", str(mirror))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, preexec_fn=pre, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"build --profile {profile} failed:\n{proc.stderr[-4000:]}")
    chapters = {p.stem: json.loads(p.read_text()).get("seconds") for p in sorted((staging / profile / "cache").glob("*.json"))}
    return seconds, chapters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default", action="store_true", help="also time the default profile from scratch (long)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2, help="pin the build to this many CPU cores (0: no pinning)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, per_chapter = [], {}
    t, per_chapter["smoke"] = timed_build("smoke", args.jobs, args.cores, fresh=True)
    rows.append(("smoke build", t))
    t, _ = timed_build("smoke", args.jobs, args.cores, fresh=False)
    rows.append(("rebuild, nothing changed", t))
    if args.default:
        t, per_chapter["default"] = timed_build("default", args.jobs, args.cores, fresh=True)
        rows.append(("default build", t))
    machine = f"{platform.processor() or platform.machine()}, {args.cores or os.cpu_count()} cores, jobs={args.jobs}"
    lines = [f"Book build times ({machine})", "", "| build | wall time (s) | target (s) | within target |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {t:.1f} | {TARGETS[name]} | {'yes' if t < TARGETS[name] else 'NO'} |" for name, t in rows]
    for profile, chs in per_chapter.items():
        lines += ["", f"Chapters, {profile} profile (execution wall time, s):", ""]
        lines += [f"- {stem}: {sec}" for stem, sec in chs.items()]
    text = "\n".join(lines) + "\n"
    (RESULTS / "build_times.md").write_text(text)
    (RESULTS / "build_times.csv").write_text("build,wall_time_s,target_s\n" +
                                             "".join(f"{n},{t:.2f},{TARGETS[n]}\n" for n, t in rows))
    print(text)


if __name__ == "__main__":
    main()

"""The default build on a machine shared with other busy processes vs the same build idle, same run.

Issue 11's target: with two busy background processes on 2 cores the default build takes at most 2.5x
its idle wall time (before the runner gave each kernel its share of the *free* cores, chapter 05 took
2158 s instead of 105 s). Both builds run from scratch (``--force``) into benchmarks/results/, never the
developer's ``_staging``; the busy processes are pure-Python spin loops (one core each, no memory
traffic), started before the build and killed after it. ``--chapters`` times a slice of the book.

    .venv/bin/python benchmarks/bench_busy.py [--busy 2] [--chapters 04 05 06]

Writes benchmarks/results/busy.json: wall time per chapter and in all, idle and busy, and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET = 2.5


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def timed_build(chapters: list[str], busy: int) -> tuple[float, dict]:
    staging = RESULTS / f"staging-busy{busy}"
    cmd = [sys.executable, "-m", "oversmoothing", "--root", str(ROOT), "build", "--profile", "default",
           "--device", "cpu", "--jobs", "1", "--force", "--no-html", "--no-progress", "--staging", str(staging)]
    if chapters:
        cmd += ["--chapters", *chapters]
    env = {k: v for k, v in os.environ.items() if k != "OVERSMOOTHING_THREADS"}
    env["OVERSMOOTHING_GRID_CACHE"] = "off"          # every training run is executed, not read back
    mirror = ROOT.parent / "shared" / "datasets"
    if (mirror / "SHA256SUMS").is_file():
        env.setdefault("OVERSMOOTHING_DATA_MIRROR", str(mirror))
    procs = spinners(busy)
    try:
        time.sleep(1.0 if busy else 0.0)          # the spinners are running when the runner measures the load
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
    if proc.returncode != 0:
        sys.exit(f"build failed (busy={busy}):\n{proc.stderr[-4000:]}")
    per = {p.stem: round(json.loads(p.read_text())["metadata"]["papermill"]["duration"], 1)
           for p in sorted((staging / "default" / "site" / "book").glob("[0-9]*.ipynb"))}  # papermill's wall time
    return seconds, per


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=2, help="busy background processes (default 2)")
    ap.add_argument("--chapters", nargs="*", default=[], help="only these chapters (default: the whole book)")
    a = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    idle_s, idle_per = timed_build(a.chapters, 0)
    busy_s, busy_per = timed_build(a.chapters, a.busy)
    out = {"chapters": a.chapters or "all", "busy_processes": a.busy, "idle_s": round(idle_s, 1),
           "busy_s": round(busy_s, 1), "ratio": round(busy_s / idle_s, 2), "target": TARGET,
           "idle_per_chapter_s": idle_per, "busy_per_chapter_s": busy_per,
           "load_before": [round(x, 2) for x in load_before], "cores": os.cpu_count(),
           "python": platform.python_version(), "machine": platform.machine()}
    (RESULTS / "busy.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

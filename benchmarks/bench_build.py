"""Wall time of the book build, and the new code against an older commit in the same run.

    .venv/bin/python benchmarks/bench_build.py                      # smoke build, rebuild with nothing changed
    .venv/bin/python benchmarks/bench_build.py --default             # ... and the default profile from scratch
    .venv/bin/python benchmarks/bench_build.py --against 5c1712a     # default build of that commit, then of this tree
    .venv/bin/python benchmarks/bench_build.py --against 5c1712a --tree /path/to/other/checkout --profile-chapters

``--against COMMIT`` checks COMMIT out in a temporary git worktree and builds the default profile there from
scratch (run cache off, ``--jobs 1``, every chapter executed), then the same for this tree (or ``--tree``); both
with this virtual environment's packages and the library of their own tree.  It writes, chapter by chapter, the
two wall times and their ratio, and whether the claims JSON agree (verdicts equal, metrics within the tolerance of
benchmarks/claims_compare.py) to benchmarks/results/build_compare.{md,json}.  ``--profile-chapters`` also runs
every chapter of the new tree under cProfile (benchmarks/profile_chapters.py: the largest self times).
Targets (2 CPU cores): smoke < 5 min, default < 15 min, no-change rebuild < 15 s, new / old <= 0.5.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"smoke build": 300, "rebuild, nothing changed": 15, "default build": 900}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims_compare import ATOL, RTOL, compare, load  # noqa: E402


def timed_build(tree: Path, profile: str, jobs: int, cores: int | None, fresh: bool, where: Path) -> tuple[float, dict]:
    """Build ``profile`` of the checkout ``tree`` into ``where``; returns (wall seconds, {chapter: seconds})."""
    staging, out = where / "staging", where / f"out-{profile}"
    if fresh:
        shutil.rmtree(staging / profile, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "oversmoothing", "--root", str(tree), "build", "--profile", profile,
           "--device", "cpu", "--jobs", str(jobs), "--staging", str(staging), "--out", str(out), "--no-progress"]
    pre = (lambda: os.sched_setaffinity(0, set(range(cores)))) if cores else None
    env = {**os.environ, "OVERSMOOTHING_PROGRESS": "0", "OVERSMOOTHING_GRID_CACHE": "off",  # every run trains
           "PYTHONPATH": str(tree / "src")}
    mirror = ROOT.parent / "shared" / "datasets"
    if (mirror / "SHA256SUMS").is_file():
        env.setdefault("OVERSMOOTHING_DATA_MIRROR", str(mirror))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, preexec_fn=pre, env=env, capture_output=True, text=True, cwd=tree)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"build --profile {profile} of {tree} failed:\n{proc.stderr[-4000:]}")
    site = staging / profile / "site" / "book"
    chapters = {}
    for nb in sorted(site.glob("*.ipynb")):
        record = json.loads(nb.read_text()).get("metadata", {}).get("oversmoothing", {})
        if "seconds" in record:
            chapters[nb.stem] = record["seconds"]
    return seconds, chapters


def against(commit: str, tree: Path, jobs: int, cores: int | None, profile_chapters: bool) -> str:
    """The default build of ``commit`` and of ``tree`` in one run: the comparison table (markdown)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-build-"))
    old_tree = tmp / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(old_tree), commit], check=True,
                   capture_output=True)
    try:
        t_old, ch_old = timed_build(old_tree, "default", jobs, cores, True, tmp / "old-build")
        t_new, ch_new = timed_build(tree, "default", jobs, cores, True, tmp / "new-build")
        sites = {w: tmp / f"{w}-build" / "staging" / "default" / "site" / "book" for w in ("old", "new")}
        cmp = compare(load(sites["old"]), load(sites["new"]))
        for w, site in sites.items():  # both builds' claims stay for a closer look
            keep = RESULTS / f"claims-{w}"
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
            for f in site.glob("*.claims.json"):
                shutil.copy(f, keep / f.name)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], capture_output=True)
    lines = [f"# Default build: {tree} against {commit} ({platform.processor() or platform.machine()}, "
             f"{cores or os.cpu_count()} cores, --jobs {jobs}, run cache off, {time.strftime('%Y-%m-%d %H:%M')})", "",
             "| chapter | old (s) | new (s) | new / old | verdicts equal | metrics outside tolerance |",
             "|---|---|---|---|---|---|"]
    for stem in sorted(set(ch_old) | set(ch_new)):
        a, b, c = ch_old.get(stem), ch_new.get(stem), cmp.get(stem, {})
        ratio = f"{b / a:.2f}" if a and b else "-"
        lines.append(f"| {stem} | {a if a is not None else '-'} | {b if b is not None else '-'} | {ratio} | "
                     f"{c.get('verdicts_equal', '-')} | {', '.join(c.get('metrics_outside_tolerance', [])) or '-'} |")
    lines.append(f"| **total build** | {t_old:.1f} | {t_new:.1f} | **{t_new / t_old:.2f}** | | |")
    lines += ["", f"Tolerance: |new - old| <= {ATOL} + {RTOL} |old| (benchmarks/claims_compare.py)."]
    changes = {s: c["verdict_changes"] for s, c in cmp.items() if c.get("verdict_changes")}
    if changes:
        lines += ["", "Verdicts that differ:", ""] + [f"- {s}: {x} -> {y}" for s, ch in changes.items() for x, y in ch]
    (RESULTS / "build_compare.json").write_text(json.dumps(dict(commit=commit, tree=str(tree), old=ch_old, new=ch_new,
                                                                 total_old=t_old, total_new=t_new, claims=cmp), indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    if profile_chapters:
        subprocess.run([sys.executable, str(Path(__file__).parent / "profile_chapters.py"),
                        "--out", str(RESULTS / "profile" / "new")], check=True,
                       env={**os.environ, "PYTHONPATH": str(tree / "src")})
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default", action="store_true", help="also time the default profile from scratch (long)")
    ap.add_argument("--against", metavar="COMMIT", help="the default build of COMMIT and of this tree, compared")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the new checkout for --against (default: this one)")
    ap.add_argument("--profile-chapters", action="store_true", help="with --against: cProfile every chapter too")
    ap.add_argument("--jobs", type=int, default=None, help="notebooks at once (default 2; 1 with --against)")
    ap.add_argument("--cores", type=int, default=2, help="pin the build to this many CPU cores (0: no pinning)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.against:
        text = against(args.against, args.tree.resolve(), args.jobs or 1, args.cores, args.profile_chapters)
        (RESULTS / "build_compare.md").write_text(text)
        print(text)
        return
    jobs = args.jobs or 2
    rows, per_chapter, where = [], {}, RESULTS
    t, per_chapter["smoke"] = timed_build(ROOT, "smoke", jobs, args.cores, True, where)
    rows.append(("smoke build", t))
    t, _ = timed_build(ROOT, "smoke", jobs, args.cores, False, where)
    rows.append(("rebuild, nothing changed", t))
    if args.default:
        t, per_chapter["default"] = timed_build(ROOT, "default", jobs, args.cores, True, where)
        rows.append(("default build", t))
    machine = f"{platform.processor() or platform.machine()}, {args.cores or os.cpu_count()} cores, jobs={jobs}"
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

"""Where a chapter's time goes: every code cell of a chapter run as one script under cProfile (its parameters
cell, then the profile's overrides, as papermill injects them), the functions with the largest self time
written to ``benchmarks/results/profile/<profile>/<chapter>.txt`` and the three largest per chapter to
``summary.md``.  The run cache is off (every run trains) and torch gets 1 thread.

    .venv/bin/python benchmarks/profile_chapters.py [--profile default] [--chapters 04 07] [--top 25]

Self time is what a function spends outside the functions it calls; torch's C++ operators show as their
Python entry points (``torch._C._nn.linear``, ``Tensor.__matmul__``, ``torch.sparse...``, the autograd
``run_backward``), so a row says which kind of operation costs.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "profile"

_RUNNER = r'''
import cProfile, json, os, pstats, sys, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda *a, **k: plt.close("all")
src = json.load(open(sys.argv[1]))
prof = cProfile.Profile()
ns = {"__name__": "__main__"}
t0 = time.perf_counter()
prof.enable()
exec(compile(src, "chapter", "exec"), ns)
prof.disable()
seconds = time.perf_counter() - t0
prof.dump_stats(sys.argv[2])
json.dump({"seconds": seconds}, open(sys.argv[2] + ".json", "w"))
'''


def chapter_script(path: Path, overrides: dict) -> str:
    """The chapter's code cells as one script: the Colab cell left out, the overrides after the parameters cell."""
    nb = json.loads(path.read_text())
    parts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "colab-install" in cell.get("metadata", {}).get("tags", []):
            continue
        src = "".join(cell["source"])
        if src.lstrip().startswith(("%", "!")):
            continue
        parts.append(src)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            parts.append("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    return "\n\n".join(parts)


def profile_chapter(stem: str, path: Path, overrides: dict, out: Path, top: int) -> tuple[float, list]:
    """Run one chapter under cProfile in a fresh process; returns (wall seconds, top rows)."""
    out.mkdir(parents=True, exist_ok=True)
    script = out / f"{stem}.script.json"
    script.write_text(json.dumps(chapter_script(path, overrides)))
    stats = out / f"{stem}.prof"
    env = {**os.environ, "OVERSMOOTHING_GRID_CACHE": "off", "OVERSMOOTHING_THREADS": "1", "OVERSMOOTHING_PROGRESS": "0",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    mirror = ROOT.parent / "shared" / "datasets"
    if (mirror / "SHA256SUMS").is_file():
        env.setdefault("OVERSMOOTHING_DATA_MIRROR", str(mirror))
    env["OVERSMOOTHING_CLAIMS"] = str(out / f"{stem}.claims.json")
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(script), str(stats)], cwd=out, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{stem} failed:\n{proc.stderr[-3000:]}")
    seconds = json.loads(Path(str(stats) + ".json").read_text())["seconds"]
    st = pstats.Stats(str(stats))
    rows = sorted(((v[2], v[3], v[1], f"{Path(k[0]).name}:{k[1]}({k[2]})") for k, v in st.stats.items()),
                  reverse=True)[:top]
    buf = io.StringIO()
    pstats.Stats(str(stats), stream=buf).sort_stats("tottime").print_stats(top)
    (out / f"{stem}.txt").write_text(f"{stem}: {seconds:.1f} s under cProfile\n\n" + buf.getvalue())
    script.unlink()
    return seconds, rows


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from oversmoothing import book

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--chapters", nargs="*", help="stems or numbers (default: every chapter)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", type=Path, help="results folder (default benchmarks/results/profile/<profile>)")
    a = ap.parse_args()
    overrides = book.profile_overrides(ROOT, a.profile)
    chs = [book.resolve_chapter(ROOT, c) for c in a.chapters] if a.chapters else book.chapters(ROOT)
    out = a.out or RESULTS / a.profile
    lines = [f"# Top costs per chapter ({a.profile} profile, 1 thread, run cache off; {time.strftime('%Y-%m-%d')})", "",
             "| chapter | wall (s, under cProfile) | three largest self times (s) |", "|---|---|---|"]
    for ch in chs:
        params = dict(overrides.get(ch.stem, {}), device="cpu")
        seconds, rows = profile_chapter(ch.stem, ch.path, params, out, a.top)
        top3 = "; ".join(f"{name} {tt:.1f}" for tt, _, _, name in rows[:3])
        lines.append(f"| {ch.stem} | {seconds:.1f} | {top3} |")
        print(lines[-1], flush=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(out / "summary.md")


if __name__ == "__main__":
    main()

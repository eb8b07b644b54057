"""The book on a GPU (issue 21): the smoke book on the CPU and on CUDA with the same code, their claims compared,
then chapters 07 and 08 at the `paper` profile's sizes for as long as the budget allows, with per-run wall times.

    python benchmarks/bench_gpu.py prepare                 # here (internet): wheels the GPU image lacks -> .whl/
    python benchmarks/bench_gpu.py command                 # the one-line command for the device tool
    python benchmarks/bench_gpu.py run --out DIR [--device cuda] [--budget SECONDS] [--tiny]

``run`` writes under DIR: ``environment.json`` (python, torch, CUDA, the GPU), ``smoke-<device>/`` (the staged
claims JSON of each build), ``compare.json`` (verdicts equal? largest relative difference of every metric,
judged within :data:`RTOL` / :data:`ATOL`), ``paper.json`` (chapters 07 and 08 at the paper sizes with reduced
seeds: wall time, status, the per-run wall times from the run log) and ``summary.md``.  ``--tiny`` (a test on a
machine without a GPU, with ``--device cpu``): the smoke profile instead of the paper one for the last step.

On the lent GPU machine the pinned torch (2.13, CPU wheel here) cannot be installed (a CUDA wheel is GBs and
nothing can be fetched there): the image's own torch is used and its version is recorded.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
DATA = ROOT / ".gpu_data" / "datasets"   # the dataset mirror, copied into the checkout so that it travels
#: what the GPU image lacks of the runner's needs (``--no-html``: no Sphinx); versions from requirements.lock
NEEDED = ("papermill", "nbclient", "nbformat", "jupyter_client", "jupyter_core", "ipykernel", "ipython",
          "ipython_pygments_lexers", "jedi", "parso", "matplotlib-inline", "prompt_toolkit", "wcwidth", "stack-data",
          "asttokens", "executing", "pure_eval", "pexpect", "ptyprocess", "traitlets", "tornado", "pyzmq", "comm",
          "debugpy", "nest-asyncio2", "platformdirs", "fastjsonschema", "jsonschema", "jsonschema-specifications",
          "referencing", "rpds-py", "entrypoints", "tenacity", "dask", "distributed", "partd", "locket", "zict",
          "tblib")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims_compare import ATOL, RTOL, compare, load  # noqa: E402  (verdicts equal, metrics within ATOL + RTOL |cpu|)
#: the paper profile's sizes with fewer seeds (the budget of a lent GPU is about 15 minutes in all)
PAPER_REDUCED = {"07_lipschitz_remedies": ["n_seeds=1", "deep_seeds=1", "gat_seeds=1"],
                 "08_remedies_compared": ["n_seeds=1", "c12_seeds=1"]}


def _pins() -> dict:
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def prepare() -> None:
    """Download the wheels of :data:`NEEDED` (CPython 3.12, manylinux x86-64) into .whl/ for the device tool."""
    pins = _pins()
    WHEELS.mkdir(exist_ok=True)
    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28, 31, 34, 35)] + ["--platform=manylinux2014_x86_64"]
    for name in NEEDED:
        version = pins[name.lower().replace("_", "-")]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(WHEELS),
                        f"{name}=={version}"], check=True)
    size = sum(p.stat().st_size for p in WHEELS.glob("*.whl")) / 2 ** 20
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels, {size:.1f} MiB in {WHEELS}")
    mirror = Path(os.environ.get("OVERSMOOTHING_DATA_MIRROR") or ROOT.parent / "shared" / "datasets")
    if not (mirror / "SHA256SUMS").is_file():
        raise SystemExit(f"no dataset mirror at {mirror} (set OVERSMOOTHING_DATA_MIRROR)")
    shutil.rmtree(DATA, ignore_errors=True)
    shutil.copytree(mirror, DATA)
    size = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file()) / 2 ** 20
    print(f"datasets: {size:.1f} MiB in {DATA}; carry .whl and .gpu_data (together < 64 MiB)")


def command(budget: int = 480) -> str:
    """The device tool's command (carry: .whl and .gpu_data): install the wheels, then ``run``."""
    return ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl "
            "&& export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OVERSMOOTHING_DATA_MIRROR=$PWD/.gpu_data/datasets "
            "&& python3 -m ipykernel install --user --name python3 >/dev/null "
            f"&& python3 benchmarks/bench_gpu.py run --out $OUT --device cuda --budget {budget}")


def _environment(device: str) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    return env


def _runner(args: list[str], env: dict, timeout: float | None) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "oversmoothing", "--root", str(ROOT), *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = 124, f"stopped at the budget ({timeout:.0f} s): {str(e.stderr or '')[-1000:]}"
    return rc, time.perf_counter() - t0, tail


def run(out: Path, device: str, budget: float, tiny: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    base = {**os.environ, "OVERSMOOTHING_PROGRESS": "0", "OVERSMOOTHING_GRID_CACHE": "off"}
    (out / "environment.json").write_text(json.dumps(_environment(device), indent=1))
    builds, summary = {}, [f"# bench_gpu: {device}, {time.strftime('%Y-%m-%d %H:%M')}", ""]
    for dev in dict.fromkeys(("cpu", device)):
        staging = out / f"smoke-{dev}"
        rc, sec, tail = _runner(["build", "--profile", "smoke", "--device", dev, "--jobs", "2", "--staging",
                                 str(staging / "staging"), "--no-html", "--no-progress"], base, None)
        claims = staging / "staging" / "smoke" / "site" / "book"
        for p in claims.glob("*.claims.json"):
            shutil.copy(p, staging / p.name)
        shutil.rmtree(staging / "staging", ignore_errors=True)  # executed notebooks: too big to send back
        builds[dev] = {"rc": rc, "seconds": round(sec, 1), "tail": tail if rc else ""}
        summary.append(f"- smoke build on {dev}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {sec:.0f} s")
    cmp = compare(load(out / "smoke-cpu"), load(out / f"smoke-{device}")) if device != "cpu" else {}
    (out / "compare.json").write_text(json.dumps({"builds": builds, "tolerance": {"rtol": RTOL, "atol": ATOL},
                                                  "chapters": cmp}, indent=1))
    for stem, c in cmp.items():
        summary.append(f"  - {stem}: verdicts equal {c.get('verdicts_equal')}, metrics outside tolerance "
                       f"{c.get('metrics_outside_tolerance')}, largest relative difference "
                       f"{c.get('largest_relative_difference', float('nan')):.2g}")
    paper, profile = {}, ("smoke" if tiny else "paper")
    for stem, reduced in PAPER_REDUCED.items():
        left = budget - (time.perf_counter() - t_start)
        if left < 30:
            paper[stem] = {"status": "not run: budget spent"}
            continue
        log = out / f"runs-{stem}.jsonl"
        env = {**base, "OVERSMOOTHING_GRID_LOG": str(log)}
        params = [] if tiny else [a for r in reduced for a in ("-p", r)]
        rc, sec, tail = _runner(["run", stem, "--profile", profile, "--device", device, "--out",
                                 str(out / f"run-{stem}"), "--no-progress", *params], env, left)
        runs = [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == "run"] if log.is_file() else []
        paper[stem] = {"status": "ok" if rc == 0 else ("budget" if rc == 124 else f"failed ({rc})"),
                       "seconds": round(sec, 1), "runs": len(runs),
                       "run_seconds": [round(r["seconds"], 2) for r in runs], "tail": tail if rc else ""}
        for f in (out / f"run-{stem}").rglob("*.ipynb"):
            f.unlink()  # keep what comes back small: the claims JSON and the run log stay
        summary.append(f"- {stem} ({profile}, reduced seeds): {paper[stem]['status']} in {sec:.0f} s, "
                       f"{len(runs)} training runs" + (f", {sum(paper[stem]['run_seconds']):.0f} s of them" if runs else ""))
    (out / "paper.json").write_text(json.dumps(paper, indent=1))
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    ok = all(b["rc"] == 0 for b in builds.values()) and all(c.get("verdicts_equal", True) for c in cmp.values())
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("prepare", help="download the wheels the GPU image lacks into .whl/ (run here)")
    c = sub.add_parser("command", help="print the device tool's command")
    c.add_argument("--budget", type=int, default=480)
    r = sub.add_parser("run", help="run the checks (on the GPU machine)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--budget", type=float, default=480, help="seconds for everything (default 480)")
    r.add_argument("--tiny", action="store_true", help="smoke profile for the last step (a CPU test)")
    a = ap.parse_args()
    if a.what == "prepare":
        prepare()
        return 0
    if a.what == "command":
        print(command(a.budget))
        return 0
    return run(a.out, a.device, a.budget, a.tiny)


if __name__ == "__main__":
    raise SystemExit(main())

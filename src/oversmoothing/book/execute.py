"""Execution: one papermill run in a worker process per notebook, ``n_jobs`` at a time, each kernel with its
fair share of the free cores; Ctrl-C/SIGTERM stop everything (:class:`Interrupted`)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .cache import META, _file_sha
from .errors import Interrupted
from .pool import auto_cluster, busy_cores, fair_share_threads

KERNEL = "python3"
INJECTED_HEADER = "# Injected by the runner ({how}): overrides the defaults"
#: seconds a cancelled worker gets between SIGTERM and SIGKILL
KILL_GRACE = 3.0


def _finish_notebook(nb_path: Path, how: str, record: dict) -> None:
    """Label the injected cell and store the runner's record (cache key, claims hash) in the metadata."""
    import nbformat

    nb = nbformat.read(str(nb_path), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            body = [ln for ln in cell.source.splitlines() if ln.strip() != "# Parameters"]
            cell.source = "\n".join([INJECTED_HEADER.format(how=how), *body])
    nb.metadata[META] = record
    nbformat.write(nb, str(nb_path))


#: a kernel that never started (two kernels started at once can pick the same free port: "Address already in
#: use", then "Kernel didn't respond"): no cell ran, so the notebook is simply started again
KERNEL_START_ERRORS = ("Kernel didn't respond", "Kernel died before replying to kernel_info")
KERNEL_START_TRIES = 3


def _kernel_did_not_start(exc: Exception) -> bool:
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in KERNEL_START_ERRORS)


def _execute(job: dict) -> dict:
    """Run one notebook into tmp files (worker side). The runner moves them into place (``_commit``).
    A kernel that fails to start is started again (up to :data:`KERNEL_START_TRIES` times)."""
    import papermill as pm

    tmp_nb, tmp_json = Path(job["tmp_nb"]), Path(job["env"]["OVERSMOOTHING_CLAIMS"])
    Path(job["cwd"]).mkdir(parents=True, exist_ok=True)
    for p in (tmp_nb, tmp_json):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = {"name": job["name"], "ok": False, "log": job.get("log"), "injected": bool(job["parameters"])}
    try:
        for attempt in range(1, KERNEL_START_TRIES + 1):
            try:
                pm.execute_notebook(job["input"], str(tmp_nb), parameters=job["parameters"], kernel_name=KERNEL,
                                    cwd=job["cwd"], progress_bar=False, log_output=False,
                                    request_save_on_cell_execute=False)
                break
            except Exception as e:  # noqa: BLE001
                if attempt == KERNEL_START_TRIES or not _kernel_did_not_start(e):
                    raise
                print(f"kernel did not start ({e}); starting it again (try {attempt + 1} of {KERNEL_START_TRIES})",
                      file=sys.stderr, flush=True)
        res["kernel_starts"] = attempt
        seconds = round(time.perf_counter() - t0, 2)
        _finish_notebook(tmp_nb, job["how"], {
            "key": job.get("key") or "run", "parameters": job["parameters"], "seconds": seconds,
            "runs": runs_logged(job),
            "claims_sha256": _file_sha(tmp_json), "how": job["how"],
            "finished": _dt.datetime.now().isoformat(timespec="seconds")})
        res["ok"] = True
    except pm.PapermillExecutionError as e:
        res.update(cell_index=e.cell_index, exec_count=e.exec_count, source=e.source,
                   error=f"{e.ename}: {e.evalue}")
    except Exception as e:  # noqa: BLE001  (kernel died, timeout, bad notebook ...)
        res.update(error=f"{type(e).__name__}: {e}")
    finally:
        res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def _write_json(path: Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (kernels run in their own session, so a process group misses them)."""
    try:
        import psutil
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001  (already gone)
        return []
    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def _kill(pids, sig=signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _end_worker(code: int) -> None:
    """Kill this worker's kernel, reap it (no zombie is left behind) and exit at once."""
    kids = _descendants(os.getpid())
    _kill(kids)
    for pid in kids:
        try:
            os.waitpid(pid, 0)
        except (ChildProcessError, OSError):
            pass
    os._exit(code)


def _worker_main(job_path: str) -> None:
    """Entry point of a worker process: execute one job, write its result next to the job file.

    SIGTERM (the runner cancelling it) kills the kernel and ends the worker; a watchdog does the same when
    the runner is gone (killed with SIGKILL), so no orphaned kernel keeps computing for nobody."""
    job = json.loads(Path(job_path).read_text())
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda signum, frame: _end_worker(143))

    def watchdog():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                _end_worker(1)

    threading.Thread(target=watchdog, daemon=True).start()
    _write_json(Path(job["result"]), _execute(job))


def _start_worker(job: dict) -> subprocess.Popen:
    """A new Python process (own session: a terminal's Ctrl-C goes to the runner only) running ``job``."""
    job_path = Path(job["result"]).with_suffix(".job.json")
    _write_json(job_path, job)
    Path(job["result"]).unlink(missing_ok=True)
    src = str(Path(__file__).resolve().parents[2])   # import this very runner in the worker
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from oversmoothing.book.execute import _worker_main; _worker_main(sys.argv[2])")
    Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
    with open(job["log"], "w") as log:   # the worker's and the kernel's stderr
        return subprocess.Popen([sys.executable, "-c", code, src, str(job_path)], env={**os.environ, **job["env"]},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    """SIGTERM the workers (each kills its kernel); SIGKILL whatever is left after KILL_GRACE seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + KILL_GRACE
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(_descendants(proc.pid))
            proc.kill()
            proc.wait()


def _cleanup_job(job: dict) -> None:
    for key in ("tmp_nb", "result"):
        Path(job[key]).unlink(missing_ok=True)
    Path(job["result"]).with_suffix(".job.json").unlink(missing_ok=True)
    Path(job["env"]["OVERSMOOTHING_CLAIMS"]).unlink(missing_ok=True)
    if job["env"].get("OVERSMOOTHING_GRID_LOG", "").endswith(".runs.jsonl"):
        Path(job["env"]["OVERSMOOTHING_GRID_LOG"]).unlink(missing_ok=True)


def runs_logged(job: dict) -> int:
    """How many training runs the job's grids have finished so far (computed or read back; their log)."""
    try:
        with open(job["env"]["OVERSMOOTHING_GRID_LOG"], "rb") as f:
            return sum(1 for _ in f)
    except (OSError, KeyError):
        return 0


def _runs_postfix(running: dict) -> str:
    """The progress bar's note: each running chapter's training runs done (of the last build's count)."""
    parts = []
    for name, (_, job) in running.items():
        done, expected = runs_logged(job), job.get("runs_expected")
        if done or expected:
            parts.append(f"{name.split('_')[0]}: {done}" + (f"/{expected}" if expected else "") + " runs")
    return ", ".join(parts)


def _commit(job: dict, res: dict) -> None:
    """Move a finished job's files into place: claims first, the notebook (which names the claims'
    hash) last, so an interruption in between leaves a pair that is never taken as cached."""
    tmp_nb, tmp_json = Path(job["tmp_nb"]), Path(job["env"]["OVERSMOOTHING_CLAIMS"])
    out_nb, out_json, failed_nb = Path(job["out_nb"]), Path(job["out_json"]), Path(job["failed_nb"])
    if res["ok"]:
        out_nb.parent.mkdir(parents=True, exist_ok=True)
        if tmp_json.exists():
            os.replace(tmp_json, out_json)
        else:
            out_json.unlink(missing_ok=True)
        os.replace(tmp_nb, out_nb)
        failed_nb.unlink(missing_ok=True)     # an older failure of this chapter is history now
    else:
        tmp_json.unlink(missing_ok=True)
        if tmp_nb.exists():
            failed_nb.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_nb, failed_nb)
            res["failed_nb"] = str(failed_nb)
    _cleanup_job(job)


@contextmanager
def _signals_deferred():
    """SIGINT/SIGTERM are recorded instead of raised inside the block (yields the list of signals);
    outside the main thread nothing is changed."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _source_cell_number(nb_path: Path, cell_index: int | None, injected: bool = True) -> int | None:
    """The failing cell's index in the source notebook (the executed copy has one injected cell after
    the parameters cell when papermill injected parameters, none otherwise)."""
    if cell_index is None or not injected:
        return cell_index
    try:
        nb = json.loads(Path(nb_path).read_text())
        tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
        param_idx = next(i for i, t in enumerate(tags) if "parameters" in t)
        return cell_index - 1 if cell_index > param_idx + 1 else cell_index
    except Exception:  # noqa: BLE001
        return cell_index


def _failure_message(ch_stem: str, source_path: Path, res: dict) -> str:
    msg = f"chapter {ch_stem} failed"
    if res.get("cell_index") is not None:
        n = _source_cell_number(source_path, res["cell_index"], res.get("injected", True))
        first = next((ln for ln in (res.get("source") or "").splitlines() if ln.strip()), "")
        msg += f" in cell {n} (counting from 0) of {source_path.name} (execution count {res.get('exec_count')}): `{first[:80]}`"
    msg += f"\n    {res.get('error', 'unknown error')}"
    if res.get("failed_nb"):
        msg += f"\n    executed copy for debugging: {res['failed_nb']}"
    if res.get("log"):
        msg += f"\n    kernel log: {res['log']}"
    return msg


def _run_jobs(jobs: list[dict], n_jobs: int, desc: str, progress: bool, env: dict | None = None) -> list[dict]:
    """Execute the jobs, ``n_jobs`` worker processes at a time, with a progress bar; each finished job is
    committed at once. Ctrl-C/SIGTERM: queued jobs are cancelled, running kernels killed, their tmp
    files removed, and :class:`Interrupted` raised (a second Ctrl-C changes nothing: the stop is bounded)."""
    from tqdm.auto import tqdm

    results: list[dict] = []
    if not jobs:
        return results
    workers = max(1, min(n_jobs, len(jobs)))
    with auto_cluster(env, jobs) as env:
        return _run_started(jobs, workers, desc, progress, env)


def _kernel_threads(workers: int, env: dict) -> dict[str, str]:
    """The thread environment of each of ``workers`` kernels run at once.  Every kernel gets its fair share of the
    free cores (parallel chapters and busy machines never oversubscribe); the build's own workers
    (:func:`~oversmoothing.book.pool.auto_cluster`) are idle while a kernel computes (its grids wait for their
    results), so they leave the kernels that share.  On a cluster the user chose (``--workers``/``--scheduler``)
    the work runs on the cluster's workers: the kernels need 1 thread."""
    own = bool(env.get("OVERSMOOTHING_AUTO_WORKERS"))
    if env.get("OVERSMOOTHING_EXECUTOR") and not own:
        n = os.environ.get("OVERSMOOTHING_THREADS", "1")
        return {k: n for k in ("OVERSMOOTHING_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return fair_share_threads(workers, busy=0.0 if os.environ.get("OVERSMOOTHING_THREADS") or own else busy_cores())


def _run_started(jobs: list[dict], workers: int, desc: str, progress: bool, env: dict | None) -> list[dict]:
    """:func:`_run_jobs` once the executor of the training grids is settled (``env``)."""
    from tqdm.auto import tqdm

    results: list[dict] = []
    share = _kernel_threads(workers, env or {})
    for j in jobs:
        j["env"] = {**j["env"], **share, **(env or {})}
        j["env"].setdefault("OVERSMOOTHING_GRID_LOG", str(Path(j["result"]).with_suffix(".runs.jsonl")))
    bar = tqdm(total=len(jobs), desc=desc, unit="nb", disable=not progress, file=sys.stderr)
    pending, running, shown = list(jobs), {}, 0.0
    with _signals_deferred() as got:
        try:
            while (pending or running) and not got:
                while pending and len(running) < workers:
                    job = pending.pop(0)
                    running[job["name"]] = (_start_worker(job), job)
                time.sleep(0.05)
                if progress and time.monotonic() - shown > 1.0:
                    bar.set_postfix_str(_runs_postfix(running), refresh=True)
                    shown = time.monotonic()
                for name, (proc, job) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[name]
                    try:
                        res = json.loads(Path(job["result"]).read_text())
                    except (OSError, ValueError):
                        res = {"name": name, "ok": False, "seconds": 0.0, "log": job.get("log"),
                               "error": f"the worker process ended (exit code {proc.returncode}) without a result"}
                    _commit(job, res)
                    results.append(res)
                    mark = "ok    " if res["ok"] else "FAILED"
                    bar.write(f"  {mark} {res['name']:<40s} {res['seconds']:8.1f} s", file=sys.stderr)
                    bar.update(1)
        finally:
            if running:          # interrupted (or an error in the runner itself): stop what runs
                _stop_workers([proc for proc, _ in running.values()])
                for _, job in running.values():
                    _cleanup_job(job)
            bar.close()
    if got:
        stopped = ", ".join(running) or "none"
        queued = ", ".join(j["name"] for j in pending) or "none"
        raise Interrupted(f"interrupted ({signal.Signals(got[0]).name}): stopped {stopped}; "
                          f"not started: {queued}; finished and kept: "
                          f"{', '.join(r['name'] for r in results if r['ok']) or 'none'}", results)
    order = {j["name"]: i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r["name"]])

"""The book runner: execute chapters with papermill, cache them, generate pages, build the HTML.

It imports none of the science modules: chapters are executed in their own kernel.

Layout of one build (``profile`` = smoke/default/paper, ``S = <staging>/<profile>``)::

    S/.lock                  held by the build of this profile (a second one waits, naming the holder)
    S/site/                  the Jupyter Book that is rendered (a staging copy of the project)
      _config.yml _toc.yml   copied; the toc lists every chapter that has an executed copy
      book/NN_name.ipynb     the executed chapter (sources in <root>/book stay output-free); its
                             metadata ``oversmoothing`` holds the cache key and the SHA-256 of
                             its claims table, so the pair is one unit: a chapter is "cached" only
                             when that key is this build's key and the claims file is the one
                             written with it
      book/NN_name.claims.json   its claims table (written by ``ClaimsTable.save()``)
      book/parameters.md book/report.md   generated pages
    S/tmp/                   notebooks being executed (moved into site/ by the runner only on success)
    S/failed/NN_name.ipynb   the executed copy of a chapter that raised, for debugging
    S/_build/                Sphinx's incremental work folder (html, doctrees)

The HTML is copied to ``<out>/_build/html`` (``out`` defaults to the project root) by building a new
folder next to it and renaming it into place, so readers never see a half-written book.

Every notebook runs in its own worker process (its own session, so a terminal's Ctrl-C reaches only the
runner): Ctrl-C cancels the queued chapters, kills the running kernels and exits 130.
"""
from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tokenize
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .parameters import RULES, ParameterError
from .parameters import check as check_rule
from .report import md_cell  # the claims format shared with the chapters (imports no science)

__all__ = ["BookError", "BuildFailed", "Interrupted", "Chapter", "Param", "build", "chapters", "find_root",
           "parse_parameters", "parse_assignment", "run_chapter", "sweep", "load_profiles"]

DEVICES = ("auto", "cpu", "cuda")
#: toc entries whose page the runner writes at build time (the source holds a placeholder)
GENERATED = {"book/parameters": "parameters", "book/report": "report"}
#: the claims of DESIGN.md; the report says which of them no chapter of the build tested
DESIGN_CLAIMS = tuple(f"C{i}" for i in range(1, 14))
KERNEL = "python3"
INJECTED_HEADER = "# Injected by the runner ({how}): overrides the defaults"
#: the key of the runner's record in an executed notebook's metadata
META = "oversmoothing"
#: seconds a cancelled worker gets between SIGTERM and SIGKILL
KILL_GRACE = 3.0


class BookError(Exception):
    """A user error, reported before anything runs."""


class BuildFailed(Exception):
    """One or more chapters raised (or the HTML build failed)."""


class Interrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM: queued notebooks were cancelled and running kernels stopped.

    ``results`` holds the notebooks that finished (and were kept) before the interruption."""

    def __init__(self, message: str, results: list[dict] | None = None):
        super().__init__(message)
        self.results = results or []


# --------------------------------------------------------------------------------------------
# project, toc, chapters, profiles
# --------------------------------------------------------------------------------------------

def find_root(start: str | Path | None = None) -> Path:
    """The project root: the first folder upwards from ``start`` (cwd) holding ``_toc.yml``."""
    p = Path(start or Path.cwd()).resolve()
    for d in (p, *p.parents):
        if (d / "_toc.yml").is_file() and (d / "_config.yml").is_file():
            return d
    raise BookError(f"no _toc.yml/_config.yml found in {p} or its parents (use --root)")


def load_toc(root: Path) -> dict:
    path = Path(root) / "_toc.yml"
    if not path.is_file():
        raise BookError(f"{path} not found")
    return yaml.safe_load(path.read_text()) or {}


def _toc_files(node) -> list[str]:
    """Every ``file`` of the toc, in reading order."""
    out = []
    if isinstance(node, dict):
        if "root" in node:
            out.append(str(node["root"]))
        if "file" in node:
            out.append(str(node["file"]))
        for key in ("parts", "chapters", "sections"):
            out += _toc_files(node.get(key) or [])
    elif isinstance(node, list):
        for item in node:
            out += _toc_files(item)
    return out


def _strip_suffix(f: str) -> str:
    return f[: -len(Path(f).suffix)] if Path(f).suffix in (".ipynb", ".md") else f


@dataclass
class Chapter:
    stem: str        # 04_stationary_traps
    entry: str       # the toc entry without suffix: book/04_stationary_traps
    path: Path       # the source notebook

    @property
    def title(self) -> str:
        nb = json.loads(self.path.read_text())
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "markdown":
                for line in _source(cell).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
        return self.stem


def chapters(root: Path, toc: dict | None = None) -> list[Chapter]:
    """The chapters of the book: the toc entries that are notebooks, in reading order."""
    root = Path(root)
    out = []
    for f in _toc_files(load_toc(root) if toc is None else toc):
        entry = _strip_suffix(f)
        nb = root / (entry + ".ipynb")
        if nb.is_file():
            out.append(Chapter(Path(entry).name, entry, nb))
    return out


def resolve_chapter(root: Path, name: str, available: list[Chapter] | None = None) -> Chapter:
    """A chapter by stem (``04_stationary_traps``), number (``4``/``04``) or path."""
    available = chapters(root) if available is None else available
    key = _strip_suffix(str(name).rstrip("/"))
    for ch in available:
        if key in (ch.stem, ch.entry) or Path(key).name == ch.stem:
            return ch
    if key.isdigit():
        hits = [ch for ch in available if ch.stem.split("_")[0].isdigit() and int(ch.stem.split("_")[0]) == int(key)]
        if len(hits) == 1:
            return hits[0]
    names = ", ".join(ch.stem for ch in available) or "(none: add chapters to _toc.yml)"
    raise BookError(f"unknown chapter {name!r}; the chapters of _toc.yml are: {names}")


def load_profiles(root: Path) -> dict:
    path = Path(root) / "book" / "profiles.yml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    data = data or {}
    data.setdefault("default", {})
    return {k: (v or {}) for k, v in data.items()}


def profile_overrides(root: Path, profile: str, profiles: dict | None = None) -> dict:
    profiles = load_profiles(root) if profiles is None else profiles
    if profile not in profiles:
        raise BookError(f"unknown profile {profile!r}; known profiles (book/profiles.yml): {', '.join(profiles)}")
    return profiles[profile]


# --------------------------------------------------------------------------------------------
# the parameters cell (parsed with ast, never executed)
# --------------------------------------------------------------------------------------------

@dataclass
class Param:
    name: str
    default: object
    type: str        # bool | int | float | str | list | none
    comment: str


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _type_name(v) -> str:
    if isinstance(v, bool):
        return "bool"
    for t, name in ((int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list")):
        if isinstance(v, t):
            return name
    if v is None:
        return "none"
    raise TypeError(type(v).__name__)


def parameters_source(nb_path: Path) -> str:
    nb = json.loads(Path(nb_path).read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in (cell.get("metadata", {}).get("tags") or []):
            return _source(cell)
    raise BookError(f"{nb_path}: no code cell tagged 'parameters'")


def parse_parameters(nb_path: Path) -> dict[str, Param]:
    """Names, defaults, types and comments of a chapter's ``parameters`` cell."""
    src = parameters_source(nb_path)
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise BookError(f"{nb_path}: parameters cell does not parse: {e}") from None
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    out: dict[str, Param] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
            kind = _type_name(default)
        except (ValueError, TypeError, SyntaxError):
            raise BookError(f"{nb_path}: parameter {name!r} is not a literal") from None
        comment = next((comments[i] for i in range(node.end_lineno, node.lineno - 1, -1) if i in comments), "")
        if not comment:  # comment lines right above the assignment
            i, above = node.lineno - 1, []
            while i >= 1 and lines[i - 1].strip().startswith("#"):
                above.insert(0, lines[i - 1].strip().lstrip("#").strip())
                i -= 1
            comment = " ".join(above)
        out[name] = Param(name, list(default) if isinstance(default, tuple) else default, kind, comment)
    return out


def _literal(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        low = raw.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        if low in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(low)     # refused by the finiteness check with the rule's message, not as text
        return raw


def _non_finite(value) -> bool:
    """True when ``value`` is (or holds, in a list) an infinite or NaN float."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return False


def check_value(chapter: str, p: Param, value, raw: str | None = None):
    """``value`` converted to ``p``'s type and checked against ``oversmoothing.parameters.RULES``
    (the same check, and the same message, as the chapter's first cell), or a BookError."""
    t = p.type
    ok = False
    if t == "none":
        ok = True
    elif t == "bool":
        ok = isinstance(value, bool)
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif t == "str":
        if isinstance(value, str):
            ok = True
        elif raw is not None:   # -p activation=1 for a str parameter: the string as typed
            value, ok = raw, True
    elif t == "list":
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    if not ok:
        shown = raw if raw is not None else repr(value)
        raise BookError(f"chapter {chapter}: parameter {p.name!r} expects {t} (default {p.default!r}), "
                        f"got {shown!r} ({type(value).__name__})")
    if p.name in RULES:
        try:
            value = check_rule(p.name, value, chapter)
        except ParameterError as e:
            raise BookError(str(e)) from None
    elif _non_finite(value):
        raise BookError(f"chapter {chapter}: parameter {p.name} = {value!r} is not accepted: "
                        "expected a finite number (not inf or nan)")
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise BookError(f"-p expects name=value, got {text!r}")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise BookError(f"-p: {name!r} is not a parameter name")
    return name, raw.strip()


def split_values(raw: str) -> list[str]:
    """``8,16,32`` -> [8, 16, 32]; commas inside brackets or quotes do not split."""
    out, depth, quote, cur = [], 0, None, ""
    for ch in raw:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def resolve_parameters(ch: Chapter, overrides: dict, assignments: list[tuple[str, str]] = (),
                       device: str | None = None, params: dict[str, Param] | None = None) -> dict:
    """The parameters papermill injects: profile overrides, then ``device`` (``--device``, when given),
    then ``-p`` values. Every value is checked (type, then its rule) before anything runs; a profile's
    bad value is an error even where ``--device`` or ``-p`` overrides it."""
    params = parse_parameters(ch.path) if params is None else params
    def known(n):
        if n not in params:
            raise BookError(f"chapter {ch.stem}: unknown parameter {n!r}; "
                            f"its parameters cell defines: {', '.join(params)}")
    final = {}
    for name, value in (overrides or {}).items():
        known(name)
        if isinstance(value, str) and params[name].type in ("int", "float", "bool", "list"):
            value = _literal(value)    # YAML reads 1e-3 as a string
        final[name] = check_value(ch.stem, params[name], value)
    if device is not None and "device" in params:
        final["device"] = check_value(ch.stem, params["device"], device)
    for name, raw in assignments:
        known(name)
        final[name] = check_value(ch.stem, params[name], _literal(raw), raw)
    return final


def _check_device(device: str | None):
    if device is not None and device not in DEVICES:
        raise BookError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")


def _check_jobs(jobs) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise BookError(f"--jobs must be an integer >= 1 (notebooks run at once), got {jobs!r}")
    return jobs


def scale_out_env(workers=None, scheduler: str | None = None) -> dict[str, str]:
    """What every kernel's training grids need to run on Dask (read by :func:`oversmoothing.grid.run_grid`):
    ``--workers N`` starts a LocalCluster of N workers, ``--scheduler ADDRESS`` joins a running cluster
    (``tcp://host:port`` or a scheduler file). Unset: ``$OVERSMOOTHING_WORKERS`` / ``$OVERSMOOTHING_SCHEDULER``."""
    workers = workers if workers is not None else os.environ.get("OVERSMOOTHING_WORKERS") or None
    scheduler = scheduler or os.environ.get("OVERSMOOTHING_SCHEDULER") or None
    env = {}
    if workers is not None:
        try:
            n = int(str(workers))
        except ValueError:
            n = 0
        if n < 1 or str(n) != str(workers).strip():
            raise BookError(f"--workers {workers!r}: expects an integer >= 1 (Dask worker processes)")
        env["OVERSMOOTHING_WORKERS"] = str(n)
    if scheduler is not None:
        ok = re.fullmatch(r"(tcp|tls|ucx|inproc|ws|wss)://[^\s/:]+(:\d+)?/?", scheduler) or Path(scheduler).is_file()
        if not ok:
            raise BookError(f"--scheduler {scheduler!r}: expects a Dask scheduler address like tcp://host:8786 "
                            "or the path of an existing scheduler file")
        env["OVERSMOOTHING_SCHEDULER"] = scheduler
    if scheduler is not None or int(env.get("OVERSMOOTHING_WORKERS", 1)) > 1:
        env["OVERSMOOTHING_EXECUTOR"] = "dask"      # one worker: the grids run in the kernel itself
    return env


def _check_profile_chapters(profile: str, overrides: dict, all_chs: list[Chapter]) -> None:
    """A profile entry whose key is not a chapter (a typo) is an error, not a chapter run at defaults."""
    stems = [c.stem for c in all_chs]
    for key, value in overrides.items():
        if key not in stems:
            raise BookError(f"book/profiles.yml: profile {profile!r} sets parameters of {key!r}, which is not a "
                            f"chapter of _toc.yml; the chapters are: {', '.join(stems) or '(none)'}")
        if value is not None and not isinstance(value, dict):
            raise BookError(f"book/profiles.yml: profile {profile!r}, chapter {key!r}: expected a mapping "
                            f"parameter: value, got {value!r}")


# --------------------------------------------------------------------------------------------
# execution (one papermill run in a worker process)
# --------------------------------------------------------------------------------------------

def _file_sha(path: Path) -> str | None:
    """SHA-256 of a file's bytes, None when there is no such file."""
    try:
        return _sha(Path(path).read_bytes())
    except FileNotFoundError:
        return None


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


def executed_record(nb_path: Path, claims_path: Path) -> dict | None:
    """The runner's record of an executed notebook, or None unless the notebook carries one and
    ``claims_path`` is the claims file written with it (absent when the chapter wrote none)."""
    try:
        meta = json.loads(Path(nb_path).read_text()).get("metadata", {}).get(META)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(meta, dict) or not meta.get("key"):
        return None
    if _file_sha(claims_path) != meta.get("claims_sha256"):
        return None
    return meta


def _execute(job: dict) -> dict:
    """Run one notebook into tmp files (worker side). The runner moves them into place (``_commit``)."""
    import papermill as pm

    tmp_nb, tmp_json = Path(job["tmp_nb"]), Path(job["env"]["OVERSMOOTHING_CLAIMS"])
    Path(job["cwd"]).mkdir(parents=True, exist_ok=True)
    for p in (tmp_nb, tmp_json):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = {"name": job["name"], "ok": False, "log": job.get("log"), "injected": bool(job["parameters"])}
    try:
        pm.execute_notebook(job["input"], str(tmp_nb), parameters=job["parameters"], kernel_name=KERNEL,
                            cwd=job["cwd"], progress_bar=False, log_output=False,
                            request_save_on_cell_execute=False)
        seconds = round(time.perf_counter() - t0, 2)
        _finish_notebook(tmp_nb, job["how"], {
            "key": job.get("key") or "run", "parameters": job["parameters"], "seconds": seconds,
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
    src = str(Path(__file__).resolve().parents[1])   # import this very runner in the worker
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from oversmoothing.book import _worker_main; _worker_main(sys.argv[2])")
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


def busy_cores(interval: float = 0.5) -> float:
    """Cores kept busy by other processes right now (system-wide CPU use over ``interval`` seconds, in cores)."""
    import psutil

    return psutil.cpu_percent(interval=interval) / 100.0 * (psutil.cpu_count() or 1)


def fair_share_threads(workers: int, cores: int | None = None, busy: float = 0.0) -> dict[str, str]:
    """Environment of one of ``workers`` kernels run at once: torch, OpenMP and MKL threads =
    (cores - cores busy with other work) // workers, at least 1. Threads on busy cores thrash: chapter 06
    with 2 threads beside 2 busy processes on 2 cores took 199 s, with 1 thread 42 s (28 s idle).
    ``OVERSMOOTHING_THREADS`` set by the user wins."""
    free = (cores or os.cpu_count() or 1) - int(busy + 0.5)
    n = os.environ.get("OVERSMOOTHING_THREADS") or str(max(1, free // max(1, workers)))
    return {"OVERSMOOTHING_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _run_jobs(jobs: list[dict], n_jobs: int, desc: str, progress: bool, env: dict | None = None) -> list[dict]:
    """Execute the jobs, ``n_jobs`` worker processes at a time, with a progress bar; each finished job is
    committed at once. Ctrl-C/SIGTERM: queued jobs are cancelled, running kernels killed, their tmp
    files removed, and :class:`Interrupted` raised (a second Ctrl-C changes nothing: the stop is bounded)."""
    from tqdm.auto import tqdm

    results: list[dict] = []
    if not jobs:
        return results
    workers = max(1, min(n_jobs, len(jobs)))
    # every kernel gets its fair share of the free cores: parallel chapters and busy machines never oversubscribe
    # with Dask (env from scale_out_env) the work runs on the cluster's workers: the kernels need 1 thread
    share = (fair_share_threads(workers, busy=0.0 if os.environ.get("OVERSMOOTHING_THREADS") else busy_cores())
             if not (env or {}).get("OVERSMOOTHING_EXECUTOR") else {k: os.environ.get("OVERSMOOTHING_THREADS", "1") for k in
                              ("OVERSMOOTHING_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    for j in jobs:
        j["env"] = {**j["env"], **share, **(env or {})}
    bar = tqdm(total=len(jobs), desc=desc, unit="nb", disable=not progress, file=sys.stderr)
    pending, running = list(jobs), {}
    with _signals_deferred() as got:
        try:
            while (pending or running) and not got:
                while pending and len(running) < workers:
                    job = pending.pop(0)
                    running[job["name"]] = (_start_worker(job), job)
                time.sleep(0.05)
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


# --------------------------------------------------------------------------------------------
# cache keys
# --------------------------------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: the runner's own files: chapters never import them, so editing them re-executes nothing
RUNNER_FILES = ("oversmoothing/book.py", "oversmoothing/cli.py", "oversmoothing/__main__.py")


def _code_digest(path: Path) -> bytes:
    """A Python module's syntax tree (comments and formatting ignored); other files' bytes."""
    data = path.read_bytes()
    if path.suffix == ".py":
        try:
            return ast.dump(ast.parse(data)).encode()
        except (SyntaxError, ValueError):
            pass
    return data


def tree_hash(folder: Path, exclude: tuple[str, ...] = RUNNER_FILES) -> str:
    """Hash of the library source under ``folder`` (Python files by syntax tree, so a comment or a
    reformatting re-executes nothing), caches and the runner excluded."""
    h = hashlib.sha256()
    if Path(folder).is_dir():
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and not p.suffix == ".pyc" \
                    and not any(s.endswith(".egg-info") for s in p.parts) \
                    and p.relative_to(folder).as_posix() not in exclude:
                h.update(str(p.relative_to(folder)).encode() + b"\0" + _code_digest(p) + b"\0")
    return h.hexdigest()


def _lines_digest(path: Path, normalise=lambda ln: ln) -> str:
    """Hash of a file's meaningful lines (comments and blank lines dropped, order ignored); "" if absent."""
    if not Path(path).is_file():
        return ""
    lines = {normalise(ln.split("#", 1)[0].strip()) for ln in Path(path).read_text().splitlines()}
    return _sha("\n".join(sorted(ln for ln in lines if ln)).encode())


def lock_digest(path: Path) -> str:
    """Hash of the pins of requirements.lock (``name==version``, names normalised as pip does)."""
    def pin(ln):
        name, sep, rest = ln.partition("==")
        return re.sub(r"[-_.]+", "-", name.strip().lower()) + sep + rest.replace(" ", "")
    return _lines_digest(path, pin)


def data_digest(root: Path) -> str:
    """Hash of the datasets' checksums (data/SHA256SUMS: the loader verifies every raw file against it)."""
    return _lines_digest(Path(root) / "data" / "SHA256SUMS", lambda ln: " ".join(ln.split()))


_AUTO_DEVICE: list[str] = []


def auto_device() -> str:
    """What ``device = "auto"`` resolves to on this machine ("cuda" or "cpu"), as the chapters resolve it."""
    if not _AUTO_DEVICE:
        if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd", "/proc/driver/nvidia")) \
                and sys.platform.startswith("linux"):
            _AUTO_DEVICE.append("cpu")      # no GPU driver: do not pay for importing torch
        else:
            import torch
            _AUTO_DEVICE.append("cuda" if torch.cuda.is_available() else "cpu")
    return _AUTO_DEVICE[0]


def resolved_device(device: str | None) -> str:
    return auto_device() if device in (None, "auto") else str(device)


def environment_digests(root: Path) -> dict:
    """What every chapter's result depends on besides its notebook and parameters."""
    return {"src": tree_hash(Path(root) / "src"), "lock": lock_digest(Path(root) / "requirements.lock"),
            "data": data_digest(root)}


def _cache_key(ch: Chapter, parameters: dict, profile: str, env: dict, device: str) -> str:
    return _sha(json.dumps({"notebook": _sha(ch.path.read_bytes()), "parameters": parameters,
                            "profile": profile, "device": device, **env}, sort_keys=True).encode())


# --------------------------------------------------------------------------------------------
# generated pages
# --------------------------------------------------------------------------------------------

def _esc(v) -> str:
    return md_cell(v)


def _fmt(v) -> str:
    return f"`{v!r}`" if not isinstance(v, str) else f'`"{v}"`'


def parameters_page(root: Path, chs: list[Chapter], profiles: dict) -> str:
    others = [p for p in profiles if p != "default"]
    lines = ["# Appendix: chapter parameters", "",
             "Every chapter starts with a cell tagged `parameters`. This page is generated from those cells",
             "each time the book is built, so it cannot drift from the notebooks. The *default* column is the",
             "`default` profile (a laptop CPU, claims judged); the other columns are the overrides of",
             "`book/profiles.yml` (an empty cell: the default is kept). Change a value with",
             "`python -m oversmoothing run CHAPTER -p name=value` or `papermill ... -p name value`.", ""]
    for ch in chs:
        params = parse_parameters(ch.path)
        lines += [f"## {ch.title}", "", f"Source: `{ch.entry}.ipynb`", ""]
        head = ["parameter", "type", "default", *others, "meaning"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for p in params.values():
            ov = [(_fmt(profiles[o][ch.stem][p.name]) if p.name in (profiles[o].get(ch.stem) or {}) else "")
                  for o in others]
            lines.append("| " + " | ".join([f"`{p.name}`", p.type, _esc(_fmt(p.default)), *map(_esc, ov),
                                            _esc(p.comment)]) + " |")
        lines.append("")
    if not chs:
        lines.append("No chapter in this build.")
    return "\n".join(lines) + "\n"


def _claim_order(cid: str):
    m = re.match(r"C(\d+)", str(cid))
    return (int(m.group(1)) if m else 10**6, str(cid))


def readings_grid(claims: list[dict], chs: list[Chapter]) -> list[str]:
    """Markdown lines of the claims x readings grid: one row per claim row of the report, one column for
    the headline verdict and one per reading name (a reading a claim was not judged under stays empty)."""
    names: list[str] = []
    for c in claims:
        for r in c.get("readings") or []:
            if r.get("name") not in names:
                names.append(r.get("name"))
    if not names:
        return []
    head = ["claim", "chapter", "headline", *names]
    out = ["## Verdicts under each reading", "",
           "Where a paper leaves a choice open (feature centring, activation, initialisation, training budget, ...),",
           "the chapters judge the claim under each reasonable reading. *headline* is the paper's own setting where",
           "it states one, and the reading the chapter argues for where it does not.", "",
           ":::{div} full-width readings-grid", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c, ch in zip(claims, chs):
        by_name = {r.get("name"): r.get("verdict", "") for r in c.get("readings") or []}
        ctx = re.match(r"\s*\[([^\]]+)\]", c.get("claim", ""))
        label = _esc(c.get("id", "?")) + (f" ({_esc(ctx.group(1))})" if ctx else "")
        out.append("| " + " | ".join([label, f"[{ch.stem}]({Path(ch.entry).name}.ipynb)",
                                      f"**{_esc(c.get('verdict', ''))}**",
                                      *(_esc(by_name.get(n, "")) for n in names)]) + " |")
    return out + ["", ":::", ""]


def report_page(site: Path, chs: list[Chapter], earlier: list[Chapter] = ()) -> str:
    """The claims of every chapter in ``chs``; ``earlier`` = those shown from an earlier build whose
    notebook, parameters or library changed since (said on the page)."""
    rows, missing = [], []
    for order, ch in enumerate(chs):
        path = site / (ch.entry + ".claims.json")
        if not path.is_file():
            missing.append(ch)
            continue
        data = json.loads(path.read_text())
        prov = data.get("provenance", {})
        for c in data.get("claims", []):
            rows.append((_claim_order(c.get("id")), order, ch, c, prov))
    rows.sort(key=lambda r: (r[0], r[1]))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[3].get("verdict", "?")] = counts.get(r[3].get("verdict", "?"), 0) + 1
    lines = ["# Reproduction report", "",
             "One row per claim tested by a chapter (numbered as in the design: C1-C13), generated from the",
             "claims tables the chapters wrote when they were executed for this build. A claim tested by two",
             "chapters has two rows. *Not judged* means the chapter ran with `judge_claims = False` (the",
             "`smoke` profile runs tiny sizes and judges nothing).", ""]
    if counts:
        lines += ["Verdicts: " + ", ".join(f"**{k}**: {v}" for k, v in sorted(counts.items())) + ".", ""]
    head = ["claim", "paper says", "chapter", "measured", "criterion", "verdict", "profile", "device"]
    lines += [":::{div} full-width claims-report", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, _, ch, c, prov in rows:
        link = f"[{ch.stem}]({Path(ch.entry).name}.ipynb)"
        lines.append("| " + " | ".join([_esc(c.get("id", "?")), _esc(c.get("claim", "")), link,
                                        _esc(c.get("measured", "")), _esc(c.get("criterion", "")),
                                        f"**{_esc(c.get('verdict', ''))}**", _esc(prov.get("profile", "")),
                                        _esc(prov.get("device", ""))]) + " |")
    lines += ["", ":::", ""]
    lines += readings_grid([r[3] for r in rows], [r[2] for r in rows])
    if not rows:
        lines += ["No claims were recorded in this build.", ""]
    untested = [c for c in DESIGN_CLAIMS if c not in {r[3].get("id") for r in rows}]
    if untested:
        lines += ["Claims of the design that no chapter of this build tested: " + ", ".join(untested) + ".", ""]
    if missing:
        lines += ["Chapters that recorded no claims table: " + ", ".join(f"`{c.stem}`" for c in missing) + ".", ""]
    if earlier:
        lines += ["Shown from an earlier build, although their notebook, parameters or library changed since "
                  "(rebuild them to update): " + ", ".join(f"`{c.stem}`" for c in earlier) + ".", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# staging and the HTML build
# --------------------------------------------------------------------------------------------

def _write_if_changed(path: Path, data: bytes | str) -> bool:
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return False
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _filter_toc(node, drop: set[str]):
    """The toc without the entries in ``drop`` (and without parts left empty)."""
    if isinstance(node, list):
        out = [_filter_toc(x, drop) for x in node]
        return [x for x in out if x is not None]
    if isinstance(node, dict):
        if "file" in node and _strip_suffix(str(node["file"])) in drop:
            return None
        new = dict(node)
        for key in ("parts", "chapters", "sections"):
            if key in new:
                new[key] = _filter_toc(new[key] or [], drop)
                if not new[key]:
                    del new[key]
        if "file" not in new and "root" not in new and not any(k in new for k in ("parts", "chapters")):
            return None   # a part left without chapters
        return new
    return node


def _stage(root: Path, site: Path, toc: dict, in_book: list[Chapter], all_chs: list[Chapter], profiles: dict,
           missing: list[str] = (), earlier: list[Chapter] = ()) -> bool:
    """Mirror the project into ``site`` (only files that changed are rewritten, so Sphinx stays incremental).

    ``in_book``: the chapters the book shows (this build's and those kept from earlier builds).
    Returns True when a configuration file, the toc or a static asset (CSS, images, bib...) changed:
    Sphinx's incremental build only notices changed pages, so such a change needs a full rebuild."""
    assets_changed = False
    drop = ({c.entry for c in all_chs} - {c.entry for c in in_book}) | set(missing)
    toc = _filter_toc(toc, drop)
    assets_changed |= _write_if_changed(site / "_toc.yml", yaml.safe_dump(toc, sort_keys=False))
    assets_changed |= _write_if_changed(site / "_config.yml", (root / "_config.yml").read_bytes())
    chapter_files = {c.path.resolve() for c in all_chs}
    skip_dirs = {"_build", ".ipynb_checkpoints", "__pycache__"}
    for p in sorted((root / "book").rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or skip_dirs & set(rel.parts) or p.suffix == ".ipynb" or p.resolve() in chapter_files:
            continue
        if p.name.endswith(".claims.json") or _strip_suffix(str(rel)) in GENERATED:
            continue   # (the generated pages are written below: copying the placeholder would touch them)
        changed = _write_if_changed(site / rel, p.read_bytes())
        assets_changed |= changed and p.suffix not in (".md", ".ipynb")
    _write_if_changed(site / "book" / "parameters.md", parameters_page(root, in_book, profiles))
    _write_if_changed(site / "book" / "report.md", report_page(site, in_book, earlier))
    return assets_changed


# --------------------------------------------------------------------------------------------
# locks and atomic folders
# --------------------------------------------------------------------------------------------

class FolderLock:
    """An exclusive lock (``flock``, released by the OS when its holder dies, even by SIGKILL) whose
    file names the holder: PID, host, start time, command.

    ``wait``: True = wait for the holder to finish (saying who it is), a number = wait at most that
    many seconds, False = fail at once. Either way the error names the holder and what to do."""

    def __init__(self, path: Path, what: str, wait: bool | float = True, advice: str = ""):
        self.path, self.what, self.wait, self.advice = Path(path), what, wait, advice
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        return (f"PID {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
                f" ({info.get('command', '')})")

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if self.wait is False:
                self._close()
                raise BookError(f"{self.what} is in use by {holder}; wait for it to finish"
                                + (f", or {self.advice}" if self.advice else "")) from None
            print(f"waiting: {self.what} is in use by {holder}; this one goes on when it ends "
                  f"(Ctrl-C to give up{'; or ' + self.advice if self.advice else ''})", file=sys.stderr, flush=True)
            deadline = None if self.wait is True else time.monotonic() + float(self.wait)
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        self._close()
                        raise BookError(f"{self.what} is still in use by {holder} after {self.wait} s"
                                        + (f"; {self.advice}" if self.advice else "")) from None
                    time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started": _dt.datetime.now().isoformat(timespec="seconds"),
                                      "command": " ".join(sys.argv)}).encode())
        return self

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __exit__(self, *exc):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
        self._close()       # closing releases the lock


def new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... : created atomically, never shared with another run."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for i in itertools.count(1):
        folder = parent / (name if i == 1 else f"{name}-{i}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _swap_in(new: Path, dest: Path) -> None:
    """Replace the folder ``dest`` by ``new`` (two renames, signals deferred in between)."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    with _signals_deferred():
        if dest.exists():
            os.rename(dest, old)
        os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def _recover_html(dest: Path) -> None:
    """Undo what a killed swap or copy left: restore ``dest`` from its old copy, drop partial copies."""
    for p in sorted(dest.parent.glob(f".{dest.name}.*")):
        if ".old-" in p.name and not dest.exists():
            os.rename(p, dest)
        else:
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the HTML build
# --------------------------------------------------------------------------------------------

def _jupyter_book(site: Path, work: Path, dest: Path, verbose: bool = False, everything: bool = False) -> None:
    """Render ``site`` with Jupyter Book into ``work/_build`` (incremental), then swap a copy of the HTML
    into ``dest`` atomically. A failed or interrupted build leaves ``dest`` as it was."""
    if everything:    # configuration, toc or assets changed: a clean build (no orphaned pages)
        shutil.rmtree(work / "_build", ignore_errors=True)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(site),
           "--path-output", str(work), "--warningiserror", "--keep-going"] + (["--all"] if everything else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=None if verbose else subprocess.PIPE,
                            stderr=None if verbose else subprocess.STDOUT, text=True)
    try:
        text, _ = proc.communicate()
    except BaseException:       # Ctrl-C: stop Sphinx, forget its half-updated environment
        proc.kill()
        proc.wait()
        shutil.rmtree(work / "_build" / ".doctrees", ignore_errors=True)
        raise
    if proc.returncode != 0:
        # a failed build must not leave an environment that makes the next build skip its warnings
        shutil.rmtree(work / "_build" / ".doctrees", ignore_errors=True)
        text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
        warn = [ln for ln in text.splitlines() if re.search(r"WARNING|ERROR|[Ee]rror:", ln)]
        tail = "\n".join(warn[-30:] or text.splitlines()[-30:])
        raise BuildFailed(f"jupyter-book build failed (warnings are errors; the previous HTML in {dest} "
                          f"is unchanged):\n{tail}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _recover_html(dest)
    new = dest.with_name(f".{dest.name}.new-{os.getpid()}")
    try:
        shutil.copytree(work / "_build" / "html", new, symlinks=True)
        _swap_in(new, dest)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    print(f"  html   {'jupyter-book build':<40s} {time.perf_counter() - t0:8.1f} s", file=sys.stderr)


@dataclass
class BuildResult:
    html: Path
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)   # shown from earlier builds (not requested now)


def build(root: str | Path | None = None, profile: str = "default", device: str | None = None,
          chapters_: list[str] | None = None, jobs: int = 1, force: bool = False,
          out: str | Path | None = None, staging: str | Path | None = None,
          html: bool = True, progress: bool = True, verbose: bool = False,
          wait: bool | float = True, workers: int | None = None, scheduler: str | None = None) -> BuildResult:
    """Execute the chapters (cached), generate the pages, render the book with Jupyter Book.

    device : None = the profile's ``device`` per chapter, else the notebook's default ("auto");
             a value overrides the profile. ``chapters_``: only these are executed; the book keeps
             the other chapters' last good results. ``wait``: see :class:`FolderLock`."""
    t_start = time.perf_counter()
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    scale = scale_out_env(workers, scheduler)
    _check_jobs(jobs)
    profiles = load_profiles(root)
    overrides = profile_overrides(root, profile, profiles)
    toc = load_toc(root)      # read once: others may edit it while the chapters run
    all_chs = chapters(root, toc)
    _check_profile_chapters(profile, overrides, all_chs)
    chs = [resolve_chapter(root, c, all_chs) for c in chapters_] if chapters_ else all_chs
    chs = list({c.stem: c for c in chs}.values())
    missing = [e for e in map(_strip_suffix, _toc_files(toc))
               if not any((root / (e + suf)).is_file() for suf in (".ipynb", ".md"))]
    if missing and not chapters_:
        raise BookError(f"_toc.yml lists files that do not exist: {', '.join(missing)} "
                        "(build the others with --chapters)")
    # everything is validated before anything runs
    plans = [(ch, resolve_parameters(ch, overrides.get(ch.stem, {}), device=device)) for ch in chs]

    stage_dir = (Path(staging) if staging else root / "_staging").resolve() / profile
    site = stage_dir / "site"
    env = environment_digests(root)
    dest = (Path(out) if out else root).resolve() / "_build" / "html"
    result = BuildResult(html=dest)

    def key_of(ch, params):
        dev = params.get("device", parse_parameters(ch.path).get("device", Param("", "auto", "str", "")).default)
        return _cache_key(ch, params, profile, env, resolved_device(dev))

    def paths(ch):
        return site / (ch.entry + ".ipynb"), site / (ch.entry + ".claims.json")

    with FolderLock(stage_dir / ".lock", f"the staging folder of profile {profile!r} ({stage_dir})", wait,
                    advice="give this build its own folders with --staging DIR --out DIR"):
        shutil.rmtree(stage_dir / "tmp", ignore_errors=True)    # what a killed build left (we hold the lock)
        shutil.rmtree(stage_dir / "cache", ignore_errors=True)  # the records of earlier runner versions
        todo = []
        for ch, params in plans:
            key = key_of(ch, params)
            out_nb, out_json = paths(ch)
            record = executed_record(out_nb, out_json)
            if not force and record is not None and record.get("key") == key:
                result.cached.append(ch.stem)
                result.seconds[ch.stem] = record.get("seconds")
                continue
            how = f"profile {profile}" + (f", device {params['device']}" if "device" in params else "")
            tmp = stage_dir / "tmp"
            todo.append({"name": ch.stem, "input": str(ch.path), "parameters": params, "how": how, "key": key,
                         "out_nb": str(out_nb), "out_json": str(out_json),
                         "tmp_nb": str(tmp / f"{ch.stem}.ipynb"), "result": str(tmp / f"{ch.stem}.result.json"),
                         "failed_nb": str(stage_dir / "failed" / f"{ch.stem}.ipynb"),
                         "log": str(stage_dir / "logs" / f"{ch.stem}.kernel.log"), "cwd": str(out_nb.parent),
                         "env": {"OVERSMOOTHING_CLAIMS": str(tmp / f"{ch.stem}.claims.json"),
                                 "OVERSMOOTHING_PROFILE": profile, "OVERSMOOTHING_PROGRESS": "0"}})
        for stem in result.cached:
            print(f"  cached {stem:<40s} {'':>8s}   (unchanged: not re-executed)", file=sys.stderr)
        results = _run_jobs(todo, jobs, f"chapters ({profile})", progress, scale)
        failures = []
        for job, res in zip(todo, results):
            result.seconds[job["name"]] = res["seconds"]
            if res["ok"]:
                result.executed.append(job["name"])
            else:
                failures.append(_failure_message(job["name"], Path(job["input"]), res))
        if failures:
            raise BuildFailed("\n".join(failures))
        if html:
            # the book shows every chapter with a good executed copy: this build's and earlier ones'
            built = {c.stem for c in chs}
            in_book, earlier = [], []
            for ch in all_chs:
                if ch.stem in built:
                    in_book.append(ch)
                    continue
                record = executed_record(*paths(ch))
                if record is None:
                    continue
                in_book.append(ch)
                result.kept.append(ch.stem)
                try:
                    same = record.get("key") == key_of(ch, resolve_parameters(ch, overrides.get(ch.stem, {}),
                                                                               device=device))
                except BookError:
                    same = False
                if not same:
                    earlier.append(ch)
            if result.kept:
                print(f"  kept   {', '.join(result.kept)} (from earlier builds"
                      + (f"; out of date: {', '.join(c.stem for c in earlier)}" if earlier else "") + ")",
                      file=sys.stderr)
            assets_changed = _stage(root, site, toc, in_book, all_chs, profiles, missing, earlier)
            with FolderLock(dest.parent / ".html.lock", f"the HTML folder {dest}", wait,
                            advice="give this build its own folder with --out DIR"):
                try:
                    _jupyter_book(site, stage_dir, dest, verbose=verbose, everything=assets_changed)
                except KeyboardInterrupt:
                    raise Interrupted(f"interrupted while rendering the HTML; {dest} is unchanged; the executed "
                                      "chapters are kept (the next build reuses them)") from None
    print(f"  total  {'':<40s} {time.perf_counter() - t_start:8.1f} s   "
          f"({len(result.executed)} executed, {len(result.cached)} cached)", file=sys.stderr)
    return result


# --------------------------------------------------------------------------------------------
# run one chapter; sweep a grid
# --------------------------------------------------------------------------------------------

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
                progress: bool = True, workers: int | None = None, scheduler: str | None = None) -> Path:
    """One chapter with parameters; returns the folder holding the notebook and its claims JSON."""
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    scale = scale_out_env(workers, scheduler)
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
          scheduler: str | None = None):
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
    scale = scale_out_env(workers, scheduler)
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
        from . import figures

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

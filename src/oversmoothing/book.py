"""The book runner: execute chapters with papermill, cache them, generate pages, build the HTML.

It imports none of the science modules: chapters are executed in their own kernel.

Layout of one build (``profile`` = smoke/default/paper, ``S = <staging>/<profile>``)::

    S/site/                  the Jupyter Book that is rendered (a staging copy of the project)
      _config.yml _toc.yml   copied; the toc is filtered to the chapters of this build
      book/NN_name.ipynb     the executed chapter (sources in <root>/book stay output-free)
      book/NN_name.claims.json   its claims table (written by ``ClaimsTable.save()``)
      book/parameters.md book/report.md   generated pages
    S/cache/NN_name.json     the cache key and wall time of the executed copy
    S/tmp/                   notebooks being executed (renamed into site/ only on success)
    S/failed/NN_name.ipynb   the executed copy of a chapter that raised, for debugging

HTML goes to ``<out>/_build/html`` (``out`` defaults to the project root).
"""
from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .report import md_cell  # the claims format shared with the chapters (imports no science)

__all__ = ["BookError", "BuildFailed", "Chapter", "Param", "build", "chapters", "find_root",
           "parse_parameters", "parse_assignment", "run_chapter", "sweep", "load_profiles"]

DEVICES = ("auto", "cpu", "cuda")
#: toc entries whose page the runner writes at build time (the source holds a placeholder)
GENERATED = {"book/parameters": "parameters", "book/report": "report"}
#: the claims of DESIGN.md; the report says which of them no chapter of the build tested
DESIGN_CLAIMS = tuple(f"C{i}" for i in range(1, 14))
KERNEL = "python3"
INJECTED_HEADER = "# Injected by the runner ({how}): overrides the defaults"


class BookError(Exception):
    """A user error, reported before anything runs."""


class BuildFailed(Exception):
    """One or more chapters raised (or the HTML build failed)."""


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
        return raw


def check_value(chapter: str, p: Param, value, raw: str | None = None):
    """``value`` converted to ``p``'s type, or a BookError naming chapter, parameter and types."""
    t = p.type
    ok = False
    if t == "none":
        return value
    if t == "bool":
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
                       device: str | None = "auto", params: dict[str, Param] | None = None) -> dict:
    """The parameters papermill injects: profile overrides, then ``-p`` values, then ``device``."""
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
    for name, raw in assignments:
        known(name)
        final[name] = check_value(ch.stem, params[name], _literal(raw), raw)
    if device is not None and "device" in params and "device" not in dict(assignments):
        final["device"] = device
    if "device" in final and final["device"] not in DEVICES:
        raise BookError(f"chapter {ch.stem}: device must be one of {', '.join(DEVICES)}, got {final['device']!r}")
    return final


def _check_device(device: str):
    if device not in DEVICES:
        raise BookError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")


# --------------------------------------------------------------------------------------------
# execution (one papermill run in a worker process)
# --------------------------------------------------------------------------------------------

def _label_injected_cell(nb_path: Path, how: str) -> None:
    import nbformat

    nb = nbformat.read(str(nb_path), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            body = [ln for ln in cell.source.splitlines() if ln.strip() != "# Parameters"]
            cell.source = "\n".join([INJECTED_HEADER.format(how=how), *body])
    nbformat.write(nb, str(nb_path))


def _execute(job: dict) -> dict:
    """Run one notebook: write into tmp/, rename into place only when it succeeded."""
    import papermill as pm

    os.environ.update(job["env"])
    if job.get("log"):   # the kernel's stderr (e.g. its transport warning) goes to a log file
        Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
        with open(job["log"], "w") as log:
            os.dup2(log.fileno(), 2)
    tmp_nb, tmp_json = Path(job["tmp_nb"]), Path(job["env"]["OVERSMOOTHING_CLAIMS"])
    out_nb, out_json = Path(job["out_nb"]), Path(job["out_json"])
    Path(job["cwd"]).mkdir(parents=True, exist_ok=True)
    for p in (tmp_nb, tmp_json):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = {"name": job["name"], "ok": False, "log": job.get("log")}
    try:
        pm.execute_notebook(job["input"], str(tmp_nb), parameters=job["parameters"], kernel_name=KERNEL,
                            cwd=job["cwd"], progress_bar=False, log_output=False,
                            request_save_on_cell_execute=False)
        _label_injected_cell(tmp_nb, job["how"])
        out_nb.parent.mkdir(parents=True, exist_ok=True)
        if tmp_json.exists():
            os.replace(tmp_json, out_json)
        else:
            out_json.unlink(missing_ok=True)
        os.replace(tmp_nb, out_nb)
        res["ok"] = True
    except pm.PapermillExecutionError as e:
        res.update(cell_index=e.cell_index, exec_count=e.exec_count, source=e.source,
                   error=f"{e.ename}: {e.evalue}")
    except Exception as e:  # noqa: BLE001  (kernel died, timeout, bad notebook ...)
        res.update(error=f"{type(e).__name__}: {e}")
    finally:
        res["seconds"] = round(time.perf_counter() - t0, 2)
        if not res["ok"]:
            tmp_json.unlink(missing_ok=True)
            if tmp_nb.exists() and job.get("failed_nb"):
                Path(job["failed_nb"]).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_nb, job["failed_nb"])
                res["failed_nb"] = job["failed_nb"]
            tmp_nb.unlink(missing_ok=True)
    return res


def _source_cell_number(nb_path: Path, cell_index: int | None) -> int | None:
    """The failing cell's index in the source notebook (the executed copy has one injected cell)."""
    if cell_index is None:
        return None
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
        n = _source_cell_number(source_path, res["cell_index"])
        first = next((ln for ln in (res.get("source") or "").splitlines() if ln.strip()), "")
        msg += f" in cell {n} (counting from 0) of {source_path.name} (execution count {res.get('exec_count')}): `{first[:80]}`"
    msg += f"\n    {res.get('error', 'unknown error')}"
    if res.get("failed_nb"):
        msg += f"\n    executed copy for debugging: {res['failed_nb']}"
    if res.get("log"):
        msg += f"\n    kernel log: {res['log']}"
    return msg


def _run_jobs(jobs: list[dict], n_jobs: int, desc: str, progress: bool) -> list[dict]:
    """Execute the jobs in a process pool (one worker process per job slot), with a progress bar."""
    from tqdm.auto import tqdm

    results = []
    if not jobs:
        return results
    import multiprocessing as mp

    workers = max(1, min(n_jobs, len(jobs)))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:   # share the cores, do not oversubscribe
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for j in jobs:
            j["env"] = {**j["env"], "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    bar = tqdm(total=len(jobs), desc=desc, unit="nb", disable=not progress, file=sys.stderr)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_execute, j): j for j in jobs}
        for fut in as_completed(futs):
            res = fut.result()
            results.append(res)
            mark = "ok    " if res["ok"] else "FAILED"
            bar.write(f"  {mark} {res['name']:<40s} {res['seconds']:8.1f} s", file=sys.stderr)
            bar.update(1)
    bar.close()
    order = {j["name"]: i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r["name"]])


# --------------------------------------------------------------------------------------------
# cache keys
# --------------------------------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: the runner's own files: chapters never import them, so editing them re-executes nothing
RUNNER_FILES = ("oversmoothing/book.py", "oversmoothing/cli.py", "oversmoothing/__main__.py")


def tree_hash(folder: Path, exclude: tuple[str, ...] = RUNNER_FILES) -> str:
    """Hash of every file under ``folder`` (the library source), caches and the runner excluded."""
    h = hashlib.sha256()
    if Path(folder).is_dir():
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and not p.suffix == ".pyc" \
                    and not any(s.endswith(".egg-info") for s in p.parts) \
                    and p.relative_to(folder).as_posix() not in exclude:
                h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _cache_key(ch: Chapter, parameters: dict, profile: str, lib: str, lock: str) -> str:
    return _sha(json.dumps({"notebook": _sha(ch.path.read_bytes()), "parameters": parameters,
                            "profile": profile, "src": lib, "lock": lock}, sort_keys=True).encode())


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


def report_page(site: Path, chs: list[Chapter]) -> str:
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


def _stage(root: Path, site: Path, toc: dict, chs_built: list[Chapter], all_chs: list[Chapter], profiles: dict,
           missing: list[str] = ()) -> bool:
    """Mirror the project into ``site`` (only files that changed are rewritten, so Sphinx stays incremental).

    Returns True when a configuration file or a static asset (CSS, images, bib...) changed: Sphinx's
    incremental build only notices changed pages, so such a change needs a full rebuild."""
    assets_changed = False
    drop = ({c.entry for c in all_chs} - {c.entry for c in chs_built}) | set(missing)
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
    _write_if_changed(site / "book" / "parameters.md", parameters_page(root, chs_built, profiles))
    _write_if_changed(site / "book" / "report.md", report_page(site, chs_built))
    return assets_changed


def _jupyter_book(site: Path, out: Path, verbose: bool = False, everything: bool = False) -> None:
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(site),
           "--path-output", str(out), "--warningiserror", "--keep-going"] + (["--all"] if everything else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=not verbose, text=True)
    if proc.returncode != 0:
        # a failed build must not leave an environment that makes the next build skip its warnings
        shutil.rmtree(out / "_build" / ".doctrees", ignore_errors=True)
        text = re.sub(r"\x1b\[[0-9;]*m", "", (proc.stdout or "") + (proc.stderr or ""))
        warn = [ln for ln in text.splitlines() if re.search(r"WARNING|ERROR|[Ee]rror:", ln)]
        tail = "\n".join(warn[-30:] or text.splitlines()[-30:])
        raise BuildFailed(f"jupyter-book build failed (warnings are errors):\n{tail}")
    print(f"  html   {'jupyter-book build':<40s} {time.perf_counter() - t0:8.1f} s", file=sys.stderr)


@dataclass
class BuildResult:
    html: Path
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def build(root: str | Path | None = None, profile: str = "default", device: str = "auto",
          chapters_: list[str] | None = None, jobs: int = 1, force: bool = False,
          out: str | Path | None = None, staging: str | Path | None = None,
          html: bool = True, progress: bool = True, verbose: bool = False) -> BuildResult:
    """Execute the chapters (cached), generate the pages, render the book with Jupyter Book."""
    t_start = time.perf_counter()
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    profiles = load_profiles(root)
    overrides = profile_overrides(root, profile, profiles)
    toc = load_toc(root)      # read once: others may edit it while the chapters run
    all_chs = chapters(root, toc)
    chs = [resolve_chapter(root, c, all_chs) for c in chapters_] if chapters_ else all_chs
    chs = list({c.stem: c for c in chs}.values())
    missing = [e for e in map(_strip_suffix, _toc_files(toc))
               if not any((root / (e + suf)).is_file() for suf in (".ipynb", ".md"))]
    if missing and not chapters_:
        raise BookError(f"_toc.yml lists files that do not exist: {', '.join(missing)} "
                        "(build the others with --chapters)")
    for stem in overrides:
        if stem not in {c.stem for c in all_chs}:
            print(f"warning: book/profiles.yml: profile {profile!r} sets parameters of {stem!r}, "
                  "which is not a chapter of _toc.yml", file=sys.stderr)
    # everything is validated before anything runs
    plans = [(ch, resolve_parameters(ch, overrides.get(ch.stem, {}), device=device)) for ch in chs]

    stage_dir = (Path(staging) if staging else root / "_staging").resolve() / profile
    site, cache_dir = stage_dir / "site", stage_dir / "cache"
    lib = tree_hash(root / "src")
    lock = _sha((root / "requirements.lock").read_bytes()) if (root / "requirements.lock").is_file() else ""
    result = BuildResult(html=(Path(out) if out else root).resolve() / "_build" / "html")

    todo = []
    for ch, params in plans:
        key = _cache_key(ch, params, profile, lib, lock)
        cache_file = cache_dir / f"{ch.stem}.json"
        out_nb = site / (ch.entry + ".ipynb")
        cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        if not force and out_nb.is_file() and cached.get("key") == key:
            result.cached.append(ch.stem)
            result.seconds[ch.stem] = cached.get("seconds")
            continue
        how = f"profile {profile}" + (f", device {params['device']}" if "device" in params else "")
        todo.append({"name": ch.stem, "input": str(ch.path), "parameters": params, "how": how,
                     "out_nb": str(out_nb), "out_json": str(site / (ch.entry + ".claims.json")),
                     "tmp_nb": str(stage_dir / "tmp" / f"{ch.stem}.ipynb"),
                     "failed_nb": str(stage_dir / "failed" / f"{ch.stem}.ipynb"),
                     "log": str(stage_dir / "logs" / f"{ch.stem}.kernel.log"),
                     "cwd": str(out_nb.parent), "key": key, "cache_file": str(cache_file),
                     "env": {"OVERSMOOTHING_CLAIMS": str(stage_dir / "tmp" / f"{ch.stem}.claims.json"),
                             "OVERSMOOTHING_PROFILE": profile, "OVERSMOOTHING_PROGRESS": "0"}})
    for stem in result.cached:
        print(f"  cached {stem:<40s} {'':>8s}   (unchanged: not re-executed)", file=sys.stderr)
    results = _run_jobs(todo, jobs, f"chapters ({profile})", progress)
    failures = []
    for job, res in zip(todo, results):
        result.seconds[job["name"]] = res["seconds"]
        if res["ok"]:
            result.executed.append(job["name"])
            _write_if_changed(Path(job["cache_file"]), json.dumps({"key": job["key"], "seconds": res["seconds"],
                                                                   "parameters": job["parameters"]}, indent=1))
        else:
            Path(job["cache_file"]).unlink(missing_ok=True)
            failures.append(_failure_message(job["name"], Path(job["input"]), res))
    if failures:
        raise BuildFailed("\n".join(failures))
    if html:
        assets_changed = _stage(root, site, toc, chs, all_chs, profiles, missing)
        _jupyter_book(site, (Path(out) if out else root).resolve(), verbose=verbose, everything=assets_changed)
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
    return {"name": name, "input": str(ch.path), "parameters": params, "how": how,
            "out_nb": str(folder / f"{ch.stem}.ipynb"), "out_json": str(folder / f"{ch.stem}.claims.json"),
            "tmp_nb": str(folder / ".tmp" / f"{ch.stem}.ipynb"), "failed_nb": str(folder / f"{ch.stem}.FAILED.ipynb"),
            "log": str(folder / f"{ch.stem}.kernel.log"),
            "cwd": str(folder),
            "env": {"OVERSMOOTHING_CLAIMS": str(folder / ".tmp" / f"{ch.stem}.claims.json"),
                    "OVERSMOOTHING_PROFILE": profile, "OVERSMOOTHING_PROGRESS": "0"}}


def run_chapter(chapter: str, assignments: list[str] = (), root: str | Path | None = None,
                profile: str = "default", device: str = "auto", out: str | Path | None = None,
                progress: bool = True) -> Path:
    """One chapter with parameters; returns the folder holding the notebook and its claims JSON."""
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    ch = resolve_chapter(root, chapter)
    overrides = profile_overrides(root, profile).get(ch.stem, {})
    params = resolve_parameters(ch, overrides, [parse_assignment(a) for a in assignments], device=device)
    folder = Path(out).resolve() if out else root / "_runs" / f"{ch.stem}-{_stamp()}"
    folder.mkdir(parents=True, exist_ok=True)
    res = _run_jobs([_point_job(root, ch, folder, params, profile, ch.stem)], 1, f"run {ch.stem}", progress)[0]
    shutil.rmtree(folder / ".tmp", ignore_errors=True)
    (folder / "parameters.json").write_text(json.dumps(params, indent=1))
    if not res["ok"]:
        raise BuildFailed(_failure_message(ch.stem, ch.path, res))
    return folder


def sweep(chapter: str, grid: list[str], root: str | Path | None = None, profile: str = "default",
          device: str = "auto", jobs: int = 1, out: str | Path | None = None, progress: bool = True):
    """Run the chapter at every point of the grid; gather one table. Returns (folder, DataFrame)."""
    import pandas as pd

    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    ch = resolve_chapter(root, chapter)
    overrides = profile_overrides(root, profile).get(ch.stem, {})
    axes: dict[str, list[str]] = {}
    for a in grid:
        name, raw = parse_assignment(a)
        axes[name] = split_values(raw)
    if not axes:
        raise BookError("sweep needs at least one -p name=v1,v2,...")
    info = parse_parameters(ch.path)
    points = []
    for combo in itertools.product(*axes.values()):
        assign = list(zip(axes, combo))
        params = resolve_parameters(ch, overrides, assign, device=device, params=info)
        points.append(({n: params[n] for n in axes}, params))
    folder = Path(out).resolve() if out else root / "_runs" / f"sweep-{ch.stem}-{_stamp()}"
    jobs_ = []
    for i, (swept, params) in enumerate(points):
        tag = "_".join(f"{k}-{re.sub(r'[^A-Za-z0-9.+-]', '', str(v))}" for k, v in swept.items())
        jobs_.append(_point_job(root, ch, folder / f"{i:03d}_{tag}"[:120], params, profile, f"{i:03d} {tag}",
                                "sweep"))
    results = _run_jobs(jobs_, jobs, f"sweep {ch.stem}", progress)
    rows = []
    for (swept, _), job, res in zip(points, jobs_, results):
        shutil.rmtree(Path(job["cwd"]) / ".tmp", ignore_errors=True)
        base = {**{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in swept.items()},
                "status": "ok" if res["ok"] else "failed", "wall_time_s": res["seconds"],
                "notebook": job["out_nb"] if res["ok"] else res.get("failed_nb", ""),
                "error": "" if res["ok"] else res.get("error", "")}
        claims = []
        if res["ok"] and Path(job["out_json"]).is_file():
            claims = json.loads(Path(job["out_json"]).read_text()).get("claims", [])
        for c in claims or [{}]:
            rows.append({**base, "claim": c.get("id", ""), "measured": c.get("measured", ""),
                         "verdict": c.get("verdict", "")})
    df = pd.DataFrame(rows)
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "results.csv", index=False)
    try:
        df.to_parquet(folder / "results.parquet", index=False)
    except (ImportError, ValueError):
        pass   # parquet needs pyarrow/fastparquet; the CSV is always written
    failed = [r for r in results if not r["ok"]]
    return folder, df, [_failure_message(ch.stem, ch.path, r) for r in failed]

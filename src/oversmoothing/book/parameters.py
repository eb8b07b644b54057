"""The parameters cell of a chapter (parsed with ast, never executed) and the values given on the command
line, in a profile or for scaling out: every value is checked before anything runs."""
from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ..parameters import RULES, ParameterError
from ..parameters import check as check_rule
from .errors import BookError
from .toc import Chapter, _source

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Param:
    name: str
    default: object
    type: str        # bool | int | float | str | list | none
    comment: str


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


def scale_out_env(workers=None, scheduler: str | None = None, tls: dict | None = None) -> dict[str, str]:
    """What every kernel's training grids need to run on Dask (read by :func:`oversmoothing.grid.run_grid`):
    ``--workers N`` starts a LocalCluster of N workers, ``--scheduler ADDRESS`` joins a running cluster
    (``tls://host:port``, ``tcp://host:port`` or a scheduler file), ``tls`` = {"ca", "cert", "key"} files
    (``--tls-ca/--tls-cert/--tls-key``) secure it. Unset: ``$OVERSMOOTHING_WORKERS`` / ``$OVERSMOOTHING_SCHEDULER``
    / ``$OVERSMOOTHING_TLS_*`` (else Dask's own ``distributed.comm.tls`` config). A plain ``tcp://`` address of
    another host is warned about here, in one line on stderr (the kernels then stay quiet)."""
    from ..grid.security import TLS_ENV, check_tls, plain_tcp_warning

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
            raise BookError(f"--scheduler {scheduler!r}: expects a Dask scheduler address like tls://host:8786 "
                            "or the path of an existing scheduler file")
        env["OVERSMOOTHING_SCHEDULER"] = scheduler
        warning = plain_tcp_warning(scheduler)
        if warning:
            print(warning, file=sys.stderr)
            env["OVERSMOOTHING_SCHEDULER_WARNED"] = "1"
    if tls and any(tls.values()):
        try:
            tls = check_tls(tls, scheduler)
        except ValueError as e:
            raise BookError(str(e)) from None
        env.update({TLS_ENV[role]: str(Path(path).resolve()) for role, path in tls.items()})
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

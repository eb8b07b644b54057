"""Staging and the HTML build: :func:`build` executes the chapters (cached), stages the Jupyter Book and
renders it (the layout of a build: see :mod:`oversmoothing.book`)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .cache import chapter_key, environment_digests, executed_record
from .errors import BookError, BuildFailed, Interrupted
from .execute import _failure_message, _run_jobs
from .folders import FolderLock, _recover_html, _swap_in
from .pages import GENERATED, parameters_page, report_page, summary_page
from .parameters import (_check_device, _check_jobs, _check_profile_chapters,
                         resolve_parameters, scale_out_env)
from .toc import (Chapter, _strip_suffix, _toc_files, chapters, find_root, load_profiles, load_toc,
                  profile_overrides, resolve_chapter)


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
    _write_if_changed(site / "book" / "_summary.md", summary_page(site, in_book))
    return assets_changed


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
          wait: bool | float = True, workers: int | None = None, scheduler: str | None = None,
          tls: dict | None = None) -> BuildResult:
    """Execute the chapters (cached), generate the pages, render the book with Jupyter Book.

    device : None = the profile's ``device`` per chapter, else the notebook's default ("auto");
             a value overrides the profile. ``chapters_``: only these are executed; the book keeps
             the other chapters' last good results. ``wait``: see :class:`FolderLock`."""
    t_start = time.perf_counter()
    root = find_root(root) if root is None else Path(root).resolve()
    _check_device(device)
    scale = scale_out_env(workers, scheduler, tls)
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
        return chapter_key(ch, params, profile, env)

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
            expected = (record or {}).get("runs")   # the last build's count of training runs, for the progress bar
            tmp = stage_dir / "tmp"
            todo.append({"name": ch.stem, "input": str(ch.path), "parameters": params, "how": how, "key": key,
                         "runs_expected": expected,
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

"""The runner never serves a stale result nor loses one (issue 10): the executed notebook and its cache
record are one unit, builds of one profile lock each other out, run folders are never shared, Ctrl-C
stops everything and exits 130, a partial build keeps the other chapters, the HTML is swapped in whole,
and bad values are refused before any kernel starts.

The real-process tests use the fixture mini book (01_ok works, 02_raises raises, 03_slow sleeps
``pause`` seconds and writes its kernel's PID to $MINIBOOK_MARKER) and are bounded by timeouts."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURE_BOOK, ROOT, runner
from oversmoothing import book
from oversmoothing.book import cli
from oversmoothing.parameters import ParameterError, check

OK = book.Chapter("01_ok", "book/01_ok", FIXTURE_BOOK / "book" / "01_ok.ipynb")
CHAPTERS = book.chapters(ROOT)


# ---- helpers ---------------------------------------------------------------------------------

def _set_profiles(minibook: Path, profiles: dict) -> None:
    (minibook / "book" / "profiles.yml").write_text(yaml.safe_dump(profiles))


def _start(minibook: Path, *args, marker: Path | None = None) -> subprocess.Popen:
    """``python -m oversmoothing ARGS`` in the background, in its own process group (as in a terminal)."""
    env = {**os.environ, "OVERSMOOTHING_PROGRESS": "0"}
    if marker is not None:
        env["MINIBOOK_MARKER"] = str(marker)
    return subprocess.Popen([sys.executable, "-m", "oversmoothing", "--root", str(minibook), *map(str, args)],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> int:
    """The kernel PID that 03_slow writes to ``path`` once it sleeps."""
    t0 = time.monotonic()
    while not (path.exists() and path.read_text().strip()):
        if proc.poll() is not None:
            pytest.fail(f"the process ended before 03_slow started:\n{proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            pytest.fail("03_slow did not start in time")
        time.sleep(0.1)
    return int(path.read_text())


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"   # a zombie has ended
    except (OSError, IndexError):
        return False


def _cleanup(proc: subprocess.Popen, *pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _injected(nb: Path) -> str:
    cells = json.loads(nb.read_text())["cells"]
    return "".join(next(c["source"] for c in cells if "injected-parameters" in c["metadata"].get("tags", [])))


# ---- fast: values, profiles, cache keys, locks, folders (no kernel) --------------------------

def _chapter_with(name: str) -> book.Chapter:
    for ch in CHAPTERS:
        if name in book.parse_parameters(ch.path):
            return ch
    pytest.skip(f"no chapter has a parameter {name!r}")


@pytest.mark.parametrize("name, raw", [("depth", "0"), ("hidden", "0"), ("seeds", "[]"), ("depths", "[]"),
                                       ("s", "1e999"), ("lr", "1e999"), ("s", "nan"), ("lr", "-inf")])
def test_bad_ranges_and_non_finite_values_are_refused_by_the_runner_as_by_the_chapter(name, raw):
    """The runner's message is the chapter's own (oversmoothing.parameters.check) for every value that
    has the right type; only a value of the wrong type (nan is text) gets the runner's type message."""
    ch = _chapter_with(name)
    with pytest.raises(book.BookError) as err:
        book.resolve_parameters(ch, {}, [(name, raw)], device=None)
    value = book.parameters._literal(raw)
    if not isinstance(value, str):
        with pytest.raises(ParameterError) as notebook:
            check(name, value, ch.stem)
        assert str(err.value) == str(notebook.value)
        assert re.search(rf"parameter {name} = .* is not accepted: expected", str(err.value))
    else:
        assert f"parameter {name!r} expects" in str(err.value)


def test_non_finite_values_are_refused_for_parameters_without_a_rule():
    for name, raw in [("scale", "1e999"), ("scale", "-1e999"), ("points", "[0, 1e999]")]:
        with pytest.raises(book.BookError, match=rf"parameter {name} = .*inf.* expected a finite number"):
            book.resolve_parameters(OK, {}, [(name, raw)], device=None)
    # YAML gives .inf as a float: a profile cannot smuggle it in either
    with pytest.raises(book.BookError, match="finite"):
        book.resolve_parameters(OK, {"scale": float("inf")}, device=None)


def test_spectral_init_rejects_non_finite_scales():
    import torch

    from oversmoothing.models import spectral_init_

    W = torch.empty(4, 4)
    for s in (float("inf"), float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="must be > 0 and finite"):
            spectral_init_(W, s)
    assert torch.isclose(torch.linalg.matrix_norm(spectral_init_(W, 2.0), ord=2), torch.tensor(2.0))


def test_a_profiles_device_is_checked_and_only_an_explicit_device_overrides_it():
    with pytest.raises(book.BookError, match=r"parameter device = 'tpu' is not accepted"):
        book.resolve_parameters(OK, {"device": "tpu"}, device=None)
    with pytest.raises(book.BookError, match=r"parameter device = 'tpu' is not accepted"):
        book.resolve_parameters(OK, {"device": "tpu"}, device="auto")   # not silently replaced
    assert book.resolve_parameters(OK, {"device": "cpu"}, device=None) == {"device": "cpu"}
    assert book.resolve_parameters(OK, {"device": "cuda"}, device="cpu") == {"device": "cpu"}
    assert book.resolve_parameters(OK, {}, [("device", "cuda:1")], device="cpu") == {"device": "cuda:1"}


def test_a_misspelt_chapter_in_profiles_is_an_error_naming_it_and_the_chapters(minibook):
    _set_profiles(minibook, {"default": {}, "smoke": {"01_okk": {"n": 2}}})
    with pytest.raises(book.BookError, match=r"'01_okk', which is not a chapter.*01_ok, 02_raises, 03_slow"):
        book.build(minibook, profile="smoke", progress=False)
    with pytest.raises(book.BookError, match="'01_okk', which is not a chapter"):
        book.run_chapter("01_ok", root=minibook, profile="smoke", progress=False)
    assert not (minibook / "_staging").exists() and not (minibook / "_runs").exists()


def test_jobs_must_be_positive(minibook, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--root", str(minibook), "build", "--jobs", "0"])
    assert e.value.code == 2 and "--jobs" in capsys.readouterr().err
    with pytest.raises(book.BookError, match="--jobs must be an integer >= 1"):
        book.build(minibook, jobs=0, progress=False)
    assert not (minibook / "_staging").exists()


def test_cache_key_ignores_comments_but_not_code_pins_data_or_device(tmp_path, monkeypatch):
    src = tmp_path / "src" / "pkg"
    src.mkdir(parents=True)
    mod = src / "mod.py"
    mod.write_text("def f(x):\n    return 2 * x\n")
    h0 = book.tree_hash(tmp_path / "src")
    mod.write_text("# a comment\ndef f(x):   # another\n    return 2 * x\n")
    assert book.tree_hash(tmp_path / "src") == h0
    mod.write_text("def f(x):\n    return 3 * x\n")
    assert book.tree_hash(tmp_path / "src") != h0

    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.0.0\ntorch==2.13.0\n")
    l0 = book.lock_digest(lock)
    lock.write_text("# Tested set (regenerate with: make lock)\ntorch==2.13.0  # CPU build\n\nnumpy==2.0.0\n")
    assert book.lock_digest(lock) == l0
    lock.write_text("numpy==2.0.1\ntorch==2.13.0\n")
    assert book.lock_digest(lock) != l0

    (tmp_path / "data").mkdir()
    sums = tmp_path / "data" / "SHA256SUMS"
    sums.write_text("aa  Cora/raw/x\n")
    d0 = book.data_digest(tmp_path)
    sums.write_text("ab  Cora/raw/x\n")
    assert book.data_digest(tmp_path) != d0

    env = {"src": h0, "lock": l0, "data": d0}
    assert book.cache._cache_key(OK, {}, "smoke", env, "cpu") != book.cache._cache_key(OK, {}, "smoke", env, "cuda")
    # device="auto" is resolved before it enters the key (patched where auto_device looks it up)
    monkeypatch.setattr(book.cache, "_AUTO_DEVICE", ["cuda"])
    assert book.resolved_device("auto") == "cuda" and book.resolved_device("cpu") == "cpu"



def test_the_runner_package_is_outside_the_chapters_cache_key(tmp_path):
    """Editing any file of the runner (oversmoothing/book/, __main__.py) re-executes no chapter; editing the
    library does. The chapters' cache key (tree_hash) and the grids' (grid.library_hash) agree on that."""
    import shutil

    from oversmoothing import grid
    from oversmoothing.codehash import RUNNER

    pkg = tmp_path / "src" / "oversmoothing"
    shutil.copytree(ROOT / "src" / "oversmoothing", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    runner_files = sorted((pkg / "book").rglob("*.py")) + [pkg / "__main__.py"]
    assert len(runner_files) > 5 and all(p.relative_to(pkg).as_posix().startswith(RUNNER)
                                         for p in runner_files)
    h0, g0 = book.tree_hash(tmp_path / "src"), grid.library_hash(pkg)
    assert h0 == book.tree_hash(ROOT / "src")
    for p in runner_files:
        p.write_text(p.read_text() + "\nRUNNER_EDITED = 1\n")
    (pkg / "book" / "new_module.py").write_text("x = 1\n")
    assert book.tree_hash(tmp_path / "src") == h0 and grid.library_hash(pkg) == g0
    (pkg / "graphs.py").write_text((pkg / "graphs.py").read_text() + "\nLIBRARY_EDITED = 1\n")
    assert book.tree_hash(tmp_path / "src") != h0 and grid.library_hash(pkg) != g0

_HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from oversmoothing.book import FolderLock
with FolderLock(sys.argv[2], "x"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_held_lock_names_its_holder_and_what_to_do(tmp_path):
    lock = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(ROOT / "src"), str(lock)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(book.BookError, match=rf"in use by PID {holder.pid} on .*, started .*use --staging"):
            with book.FolderLock(lock, "the staging folder", wait=False, advice="use --staging DIR"):
                pass
        with pytest.raises(book.BookError, match=rf"still in use by PID {holder.pid}"):
            with book.FolderLock(lock, "the staging folder", wait=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with book.FolderLock(lock, "the staging folder", wait=False):   # the OS released it with its holder
        pass


def test_run_folders_are_new_even_within_one_second(tmp_path):
    a, b = book.new_folder(tmp_path, "01_ok-20260101-120000"), book.new_folder(tmp_path, "01_ok-20260101-120000")
    assert a != b and a.is_dir() and b.is_dir() and b.name == "01_ok-20260101-120000-2"


# ---- real processes on the fixture book ------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_cancels_queued_chapters_stops_the_kernel_and_exits_130(minibook, tmp_path):
    _set_profiles(minibook, {"default": {}, "slow": {"03_slow": {"pause": 120}}})
    marker = tmp_path / "kernel.pid"
    proc = _start(minibook, "build", "--profile", "slow", "--chapters", "03_slow", "01_ok", "--no-progress",
                  marker=marker)
    kernel = 0
    try:
        kernel = _wait_for(marker, proc)
        os.killpg(proc.pid, signal.SIGINT)       # Ctrl-C in a terminal: the whole foreground group
        time.sleep(0.3)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)   # a second Ctrl-C must not hang it
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        assert time.monotonic() - t0 < 10
        assert "interrupted" in err and "01_ok" in err and "Traceback" not in err
        deadline = time.monotonic() + 5
        while _alive(kernel) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(kernel), "the running kernel was not stopped"
        site = minibook / "_staging" / "slow" / "site" / "book"
        assert not (site / "03_slow.ipynb").exists() and not (site / "01_ok.ipynb").exists()
        assert not list((minibook / "_staging" / "slow").glob("tmp/*")), "half state left in tmp/"
        assert not (minibook / "_build").exists()
    finally:
        _cleanup(proc, kernel)


@pytest.mark.slow
def test_a_killed_build_never_serves_a_stale_chapter(minibook, tmp_path):
    """The issue's trial: change a value, SIGKILL the build after 01 finished, revert, rebuild."""
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": 2}}})
    kw = dict(profile="smoke", html=False, progress=False)
    assert book.build(minibook, chapters_=["01_ok"], **kw).executed == ["01_ok"]
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": 5}, "03_slow": {"pause": 120}}})
    marker = tmp_path / "kernel.pid"
    proc = _start(minibook, "build", "--profile", "smoke", "--chapters", "01_ok", "03_slow", "--no-html",
                  "--no-progress", marker=marker)
    kernel = 0
    try:
        kernel = _wait_for(marker, proc)          # 01_ok (n = 5) has finished
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(kernel) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(kernel), "the orphaned kernel kept running"
    finally:
        _cleanup(proc, kernel)
    site_nb = minibook / "_staging" / "smoke" / "site" / "book" / "01_ok.ipynb"
    assert "n = 5" in _injected(site_nb)
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": 2}}})
    again = book.build(minibook, chapters_=["01_ok"], **kw)
    assert again.executed == ["01_ok"] and again.cached == [], "a stale executed copy was served as cached"
    assert "n = 2" in _injected(site_nb)


@pytest.mark.slow
def test_a_second_build_of_a_profile_waits_for_the_first_naming_it(minibook, tmp_path):
    _set_profiles(minibook, {"default": {}, "slow": {"03_slow": {"pause": 4}}})
    marker = tmp_path / "kernel.pid"
    args = ("build", "--profile", "slow", "--chapters", "03_slow", "--no-html", "--no-progress")
    first = _start(minibook, *args, marker=marker)
    second = None
    try:
        _wait_for(marker, first)
        second = _start(minibook, *args)
        _, err1 = first.communicate(timeout=120)
        _, err2 = second.communicate(timeout=120)
        assert first.returncode == 0 and second.returncode == 0, err1 + err2
        assert re.search(rf"waiting: .* in use by PID {first.pid} on .*, started ", err2), err2
        assert "cached 03_slow" in err2        # it did not re-run (nor delete) the first one's results
        site = minibook / "_staging" / "slow" / "site" / "book"
        claims = json.loads((site / "03_slow.claims.json").read_text())["claims"]
        assert [c["id"] for c in claims] == ["C2"]
        assert book.executed_record(site / "03_slow.ipynb", site / "03_slow.claims.json") is not None
    finally:
        _cleanup(first)
        if second is not None:
            _cleanup(second)


@pytest.mark.slow
def test_two_runs_in_the_same_second_get_their_own_folders(minibook, monkeypatch):
    monkeypatch.setattr(book.runs, "_stamp", lambda: "20260101-120000")   # where _output_folder looks it up
    a = book.run_chapter("01_ok", ["n=1"], root=minibook, progress=False)
    b = book.run_chapter("01_ok", ["n=2"], root=minibook, progress=False)
    assert a != b
    for folder, n in ((a, 1), (b, 2)):
        assert f"n = {n}" in _injected(folder / "01_ok.ipynb")
        assert json.loads((folder / "parameters.json").read_text())["n"] == n
        assert json.loads((folder / "01_ok.claims.json").read_text())["claims"][0]["measured"] == f"n = {n}"


@pytest.mark.slow
def test_concurrent_runs_do_not_mix_their_folders(minibook):
    procs = [_start(minibook, "run", "01_ok", "-p", f"n={n}", "--no-progress") for n in (1, 2)]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            _cleanup(p)
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = [Path(o.strip().splitlines()[-1]) for o, _ in outs]
    assert folders[0] != folders[1]
    for folder, n in zip(folders, (1, 2)):
        assert f"n = {n}" in _injected(folder / "01_ok.ipynb")
        assert json.loads((folder / "01_ok.claims.json").read_text())["claims"][0]["measured"] == f"n = {n}"
        assert not (folder / ".tmp").exists()


@pytest.mark.slow
def test_a_partial_build_keeps_the_other_chapters_in_the_book(minibook):
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": 2, "judge_claims": False}}})
    book.build(minibook, profile="smoke", chapters_=["01_ok", "03_slow"], progress=False)
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": 4, "judge_claims": False}}})
    res = book.build(minibook, profile="smoke", chapters_=["01_ok"], progress=False)
    assert res.executed == ["01_ok"] and res.kept == ["03_slow"]
    html = minibook / "_build" / "html" / "book"
    report = re.sub(r"<[^>]+>", " ", (html / "report.html").read_text())
    assert "03_slow" in report and "the chapter slept" in report and "n = 4" in report
    assert "pause" in (html / "parameters.html").read_text()
    assert (html / "03_slow.html").is_file() and "03_slow" in (html / "01_ok.html").read_text()  # in the toc


@pytest.mark.slow
def test_a_failed_html_build_leaves_the_previous_html_whole(minibook):
    book.build(minibook, profile="smoke", chapters_=["01_ok"], progress=False)
    html = minibook / "_build" / "html"
    before = {p.relative_to(html): p.read_bytes() for p in html.rglob("*") if p.is_file()}
    intro = minibook / "book" / "intro.md"
    intro.write_text(intro.read_text() + "\nA new sentence. See {doc}`no_such_page`.\n")
    with pytest.raises(book.BuildFailed, match="no_such_page"):
        book.build(minibook, profile="smoke", chapters_=["01_ok"], progress=False)
    after = {p.relative_to(html): p.read_bytes() for p in html.rglob("*") if p.is_file()}
    assert after == before, "the published HTML was changed by a failed build"
    assert not [p for p in html.parent.iterdir() if p.name.startswith(".html.")
                and p.name != ".html.lock"], "a partial copy was left next to the HTML"


@pytest.mark.slow
def test_failures_of_run_are_not_called_build_failures_and_old_failures_are_removed(minibook):
    proc = runner("--root", minibook, "run", "02_raises", "--no-progress")
    assert proc.returncode == 1 and "\nchapter 02_raises failed in cell 3 (counting from 0)" in proc.stderr
    assert "build failed" not in proc.stderr
    # a chapter that fails (0.0 ** -1), then succeeds: its failed/ copy goes
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": -1}}})
    with pytest.raises(book.BuildFailed, match="ZeroDivisionError"):
        book.build(minibook, profile="smoke", chapters_=["01_ok"], html=False, progress=False)
    failed = minibook / "_staging" / "smoke" / "failed" / "01_ok.ipynb"
    assert failed.is_file()
    _set_profiles(minibook, {"default": {}, "smoke": {"01_ok": {"n": 2}}})
    book.build(minibook, profile="smoke", chapters_=["01_ok"], html=False, progress=False)
    assert not failed.exists(), "an old failed copy survived a later success"


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["run", "01_ok", "-p", "scale=1e999"], "parameter scale = inf is not accepted"),
    (["run", "01_ok", "-p", "device=tpu"], "parameter device = 'tpu' is not accepted"),
    (["build", "--profile", "tpu"], "parameter device = 'tpu' is not accepted"),
    (["sweep", "01_ok", "-p", "seed=0,-1"], "parameter seed = -1 is not accepted"),
])
def test_bad_values_are_refused_before_any_kernel_starts(minibook, args, message):
    _set_profiles(minibook, {"default": {}, "tpu": {"01_ok": {"device": "tpu"}}})
    proc = runner("--root", minibook, *args, "--no-progress")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (minibook / "_runs").exists() and not (minibook / "_staging").exists()


def test_a_kernel_that_did_not_start_is_started_again(tmp_path, monkeypatch):
    """Two kernels started at once can draw the same free port ("Address already in use", then "Kernel didn't
    respond in 60 seconds"); no cell ran, so the runner starts the notebook again instead of failing it.
    Any other error is not retried."""
    import nbformat
    import papermill

    from oversmoothing.book import execute

    calls = []

    def flaky(input_path, output_path, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds")
        nbformat.write(nbformat.v4.new_notebook(), output_path)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    job = {"name": "01_x", "input": "in.ipynb", "tmp_nb": str(tmp_path / "tmp" / "01_x.ipynb"), "cwd": str(tmp_path),
           "parameters": {}, "how": "test", "log": None,
           "env": {"OVERSMOOTHING_CLAIMS": str(tmp_path / "tmp" / "01_x.claims.json")}}
    res = execute._execute(job)
    assert res["ok"] and res["kernel_starts"] == 2 and len(calls) == 2

    def broken(*a, **k):
        calls.append(1)
        raise RuntimeError("some other failure")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", broken)
    res = execute._execute(job)
    assert not res["ok"] and "some other failure" in res["error"] and len(calls) == 1

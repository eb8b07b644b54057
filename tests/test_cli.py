"""The runner's command line: parameter checking, `run`, `sweep` (on the fixture book)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import FIXTURE_BOOK, runner
from oversmoothing import book

OK = FIXTURE_BOOK / "book" / "01_ok.ipynb"


def test_parameters_cell_is_parsed_without_executing():
    params = book.parse_parameters(OK)
    assert list(params) == ["n", "scale", "label", "points", "seed", "device", "judge_claims"]
    assert (params["n"].type, params["n"].default, params["n"].comment) == ("int", 3, "exponent of the curve")
    assert params["scale"].type == "float" and params["points"].type == "list"
    assert params["judge_claims"].type == "bool" and params["label"].default == "curve"


@pytest.mark.parametrize("name, raw, expected", [
    ("scale", "2", 2.0),                 # an int is fine for a float
    ("judge_claims", "false", False),
    ("label", "3", "3"),                 # a str parameter takes the text as typed
    ("points", "[4, 5]", [4, 5]),
    ("n", "7", 7),
])
def test_values_are_converted_to_the_parameters_type(name, raw, expected):
    ch = book.Chapter("01_ok", "book/01_ok", OK)
    assert book.resolve_parameters(ch, {}, [(name, raw)], device=None) == {name: expected}


@pytest.mark.parametrize("name, raw", [("n", "2.5"), ("n", "true"), ("judge_claims", "1"), ("points", "3"),
                                       ("scale", "'big'")])
def test_values_of_the_wrong_type_are_refused(name, raw):
    ch = book.Chapter("01_ok", "book/01_ok", OK)
    with pytest.raises(book.BookError, match=f"parameter '{name}' expects"):
        book.resolve_parameters(ch, {}, [(name, raw)], device=None)


def test_sweep_values_split_on_top_level_commas():
    assert book.split_values("8,16,32") == ["8", "16", "32"]
    assert book.split_values("[1,2],[3]") == ["[1,2]", "[3]"]
    assert book.split_values("'a,b',c") == ["'a,b'", "c"]


@pytest.mark.slow
@pytest.mark.parametrize("param, message", [("bogus=1", "unknown parameter 'bogus'"),
                                            ("n=2.5", "parameter 'n' expects int")])
def test_run_refuses_bad_parameters_before_executing(minibook, param, message):
    proc = runner("--root", minibook, "run", "01_ok", "-p", param, "--no-progress")
    assert proc.returncode == 2 and message in proc.stderr
    assert not (minibook / "_runs").exists()


@pytest.mark.slow
def test_run_writes_notebook_and_claims(minibook):
    proc = runner("--root", minibook, "run", "1", "-p", "n=5", "-p", "judge_claims=False", "--device", "cpu",
                  "--no-progress", check=True)
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder.parent == minibook / "_runs" and folder.is_dir()
    nb = json.loads((folder / "01_ok.ipynb").read_text())
    injected = "".join(next(c["source"] for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])))
    assert "n = 5" in injected and 'device = "cpu"' in injected
    claims = json.loads((folder / "01_ok.claims.json").read_text())
    assert [c["id"] for c in claims["claims"]] == ["C1", "C13"]
    assert claims["claims"][0]["measured"] == "n = 5" and claims["claims"][0]["verdict"] == "not judged"


@pytest.mark.slow
def test_sweep_gathers_one_row_per_point_with_metric_columns(minibook):
    proc = runner("--root", minibook, "sweep", "01_ok", "-p", "n=1,2", "-p", "scale=0.5", "--jobs", "2",
                  "--no-progress", check=True)
    table = Path(proc.stdout.strip().splitlines()[-1])
    df = pd.read_csv(table)
    assert {"n", "scale", "status", "wall_time_s", "y_at_2", "n_plus_seed", "verdict_C1", "verdict_C13"} <= set(df.columns)
    assert len(df) == 2 and (df["status"] == "ok").all() and sorted(df["n"]) == [1, 2]
    assert df.set_index("n")["y_at_2"].to_dict() == {1: 0.5 * 2, 2: 0.5 * 4}     # claims.metric -> a column
    assert set(df["verdict_C1"]) == {"reproduced"}
    assert not (table.parent / "summary.csv").exists()                         # seed not swept: no summary


@pytest.mark.slow
def test_sweep_summarises_over_seeds_plots_and_resumes(minibook):
    args = ("--root", minibook, "sweep", "01_ok", "-p", "n=1,2", "-p", "seed=0,1,2", "--jobs", "2", "--no-progress")
    proc = runner(*args, "--plot", "n_plus_seed", check=True)
    folder = Path(proc.stdout.strip().splitlines()[-1]).parent
    summary = pd.read_csv(folder / "summary.csv").set_index("n")
    assert summary.loc[1, "n_plus_seed_mean"] == 2.0 and summary.loc[2, "n_plus_seed_mean"] == 3.0
    assert summary.loc[1, "n_plus_seed_sd"] == 1.0 and (summary["n_plus_seed_n"] == 3).all()
    assert (folder / "plot.png").read_bytes()[:4] == b"\x89PNG"
    # resume: the finished points are read back, not executed again; a removed point runs again
    first = {p: p.stat().st_mtime_ns for p in folder.glob("*/01_ok.ipynb")}
    assert len(first) == 6
    victim = sorted(first)[4]
    victim.unlink()
    again = pd.read_csv(Path(runner(*args[:-3], "--resume", str(folder), "--no-progress",
                                    check=True).stdout.strip().splitlines()[-1]))
    after = {p: p.stat().st_mtime_ns for p in folder.glob("*/01_ok.ipynb")}
    assert [p for p in first if p != victim and after[p] != first[p]] == []      # untouched
    assert victim in after and again["resumed"].sum() == 5 and (again["status"] == "ok").all()
    assert sorted(again["n_plus_seed"]) == sorted(pd.read_csv(folder / "results.csv")["n_plus_seed"])


@pytest.mark.slow
def test_sweep_plot_and_resume_refuse_bad_values(minibook, tmp_path):
    proc = runner("--root", minibook, "sweep", "01_ok", "-p", "seed=0,1", "--plot", "y_at_2", "--no-progress")
    assert proc.returncode == 2 and "other than seed" in proc.stderr
    proc = runner("--root", minibook, "sweep", "01_ok", "-p", "n=1", "--resume", str(tmp_path), "--no-progress")
    assert proc.returncode == 2 and "not a sweep folder" in proc.stderr


@pytest.mark.slow
def test_sweep_refuses_a_bad_point_before_running(minibook):
    proc = runner("--root", minibook, "sweep", "01_ok", "-p", "n=1,2.5", "--no-progress")
    assert proc.returncode == 2 and "expects int" in proc.stderr and not (minibook / "_runs").exists()


@pytest.mark.slow
def test_workers_reach_every_kernel_and_bad_values_are_refused(minibook):
    proc = runner("--root", minibook, "run", "01_ok", "--workers", "3", "--no-progress", check=True)
    metrics = json.loads((Path(proc.stdout.strip().splitlines()[-1]) / "01_ok.claims.json").read_text())["metrics"]
    assert metrics["workers_env"] == 3 and metrics["kernel_threads"] == 1     # the work is on the workers
    for flag, value, message in [("--workers", "0", "expects an integer >= 1"),
                                 ("--workers", "two", "expects an integer >= 1"),
                                 ("--scheduler", "localhost", "expects a Dask scheduler address")]:
        proc = runner("--root", minibook, "run", "01_ok", flag, value, "--no-progress")
        assert proc.returncode == 2 and message in proc.stderr and value in proc.stderr, proc.stderr


def test_scale_out_environment():
    assert book.scale_out_env(None, None) == {} or "OVERSMOOTHING_WORKERS" in __import__("os").environ
    assert book.scale_out_env(2, None) == {"OVERSMOOTHING_WORKERS": "2", "OVERSMOOTHING_EXECUTOR": "dask"}
    assert book.scale_out_env(1, None) == {"OVERSMOOTHING_WORKERS": "1"}
    env = book.scale_out_env(None, "tcp://10.0.0.5:8786")
    assert env["OVERSMOOTHING_SCHEDULER"] == "tcp://10.0.0.5:8786" and env["OVERSMOOTHING_EXECUTOR"] == "dask"
    with pytest.raises(book.BookError, match="--workers -1"):
        book.scale_out_env(-1, None)

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
def test_sweep_gathers_one_table(minibook):
    proc = runner("--root", minibook, "sweep", "01_ok", "-p", "n=1,2", "-p", "scale=0.5", "--jobs", "2",
                  "--no-progress", check=True)
    table = Path(proc.stdout.strip().splitlines()[-1])
    df = pd.read_csv(table)
    assert {"n", "scale", "claim", "measured", "verdict", "wall_time_s"} <= set(df.columns)
    assert sorted(df["n"].unique()) == [1, 2] and len(df) == 4 and (df["status"] == "ok").all()
    assert set(df.loc[df.claim == "C1", "measured"]) == {"n = 1", "n = 2"}


@pytest.mark.slow
def test_sweep_refuses_a_bad_point_before_running(minibook):
    proc = runner("--root", minibook, "sweep", "01_ok", "-p", "n=1,2.5", "--no-progress")
    assert proc.returncode == 2 and "expects int" in proc.stderr and not (minibook / "_runs").exists()

"""Claims tables, provenance and the chapter opening."""
import json
import re

import pytest
import torch

from oversmoothing.chapter import setup_chapter
from oversmoothing.parameters import ParameterError
from oversmoothing.report import NON_FINITE, ClaimsTable, Provenance, md_cell


def test_claims_table_saves_json_atomically_where_the_runner_asks(tmp_path, monkeypatch):
    target = tmp_path / "out" / "01.claims.json"
    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(target))
    monkeypatch.setenv("OVERSMOOTHING_PROFILE", "smoke")
    monkeypatch.delenv("OVERSMOOTHING_WORKERS", raising=False)
    monkeypatch.delenv("OVERSMOOTHING_SCHEDULER", raising=False)
    t = ClaimsTable("01_x", Provenance(3, "cpu"))
    t.add("C1", "E decays", "r = 0.1", "r <= s*lambda", True)
    t.add("C13", "gap sets speed", "k = 2", "k <= 5", None)
    assert t.save() == target
    d = json.loads(target.read_text())
    assert [c["verdict"] for c in d["claims"]] == ["reproduced", "not judged"]
    assert d["provenance"]["seed"] == 3 and d["provenance"]["profile"] == "smoke"
    assert {"torch", "python", "wall_time_s", "device"} <= set(d["provenance"])
    assert d["provenance"]["executor"] == "local"
    assert not list(target.parent.glob("*.part"))
    for env, executor in [({"OVERSMOOTHING_WORKERS": "2"}, "dask: 2 workers"), ({"OVERSMOOTHING_WORKERS": "1"}, "local"),
                          ({"OVERSMOOTHING_SCHEDULER": "tcp://h:8786"}, "dask: tcp://h:8786")]:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            assert Provenance(0, "cpu").as_dict()["executor"] == executor


def test_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="verdict must be one of"):
        ClaimsTable("x").add("C1", "a", "b", "c", "sort of")


def test_markdown_cells_escape_pipes_and_stars_outside_math():
    assert md_cell("a | b") == "a \\| b"
    assert md_cell("s*lambda and $s*\\lambda$") == "s\\*lambda and $s*\\lambda$"
    assert "\n" not in md_cell("two\nlines")
    row = ClaimsTable("x")
    row.add("C1", "x*y", "1|2", "c", False)
    assert "x\\*y" in row.to_markdown() and "1\\|2" in row.to_markdown() and "**not reproduced**" in row.to_markdown()


def test_readings_and_metrics_round_trip_through_the_json(tmp_path, monkeypatch):
    target = tmp_path / "04.claims.json"
    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(target))
    t = ClaimsTable("04_x", Provenance(0, "cpu"))
    t.add("C4", "trap", "L=40 trapped", "crit", "partly reproduced",
          readings=[dict(name="uncentred features", setting="mean kept", verdict=False, measured="L=5 trapped"),
                    dict(name="tanh", setting="rho = tanh", verdict=None, measured="-")])
    t.metric("test_acc_L64", 0.845)
    t.metric("ratio", float("inf"))
    d = json.loads(t.save().read_text())
    r = d["claims"][0]["readings"]
    assert [x["verdict"] for x in r] == ["not reproduced", "not judged"]
    assert r[0] == {"name": "uncentred features", "setting": "mean kept", "verdict": "not reproduced",
                    "measured": "L=5 trapped", "key": ""}
    assert d["metrics"] == {"test_acc_L64": 0.845, "ratio": None}
    assert "Other readings" in t.to_markdown() and "uncentred features" in t.to_markdown()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [1.0, float("-inf")], [[0.1], [float("nan")]]])
def test_a_non_finite_measurement_is_never_a_verdict(bad):
    t = ClaimsTable("x")
    assert t.add("C2", "a", "b", "c", True, numbers=bad).verdict == NON_FINITE
    assert t.add("C2", "a", "b", "c", False, numbers=[1.0, 2.0]).verdict == "not reproduced"


def test_setup_chapter_seeds_and_names_the_table():
    dev, prov, claims = setup_chapter("07_demo", dict(seed=5, device="cpu"))
    a = torch.rand(3)
    setup_chapter("07_demo", dict(seed=5, device="cpu"))
    assert torch.equal(a, torch.rand(3))
    assert dev.type == "cpu" and prov.seed == 5 and claims.chapter == "07_demo" and claims.provenance is prov
    assert prov.as_dict()["parameters"] == {"seed": 5, "device": "cpu"}


@pytest.mark.parametrize("bad, match", [(dict(depth=0), "depth = 0 .*>= 1"), (dict(s=float("inf")), "s = inf"),
                                        (dict(seeds=[]), "seeds = \\[\\] .*at least 1"),
                                        (dict(hidden=0), "hidden = 0"), (dict(device="tpu"), "device = 'tpu'"),
                                        (dict(lr=float("nan")), "lr = nan"), (dict(depths=[4, -1]), "depths")])
def test_setup_chapter_refuses_bad_parameters_before_any_work(bad, match):
    with pytest.raises(ParameterError, match=match):
        setup_chapter("07_demo", {**dict(seed=0, device="cpu"), **bad})


def test_setup_chapter_ignores_modules_and_ipython_names_and_converts_integral_floats():
    import math
    ns = dict(seed=0, device="cpu", depth=5.0, math=math, In=[], Out={}, _i1="x", f=lambda: 1, PALETTE="colorblind")
    setup_chapter("07_demo", ns)
    assert ns["depth"] == 5 and isinstance(ns["depth"], int)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_setup_chapter_refuses_cuda_without_a_gpu():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        setup_chapter("07_demo", dict(seed=0, device="cuda"))


def _chapter_with_claims(site, stem, table, claims_heading=True):
    """A chapter of ``site`` (its notebook, with or without a "Claims" heading, and its claims JSON)."""
    from oversmoothing import book

    (site / "book").mkdir(exist_ok=True)
    nb = site / "book" / f"{stem}.ipynb"
    heading = "## Claims" if claims_heading else "## Results"
    nb.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": [heading]}]}))
    (site / "book" / f"{stem}.claims.json").write_text(json.dumps(table.as_dict()))
    return book.Chapter(stem=stem, entry=f"book/{stem}", path=nb)


@pytest.fixture
def judged_site(tmp_path, monkeypatch):
    """Two chapters whose claims cover every verdict, with readings (as a default build writes them)."""
    monkeypatch.setenv("OVERSMOOTHING_PROFILE", "default")
    a = ClaimsTable("04_x", Provenance(0, "cpu"))
    a.add("C4", "[CSBM lambda=0.16] trap", "L = 40, 3 graphs: GNN L=40 trapped 9/9 (by epoch 20: 9/9)", "c", True,
          readings=[dict(name="uncentred features", setting="mean kept", verdict=False, measured="trapped 0/1"),
                    dict(name="tanh", setting="rho = tanh", verdict="partly reproduced", measured="2/3 seeds")])
    a.add("C6", "chance", "loss/chance ce: 1.000", "c", None)
    b = ClaimsTable("05_y", Provenance(0, "cpu"))
    b.add("C13", "gap", "complete (n=100): lambda=0.0101, k_1%=2", "c", False,
          readings=[dict(name="tanh", setting="rho = tanh", verdict=True, measured="3 of 3 seeds agree")])
    b.add("C2", "backward", "E(B) ratio", "c", True, numbers=[float("nan")])
    chs = [_chapter_with_claims(tmp_path, "04_x", a), _chapter_with_claims(tmp_path, "05_y", b, claims_heading=False)]
    return tmp_path, chs


def _matrix_rows(page):
    matrix = re.search(r'<table class="verdict-matrix">.*?</table>', page, re.S)
    assert matrix, "no verdict matrix on the report"
    return {m.group(1): m.group(2) for m in re.finditer(r'<tr id="([^"]+)">(.*?)</tr>', matrix.group(0), re.S)}


def _cells(row):
    return re.findall(r'<td class="([^"]*)"[^>]*>(.*?)</td>', row, re.S)


def test_report_opens_with_a_verdict_matrix_of_badges_and_key_numbers(judged_site):
    from oversmoothing import book

    site, chs = judged_site
    page = book.report_page(site, chs)
    assert page.index("verdict-matrix") < page.index("| claim | paper says |")   # the matrix comes first
    rows = _matrix_rows(page)
    assert list(rows) == ["C2-05_y", "C4-04_x", "C6-04_x", "C13-05_y"]            # one row per claim row, by number
    head = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    assert re.findall(r"<span>([^<]*)</span>", head) == ["headline", "uncentred features", "tanh"]
    # the claim: id, a few words, a link to the chapter's claims section (the page when it has none)
    assert '<a href="04_x.html#claims"><b>C4</b> deep GNN trapped</a>' in rows["C4-04_x"]
    assert "CSBM lambda=0.16" in rows["C4-04_x"]
    assert '<a href="05_y.html"><b>C13</b> spectral gap sets speed</a>' in rows["C13-05_y"]
    cells = {rid: [(cls, re.sub(r"<[^>]+>", "", text).strip()) for cls, text in _cells(row)]
             for rid, row in rows.items()}
    assert cells["C4-04_x"] == [("verdict verdict-reproduced headline", "✓ trapped 9/9"),
                                ("verdict verdict-not-reproduced", "✗ trapped 0/1"),
                                ("verdict verdict-partly", "◐ 2/3 seeds")]
    assert cells["C6-04_x"] == [("verdict verdict-not-judged headline", "– ce:1.000"), ("empty", ""), ("empty", "")]
    assert cells["C13-05_y"] == [("verdict verdict-not-reproduced headline", "✗ lambda=0.0101"), ("empty", ""),
                                 ("verdict verdict-reproduced", "✓ 3/3 seeds")]
    assert cells["C2-05_y"][0][0] == "verdict verdict-not-judged headline"         # non-finite: grey
    assert 'title="reproduced: L = 40, 3 graphs: GNN L=40 trapped 9/9 (by epoch 20: 9/9)"' in rows["C4-04_x"]


def test_report_keeps_the_full_table_folded_and_the_counts(judged_site):
    from oversmoothing import book

    site, chs = judged_site
    page = book.report_page(site, chs)
    assert ("Verdicts: **reproduced**: 1, **not reproduced**: 1, **not judged**: 1, "
            "**not judged: non-finite**: 1.") in page
    folded = page[page.index("::::{dropdown}"):]
    folded = folded[: folded.index("\n::::\n")]
    assert "| claim | paper says | chapter | measured | criterion | verdict | profile | device |" in folded
    assert "| C4 | [CSBM lambda=0.16] trap | [04_x](04_x.ipynb) |" in folded
    assert folded.count("| C") == 4
    untested = re.search(r"no chapter of this build tested: (.*)\.", page).group(1).split(", ")
    assert "C4" not in untested and "C1" in untested and len(untested) == 13 - 4


def test_parts_of_a_claim_count_as_testing_it(tmp_path):
    from oversmoothing import book

    t = ClaimsTable("07_z", Provenance(0, "cpu"))
    t.add("C10a", "some c", "3/3 seeds", "c", True)
    t.add("C10b", "c = 4", "0/3 seeds", "c", False)
    page = book.report_page(tmp_path, [_chapter_with_claims(tmp_path, "07_z", t)])
    assert "C10," not in page and "C10." not in page and "C10a</b> Lipschitz norm, some c" in page


@pytest.mark.parametrize("measured, key", [
    ("reproduced, 3/3 seeds (L=12, lambda=0.157)", "3/3 seeds"),
    ("standard CSBM (lambda = 0.160), 3 graphs x 3 seeds: GNN L=40 trapped 9/9 (by epoch 20: 9/9)", "trapped 9/9"),
    ("GNN L=64, seeds [0, 1, 2]: mu = 8.8e-12. 3 of 3 seeds agree.", "3/3 seeds"),
    ("complete (n=100): lambda=0.0101, k_1%=2", "lambda=0.0101"),
    ("deep GNN: largest layer gradient 2.2e-10; deep MLP: 0.6", "gradient 2.2e-10"),
    ("fitted rate r = 0.055..0.057", "r=0.055..0.057"),
    ("17 runs, strata: rho grad vs repr -0.64 vs -0.57", "-0.64 vs -0.57"),
    ("an extraordinarily_long_quantity_name = 0.25", "0.25"),
    ("no number at all", ""),
])
def test_key_number_is_one_short_number_of_the_measured_text(measured, key):
    from oversmoothing.book import key_number

    assert key_number(measured) == key


def test_summary_counts_the_verdicts_and_links_each_claim_to_its_report_row(judged_site):
    from oversmoothing import book

    site, chs = judged_site
    summary = book.summary_page(site, chs)
    assert summary.startswith(":::{admonition} What reproduced")
    assert ("4 claim rows in this build (profile default): **reproduced**: 1, **not reproduced**: 1, "
            "**not judged**: 1, **not judged: non-finite**: 1.") in summary
    badges = re.findall(r'<a class="verdict ([^"]+)" href="report.html#([^"]+)"', summary)
    assert badges == [("verdict-not-judged", "C2-05_y"), ("verdict-reproduced", "C4-04_x"),
                      ("verdict-not-judged", "C6-04_x"), ("verdict-not-reproduced", "C13-05_y")]
    assert [rid for _, rid in badges] == list(_matrix_rows(book.report_page(site, chs)))   # the links land


def test_summary_says_when_nothing_was_judged(tmp_path, monkeypatch):
    from oversmoothing import book

    monkeypatch.setenv("OVERSMOOTHING_PROFILE", "smoke")
    t = ClaimsTable("01_x", Provenance(0, "cpu"))
    t.add("C1", "decay", "r = 0.1", "c", None)
    ch = _chapter_with_claims(tmp_path, "01_x", t)
    assert "The claims were not judged in this build (profile smoke" in book.summary_page(tmp_path, [ch])
    assert "verdict-not-judged" in book.summary_page(tmp_path, [ch])
    assert "No chapter of this build recorded its claims" in book.summary_page(tmp_path / "nowhere", [ch])
    assert "verdict-matrix" not in book.report_page(tmp_path / "nowhere", [ch])


def test_each_kernel_gets_its_fair_share_of_the_cores(monkeypatch):
    from oversmoothing.book import fair_share_threads

    monkeypatch.delenv("OVERSMOOTHING_THREADS", raising=False)
    assert fair_share_threads(1, cores=2)["OVERSMOOTHING_THREADS"] == "2"
    assert fair_share_threads(2, cores=2) == {"OVERSMOOTHING_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert fair_share_threads(4, cores=2)["OMP_NUM_THREADS"] == "1"
    assert fair_share_threads(1, cores=2, busy=1.8)["OVERSMOOTHING_THREADS"] == "1"   # other work on the cores
    assert fair_share_threads(2, cores=16, busy=5.6)["OVERSMOOTHING_THREADS"] == "5"
    monkeypatch.setenv("OVERSMOOTHING_THREADS", "3")
    assert fair_share_threads(2, cores=16)["OVERSMOOTHING_THREADS"] == "3"


def test_setup_chapter_takes_its_threads_from_the_runner(monkeypatch):
    n = torch.get_num_threads()
    try:
        monkeypatch.setenv("OVERSMOOTHING_THREADS", "1")
        _, prov, _ = setup_chapter("07_demo", dict(seed=0, device="cpu"))
        assert torch.get_num_threads() == 1 and prov.as_dict()["torch_threads"] == 1
    finally:
        torch.set_num_threads(n)


def test_glue_records_the_value_for_the_prose_and_runs_without_myst_nb(monkeypatch, capsys):
    import builtins

    import numpy as np

    from oversmoothing.report import glue

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    assert glue("r_mid", np.float64(0.25)) == 0.25 and type(glue("n", np.int64(3))) is int
    assert shown and "r_mid" in str(shown[0])  # myst-nb's glue displayed a record named r_mid
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "myst_nb" else real_import(name, *a, **k))
    shown.clear()
    assert glue("r_mid", 0.5) == 0.5 and not shown


def test_a_chapters_key_wins_over_the_guess_and_round_trips_through_the_json(tmp_path, monkeypatch):
    """A claim's/reading's ``key`` is what the verdict matrix shows; without one the matrix guesses from
    ``measured``; the tooltip keeps the full measured text; the key survives save() and the JSON."""
    from oversmoothing import book

    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(tmp_path / "t.claims.json"))
    t = ClaimsTable("08_z", Provenance(0, "cpu"))
    t.add("C8", "grad", "seeds [0, 1, 2]: graph part 9.4e-02, 7.6e-02. 3 of 3 seeds agree.", "c", False,
          key="graph ×0.08-0.11",
          readings=[dict(name="He init", setting="s", verdict=False, measured="3 of 3 seeds; graph 0.09",
                         key="graph ×0.08-0.11"),
                    dict(name="no control", setting="s", verdict="partly reproduced", measured="trapped 2/3")])
    t.add("C7", "s helps", "GNN trap epoch by s: 0.5: 0, 1: 0", "c", False, key="trap at ep. 0")
    data = json.loads(t.save().read_text())
    assert [c["key"] for c in data["claims"]] == ["graph ×0.08-0.11", "trap at ep. 0"]
    assert [r["key"] for r in data["claims"][0]["readings"]] == ["graph ×0.08-0.11", ""]
    ch = _chapter_with_claims(tmp_path, "08_z", t)
    rows = _matrix_rows(book.report_page(tmp_path, [ch]))
    cells = {rid: [re.sub(r"<[^>]+>", "", text).strip() for _, text in _cells(row)] for rid, row in rows.items()}
    assert cells["C7-08_z"][0] == "✗ trap at ep. 0"                     # not the guess "s:0.5"
    assert cells["C8-08_z"] == ["✗ graph ×0.08-0.11", "✗ graph ×0.08-0.11", "◐ trapped 2/3"]  # absent: guessed
    assert 'title="not reproduced: GNN trap epoch by s: 0.5: 0, 1: 0"' in rows["C7-08_z"]   # full text kept
    assert book.pages.key_of({"measured": "trapped 2/3", "key": ""}) == "trapped 2/3"
    assert book.pages.key_of({"measured": "trapped 2/3", "key": "x = 1"}) == "x = 1"


def test_a_hand_written_claims_json_with_keys_fills_the_matrix(tmp_path):
    """The verdict matrix of a claims JSON written by hand (as a default build would write it, with keys)."""
    from oversmoothing import book

    (tmp_path / "book").mkdir()
    nb = tmp_path / "book" / "04_w.ipynb"
    nb.write_text(json.dumps({"cells": []}))
    (tmp_path / "book" / "04_w.claims.json").write_text(json.dumps({"chapter": "04_w", "claims": [
        {"id": "C4", "claim": "trap", "measured": "GNN L=40 trapped 9/9", "criterion": "c", "verdict": "reproduced",
         "key": "trapped 9/9", "readings": [
             {"name": "tanh", "setting": "s", "verdict": "partly reproduced",
              "measured": "GNN L=40 trapped 1/1; GNN L=5 trained 1/1; MLP L=40 not trapped 1/1", "key": "L=40 ep.20: 0/1"},
             {"name": "softplus (offset)", "setting": "s", "verdict": "not reproduced",
              "measured": "GNN L=40 trapped 1/1; GNN L=5 trained 0/1"}]},      # an older JSON: no key
        {"id": "C6", "claim": "chance", "measured": "loss/chance ce: 1.000", "criterion": "c",
         "verdict": "reproduced", "key": "loss/chance 1.00", "readings": []}], "metrics": {}, "provenance": {}}))
    ch = book.Chapter(stem="04_w", entry="book/04_w", path=nb)
    lines = book.verdict_matrix(book.claim_rows(tmp_path, [ch])[0])
    rows = _matrix_rows("\n".join(lines))
    cells = {rid: [re.sub(r"<[^>]+>", "", text).strip() for _, text in _cells(row)] for rid, row in rows.items()}
    assert cells["C4-04_w"] == ["✓ trapped 9/9", "◐ L=40 ep.20: 0/1", "✗ trapped 1/1"]
    assert cells["C6-04_w"] == ["✓ loss/chance 1.00", "", ""]


def test_a_too_long_key_is_truncated_not_refused():
    """Documented choice: a key over KEY_WIDTH (16) characters is cut to 16 with "…" (a chapter whose numbers
    format long still saves its verdicts); whitespace is collapsed."""
    from oversmoothing.report import KEY_WIDTH, Reading

    t = ClaimsTable("x")
    c = t.add("C1", "a", "m", "c", True, key="a very long key number indeed",
              readings=[dict(name="n", setting="s", verdict=True, measured="m", key="  r ≤  0.115 ")])
    assert len(c.key) == KEY_WIDTH == 16 and c.key == "a very long key…"
    assert c.readings[0].key == "r ≤ 0.115"
    assert Reading("n", "s", True, "m").key == "" and t.add("C2", "a", "m", "c", True).key == ""


def test_open_questions_get_their_own_verdicts_rows_after_the_claims_and_a_line_in_the_summary(tmp_path, monkeypatch):
    """Q1-Q5 (chapter 09) are answered holds / partly holds / does not hold: badges like the claims', rows after
    C13 in the matrix, and the intro's summary counts them apart from the papers' claims."""
    from oversmoothing import book

    monkeypatch.setenv("OVERSMOOTHING_PROFILE", "default")
    t = ClaimsTable("09_q", Provenance(0, "cpu"))
    t.add("Q2", "homophily", "growth 3e4 vs 2e4", "c", "partly holds", key="×1.5")
    t.add("Q1", "bounded", "max s*lambda 0.9", "c", "holds", key="sλ ≤ 0.9")
    t.add("C12", "depth", "0.81 / 0.28", "c", "reproduced")
    with pytest.raises(ValueError, match="verdict must be one of"):
        t.add("Q3", "x", "y", "c", "sort of holds")
    ch = _chapter_with_claims(tmp_path, "09_q", t)
    assert list(_matrix_rows(book.report_page(tmp_path, [ch]))) == ["C12-09_q", "Q1-09_q", "Q2-09_q"]
    summary = book.summary_page(tmp_path, [ch])
    assert "1 claim rows in this build (profile default): **reproduced**: 1." in summary
    assert "**Open questions** beyond the papers (chapter 09), 2 answered: **holds**: 1, **partly holds**: 1." in summary
    assert re.findall(r'<a class="verdict ([^"]+)" href="report.html#(Q\d)', summary) == [
        ("verdict-reproduced", "Q1"), ("verdict-partly", "Q2")]

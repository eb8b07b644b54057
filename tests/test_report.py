"""Claims tables, provenance and the chapter opening."""
import json

import pytest
import torch

from oversmoothing.chapter import setup_chapter
from oversmoothing.report import ClaimsTable, Provenance, md_cell


def test_claims_table_saves_json_atomically_where_the_runner_asks(tmp_path, monkeypatch):
    target = tmp_path / "out" / "01.claims.json"
    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(target))
    monkeypatch.setenv("OVERSMOOTHING_PROFILE", "smoke")
    t = ClaimsTable("01_x", Provenance(3, "cpu"))
    t.add("C1", "E decays", "r = 0.1", "r <= s*lambda", True)
    t.add("C13", "gap sets speed", "k = 2", "k <= 5", None)
    assert t.save() == target
    d = json.loads(target.read_text())
    assert [c["verdict"] for c in d["claims"]] == ["reproduced", "not judged"]
    assert d["provenance"]["seed"] == 3 and d["provenance"]["profile"] == "smoke"
    assert {"torch", "python", "wall_time_s", "device"} <= set(d["provenance"])
    assert not list(target.parent.glob("*.part"))


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


def test_setup_chapter_seeds_and_names_the_table():
    dev, prov, claims = setup_chapter("07_demo", seed=5, device="cpu")
    a = torch.rand(3)
    setup_chapter("07_demo", seed=5, device="cpu")
    assert torch.equal(a, torch.rand(3))
    assert dev.type == "cpu" and prov.seed == 5 and claims.chapter == "07_demo" and claims.provenance is prov


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_setup_chapter_refuses_cuda_without_a_gpu():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        setup_chapter("07_demo", seed=0, device="cuda")

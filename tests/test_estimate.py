"""``oversmoothing build --dry-run``: counts and an estimate, and nothing written anywhere."""
import io

import pytest

from oversmoothing.book import estimate


def test_the_log_of_a_dry_chapter_is_scaled_to_the_planned_epochs():
    lines = [{"kind": "grid", "runs": 3, "cached": 1, "to_compute": 2},
             {"kind": "fit", "planned_epochs": 99, "trained_epochs": 3, "seconds": 0.3},
             {"kind": "fit", "planned_epochs": 1, "trained_epochs": 2, "seconds": 0.2}]
    s = estimate.summarise_log(lines)
    assert (s["runs"], s["cached"], s["fits"], s["epochs"]) == (3, 1, 2, 100)
    assert s["dry_training_s"] == pytest.approx(0.5) and s["training_s"] == pytest.approx(0.1 * 100 + 0.1 * 2)


@pytest.mark.slow
def test_a_dry_run_counts_the_runs_trains_two_epochs_and_caches_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "runs"
    monkeypatch.setenv("OVERSMOOTHING_GRID_CACHE", str(cache))
    out = io.StringIO()
    rows = estimate.dry_run(profile="smoke", device="cpu", chapters_=["05"], progress=False,
                            staging=tmp_path / "staging", out=out)
    [row] = rows
    assert row["status"] == "ok" and row["runs"] > 0 and row["fits"] == row["runs"] and row["epochs"] > row["fits"]
    assert row["estimate_s"] > 0 and "05_weight_scale" in out.getvalue() and "total" in out.getvalue()
    assert not list(cache.rglob("*.run")) and not (tmp_path / "staging").exists()   # nothing cached, nothing staged

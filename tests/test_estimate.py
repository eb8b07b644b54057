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
    assert s["early_stopping_s"] == 0


def test_epochs_are_scaled_by_kind_recorded_or_not_and_the_first_carries_the_warm_up():
    # dry run of a 100-epoch fit recording every 10th: epoch 0 (recorded, with warm-up) 0.5 s, epoch 1 plain 0.1 s,
    # epoch 2 (the dry run's last, recorded) 0.3 s, 0.2 s outside the epochs
    fit = {"kind": "fit", "planned_epochs": 100, "trained_epochs": 3, "seconds": 1.1, "record_every": 10,
           "patience": None, "epoch_seconds": [0.5, 0.1, 0.3], "recorded": [True, False, True]}
    # 11 recorded epochs (0, 10, ..., 100): the first at 0.5 s, 10 at 0.3 s; 90 plain at 0.1 s
    assert estimate.full_seconds(fit) == pytest.approx(0.2 + 0.5 + 10 * 0.3 + 90 * 0.1)
    # a budget that is not a multiple of record_every also records its last epoch: 0, 10, ..., 90, 95
    assert estimate.full_seconds({**fit, "planned_epochs": 95}) == pytest.approx(0.2 + 0.5 + 10 * 0.3 + 85 * 0.1)
    early = {**fit, "patience": 20}
    s = estimate.summarise_log([fit, early])
    assert s["early_stopping_s"] == pytest.approx(estimate.full_seconds(early)) and s["training_s"] == pytest.approx(
        2 * estimate.full_seconds(fit))


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

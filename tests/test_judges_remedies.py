"""The judge of chapter 08 (oversmoothing.judges.remedies): C12 on small synthetic run tables, every verdict it
can give, its readings (the 50-epoch budget, the P = I control), keys, metrics and the per-seed count."""
import math

import pandas as pd
import pytest

from oversmoothing.judges import NON_FINITE, NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED
from oversmoothing.judges.remedies import C12_CLAIM, C12Criterion, c12_tests, is_near_chance, judge_c12
from oversmoothing.report import ClaimsTable, Provenance

CHANCE = 0.319
CRIT = C12Criterion(depths=[2, 8, 64])
SETTING = dict(hidden=16, dropout=0.5, epochs=200)


def runs(per_seed, short=None, seed0=0):
    """A depth_sweep-like summary: ``per_seed`` is a list (one entry per seed) of {depth: test_acc};
    ``short`` the same for the 50-epoch accuracies (default: equal)."""
    short = short or per_seed
    return pd.DataFrame([dict(model="gcn", depth=d, seed=seed0 + s, test_acc=a, test_acc_50ep=short[s][d])
                         for s, accs in enumerate(per_seed) for d, a in accs.items()])


def mlp(acc, depth=64, n=3):
    return pd.DataFrame([dict(model="mlp", depth=depth, seed=s, test_acc=acc) for s in range(n)])


GOOD = {2: 0.81, 8: 0.65, 64: 0.28}          # works, degrades, near chance
NO_DEGRADE = {2: 0.81, 8: 0.80, 64: 0.28}    # works, near chance, but 8 layers do not degrade
BAD = {2: 0.50, 8: 0.60, 64: 0.70}           # none of the three


def test_criterion_text_is_the_chapters_string():
    assert CRIT.text == ("acc(2) >= 0.75, acc(8) <= acc(2) - 0.05, acc(64) <= chance + 0.10 "
                         "(all three: reproduced; some: partly)")
    assert CRIT.depths == (2, 8, 64) and (CRIT.lo, CRIT.mid, CRIT.hi) == (2, 8, 64)
    other = C12Criterion(depths=(2, 3, 4), works=0.7, degrade=0.1, near_chance=0.2)
    assert other.text.startswith("acc(2) >= 0.70, acc(3) <= acc(2) - 0.10, acc(4) <= chance + 0.20")
    assert C12Criterion(depths=(2, 4, 8, 16)).mid == 8      # depths[len // 2]
    with pytest.raises(ValueError):
        C12Criterion(depths=())


def test_the_three_tests_and_their_edges():
    assert c12_tests(GOOD, CHANCE, CRIT) == (True, True, True)
    assert c12_tests({2: 0.75, 8: 0.70, 64: 0.419}, CHANCE, CRIT) == (True, True, True)   # each at its threshold
    assert c12_tests({2: 0.7499, 8: 0.6, 64: 0.42}, CHANCE, CRIT) == (False, True, False)
    assert is_near_chance(0.40, CHANCE, CRIT) and not is_near_chance(0.43, CHANCE, CRIT)


def test_reproduced_with_measured_text_key_metrics_and_readings():
    v = judge_c12(runs([GOOD, {2: 0.80, 8: 0.62, 64: 0.23}, {2: 0.82, 8: 0.68, 64: 0.32}]), CHANCE, CRIT,
                  control=mlp(0.60), short_epochs=50, **SETTING)
    assert (v.id, v.claim, v.criterion, v.verdict) == ("C12", C12_CLAIM, CRIT.text, REPRODUCED)
    assert v.key == "0.81→0.65→0.28"
    assert v.measured.startswith("mean test accuracy over 3 runs, hidden 16, dropout 0.5, 200 epochs: "
                                 "L=2: 0.810 (0.800-0.820), L=8: 0.650 (0.620-0.680), L=64: 0.277 (0.230-0.320)")
    assert v.measured.endswith("; chance = 0.319; per seed: 3 of 3 seeds give the same verdict "
                               "(reproduced, reproduced, reproduced)")
    assert [r.name for r in v.readings] == ["50 epochs", "P = I control"]
    short, control = v.readings
    assert short.verdict == REPRODUCED and short.setting == "the same runs, best validation epoch among the first 50"
    assert short.measured == "L=2: 0.810, L=8: 0.650, L=64: 0.277" and short.key == "0.81→0.65→0.28"
    assert control.verdict == REPRODUCED and control.key == "MLP 0.60>chance"
    assert control.measured == "GCN 0.277, MLP twin 0.600 (mean of 3), chance 0.319"
    assert control.setting == ("'64 near chance' as an effect of the graph: the MLP twin at L = 64 must NOT be near "
                               "chance (same test, acc <= chance + 0.10)")
    assert list(v.metrics) == ["test_acc_mlp_L64", "test_acc_L2", "test_acc_L2_50ep", "test_acc_L8", "test_acc_L8_50ep",
                               "test_acc_L64", "test_acc_L64_50ep", "chance", "c12_seeds_agreeing"]
    assert v.metrics["test_acc_mlp_L64"] == pytest.approx(0.60) and v.metrics["test_acc_L8"] == pytest.approx(0.65)
    assert v.metrics["chance"] == CHANCE and v.metrics["c12_seeds_agreeing"] == 3
    assert v.numbers[:3] == pytest.approx([0.81, 0.65, 0.2766667])     # the means, then every run's own
    assert len(v.numbers) == 3 + 9 + 1 + 3 and v.numbers[12] == pytest.approx(0.60)


def test_partly_reproduced_and_the_short_budget_reading():
    """8 layers do not degrade after 200 epochs (partly), while the 50-epoch selection of the same runs does."""
    v = judge_c12(runs([NO_DEGRADE], short=[{2: 0.80, 8: 0.40, 64: 0.28}]), CHANCE, CRIT, short_epochs=50, **SETTING)
    assert v.verdict == PARTLY and v.key == "0.81→0.80→0.28"
    assert "per seed: 1 of 1 seeds give the same verdict (partly reproduced)" in v.measured
    assert [r.name for r in v.readings] == ["50 epochs"] and v.readings[0].verdict == REPRODUCED
    assert v.readings[0].key == "0.80→0.40→0.28"


def test_not_reproduced():
    v = judge_c12(runs([BAD, BAD]), CHANCE, CRIT, **SETTING)
    assert v.verdict == NOT_REPRODUCED and v.readings == [] and v.key == "0.50→0.60→0.70"
    assert "per seed: 2 of 2 seeds give the same verdict (not reproduced, not reproduced)" in v.measured
    assert "test_acc_L2_50ep" not in v.metrics and "test_acc_mlp_L64" not in v.metrics


def test_the_verdict_is_the_means_and_the_seeds_are_counted_not_combined():
    """Two seeds reproduce, one only partly: the mean reproduces, and 2 of 3 seeds give that verdict."""
    v = judge_c12(runs([GOOD, GOOD, NO_DEGRADE]), CHANCE, CRIT, **SETTING)
    assert v.verdict == REPRODUCED      # mean acc(8) = 0.70 <= 0.81 - 0.05
    assert v.measured.endswith("per seed: 2 of 3 seeds give the same verdict "
                               "(reproduced, reproduced, partly reproduced)")
    assert v.metrics["c12_seeds_agreeing"] == 2
    w = judge_c12(runs([NO_DEGRADE, NO_DEGRADE, NO_DEGRADE, GOOD]), CHANCE, CRIT, **SETTING)
    assert w.verdict == PARTLY and w.metrics["c12_seeds_agreeing"] == 3   # mean acc(8) = 0.7625 > 0.76


def test_the_control_reading_fails_when_the_mlp_is_near_chance_too():
    v = judge_c12(runs([GOOD]), CHANCE, CRIT, control=mlp(0.319, n=1), **SETTING)
    assert v.verdict == REPRODUCED
    control = v.readings[0]
    assert control.verdict == NOT_REPRODUCED and control.key == "MLP 0.32≈chance"
    assert control.measured == "GCN 0.280, MLP twin 0.319 (mean of 1), chance 0.319"
    # the GCN itself not near chance: the control cannot support the claim either
    assert judge_c12(runs([BAD]), CHANCE, CRIT, control=mlp(0.60), **SETTING).readings[0].verdict == NOT_REPRODUCED


def test_no_control_reading_without_an_mlp_run_at_the_deepest_depth():
    v = judge_c12(runs([GOOD]), CHANCE, CRIT, control=mlp(0.6, depth=8), **SETTING)
    assert v.readings == [] and "test_acc_mlp_L64" not in v.metrics


@pytest.mark.parametrize("where", ["gcn", "short", "mlp"])
def test_non_finite(where):
    bad = {2: 0.81, 8: math.nan, 64: 0.28}
    r = runs([GOOD, bad if where == "gcn" else GOOD], short=[GOOD, bad if where == "short" else GOOD])
    v = judge_c12(r, CHANCE, CRIT, control=mlp(math.inf if where == "mlp" else 0.6), short_epochs=50, **SETTING)
    short, control = v.readings
    if where == "gcn":
        assert v.verdict == NON_FINITE and short.verdict == REPRODUCED and control.verdict == REPRODUCED
        assert "(reproduced, not judged: non-finite)" in v.measured
        assert v.metrics["c12_seeds_agreeing"] == 1
    elif where == "short":
        assert v.verdict == REPRODUCED and short.verdict == NON_FINITE
    else:
        assert v.verdict == NON_FINITE and control.verdict == NON_FINITE and short.verdict == REPRODUCED
        assert "per seed: 2 of 2 seeds" in v.measured   # the seeds are compared with the GCN's own verdict


def test_not_judged_when_the_chapter_does_not_judge():
    """The smoke profile (judge_claims=False): the judge still runs, the table records "not judged"."""
    t = ClaimsTable("08_x", Provenance(0, "cpu"), judge=False)
    c = t.record(judge_c12(runs([GOOD]), CHANCE, CRIT, control=mlp(0.6), short_epochs=50, **SETTING))
    assert c.verdict == NOT_JUDGED and [r.verdict for r in c.readings] == [NOT_JUDGED, NOT_JUDGED]
    assert t.metrics["c12_seeds_agreeing"] == 1 and c.key == "0.81→0.65→0.28"


def test_a_criterion_depth_without_runs_is_an_error():
    with pytest.raises(ValueError, match=r"no plain-GCN run at depth\(s\) \[64\]"):
        judge_c12(runs([{2: 0.8, 8: 0.6}]), CHANCE, CRIT, **SETTING)

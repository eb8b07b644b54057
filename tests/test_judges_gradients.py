"""The judges of C8, C9 (chapter 06) and C11 (chapter 07) on small synthetic tables: every verdict they can give."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from oversmoothing.judges import NON_FINITE
from oversmoothing.judges.gradients import (C8Criterion, C9Criterion, C11Criterion, c8_key, c8_seed_verdicts,
                                            c9_seed_verdicts, judge_c8, judge_c9, judge_c11, predicts_better)


# ------------------------------------------------------------------------------------------------------- C8


def c8_rows(seeds=(0, 1, 2), *, data="cora", L=64, init="Glorot", r_GCN=1e-12, r_MLP=1e-10, spearman=1.0, rel=0.9,
            rel_mu=0.95, small=0.0):
    """decay_rows-like rows; a scalar is the same for every seed, a list gives one value per seed."""
    per = lambda v, i: v[i] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return [dict(data=data, L=L, init=init, seed=s, r_GCN=per(r_GCN, i), r_MLP=per(r_MLP, i),
                 graph_part=per(r_GCN, i) / per(r_MLP, i), spearman_GCN=per(spearman, i), rel_gcn_G1_GCN=per(rel, i),
                 rel_gcn_G1_MLP=1.0, rel_mu_G1_GCN=per(rel_mu, i), small_share_G1_GCN=small) for i, s in enumerate(seeds)]


def c8_table(**glorot):
    """Glorot and He rows at L = 64, one deeper seed (L = 256) and CiteSeer rows, the Glorot ones set by ``glorot``."""
    rows = c8_rows(**glorot) + c8_rows(init="He", r_GCN=1e-2, r_MLP=1e-1)
    rows += c8_rows(seeds=(0,), L=256, r_GCN=5e-42, r_MLP=1.6e-40, rel=0.66)
    rows += c8_rows(data="citeseer", r_GCN=4e-10, r_MLP=1e-9, rel=0.3, small=0.5)
    return pd.DataFrame(rows)


def c8(table=None, criterion=C8Criterion(), **kw):
    return judge_c8(c8_table(**kw) if table is None else table, criterion, dataset="cora", depth=64,
                    reading_depth=256, reading_dataset="citeseer")


def test_c8_criterion_text_states_the_thresholds_and_the_seeds_rule():
    text = C8Criterion().text
    assert text.startswith("(a) Spearman(k, mu(G(k))) >= 0.9 and r_GCN/r_MLP <= 1e-3 (what the graph adds); (b) relative "
                           "distance of G(1) from P's limit subspace < 0.5. Both: reproduced; one: partly; per seed")
    assert "all seeds share" in text and "majority" not in text
    assert "<= 0.01" in C8Criterion(graph_bar=0.01).text and "< 0.25" in C8Criterion(rel_bar=0.25).text


def test_c8_reproduced_when_the_graph_adds_three_decades_and_g1_lies_in_the_limit_subspace():
    v = c8(r_GCN=1e-14, rel=0.3)
    assert v.id == "C8" and v.verdict == "reproduced"
    assert "3 of 3 seeds agree" in v.measured and "seeds [0, 1, 2]" in v.measured and "L=64, cora" in v.measured
    assert "graph's part r_GCN/r_MLP is 1.0e-04, 1.0e-04, 1.0e-04" in v.measured
    assert v.key == "graph ×1e-04"
    assert v.metrics["C8_graph_part"] == pytest.approx(1e-4) and v.metrics["C8_ratio_mlp"] == pytest.approx(1e-10)
    assert set(v.metrics) == {"C8_ratio_gcn", "C8_ratio_mlp", "C8_graph_part", "C8_graph_part_he", "C8_rel_mu_gcn_G1"}


def test_c8_partly_reproduced_with_one_part_and_the_key_names_the_failing_part():
    v = c8(r_GCN=1e-14, rel=[0.8, 0.9, 0.9])       # (a) holds, (b) does not
    assert v.verdict == "partly reproduced" and v.key == "P-lim. 0.80-0.90"
    v = c8(r_GCN=1e-11, rel=0.3)                   # (b) holds, the graph adds one decay only
    assert v.verdict == "partly reproduced" and v.key == "graph ×0.10"


def test_c8_not_reproduced_like_cora_at_initialisation_and_its_readings():
    v = c8()                                        # the graph adds one decade; G(1) far from the limit subspace
    assert v.verdict == "not reproduced" and v.key == "graph ×0.01"
    r = {x.name: x for x in v.readings}
    assert list(r) == ["no control", "He init", "any graph-added decay", "rel_mu (constant rows)", "L = 256",
                       "dataset citeseer"]
    assert r["no control"].verdict == "partly reproduced"      # r_GCN alone <= 1e-3; (b) against the constant rows fails
    assert r["no control"].key == "rel_mu 0.95" and "first edition: r_GCN <= 1e-3" in r["no control"].setting
    assert r["any graph-added decay"].verdict == "partly reproduced" and r["any graph-added decay"].key == "P-lim. 0.90"
    assert r["He init"].verdict == "not reproduced" and "r_GCN = 1.0e-02, 1.0e-02, 1.0e-02" in r["He init"].measured
    assert r["L = 256"].setting == "L = 256, float64, seed 0" and r["L = 256"].measured.startswith("1 of 1 seeds; ")
    assert r["dataset citeseer"].verdict == "partly reproduced"  # (b) passes there
    assert "components of <= 2 nodes 0.50-0.50" in r["dataset citeseer"].measured


def test_c8_mixed_seeds_are_partly_reproduced_and_say_how_they_split():
    v = c8(r_GCN=[1e-14, 1e-14, 1e-11], rel=0.3)  # reproduced, reproduced, partly
    assert c8_seed_verdicts(c8_table(r_GCN=[1e-14, 1e-14, 1e-11], rel=0.3).iloc[:3]) == [
        "reproduced", "reproduced", "partly reproduced"]
    assert v.verdict == "partly reproduced"
    assert "seeds disagree (reproduced on 2/3 seeds, partly reproduced on 1/3)" in v.measured
    v = c8(r_GCN=[1e-14, 1e-11, 1e-11], rel=[0.3, 0.9, 0.9])  # reproduced, not, not: not unanimous, one reproduces
    assert v.verdict == "partly reproduced"


def test_c8_not_judged_when_a_number_it_rests_on_is_not_finite():
    v = c8(r_GCN=[1e-14, math.nan, 1e-14], rel=0.3)
    assert v.verdict == NON_FINITE


def test_c8_reading_dataset_equal_to_the_dataset_rejudges_the_headline_rows():
    table = c8_table(r_GCN=1e-14, rel=0.3)
    v = judge_c8(table.loc[table.data == "cora"], dataset="cora", depth=64, reading_depth=256, reading_dataset="cora")
    assert v.readings[-1].name == "dataset cora" and v.readings[-1].verdict == v.verdict == "reproduced"


def test_c8_key_without_the_twin_and_on_no_rows():
    rows = c8_table(r_GCN=1e-14, rel=0.3).iloc[:0]
    assert c8_key(rows) == ""
    rows = pd.DataFrame(c8_rows(r_GCN=1e-2, rel=0.3))
    assert c8_key(rows, C8Criterion(controlled=False)) == "r_GCN ≤ 1e-02"


# ------------------------------------------------------------------------------------------------------- C9


def c9_table(r_res=(8.9e9, 5.8e9, 6.9e8), r_plain=1e-11, r_res_mlp=(2.2e10, 1.5e10, 1.8e9)):
    per = lambda v, i: v[i] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return pd.DataFrame([dict(seed=s, r_res_GCN=per(r_res, i), r_res_MLP=per(r_res_mlp, i), r_GCN=per(r_plain, i),
                              r_MLP=1e-10) for i, s in enumerate((0, 1, 2))])


def gat_table(finite32=(5, 3, 4), finite64=(129, 129, 129), depths=(64, 128)):
    """Residual GAT probes: at the deepest L the given finite G(k) counts, the shallower ones all finite."""
    rows = []
    for L in depths:
        for i, s in enumerate((0, 1, 2)):
            for dt, fin in (("float32", finite32), ("float64", finite64)):
                rows.append(dict(depth=L, seed=s, dtype=dt, loss=1e20, max_logit=2e21, forward_finite=True,
                                 finite_G=fin[i] if L == max(depths) else L + 1, norm_G0=6.5e28 if dt == "float64" else math.nan))
    return pd.DataFrame(rows)


def test_c9_criterion_text():
    text = C9Criterion().text
    assert text.startswith("(a) residual GCN r >= 100 while the plain GCN's r <= 1; (b) some residual GAT has a non-finite "
                           "G(k) in float32. Both: reproduced; one: partly; per seed")
    assert "float64" in C9Criterion(dtype="float64").text


def test_c9_reproduced_when_residuals_expand_and_float32_gats_reach_nan():
    v = judge_c9(c9_table(), gat_table(), depth=64)
    assert v.id == "C9" and v.verdict == "reproduced" and v.key == "r_res ≥ 7e+08"
    assert "Residual GAT L=128, float32: forward finite in 3 of 3 seeds" in v.measured
    assert "finite G(k) [5, 3, 4] of 129; float64: [129, 129, 129] finite. 3 of 3 seeds agree." in v.measured
    r = {x.name: x for x in v.readings}
    assert r["graph-specific"].verdict == "not reproduced" and r["graph-specific"].key == "graph ×0.38-0.40"
    assert r["float64"].verdict == "partly reproduced" and r["float64"].key == "finite G 129/129"
    assert v.metrics["C9_gat_finite_G_float32"] == 4 and v.metrics["C9_ratio_res_gcn"] == pytest.approx(5.8e9)


def test_c9_partly_reproduced_when_every_gradient_stays_finite():
    v = judge_c9(c9_table(), gat_table(finite32=(129, 129, 129)), depth=64)
    assert v.verdict == "partly reproduced" and v.key == "finite G 129/129"


def test_c9_not_reproduced_without_expansion_or_nan():
    v = judge_c9(c9_table(r_res=(10.0, 20.0, 30.0)), gat_table(finite32=(129, 129, 129)), depth=64)
    assert v.verdict == "not reproduced" and v.key == "r_res ≥ 1e+01"


def test_c9_a_gat_that_diverged_in_training_counts_for_float32_only():
    gat = gat_table(finite32=(129, 129, 129))
    c9 = c9_table(r_res=(10.0, 20.0, 30.0))
    assert c9_seed_verdicts(c9, gat, diverged_seeds=[0]) == ["partly reproduced", "not reproduced", "not reproduced"]
    v = judge_c9(c9, gat, depth=64, diverged_seeds=[0])
    assert v.verdict == "partly reproduced" and "seeds disagree (partly reproduced on 1/3 seeds, not reproduced on 2/3)" in v.measured
    assert v.readings[1].verdict == "not reproduced"   # float64: the trained divergence does not count


def test_c9_not_judged_when_a_ratio_is_not_finite():
    v = judge_c9(c9_table(r_res=(8.9e9, math.nan, 6.9e8)), gat_table(), depth=64)
    assert v.verdict == NON_FINITE


# ------------------------------------------------------------------------------------------------------ C11


def row(diff, ci_low, *, n=17, rho_grad=-0.5, rho_repr=-0.45, ci_high=0.3, test="t"):
    return dict(test=test, n=n, rho_grad=rho_grad, rho_repr=rho_repr, diff=diff, ci_low=ci_low, ci_high=ci_high)


def c11(init, end, relative=row(-0.24, -0.47), pooled=row(0.33, -0.19), criterion=C11Criterion()):
    return judge_c11(row(*init), row(*end), relative, pooled, criterion, rho_loss=-0.6, rho_G_loss=0.97)


def test_c11_criterion_text():
    assert C11Criterion().text == ("within strata: |rho_grad| - |rho_repr| > 0 with 95% bootstrap interval above 0, both at "
                                   "initialisation and given the final training loss (one of the two, or both point estimates "
                                   "> 0: partly)")


def test_c11_reproduced_when_both_intervals_lie_above_zero():
    v = c11((0.2, 0.05), (0.3, 0.1))
    assert v.id == "C11" and v.verdict == "reproduced" and v.key == "Δρ 0.20 / 0.30"
    assert v.measured.startswith("17 runs, strata (dataset, arch, depth). At init: rho(test acc, mu) grad vs repr -0.50 vs "
                                 "-0.45, diff 0.20 [0.05, 0.30]")
    assert v.measured.endswith("the final loss alone: rho = -0.60")
    assert v.metrics == {"rho_init_mu_G": -0.5, "rho_init_mu_X": -0.45, "partial_rho_end_mu_G_given_loss": -0.5,
                         "partial_rho_end_mu_X_given_loss": -0.45}


@pytest.mark.parametrize("init, end", [((0.2, 0.05), (-0.1, -0.3)),    # one test
                                       ((0.05, -0.12), (0.02, -0.57))])  # both point estimates only
def test_c11_partly_reproduced(init, end):
    assert c11(init, end).verdict == "partly reproduced"


def test_c11_not_reproduced_and_its_readings():
    v = c11((0.05, -0.12), (-0.02, -0.6))
    assert v.verdict == "not reproduced"
    pooled, relative = v.readings
    assert pooled.name == "end of training, pooled" and pooled.verdict == "partly reproduced" and pooled.key == "Δρ = 0.33"
    assert "rho(mu_G, final loss) = 0.97" in pooled.measured
    assert relative.name == "relative measure" and relative.verdict == "not reproduced" and relative.key == "Δρ = -0.24"


def test_c11_not_judged_when_a_difference_is_not_finite():
    assert c11((math.nan, math.nan), (0.3, 0.1)).verdict == NON_FINITE


def test_predicts_better_and_a_margin():
    assert predicts_better(row(0.2, 0.05)) == "reproduced"
    assert predicts_better(row(0.2, -0.05)) == "partly reproduced"
    assert predicts_better(row(-0.2, -0.5)) == "not reproduced"
    assert predicts_better(row(0.2, 0.05), C11Criterion(margin=0.1)) == "partly reproduced"


# ------------------------------------------------------------------- the judges on the experiments' own tables


def test_c8_and_c9_on_probes_of_a_small_graph():
    """decay_rows / InitProbes (what chapter 06 builds) feed judge_c8 and judge_c9 end to end."""
    import torch

    from oversmoothing import graphs
    from oversmoothing.experiments import gradients

    graph = graphs.csbm(n=120, classes=3, avg_degree=6, ratio=3.0, dim=8, seed=0)
    probe = gradients.InitProbes(graph, hidden=8)
    assert probe("gcn", 4, 0) is probe("gcn", 4, 0, dtype=torch.float32)   # memoised, float32 by default
    table = pd.DataFrame(gradients.decay_rows(probe, 4, [0, 1]) + gradients.decay_rows(probe, 4, [0, 1], he=True)
                         + gradients.decay_rows(probe, 6, [0], dtype=torch.float64))
    assert list(table.init) == ["Glorot"] * 2 + ["He"] * 2 + ["Glorot"]
    assert table.graph_part.to_numpy() == pytest.approx((table.r_GCN / table.r_MLP).to_numpy())
    v = judge_c8(table, dataset=graph.name, depth=4, reading_depth=6, reading_dataset=graph.name)
    assert v.verdict in ("reproduced", "partly reproduced", "not reproduced") and len(v.readings) == 6
    c9 = pd.DataFrame([dict(seed=s, r_res_GCN=probe.summary("res_gcn", 4, s)["ratio"],
                            r_res_MLP=probe.summary("res_mlp", 4, s)["ratio"], r_GCN=probe.summary("gcn", 4, s)["ratio"],
                            r_MLP=probe.summary("mlp", 4, s)["ratio"]) for s in (0, 1)])
    gat = pd.DataFrame([probe.summary("res_gat", 4, s, dtype=dt) for s in (0, 1) for dt in (torch.float32, torch.float64)])
    v = judge_c9(c9, gat, depth=4)
    assert "float64: [5, 5] finite" in v.measured          # a 4-layer GAT stays finite: (b) fails
    assert v.verdict in ("partly reproduced", "not reproduced")


def test_c11_on_predictor_rows_of_constructed_data():
    import numpy as np

    from oversmoothing.experiments import gradients

    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    df = pd.DataFrame(dict(acc=y, g=y + 0.2 * rng.normal(size=200), x=rng.normal(size=200), loss=rng.normal(size=200)))
    better = gradients.predictor_row("t", gradients.compare_predictors(df, "acc", "g", "x", n_boot=100), "g", "x")
    assert set(better) == {"test", "n", "rho_grad", "rho_repr", "diff", "ci_low", "ci_high"} and better["n"] == 200
    worse = gradients.predictor_row("t", gradients.compare_predictors(df, "acc", "x", "g", n_boot=100), "x", "g")
    assert judge_c11(better, better, worse, worse, rho_loss=0.0, rho_G_loss=0.0).verdict == "reproduced"
    assert judge_c11(worse, worse, better, better, rho_loss=0.0, rho_G_loss=0.0).verdict == "not reproduced"

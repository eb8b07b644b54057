"""The judges of chapters 04-05 (oversmoothing.judges.traps) on small synthetic tables: every verdict each judge
can give (reproduced, partly, not reproduced, not judged, not judged: non-finite), its measured text, key and
metrics, and the per-seed rule (seeds_agree) that combines graphs and seeds."""
import math

import numpy as np
import pandas as pd
import pytest

from oversmoothing.experiments.traps import proposition2
from oversmoothing.judges import NON_FINITE, NOT_JUDGED, NOT_REPRODUCED, PARTLY, REPRODUCED
from oversmoothing.judges.traps import (C4Criterion, C5Criterion, C6Criterion, C7Criterion, c7_key, delay_table, judge_c4,
                                        judge_c5, judge_c6, judge_c7)
from oversmoothing.report import ClaimsTable

NAN = float("nan")

# ------------------------------------------------------------------------------------------------ C4


def c4_runs(*seeds, graph=0):
    """A run table of the three networks per (graph, seed): each seed given as
    (deep GNN status, its trap epoch, shallow GNN status, deep MLP status)."""
    rows = []
    for seed, (deep, epoch, shallow, mlp) in enumerate(seeds):
        for model, status, ep, loss in (("GNN L=5", shallow, None, 0.1), ("GNN L=40", deep, epoch, 0.693),
                                        ("MLP L=40", mlp, None, 0.0)):
            rows.append(dict(graph=graph, model=model, seed=seed, status=status, status_epoch=ep if status == "trapped" else None,
                             final_loss=loss, train_acc=1.0 if status == "trained" else 0.5, chance=math.log(2),
                             tail_change=1e-6))
    return pd.DataFrame(rows)


GOOD = ("trapped", 0, "trained", "trained")


def test_c4_reproduced_when_every_seed_shows_the_contrast_early():
    v = judge_c4(c4_runs(GOOD, ("trapped", 3, "trained", "not trapped")), shallow=5, deep=40, setting="CSBM")
    assert v.verdict == REPRODUCED and v.key == "trapped 2/2"
    assert v.measured.startswith("CSBM, 1 graph x 2 seeds: GNN L=40 trapped 2/2 (by epoch 20: 2/2); GNN L=5 trained 2/2; "
                                 "MLP L=40 not trapped 2/2; deep-GNN final loss 0.693-0.693 (chance 0.693)")
    assert "by seed" not in v.measured  # the seeds agree
    assert v.metrics == {"c4_GNNL40_trapped_fraction": 1.0, "c4_GNNL5_trained_fraction": 1.0,
                         "c4_MLPL40_trapped_fraction": 0.0, "c4_deep_gnn_median_trap_epoch": 1.5}
    assert v.criterion == C4Criterion().text == (
        "every deep-GNN run trapped (all layers' grad < 0.01 and loss >= 0.95 chance from then to the end), every shallow-GNN "
        "run train acc >= 0.9, every deep-MLP run not trapped; traps by epoch 20: reproduced; all hold but later, or on some "
        "(graph, seed) only: partly; judged on every init whose deep MLP is not trapped in > 50% of its runs (the other "
        "inits: readings)")


def test_c4_partly_reproduced_by_a_late_trap_or_on_some_seeds_only():
    late = judge_c4(c4_runs(GOOD, ("trapped", 30, "trained", "trained")), shallow=5, deep=40)
    assert late.verdict == PARTLY and late.key == "by ep. 20: 1/2"
    assert "by seed: reproduced on 1/2 seeds, partly reproduced on 1/2" in late.measured
    assert judge_c4(c4_runs(("trapped", 30, "trained", "trained")), C4Criterion(few_epochs=40), shallow=5,
                    deep=40).verdict == REPRODUCED  # the same trap is early under a longer "few epochs"
    some = judge_c4(c4_runs(GOOD, ("trapped", 0, "trapped", "trained"), GOOD), shallow=5, deep=40)
    assert some.verdict == PARTLY and some.key == "L=5 trained 2/3"
    assert "reproduced on 2/3 seeds, not reproduced on 1/3" in some.measured


def test_c4_not_reproduced_when_no_seed_shows_all_three():
    v = judge_c4(c4_runs(("trapped", 0, "trained", "did not train"), ("not trapped", None, "trained", "trained")),
                 shallow=5, deep=40)
    assert v.verdict == NOT_REPRODUCED and v.key == "MLP trapped 1/2"  # an exploded MLP is no control
    assert "GNN L=40 trapped 1/2" in v.measured and "MLP L=40 not trapped 1/2" in v.measured
    assert judge_c4(c4_runs(("not trapped", None, "trained", "trained")), shallow=5, deep=40).key == "trapped 0/1"


def test_c4_not_judged_without_a_network_or_on_a_non_finite_loss():
    runs = c4_runs(GOOD, GOOD)
    assert judge_c4(runs[runs.model != "MLP L=40"], shallow=5, deep=40).verdict == NOT_JUDGED
    assert judge_c4(runs.iloc[:0], shallow=5, deep=40).verdict == NOT_JUDGED
    runs.loc[0, "final_loss"] = NAN
    assert judge_c4(runs, shallow=5, deep=40).verdict == NON_FINITE


def test_c4_readings_are_judged_the_same_way():
    readings = {"tanh": (c4_runs(GOOD), "rho = tanh"), "offset": (c4_runs(("trapped", 0, "trapped", "trained")), "softplus")}
    v = judge_c4(c4_runs(GOOD), shallow=5, deep=40, readings=readings)
    assert [(r.name, r.setting, r.verdict, r.key) for r in v.readings] == [
        ("tanh", "rho = tanh", REPRODUCED, "trapped 1/1"), ("offset", "softplus", NOT_REPRODUCED, "L=5 trained 0/1")]
    assert v.readings[1].measured.endswith("GNN L=5: trapped (loss 0.100, acc 0.50), GNN L=40: trapped (loss 0.693, "
                                           "acc 0.50), MLP L=40: trained (loss 0.000, acc 1.00)")
    nan = c4_runs(GOOD).assign(train_acc=NAN)
    assert judge_c4(c4_runs(GOOD), shallow=5, deep=40, readings={"x": (nan, "")}).readings[0].verdict == NON_FINITE


TRAPPED_MLP = ("trapped", 0, "trained", "trapped")  # both deep networks trapped: the P = I control does not train


def test_c4_is_judged_on_every_init_under_which_the_control_trains():
    inits = {"He init": (c4_runs(GOOD), "He normal, gain 2"), "Glorot init": (c4_runs(TRAPPED_MLP), "Glorot, gain 1")}
    v = judge_c4(c4_runs(GOOD, GOOD), shallow=5, deep=40, setting="CSBM", init="orthogonal", inits=inits)
    assert v.verdict == REPRODUCED and v.key == "holds 2/3 inits"
    assert v.measured.startswith("judged on the inits under which the deep MLP (P = I) trains: orthogonal, He init; not "
                                 "under Glorot init (deep MLP not trapped in 0/1 runs: both networks lose the signal, no "
                                 "contrast to see); every (init, graph, seed) judged on its own: 3/3 seeds, hence reproduced. orthogonal: CSBM, 1 graph "
                                 "x 2 seeds: GNN L=40 trapped 2/2")
    assert "; He init (1 graph x 1 seeds): GNN L=40 trapped 1/1" in v.measured
    assert v.measured.endswith("; readings with another verdict: Glorot init (not reproduced)")
    assert [(r.name, r.verdict, r.key) for r in v.readings] == [("He init", REPRODUCED, "trapped 1/1"),
                                                                ("Glorot init", NOT_REPRODUCED, "MLP trapped 1/1")]
    assert v.readings[0].setting == "He normal, gain 2 (in the headline: the P = I control trains)"
    assert v.readings[1].setting == "Glorot, gain 1 (not in the headline: the P = I control is trapped too)"
    assert v.metrics["c4_inits_judged"] == 2 and v.metrics["c4_mlp_escaped_fraction_glorot_init"] == 0.0
    assert v.metrics["c4_mlp_escaped_fraction_orthogonal"] == 1.0
    # the numbers the verdict rests on: the judged inits' runs only (a NaN under the left-out init does not count)
    nan = c4_runs(TRAPPED_MLP).assign(final_loss=NAN)
    assert judge_c4(c4_runs(GOOD), shallow=5, deep=40, inits={"Glorot init": (nan, "")}).verdict == REPRODUCED


def test_c4_an_init_in_the_headline_that_fails_on_a_seed_makes_it_partly():
    inits = {"He init": (c4_runs(GOOD, ("trapped", 0, "trapped", "trained")), "He")}
    v = judge_c4(c4_runs(GOOD), shallow=5, deep=40, init="orthogonal", inits=inits)
    assert v.verdict == PARTLY and v.key == "L=5 trained 1/2"
    assert "judged on its own: reproduced on 2/3 seeds, not reproduced on 1/3, hence partly reproduced" in v.measured


def test_c4_the_control_must_train_in_more_than_half_of_its_runs():
    half = c4_runs(GOOD, TRAPPED_MLP)  # the deep MLP escapes in 1/2 runs: not > 50 %
    v = judge_c4(c4_runs(GOOD), shallow=5, deep=40, init="orthogonal", inits={"He init": (half, "He")})
    assert v.verdict == REPRODUCED and v.key == "holds 1/2 inits" and "not under He init (deep MLP not trapped in 1/2" in v.measured
    assert judge_c4(c4_runs(GOOD), C4Criterion(control_trains=0.4), shallow=5, deep=40, init="orthogonal",
                    inits={"He init": (half, "He")}).verdict == PARTLY
    # no init lets the control train: every init is judged, and the MLP part of the claim fails
    none = judge_c4(c4_runs(TRAPPED_MLP), shallow=5, deep=40, init="Glorot", inits={"Glorot, other seed": (c4_runs(TRAPPED_MLP), "")})
    assert none.verdict == NOT_REPRODUCED and none.key == "MLP trapped 1/1"
    assert none.measured.startswith("no init lets the deep MLP (P = I) train: judged on every init, Glorot, Glorot, other seed;")


def test_a_table_that_does_not_judge_records_every_verdict_as_not_judged():
    v = judge_c4(c4_runs(GOOD), shallow=5, deep=40, readings={"tanh": (c4_runs(GOOD), "rho = tanh")})
    c = ClaimsTable("04_stationary_traps", judge=False).record(v)
    assert c.verdict == NOT_JUDGED and c.readings[0].verdict == NOT_JUDGED and c.key == "trapped 1/1"


# ------------------------------------------------------------------------------------------------ C5, C6


def solved(*graphs, depth=40):
    """A last_layer_summary: per graph (GNN largest gradient, MLP other layers' largest gradient, MLP loss/chance,
    GNN loss/chance), the same for both losses."""
    rows = []
    for g, (g_grad, m_grad, m_ratio, g_ratio) in enumerate(graphs):
        for loss_fn, chance in (("ce", math.log(2)), ("mse", 0.25)):
            rows.append(dict(graph=g, loss_fn=loss_fn, model=f"GNN L={depth}", loss=g_ratio * chance, chance=chance,
                             grad_last_layer=g_grad / 10, max_grad_other_layers=g_grad, ratio=g_ratio))
            rows.append(dict(graph=g, loss_fn=loss_fn, model=f"MLP L={depth}", loss=m_ratio * chance, chance=chance,
                             grad_last_layer=1e-9, max_grad_other_layers=m_grad, ratio=m_ratio))
    return pd.DataFrame(rows)


TRAP = (1e-10, 0.5, 0.5, 1.0)    # GNN stationary at chance; MLP moving
FIT = (1e-10, 1e-6, 0.0, 1.0)    # the MLP fits the training set: still, but at loss 0 (not trapped)


@pytest.fixture(scope="module")
def prop2():
    return proposition2()


def test_c5_reproduced_and_its_gradient_only_reading(prop2):
    v = judge_c5(solved(TRAP, FIT), deep=40, s_lambda={0: 0.3, 1: 0.3}, prop2=prop2)
    assert v.verdict == REPRODUCED and v.key == "GNN grad 1.0e-10"
    assert v.measured.startswith("2 graphs x 2 losses, L = 40, W(L) solved exactly: deep GNN: largest layer gradient 1.0e-10; "
                                 "deep MLP: other layers' largest gradient 1.0e-06-5.0e-01, loss/chance 0.000-0.500 (not trapped in 4/4)")
    assert "Proposition 2 by hand: MLP dL/dW(1) = 1, dL/dW(2) = " in v.measured
    assert v.criterion == ("on every graph and for both losses, after W(L) is solved: every deep-GNN layer grad < 1e-4, and the "
                           "deep MLP not trapped (some layer grad > 1e-2, or loss < 0.95 chance); judged where s*lambda < 1")
    g = v.readings[0]  # the previous edition's control sees the fitted MLP's small gradient as a trap
    assert (g.name, g.verdict, g.key) == ("gradient-only MLP control", PARTLY, "MLP grad 1.0e-06")
    assert g.setting == "the previous edition's criterion: some deep-MLP layer grad > 1e-2 whatever its loss"
    assert g.measured.endswith("; by seed: reproduced on 1/2 seeds, not reproduced on 1/2")
    assert v.metrics == {"c5_deep_gnn_max_grad": pytest.approx(1e-10), "c5_deep_mlp_min_other_grad": pytest.approx(1e-6)}


def test_c5_partly_and_not_reproduced(prop2):
    moving_gnn = (1e-2, 0.5, 0.5, 1.0)
    v = judge_c5(solved(TRAP, moving_gnn), deep=40, s_lambda=0.3, prop2=prop2)
    assert v.verdict == PARTLY and "by seed: reproduced on 1/2 seeds, not reproduced on 1/2" in v.measured
    assert v.key == "GNN grad 1.0e-02"
    trapped_mlp = (1e-10, 1e-6, 1.0, 1.0)  # the MLP is stuck at chance as well: not a GNN effect
    assert judge_c5(solved(trapped_mlp, moving_gnn), deep=40, s_lambda=0.3, prop2=prop2).verdict == NOT_REPRODUCED


def test_c5_not_judged_outside_theorem_3_or_on_a_non_finite_gradient(prop2):
    assert judge_c5(solved(TRAP, TRAP), deep=40, s_lambda={0: 0.3, 1: 1.4}, prop2=prop2).verdict == NOT_JUDGED
    assert judge_c5(solved(TRAP), deep=40, s_lambda=NAN, prop2=prop2).verdict == NOT_JUDGED  # no s bounds the weights
    assert judge_c5(solved(TRAP).iloc[[0, 2]], deep=40, s_lambda=0.3, prop2=prop2).verdict == NOT_JUDGED  # no MLP
    assert judge_c5(solved((NAN, 0.5, 0.5, 1.0)), deep=40, s_lambda=0.3, prop2=prop2).verdict == NON_FINITE


def test_c5_and_c6_readings_carry_their_s_lambda(prop2):
    readings = {"uncentred": (solved(TRAP), "first edition", 0.28), "λ ≈ 0.84": (solved((1e-1, 0.5, 0.5, 0.02)), "sparse", 1.41)}
    v5 = judge_c5(solved(TRAP), deep=40, s_lambda=0.3, prop2=prop2, readings=readings)
    assert [(r.name, r.verdict, r.key) for r in v5.readings[1:]] == [("uncentred", REPRODUCED, "GNN grad 1.0e-10"),
                                                                      ("λ ≈ 0.84", NOT_JUDGED, "GNN grad 1.0e-01")]
    assert v5.readings[1].setting == "first edition; s*lambda = 0.28"
    assert v5.readings[2].setting == "sparse; s*lambda = 1.41 > 1: outside Theorem 3's assumption"
    v6 = judge_c6(solved(TRAP), c4_runs(GOOD), deep=40, s_lambda=0.3, readings=readings)
    assert [(r.name, r.verdict, r.measured, r.key) for r in v6.readings] == [
        ("uncentred", REPRODUCED, "loss/chance ce: 1.000, mse: 1.000", "loss/chance 1.00"),
        ("λ ≈ 0.84", NOT_JUDGED, "loss/chance ce: 0.020, mse: 0.020", "loss/chance 0.02")]


def test_c6_every_verdict():
    runs = c4_runs(GOOD, GOOD)
    v = judge_c6(solved(TRAP, TRAP), runs, deep=40, s_lambda=0.3)
    assert v.verdict == REPRODUCED and v.key == "loss/chance 1.00" and v.metrics == {"c6_min_loss_ratio": 1.0}
    assert v.measured == ("last-layer-solved deep GNN on 2 graphs: loss/chance ce: 1.000, mse: 1.000, ce: 1.000, mse: 1.000; "
                          "Adam-trapped deep GNNs: final CE / chance 1.000-1.000 (2/2 trapped)")
    assert v.criterion == C6Criterion().text == ("last-layer-solved deep GNN: loss >= 0.95 x chance for both losses on every "
                                                 "graph (delta = 0.05 sigma_y^2)")
    low = (1e-10, 0.5, 0.5, 0.5)
    p = judge_c6(solved(TRAP, low), runs, deep=40, s_lambda=0.3)
    assert p.verdict == PARTLY and p.key == "loss/chance 0.50" and "by seed: reproduced on 1/2 seeds" in p.measured
    assert judge_c6(solved(low, low), runs, deep=40, s_lambda=0.3).verdict == NOT_REPRODUCED
    assert judge_c6(solved(low, low), runs, C6Criterion(loss_frac=0.4), deep=40, s_lambda=0.3).verdict == REPRODUCED
    assert judge_c6(solved(TRAP), runs, deep=40, s_lambda=1.2).verdict == NOT_JUDGED
    assert judge_c6(solved(TRAP).iloc[[1, 3]], runs, deep=40, s_lambda=0.3).verdict == NOT_JUDGED  # no GNN
    assert judge_c6(solved((1e-10, 0.5, 0.5, NAN)), runs, deep=40, s_lambda=0.3).verdict == NON_FINITE


# ------------------------------------------------------------------------------------------------ C7


def c7_runs(rows, graph=0):
    """(kind, s, status, trap epoch) rows of one graph."""
    return pd.DataFrame([dict(graph=graph, kind=k, s=s, seed=graph, status=st, status_epoch=e) for k, s, st, e in rows])


DELAYED = [("GNN", 1.0, "trapped", 2), ("MLP", 1.0, "trained", None), ("GNN", 2.0, "trapped", 9),
           ("MLP", 2.0, "trained", None), ("GNN", 3.0, "trained", None), ("MLP", 3.0, "not trapped", None)]
NO_DELAY = [("GNN", 1.0, "trapped", 2), ("MLP", 1.0, "trained", None), ("GNN", 2.0, "trapped", 2),
            ("MLP", 2.0, "trained", None), ("GNN", 3.0, "did not train", 0), ("MLP", 3.0, "trained", None)]
SAME_IN_MLP = [("GNN", 0.5, "trapped", 2), ("MLP", 0.5, "trapped", 2), ("GNN", 1.0, "trapped", 9),
               ("MLP", 1.0, "trapped", 9), ("GNN", 1.5, "trapped", 20), ("MLP", 1.5, "trained", None)]


def test_c7_reproduced_where_the_mlp_escapes_and_the_trap_comes_later():
    v = judge_c7(c7_runs(DELAYED), budget=60, setting="L = 40", lambda_w=pd.Series({1.0: 0.8, 2.0: 1.9}))
    assert v.verdict == REPRODUCED and v.key == "trap ep 2/9/∞"
    assert v.measured == ("L = 40, 1 graphs, 60 Adam epochs: GNN trap epoch by s: 1: 2, 2: 9, 3: never; s where the same-depth "
                          "MLP is not trapped: 1, 2, 3. Observation: lambda * max_k ||W(k)||_2 reaches 0.80 (s=1), 1.90 (s=2) "
                          "(assumption < 1; not part of the verdict)")
    assert v.metrics == {"c7_gnn_trap_epoch_s1": 2.0, "c7_gnn_trap_epoch_s2": 9.0, "c7_gnn_trap_epoch_s3": 61,
                         "c7_counted_s": 3, "c7_max_lambda_wspec": 1.9}
    assert v.claim.startswith("Larger initial spectral norm s delays or prevents the collapse (s = 1, 2, 3, lambda ~ 0.84)")
    assert v.criterion == C7Criterion().text and "reproduced with >= 2 counted s" in v.criterion


def test_c7_not_reproduced_not_judged_and_explosions():
    boom = judge_c7(c7_runs(NO_DELAY), budget=60)  # an explosion is not a prevention: no delay is left
    assert boom.verdict == NOT_REPRODUCED and boom.key == "trap ep 2/2 s≥1"
    assert "GNN trap epoch by s: 1: 2, 2: 2, 3: -; s where the same-depth MLP is not trapped: 1, 2" in boom.measured
    same = judge_c7(c7_runs(SAME_IN_MLP), budget=60)  # delayed, but the MLP shows the same trap: not a GNN effect
    assert same.verdict == NOT_JUDGED and same.key == "trap ep 2/9/20"
    single = c7_runs(NO_DELAY)
    assert judge_c7(single[single.s != 2.0], budget=60).verdict == NOT_JUDGED  # a single s left to compare
    dead = c7_runs([("GNN", 1.0, "did not train", None), ("MLP", 1.0, "did not train", None),
                    ("GNN", 2.0, "did not train", None), ("MLP", 2.0, "did not train", None)])
    v = judge_c7(dead, budget=60)
    assert v.verdict == NOT_JUDGED and v.key == "no GNN trained" and v.metrics["c7_gnn_trap_epoch_s1"] == 61
    flat = c7_runs([("GNN", 1.0, "trapped", 0), ("MLP", 1.0, "trapped", 0), ("GNN", 2.0, "trapped", 0), ("MLP", 2.0, "trained", None)])
    assert judge_c7(flat, budget=60).key == "trap at ep. 0"


def test_c7_graphs_combine_by_seeds_agree():
    runs = pd.concat([c7_runs(DELAYED, graph=0), c7_runs(NO_DELAY, graph=1)], ignore_index=True)
    v = judge_c7(runs, budget=60)
    assert v.verdict == PARTLY
    assert v.measured.startswith("2 graphs, 60 Adam epochs: GNN trap epoch by s: 1: 2, 2: 5.5, 3: never")  # medians
    assert v.measured.endswith("; by seed: reproduced on 1/2 seeds, not reproduced on 1/2")
    both = pd.concat([c7_runs(DELAYED, graph=0), c7_runs(SAME_IN_MLP, graph=1)], ignore_index=True)
    assert judge_c7(both, budget=60).verdict == NOT_JUDGED  # a graph that cannot be judged: nothing is claimed


def test_c7_non_finite_trap_epoch():
    runs = c7_runs(DELAYED[:4] + [("GNN", 3.0, "trapped", NAN), ("MLP", 3.0, "trained", None)])
    assert judge_c7(runs, budget=60).verdict == NON_FINITE


def test_c7_readings_and_the_delay_table():
    readings = {"tanh": (c7_runs(DELAYED), "rho = tanh"), "relu": (c7_runs(SAME_IN_MLP), "rho = relu")}
    v = judge_c7(c7_runs(NO_DELAY), budget=60, readings=readings)
    assert [(r.name, r.setting, r.verdict, r.key) for r in v.readings] == [
        ("tanh", "rho = tanh", REPRODUCED, "trap ep 2/9/∞"), ("relu", "rho = relu", NOT_JUDGED, "trap ep 2/9/20")]
    assert v.readings[0].measured.endswith("; runs: GNN s=1: trapped, GNN s=2: trapped, GNN s=3: trained, MLP s=1: trained, "
                                           "MLP s=2: trained, MLP s=3: not trapped")
    t = delay_table(c7_runs(SAME_IN_MLP))
    assert list(t.columns) == ["s", "gnn_trap_epoch", "gnn", "mlp", "counts"]
    assert t.counts.tolist() == [False, False, True] and t.mlp.tolist() == ["trapped 1", "trapped 1", "trained 1"]
    assert c7_key(t) == "trap ep 2/9/20"
    assert np.isnan(delay_table(c7_runs(NO_DELAY)).gnn_trap_epoch.iloc[-1])


def test_c4_init_readings_round_trip_into_the_claims_json(tmp_path, monkeypatch):
    """The init readings and the gradient-descent reading, as chapter 04 records them, land in the claims JSON with
    their names, settings, verdicts, keys and numbers, and the headline says which inits it holds under."""
    import json

    inits = {"Glorot init": (c4_runs(TRAPPED_MLP, TRAPPED_MLP), "Glorot uniform with gain 1"),
             "He init": (c4_runs(GOOD, GOOD), "He normal with gain 2")}
    readings = {"gradient descent": (c4_runs(("trapped", 0, "trapped", "trained")), "plain full-batch GD, lr = 0.1")}
    v = judge_c4(c4_runs(GOOD, GOOD), shallow=5, deep=40, setting="CSBM", init="orthogonal s = 1.7", inits=inits,
                 readings=readings)
    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(tmp_path / "04.claims.json"))
    table = ClaimsTable("04_stationary_traps")
    table.record(v)
    saved = json.loads(table.save().read_text())
    (c4,) = saved["claims"]
    assert c4["verdict"] == REPRODUCED and c4["key"] == "holds 2/3 inits"
    assert c4["measured"].startswith("judged on the inits under which the deep MLP (P = I) trains: orthogonal s = 1.7, He "
                                     "init; not under Glorot init (deep MLP not trapped in 0/2 runs")
    assert c4["measured"].endswith("readings with another verdict: Glorot init (not reproduced), gradient descent "
                                   "(not reproduced)")
    got = [(r["name"], r["verdict"], r["key"]) for r in c4["readings"]]
    assert got == [("Glorot init", NOT_REPRODUCED, "MLP trapped 2/2"), ("He init", REPRODUCED, "trapped 2/2"),
                   ("gradient descent", NOT_REPRODUCED, "L=5 trained 0/1")]
    assert c4["readings"][0]["setting"] == "Glorot uniform with gain 1 (not in the headline: the P = I control is trapped too)"
    assert "1 graph x 2 seeds: GNN L=40 trapped 2/2" in c4["readings"][1]["measured"]
    assert saved["metrics"]["c4_inits_judged"] == 2
    assert saved["metrics"]["c4_mlp_escaped_fraction_orthogonal_s_1_7"] == 1.0
    assert saved["metrics"]["c4_mlp_escaped_fraction_glorot_init"] == 0.0

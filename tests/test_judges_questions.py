"""The answers of chapter 09 (judges.questions): every answer each judge can give, on hand-made tables."""
from dataclasses import FrozenInstanceError

import numpy as np
import pandas as pd
import pytest

from oversmoothing.judges import questions as Q
from oversmoothing.report import QUESTION_VERDICTS


# ---------------------------------------------------------------------------------------------- shared rules

def test_answer_maps_claim_verdicts_to_question_words():
    assert Q.answer("reproduced") == "holds" and Q.answer(True) == "holds"
    assert Q.answer("partly reproduced") == "partly holds"
    assert Q.answer("not reproduced") == "does not hold" and Q.answer(False) == "does not hold"
    assert Q.answer(None) == "not judged" and Q.answer("holds") == "holds"


def test_agree_is_seeds_agree_in_answer_words():
    a = Q.agree(["holds", "holds", "does not hold"])
    assert (a.verdict, a.k, a.n) == ("partly holds", 0, 3)
    assert "holds on 2/3" in a.detail and "does not hold on 1/3" in a.detail and "reproduced" not in a.detail
    assert Q.agree(["does not hold"] * 3).verdict == "does not hold"
    assert Q.agree(["holds"] * 3).detail == "3/3 seeds"
    assert Q.agree(["holds", "not judged"]).verdict == "not judged"   # an unjudged seed wins outright


def test_criteria_are_frozen_and_state_their_thresholds():
    for c in (Q.Q1Criterion(), Q.Q2Criterion(), Q.Q3Criterion(), Q.Q4Criterion()):
        assert isinstance(c.text, str) and len(c.text) > 40
        with pytest.raises(FrozenInstanceError):
            c.bound = 2  # type: ignore[misc]
    assert "1 at every recorded epoch" in Q.Q1Criterion().text
    assert "3 decades" in Q.Q4Criterion().text and "< 1" in Q.Q4Criterion().text


# ---------------------------------------------------------------------------------------------- Q1

def _bounds(deep_max, shallow_max=(5.0, 5.0, 5.0), deep_status=("trapped",) * 3, deep_growth=(1.6,) * 3,
            mlp_growth=(1.7,) * 3, cross=None):
    rows = []
    for i, sd in enumerate((0, 1, 2)):
        rows.append(dict(graph=sd, seed=sd, model="GNN L=40", status=deep_status[i], slam0=0.27, slam_max=deep_max[i],
                         growth=deep_growth[i], cross_epoch=(cross[i] if cross else (10.0 if deep_max[i] >= 1 else np.nan))))
        rows.append(dict(graph=sd, seed=sd, model="GNN L=5", status="trained", slam0=0.27, slam_max=shallow_max[i],
                         growth=18.0, cross_epoch=20.0))
        rows.append(dict(graph=sd, seed=sd, model="MLP L=40", status="trained", slam0=0.27, slam_max=0.45,
                         growth=mlp_growth[i], cross_epoch=np.nan))
    return pd.DataFrame(rows)


def test_q1_holds_when_every_deep_run_stays_below_one():
    v = Q.judge_q1(_bounds((0.3, 0.4, 0.46)), deep=40, shallow=5)
    assert v.id == "Q1" and v.verdict == "holds" and v.verdict in QUESTION_VERDICTS
    assert "escapes 0" in v.measured and v.key == "sλ ≤ 0.46"
    shallow, control = v.readings[0], v.readings[1]
    assert shallow.verdict == "does not hold"        # the trained shallow GNN leaves the region
    assert control.verdict == "does not hold"        # its weights grew as much as the MLP's: not the graph's doing
    assert v.metrics["q1_deep_gnn_max_slam"] == pytest.approx(0.46)


def test_q1_partly_and_not_and_escapes_by_growth():
    v = Q.judge_q1(_bounds((0.3, 1.2, 0.4)), deep=40, shallow=5)
    assert v.verdict == "partly holds" and "does not hold on 1/3" in v.measured
    esc = _bounds((1.5, 1.3, 1.1), deep_status=("trained", "trapped", "not trapped"))
    v = Q.judge_q1(esc, deep=40, shallow=5)
    assert v.verdict == "does not hold"
    assert "escapes 2, of which by growth past 1/lambda 2" in v.measured and v.metrics["q1_escapes_by_growth"] == 2


def test_q1_control_holds_when_the_gnn_weights_move_much_less_than_the_mlps():
    v = Q.judge_q1(_bounds((0.3,) * 3, deep_growth=(1.0,) * 3, mlp_growth=(3.0,) * 3), deep=40, shallow=5)
    assert v.readings[1].verdict == "holds"


def test_q1_readings_and_non_finite():
    b = _bounds((0.3, 0.4, 0.46))
    v = Q.judge_q1(b, deep=40, shallow=5, readings={"edge": (_bounds((1.2, 0.9, 1.3)), "lambda 0.84")})
    assert v.readings[-1].name == "edge" and v.readings[-1].verdict == "partly holds"
    b.loc[0, "slam_max"] = np.inf
    assert Q.judge_q1(b, deep=40, shallow=5).verdict == "not judged: non-finite"


# ---------------------------------------------------------------------------------------------- Q2

def _q2(gcn_by_ratio, real_gcn, mlp=4.6, acc=None):
    rows = []
    for sd in (0, 1, 2):
        for i, (r, h) in enumerate([(0.125, 0.11), (1.0, 0.5), (8.0, 0.89)]):
            rows.append(dict(arch="res_gcn", ratio=r, homophily=h, seed=sd, init_log10_expansion=gcn_by_ratio[i],
                             train_acc=(acc[i] if acc else 0.9)))
        rows.append(dict(arch="res_mlp", ratio=np.nan, seed=sd, init_log10_expansion=mlp, train_acc=0.7))
    real = []
    for sd in (0, 1, 2):
        for ds, e in real_gcn.items():
            real += [dict(arch="res_gcn", dataset=ds, seed=sd, homophily=0.8, init_log10_expansion=e),
                     dict(arch="res_mlp", dataset=ds, seed=sd, homophily=0.8, init_log10_expansion=mlp)]
    return pd.DataFrame(rows), pd.DataFrame(real)


KW = dict(homophilic=["cora", "citeseer"], heterophilic=["chameleon_filtered", "squirrel_filtered"])
FLAT = {"cora": 4.2, "citeseer": 4.3, "chameleon_filtered": 4.0, "squirrel_filtered": 4.1}
STEEP = {"cora": 5.5, "citeseer": 5.5, "chameleon_filtered": 4.0, "squirrel_filtered": 4.1}


def test_q2_does_not_hold_when_the_graph_part_barely_moves():
    sw, re_ = _q2([3.8, 3.6, 4.0], FLAT)
    v = Q.judge_q2(sw, re_, **KW)
    assert v.id == "Q2" and v.verdict == "does not hold"
    assert "h=0.50: -1.00" in v.measured and v.metrics["q2_csbm_range_decades"] == pytest.approx(0.4)


def test_q2_partly_and_holds():
    sw, re_ = _q2([3.0, 3.6, 4.5], FLAT)        # (a) only
    assert Q.judge_q2(sw, re_, **KW).verdict == "partly holds"
    sw, re_ = _q2([3.8, 3.6, 4.0], STEEP)       # (b) only
    assert Q.judge_q2(sw, re_, **KW).verdict == "partly holds"
    sw, re_ = _q2([3.0, 3.6, 4.5], STEEP)
    assert Q.judge_q2(sw, re_, **KW).verdict == "holds"


def test_q2_trainability_reading():
    sw, re_ = _q2([3.8, 3.6, 4.0], FLAT, acc=[0.99, 0.5, 0.6])
    tr = Q.judge_q2(sw, re_, **KW).readings[0]
    assert tr.name == "trainability" and tr.verdict == "holds"           # 0.6 - 0.99: a difference >= 0.1
    sw, re_ = _q2([3.8, 3.6, 4.0], FLAT, acc=[0.95, 0.5, 0.9])
    assert Q.judge_q2(sw, re_, **KW).readings[0].verdict == "does not hold"


def test_q2_trains_on_real_graphs_when_asked():
    sw, re_ = _q2([3.8, 3.6, 4.0], FLAT)
    re_["train_acc"] = np.where(re_.dataset.isin(KW["homophilic"]), 0.9, 0.4)
    names = [r.name for r in Q.judge_q2(sw, re_, **KW).readings]
    assert names == ["trainability", "trainability, real graphs"]
    assert Q.judge_q2(sw, re_, **KW).readings[1].verdict == "holds"


# ---------------------------------------------------------------------------------------------- Q3

def _q3(overrides=None, seeds=(0, 1, 2)):
    base = {"none": (4.5, 4.0, 0.45, 0.39), "Frobenius (hard)": (0.3, 0.0, 1.0, 0.39),
            "Frobenius (soft)": (0.3, 0.0, 1.0, 0.39), "spectral": (0.5, 0.5, 0.99, 0.40),
            "LayerNorm": (1.0, 0.3, 0.98, 0.39), "PairNorm": (1.4, 0.7, 1.0, 0.44)}
    base.update(overrides or {})
    rows = [dict(variant=v, seed=sd, init_log10_growth=g, init_log10_expansion=e, end_log10_growth=g, end_log10_expansion=e,
                 train_acc=tr, test_acc=te) for sd in seeds for v, (g, e, tr, te) in base.items()]
    return pd.DataFrame(rows)


def test_q3_holds_partly_and_not():
    assert Q.judge_q3(_q3()).verdict == "holds"
    v = Q.judge_q3(_q3({"spectral": (2.1, 1.6, 0.93, 0.40), "LayerNorm": (2.1, 0.3, 0.98, 0.39)}))
    assert v.verdict == "partly holds" and v.key == "2/4 tame"
    assert "spectral 0/3, LayerNorm 0/3" in v.measured
    backward_only = v.readings[0]
    assert backward_only.name == "backward only" and backward_only.key == "3/4 tame"   # LayerNorm passes without (forward)
    bad = {k: (3.0, 3.0, 0.5, 0.3) for k in ("Frobenius (soft)", "spectral", "LayerNorm", "PairNorm")}
    assert Q.judge_q3(_q3(bad)).verdict == "does not hold"


def test_q3_accuracy_margin_and_not_judged_without_expansion():
    assert Q.judge_q3(_q3({"PairNorm": (1.4, 0.7, 0.90, 0.44)})).verdict == "partly holds"   # trains 0.1 worse
    assert Q.judge_q3(_q3({"none": (0.5, 0.5, 0.9, 0.4)})).verdict == "not judged"   # nothing to tame
    t = _q3()
    t.loc[t.variant == "spectral", "train_acc"] = np.nan
    assert Q.judge_q3(t).verdict == "not judged: non-finite"


# ---------------------------------------------------------------------------------------------- Q4

ARCHS = {"remedy.gat": "remedy.gat_mlp", "remedy.transformer": "remedy.transformer_mlp"}


def _q4(decay, L=8):
    """Profiles whose measure falls by decay[model] decades from layer L to L/2 (geometrically)."""
    rows = []
    for sd in (0, 1, 2):
        for model in [*ARCHS, *ARCHS.values()]:
            d = decay.get(model, 0.0)
            for k in range(1, L + 1):
                v = 10.0 ** (-d * (L - k) / (L - L // 2)) if k >= L // 2 else 10.0 ** -d
                rows.append(dict(model=model, depth=L, seed=sd, layer=k, rel_lim_B=v, rel_mu_B=max(v, 0.05)))
    return pd.DataFrame(rows)


def test_decades_of_decay():
    p = _q4({"remedy.gat": 5.0})
    assert Q.decades_of_decay(p[(p.model == "remedy.gat") & (p.seed == 0)], "rel_lim_B", 8) == pytest.approx(5.0)


def test_q4_holds_partly_not():
    names = {"remedy.gat": "GAT", "remedy.transformer": "transformer"}
    assert Q.judge_q4(_q4({"remedy.gat": 8.0, "remedy.transformer": 4.0}), archs=ARCHS, names=names).verdict == "holds"
    v = Q.judge_q4(_q4({"remedy.gat": 8.0, "remedy.transformer": 0.9}), archs=ARCHS, names=names)
    assert v.verdict == "partly holds" and "GAT: 8.0 decades (twin 0.0)" in v.measured
    assert v.readings[0].name == "constant rows (chapter 2)" and v.readings[0].verdict == "does not hold"  # floor 0.05
    assert Q.judge_q4(_q4({"remedy.gat": 2.0}), archs=ARCHS).verdict == "does not hold"


def test_q4_twin_that_also_decays_is_no_backward_oversmoothing_by_the_graph():
    p = _q4({"remedy.gat": 8.0, "remedy.transformer": 8.0, "remedy.gat_mlp": 2.0})
    assert Q.judge_q4(p, archs=ARCHS).verdict == "partly holds"


# ---------------------------------------------------------------------------------------------- Q5

def _runs(deep_status):
    rows = []
    for ds in ("cora", "citeseer"):
        for sd in (0, 1, 2):
            st = deep_status(ds, sd)
            rows += [dict(graph=ds, seed=sd, model="GNN L=40", status=st, status_epoch=0 if st == "trapped" else None,
                          final_loss=1.8 if st == "trapped" else 0.5, train_acc=0.3, chance=1.8, tail_change=0.0),
                     dict(graph=ds, seed=sd, model="GNN L=5", status="trained", status_epoch=None, final_loss=0.0,
                          train_acc=1.0, chance=1.8, tail_change=0.0),
                     dict(graph=ds, seed=sd, model="MLP L=40", status="not trapped", status_epoch=None, final_loss=0.6,
                          train_acc=0.7, chance=1.8, tail_change=0.0)]
    return pd.DataFrame(rows)


def test_q5_answers_in_question_words():
    lam = {"cora": 1.0, "citeseer": 1.0}
    v = Q.judge_q5(_runs(lambda ds, sd: "trapped"), shallow=5, deep=40, lambdas=lam)
    assert v.id == "Q5" and v.verdict == "holds" and "Chapter 4's trap" in v.claim
    v = Q.judge_q5(_runs(lambda ds, sd: "not trapped"), shallow=5, deep=40, lambdas=lam,
                   readings={"GCN operator": (_runs(lambda ds, sd: "trapped"), "gcn")})
    assert v.verdict == "does not hold" and v.readings[0].verdict == "holds"
    assert "cora does not hold (lambda of P 1.0000)" in v.measured
    assert "reproduced" not in v.measured and "reproduced" not in v.criterion
    assert set(v.metrics) and all(k.startswith("q5_") for k in v.metrics)
    v = Q.judge_q5(_runs(lambda ds, sd: "trapped" if ds == "cora" else "trained"), shallow=5, deep=40, lambdas=lam)
    assert v.verdict == "partly holds" and "holds on 3/6" in v.measured


def test_flips_names_the_readings_that_change_an_answer():
    v = Q.judge_q1(_bounds((0.3, 0.4, 0.46)), deep=40, shallow=5)
    text = Q.flips([v])
    assert text.startswith("Readings that change the answer") and "**Q1** holds" in text
    assert "*shallow GNN (L = 5)*: does not hold" in text and "*P = I control*: does not hold" in text
    same = Q.judge_q3(_q3())
    assert Q.flips([same]) == ""

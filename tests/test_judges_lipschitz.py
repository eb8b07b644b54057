"""The judges of C10a and C10b (chapter 07) on small synthetic run tables: every verdict they can give."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from oversmoothing.judges import NON_FINITE
from oversmoothing.judges.lipschitz import (C10aCriterion, C10bCriterion, c10a_table, judge_c10a, judge_c10b,
                                            mean_train_acc, residual_form_verdict)

NONE = math.nan  # no normalisation


def runs(*configs):
    """Run rows from (arch, dataset, depth, c, [train accuracies, one per seed])."""
    return pd.DataFrame([dict(arch=a, dataset=d, depth=L, c=c, seed=i, train_acc=acc, test_acc=0.4)
                         for a, d, L, c, accs in configs for i, acc in enumerate(accs)])


def grid(gcn64=(1.0, 1.0, 1.0), gcn128=(1.0,), gat64=(1.0,), none=0.3, c4=(0.38, 0.4, 0.37)):
    """Chapter 07's default grid on chameleon_filtered: residual GCN L=64 (none, c=1, c=4; 3 seeds), L=128
    (none, c=1), residual GAT L=64 (none, c=1)."""
    ds = "chameleon_filtered"
    return runs(("res_gcn", ds, 64, NONE, [none] * 3), ("res_gcn", ds, 64, 1.0, gcn64), ("res_gcn", ds, 64, 4.0, c4),
                ("res_gcn", ds, 128, NONE, [none]), ("res_gcn", ds, 128, 1.0, gcn128),
                ("res_gat", ds, 64, NONE, [none]), ("res_gat", ds, 64, 1.0, gat64))


# ------------------------------------------------------------------------------------------------------ C10a


def test_c10a_criterion_text():
    assert C10aCriterion().text == ("every (arch, dataset, depth): best c reaches mean train acc >= 0.9 and no "
                                    "normalisation stays below 0.9 (200 epochs)")


def test_c10a_reproduced_when_some_c_fits_everywhere_the_unnormalised_network_does_not():
    v = judge_c10a(grid(), small_c=1.0, depth=64)
    assert v.id == "C10a" and v.verdict == "reproduced" and v.key == "0.30 → 1.00"
    assert v.measured == ("residual GCN chameleon_filtered L=64: no normalisation 0.30, c=1 1.00; residual GCN "
                          "chameleon_filtered L=128: no normalisation 0.30, c=1 1.00; residual GAT chameleon_filtered "
                          "L=64: no normalisation 0.30, c=1 1.00 (train acc; c=1 at L=64: 3/3 seeds fit)")
    assert v.metrics == {"train_acc_res_gcn_L64_none": 0.3, "train_acc_res_gcn_L64_c1": 1.0,
                         "train_acc_res_gcn_L128_none": 0.3, "train_acc_res_gcn_L128_c1": 1.0,
                         "train_acc_res_gat_L64_none": 0.3, "train_acc_res_gat_L64_c1": 1.0}
    assert v.readings == []


def test_c10a_partly_reproduced_when_one_configuration_does_not_fit():
    v = judge_c10a(grid(gat64=(0.5,)), small_c=1.0, depth=64)
    assert v.verdict == "partly reproduced" and v.key == "0.30 → 0.50"


def test_c10a_not_reproduced_when_the_unnormalised_network_fits_too():
    v = judge_c10a(grid(none=0.95), small_c=1.0, depth=64)
    assert v.verdict == "not reproduced"


def test_c10a_the_best_constant_is_chosen_per_configuration_and_a_diverged_unnormalised_run_counts_as_zero():
    t = c10a_table(grid(gcn64=(0.5, 0.5, 0.5), c4=(0.95, 0.95, 0.9), none=math.nan))
    first = t.iloc[0]
    assert (first.best_c, first.best, first.none, first.n) == (4.0, pytest.approx(0.9333333), 0.0, 3)
    assert mean_train_acc(grid(none=math.nan), "res_gcn", "chameleon_filtered", 64, None) == (0.0, 3)


def test_c10a_not_judged_when_every_normalised_run_diverged_or_there_is_no_grid():
    v = judge_c10a(grid(gat64=(math.nan,)), small_c=1.0, depth=64)
    assert v.verdict == NON_FINITE
    v = judge_c10a(grid().iloc[:0], small_c=1.0, depth=64)
    assert v.verdict == "not judged" and v.key == ""


# ------------------------------------------------------------------------------------------------------ C10b


FORMS = ["tanh branch", "scaled residual alpha = 1/sqrt(L)"]


def read512(literal_ok=False, literal_logit=3.2e43, tanh=(0.89, True, 69.0), scaled=(1.0, True, 11.0)):
    rows = [dict(reading="literal", max_logit=literal_logit, float32_ok=literal_ok, train_acc_L64=0.38)]
    for name, (acc, ok, logit) in zip(FORMS, (tanh, scaled)):
        rows.append(dict(reading=name, max_logit=logit, float32_ok=ok, train_acc_L64=acc))
    rows.append(dict(reading="scaled residual alpha = 1/L", max_logit=1.0, float32_ok=True, train_acc_L64=math.nan))
    return pd.DataFrame(rows).set_index("reading")


INIT = pd.DataFrame([dict(arch="res_gcn", depth=512, c=4.0, hidden=d, max_logit=m)
                     for d, m in ((64, 3.2e43), (32, 3.5e60), (128, 1.1e30))]
                    + [dict(arch="res_gcn", depth=64, c=4.0, hidden=64, max_logit=1e5)])
LONG = pd.DataFrame([dict(train_acc=0.52, test_acc=0.39)])


def c10b(main=None, table=None, long_run=LONG, deep_runs=None, **kw):
    return judge_c10b(grid() if main is None else main, read512() if table is None else table, long_run, INIT,
                      C10bCriterion(**kw), dataset="chameleon_filtered", depths=[64, 128], long_epochs=500,
                      predicted_growth=44.2, forms=FORMS, deep_runs=deep_runs)


def test_c10b_criterion_text():
    assert C10bCriterion().text == ("c = 4, X + ReLU(PXW): mean train acc >= 0.9 at every trained depth (200 epochs) and a "
                                    "finite float32 forward pass at L = 512")


def test_c10b_not_reproduced_like_the_default_profile_and_its_readings():
    v = c10b()
    assert v.id == "C10b" and v.verdict == "not reproduced" and v.key == "L=64 acc 0.38"
    assert v.measured == ("L=64: train acc 0.38 (0/3 seeds fit at L=64); L=512: largest logit at init 3.2e+43 (overflows "
                          "in float32; mean field predicts 10^44 growth)")
    r = {x.name: x for x in v.readings}
    assert list(r) == ["500 epochs", *FORMS, "wider network"]
    assert r["500 epochs"].verdict == "not reproduced" and r["500 epochs"].key == "L=64 acc 0.52"
    assert r["500 epochs"].measured == "train acc 0.52, test 0.39 at L=64; L=512 unchanged (overflow at init)"
    assert r["tanh branch"].verdict == "not reproduced" and r["tanh branch"].key == "L=64 acc 0.89"
    assert r[FORMS[1]].verdict == "partly reproduced"
    assert r[FORMS[1]].measured == "train acc L=64: 1.00; L=512: largest logit 11, finite in float32"
    assert r[FORMS[1]].setting == "c = 4; trained at L = 64, L = 512 at initialisation only"
    assert r["wider network"].verdict == "not judged" and r["wider network"].key == "logit ≥ 1e+30"
    assert r["wider network"].measured.startswith("d=32: largest logit 3.5e+60; d=64")
    assert v.metrics == {"train_acc_L64_c4": pytest.approx(0.3833333), "train_acc_L64_c4_500ep": 0.52,
                         "log10_max_logit_L512_c4": pytest.approx(math.log10(3.2e43))}


def test_c10b_partly_reproduced_when_it_fits_where_trained_but_overflows_at_512_layers():
    v = c10b(main=grid(c4=(0.95, 0.95, 0.95)))
    assert v.verdict == "partly reproduced" and v.key == "L512 logit 3e+43"
    assert v.readings[0].measured.endswith("L=512 unchanged (overflow at init)")
    longer = c10b(long_run=pd.DataFrame([dict(train_acc=0.97, test_acc=0.5)])).readings[0]
    assert longer.verdict == "partly reproduced" and longer.key == "L=64 acc 0.97"  # fits, but 512 layers still overflow


def test_c10b_reproduced_when_every_depth_fits_and_512_layers_stay_finite():
    v = c10b(main=grid(c4=(0.95, 0.95, 0.95)), table=read512(literal_ok=True, literal_logit=1e5))
    assert v.verdict == "reproduced" and v.key == "acc ≥ 0.95"
    assert v.readings[0].measured == "train acc 0.52"


def test_c10b_trained_at_512_layers_the_deepest_run_must_fit_too():
    deep = pd.DataFrame([dict(reading="literal", train_acc=math.nan), dict(reading=FORMS[1], train_acc=0.95)])
    v = c10b(main=grid(c4=(0.95, 0.95, 0.95)), table=read512(literal_ok=True, literal_logit=1e5), deep_runs=deep)
    assert v.verdict == "partly reproduced" and v.key == "L=512 no fit"   # a diverged run counts as 0
    r = {x.name: x for x in v.readings}
    assert r[FORMS[1]].verdict == "reproduced" and r[FORMS[1]].setting.endswith("L = 512 trained")
    assert r[FORMS[1]].measured.endswith(", train acc 0.95")
    assert r["tanh branch"].verdict == "not reproduced"   # not trained at 512 layers; 0.89 < 0.9 at 64


def test_c10b_not_judged_when_a_number_it_rests_on_is_not_finite():
    assert c10b(main=grid(c4=(math.inf, 1.0, 1.0))).verdict == NON_FINITE


def test_residual_form_verdict():
    assert residual_form_verdict(0.95, True, None) == "partly reproduced"     # at best partly at initialisation only
    assert residual_form_verdict(0.95, False, None) == "not reproduced"
    assert residual_form_verdict(0.5, True, None) == "not reproduced"
    assert residual_form_verdict(0.95, False, 0.95) == "reproduced"
    assert residual_form_verdict(0.95, True, 0.5) == "partly reproduced"
    assert residual_form_verdict(0.5, True, 0.5) == "not reproduced"


def test_the_residual_forms_and_labels_of_chapter_07():
    from oversmoothing.experiments import gradients

    assert gradients.residual_reading(dict(branch_scale="sqrt"), 64) == dict(branch_scale=0.125)
    assert gradients.residual_reading(dict(branch_scale="lin"), 64) == dict(branch_scale=1 / 64)
    assert gradients.residual_reading(dict(activation="tanh"), 64) == dict(activation="tanh")
    assert gradients.normalisation_label(math.nan) == "no normalisation" and gradients.normalisation_label(None) == "no normalisation"
    assert gradients.normalisation_label(4.0, alpha=0.125, act="tanh") == "c = 4, tanh branch, alpha = 0.125"

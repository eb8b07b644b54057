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


# ------------------------------------------------------------------------------------- the authors' own forms
from oversmoothing.judges.lipschitz import AUTHORS, SOFT, flip_note, form_reading, metric_name  # noqa: E402


def soft_rows(accs64=(0.38, 0.4, 0.37), acc128=0.2, coincide=True, ratio=1.9):
    """Soft twins of the grid's normalised runs, plus one trained soft run at L=128."""
    ds = "chameleon_filtered"
    t = grid(c4=accs64)
    t = t.loc[t.c.notna()].assign(coincides=coincide, min_raw_ratio=ratio)
    extra = runs(("res_gcn", ds, 128, 4.0, [acc128])).assign(coincides=False, min_raw_ratio=ratio)
    return pd.concat([t, extra], ignore_index=True)


def authors_rows(none=0.73, c4=1.0, depth=64, ds="chameleon_filtered"):
    return runs(("res_gcn", ds, depth, NONE, [none]), ("res_gcn", ds, depth, 4.0, [c4])).assign(epochs_run=[215, 167])


def c10b_forms(**kw):
    """C10b on the default-like grid with the readings in the authors' own forms (``kw``: soft, soft_init, ...)."""
    return judge_c10b(grid(), read512(), LONG, INIT, C10bCriterion(), dataset="chameleon_filtered", depths=[64, 128],
                      long_epochs=500, predicted_growth=44.2, forms=FORMS, **kw)


SOFT_INIT = dict(max_logit=3.2e43, float32_ok=False)
AUTH_INIT = dict(max_logit=3.2e20, float32_ok=True)


def test_c10a_soft_and_authors_readings_are_judged_by_the_headline_criterion():
    v = judge_c10a(grid(), small_c=1.0, depth=64, dataset="chameleon_filtered", soft=soft_rows(),
                   authors=authors_rows(), authors_criterion=C10aCriterion(epochs=1000))
    r = {x.name: x for x in v.readings}
    assert list(r) == [SOFT, AUTHORS]
    assert r[SOFT].verdict == "reproduced" and r[SOFT].key == "0.30 → 1.00"
    assert r[SOFT].measured.endswith("(8/9 soft runs are their hard runs, whose raw ||W||_F stayed above c at every "
                                     "step; smallest ||W_raw||_F/c 1.90)")
    assert r[AUTHORS].verdict == "reproduced" and r[AUTHORS].key == "0.73 → 1.00"
    assert r[AUTHORS].measured == ("residual GCN chameleon_filtered L=64: no normalisation 0.73, c=4 1.00 (train acc when "
                                   "early stopping ended the run, epochs 167-215)")
    assert r[AUTHORS].setting.startswith("ml-postech/reverse-gnn's setup: width 256")
    assert "Verdict changed" not in v.measured        # nothing flips: the headline says nothing more
    assert v.metrics["train_acc_res_gcn_L64_none_authors"] == 0.73 and v.metrics["train_acc_res_gcn_L64_c4_authors"] == 1.0


def test_c10a_a_flipping_reading_is_named_in_the_headline():
    v = judge_c10a(grid(), small_c=1.0, depth=64, authors=authors_rows(none=0.95))
    assert v.verdict == "reproduced" and v.readings[0].verdict == "not reproduced"
    assert v.measured.endswith(" Verdict changed by a reading in the authors' own form: the authors' setup reading gives "
                               "not reproduced (0.95 → 1.00).")


def test_c10a_metric_names_carry_the_dataset_except_for_the_headline_one():
    two = pd.concat([grid(), runs(("res_gcn", "cora", 64, NONE, [0.5]), ("res_gcn", "cora", 64, 1.0, [0.99]))])
    v = judge_c10a(two, small_c=1.0, depth=64, dataset="chameleon_filtered")
    assert v.metrics["train_acc_res_gcn_L64_none"] == 0.3            # the default profile's names are kept
    assert v.metrics["train_acc_res_gcn_cora_L64_none"] == 0.5 and v.metrics["train_acc_res_gcn_cora_L64_c1"] == 0.99
    old = judge_c10a(two, small_c=1.0, depth=64)                     # without a headline dataset: the old names
    assert "train_acc_res_gcn_cora_L64_none" not in old.metrics
    assert metric_name("res_gat", "squirrel", 128, "c4", "cora") == "train_acc_res_gat_squirrel_L128_c4"


def test_c10b_soft_reading_like_the_default_profile_and_authors_setup_flips_the_headline():
    v = c10b_forms(soft=soft_rows(), soft_init=SOFT_INIT, authors=authors_rows(), authors_init=AUTH_INIT)
    r = {x.name: x for x in v.readings}
    assert list(r)[-2:] == [SOFT, AUTHORS]
    assert r[SOFT].verdict == "not reproduced" and r[SOFT].key == "L=128 acc 0.20"
    assert r[SOFT].measured.startswith("L=64: train acc 0.38 (3 runs), L=128: train acc 0.20 (1 run); L=512 at init: "
                                       "largest logit 3.2e+43, overflows in float32 (3/4 soft runs are their hard runs")
    # the authors' setup fits at 64 layers and stays finite at 512 (examined at initialisation only): at best partly
    assert r[AUTHORS].verdict == "partly reproduced" and r[AUTHORS].key == "acc ≥ 1.00"
    assert r[AUTHORS].measured == ("L=64: train acc 1.00 (1 run); L=512 at init: largest logit 3.2e+20, finite in float32 "
                                   "(early stopping ended the runs at epochs 167)")
    assert v.verdict == "not reproduced"
    assert v.measured.endswith("Verdict changed by a reading in the authors' own form: the authors' setup reading gives "
                               "partly reproduced (acc ≥ 1.00).")
    assert v.metrics["train_acc_L64_c4_authors"] == 1.0 and v.metrics["train_acc_L128_c4_soft"] == 0.2
    assert v.metrics["log10_max_logit_L512_c4_authors"] == pytest.approx(math.log10(3.2e20))


def test_form_reading_every_verdict():
    crit = C10bCriterion()
    ok = dict(max_logit=10.0, float32_ok=True)
    bad = dict(max_logit=1e40, float32_ok=False)
    fits = authors_rows(c4=0.95)
    assert form_reading(AUTHORS, "s", fits, ok, crit, "chameleon_filtered")[0].verdict == "partly reproduced"
    assert form_reading(AUTHORS, "s", fits, bad, crit, "chameleon_filtered")[0].verdict == "partly reproduced"
    assert form_reading(AUTHORS, "s", authors_rows(c4=0.5), bad, crit, "chameleon_filtered")[0].verdict == "not reproduced"
    deep = pd.concat([fits, authors_rows(c4=0.95, depth=512)])   # the deepest network trained and fitting: reproduced
    rd, accs = form_reading(AUTHORS, "s", deep, ok, crit, "chameleon_filtered")
    assert rd.verdict == "reproduced" and accs == {64: 0.95, 512: 0.95}
    assert rd.setting == "c = 4; s; trained at L = 64, 512"
    deep_bad = pd.concat([fits, authors_rows(c4=math.nan, depth=512)])   # a diverged run counts as 0
    assert form_reading(AUTHORS, "s", deep_bad, ok, crit, "chameleon_filtered")[0].verdict == "partly reproduced"
    assert form_reading(AUTHORS, "s", authors_rows(c4=math.inf), ok, crit, "chameleon_filtered")[0].verdict == "not judged"


def test_flip_note_ignores_other_readings_and_unjudged_ones():
    from oversmoothing.judges import reading

    rs = [reading("500 epochs", "x", "reproduced", "m", "k"), reading(SOFT, "x", None, "m", "k"),
          reading(AUTHORS, "x", "not reproduced", "m", "")]
    assert flip_note("not reproduced", rs) == ""
    assert flip_note("reproduced", rs) == (" Verdict changed by a reading in the authors' own form: the authors' setup "
                                           "reading gives not reproduced.")


def test_the_readings_round_trip_into_the_claims_json(tmp_path, monkeypatch):
    import json

    from oversmoothing.report import ClaimsTable, Provenance

    monkeypatch.setenv("OVERSMOOTHING_CLAIMS", str(tmp_path / "07.claims.json"))
    t = ClaimsTable("07_x", Provenance(0, "cpu"))
    t.record(judge_c10a(grid(), small_c=1.0, depth=64, dataset="chameleon_filtered", soft=soft_rows(),
                        authors=authors_rows()))
    t.record(c10b_forms(soft=soft_rows(), soft_init=SOFT_INIT, authors=authors_rows(), authors_init=AUTH_INIT))
    d = json.loads(t.save().read_text())
    got = {c["id"]: {r["name"]: r["verdict"] for r in c["readings"]} for c in d["claims"]}
    assert got["C10a"] == {SOFT: "reproduced", AUTHORS: "reproduced"}
    assert got["C10b"][SOFT] == "not reproduced" and got["C10b"][AUTHORS] == "partly reproduced"
    assert d["metrics"]["train_acc_L64_c4_authors"] == 1.0 and "train_acc_res_gcn_L64_c4_authors" in d["metrics"]

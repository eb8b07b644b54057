"""The judges of chapters 02-03 (oversmoothing.judges.backward): C2 on per-layer backward rows, C3 on valley tables,
on small synthetic tables that reach every verdict each judge can give."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from oversmoothing.experiments import smoothing
from oversmoothing.judges import backward as J

L = 10


def c2_rows(seed=0, gnn_drop=5.0, mlp_drop=0.0, lin=1e-6, mean=1e-9, limit=1e-9, smooth_from=3, whens=("init", "after 5 epochs")):
    """Rows like chapter 02's backward_table of one seed: the GNN's mu(B)/||B|| falls by ``gnn_drop`` decades from
    k = L to L/2 (the MLP's by ``mlp_drop``); the GNN's forward signal is oversmoothed from layer ``smooth_from`` on,
    where eps_k = ``lin``, the error of the predicted average ``mean`` and the distance to the limit ``limit``."""
    rows = []
    for net, drop in (("GNN", gnn_drop), ("MLP", mlp_drop)):
        for when in whens:
            for k in range(1, L + 1):
                smooth = net == "GNN" and k >= smooth_from
                rows.append(dict(seed=seed, net=net, when=when, layer=k, rel_mu_B=10 ** (-drop * (L - k) / (L - L // 2)),
                                 rel_mu_X=1e-6 if smooth else 0.5, lin_err=lin if smooth else 0.3,
                                 mean_err=mean if smooth else 0.3, limit_err=(limit if net == "GNN" else 0.99)))
    return pd.DataFrame(rows)


def seeds(*tables):
    return pd.concat([t.assign(seed=i) for i, t in enumerate(tables)], ignore_index=True)


# ---- C2 ----------------------------------------------------------------------------------------------------------

def test_c2_criterion_text_is_the_chapters():
    assert J.C2Criterion().text == (
        "per seed: (a) GNN's mu(B)/||B|| drops >= 3 decades from k=L to L/2 and the MLP's (P = I control) < 1; "
        "(b) eps_k <= 1e-3 on forward-oversmoothed layers; (c) predicted average error <= 1e-3 there and "
        "||B(L/2) - 1 b_hat^T||/||B(L/2)|| <= 1e-3. All: reproduced; some: partly")
    assert "eps_k <= 1e-10" in J.C2Criterion(linear_tol=1e-10).text


def test_c2_parts_of_one_seed():
    p = J.c2_parts(c2_rows())
    assert p["gnn_decay"] and p["mlp_control"] and p["linear"] and p["limit"] and p["verdict"] == "reproduced"
    assert p["drop"]["GNN", "init"] == pytest.approx(5.0) and p["n_smooth"] == 2 * (L - 1 - 2)   # k = 3..L-1, 2 snapshots
    assert J.c2_parts(c2_rows(), J.C2Criterion(smoothed_below=1e-7))["n_smooth"] == 0          # nothing oversmoothed


def test_c2_reproduced_with_its_measured_text_key_and_metrics():
    v = J.judge_c2(seeds(c2_rows(), c2_rows(gnn_drop=8.0)), setting="L=10, setting X")
    assert v.id == "C2" and v.verdict == "reproduced" and v.claim == J.C2_CLAIM and v.key == "5.0-8.0 dec."
    assert v.measured.startswith("L=10, setting X: reproduced, 2/2 seeds; (a) decades of decay of mu(B)/||B|| from k=L "
                                 "to k=L/2, GNN: 5.0, 5.0, 8.0, 8.0; control MLP (P = I): 0.0, 0.0, 0.0, 0.0 "
                                 "(GNN >= 3 on 2, MLP < 1 on 2 of 2 seeds);")
    assert "(b) max eps_k on the forward-oversmoothed GNN layers: 1.0e-06; (c) max error of the predicted average there: " \
           "1.0e-09, distance to the constant limit at k=L/2: 1.0e-09 (MLP: 0.99)" in v.measured
    assert v.metrics == {"C2 GNN decades of decay of mu(B)/||B|| from L to L/2 (min over seeds)": pytest.approx(5.0),
                         "C2 MLP decades of decay of mu(B)/||B|| from L to L/2 (max over seeds)": pytest.approx(0.0),
                         "C2 max linearisation error on oversmoothed layers": pytest.approx(1e-6)}


@pytest.mark.parametrize("kw, key", [
    (dict(lin=1e-2), "eps_k ≤ 1e-02"),           # (b) fails
    (dict(limit=1e-2), "limit err 1e-02"),        # (c) fails
    (dict(mlp_drop=2.0), "MLP 2.0 dec."),         # the control fails: (a) fails
    (dict(gnn_drop=2.0), "2.0-2.0 dec."),         # the GNN decays too little: (a) fails
])
def test_c2_partly_reproduced(kw, key):
    v = J.judge_c2(seeds(c2_rows(**kw), c2_rows(**kw)))
    assert v.verdict == "partly reproduced" and v.key == key and v.measured.startswith("partly reproduced, 2/2 seeds")


def test_c2_not_reproduced_and_mixed_seeds():
    v = J.judge_c2(c2_rows(gnn_drop=1.0, lin=1e-2, mean=1e-2))
    assert v.verdict == "not reproduced" and "GNN >= 3 on 0" in v.measured
    v = J.judge_c2(seeds(c2_rows(), c2_rows(lin=1e-2), c2_rows(gnn_drop=1.0, lin=1e-2, mean=1e-2)))
    assert v.verdict == "partly reproduced"
    assert v.measured.startswith("partly reproduced, reproduced on 1/3 seeds, partly reproduced on 1/3, not reproduced on 1/3;")


def test_c2_non_finite_and_not_judged():
    r = c2_rows()
    r.loc[(r.net == "GNN") & (r.layer == L), "rel_mu_B"] = np.nan       # the decay cannot be measured
    assert J.judge_c2(r).verdict == "not judged: non-finite"
    # no forward-oversmoothed layer: eps_k has no maximum, (b) and (c) rest on nothing
    assert J.judge_c2(c2_rows(smooth_from=L + 1)).verdict == "not judged: non-finite"
    v = J.judge_c2(c2_rows().iloc[:0])
    assert v.verdict == "not judged" and "0 seeds" in v.measured


def test_c2_readings_are_judged_by_the_same_rule():
    v = J.judge_c2(c2_rows(), readings={"softplus (offset)": ("plain softplus", c2_rows(whens=("init",), lin=1e-2)),
                                        "nan": ("broken", c2_rows(smooth_from=L + 1))})
    (a, b) = v.readings
    assert (a.name, a.setting, a.verdict, a.key) == ("softplus (offset)", "plain softplus", "partly reproduced", "eps_k ≤ 1e-02")
    assert a.measured.startswith("partly reproduced, 1/1 seeds; (a) decades of decay of mu(B)/||B|| from k=L to k=L/2, GNN: 5.0;")
    assert b.verdict == "not judged: non-finite" and v.verdict == "reproduced"


# ---- C3 ----------------------------------------------------------------------------------------------------------

def valley_row(seed, kind, depth, peak=True, rates=True, q=0.5):
    thirds = (-2.0, -5.0, -1.0) if peak else (-5.0, -3.0, -1.0)
    r = 0.2 if rates else 0.7
    return dict(seed=seed, kind=kind, L=depth, first=thirds[0], middle=thirds[1], last=thirds[2], middle_lowest=peak,
                r_in=r, r_out=r + 0.01, q=q, rates_ok=rates)


def valley(n_seeds=3, depths=(10, 20, 40), gnn=None, mlp=None, shallow_peak=False):
    """A valley table (smoothing.valley_table's columns): every GNN with the peak and the rates (``gnn``: {seed:
    (peak, rates)} overrides), every MLP without the peak (``mlp``: {seed: peak}); L = 10 without the peak."""
    rows = []
    for sd in range(n_seeds):
        for d in depths:
            p, r = (gnn or {}).get(sd, (True, True))
            rows.append(valley_row(sd, "GNN", d, peak=p and (d >= 20 or shallow_peak), rates=r))
            rows.append(valley_row(sd, "MLP", d, peak=(mlp or {}).get(sd, False), rates=False))
    return pd.DataFrame(rows)


def test_c3_criterion_text_is_the_chapters():
    assert J.C3Criterion().text == (
        "per seed, every L>=20: (i) the middle third has the lowest mean log10 mu(B(k))/||B(k)||; (ii) end rates r_in, "
        "r_out of E(B(k)) <= lambda*s; (iii) the MLP shows no such peak. (i)+(ii)+(iii): reproduced; (i) or (ii): partly")
    assert "every L>=80:" in J.C3Criterion(min_depth=80).text


def test_c3_reproduced_with_its_measured_text_key_and_metrics():
    t = valley()
    v = J.judge_c3({"headline": (t, t)}, setting="setting X")
    assert v.id == "C3" and v.verdict == "reproduced" and v.claim == J.C3_CLAIM and v.key == "mid peak 3/3"
    assert v.measured == ("reproduced, 3/3 seeds (setting X, L>=20); (i) peak on 3, (ii) rates <= lambda*s on 3 of 3 seeds; "
                          "MLP shows the peak on 0. Mean log10 mu(B)/||B|| over first/middle/last third (mean over seeds), "
                          "end rates of E(B) (range): L=20: thirds -2.0/-5.0/-1.0, r_in 0.200..0.200, r_out 0.210..0.210; "
                          "L=40: thirds -2.0/-5.0/-1.0, r_in 0.200..0.200, r_out 0.210..0.210; lambda*s=0.500..0.500")
    assert v.metrics == {"C3 r_out of E(B) (max over seeds and judged L)": pytest.approx(0.21),
                         "C3 r_in of E(B) (max over seeds and judged L)": pytest.approx(0.2),
                         "C3 lambda*s": pytest.approx(0.5), "C3 seeds with the peak": 3}


@pytest.mark.parametrize("kw, key, detail", [
    (dict(mlp={0: True, 1: True, 2: True}), "mid peak 3/3", "3/3 seeds"),      # (iii) fails: not a GNN effect
    (dict(gnn={0: (True, False), 1: (True, False), 2: (True, False)}), "r ≤ λs on 0/3", "3/3 seeds"),   # (ii) fails
    (dict(gnn={2: (False, True)}), "mid peak 2/3", "reproduced on 2/3 seeds, partly reproduced on 1/3"),  # one seed: (i) fails
])
def test_c3_partly_reproduced(kw, key, detail):
    t = valley(**kw)
    v = J.judge_c3({"headline": (t, t)})
    assert v.verdict == "partly reproduced" and v.key == key and v.measured.startswith(f"partly reproduced, {detail} (")


def test_c3_not_reproduced_and_a_seed_not_reproduced():
    t = valley(gnn={s: (False, False) for s in range(3)})
    v = J.judge_c3({"headline": (t, t)})
    assert v.verdict == "not reproduced" and v.key == "mid peak 0/3"
    t = valley(gnn={0: (False, False)})
    assert J.judge_c3({"headline": (t, t)}).measured.startswith(
        "partly reproduced, not reproduced on 1/3 seeds, reproduced on 2/3 (")


def test_c3_non_finite_and_not_judged():
    t = valley()
    t.loc[(t.kind == "GNN") & (t.L == 40), "r_out"] = np.nan     # a rate that could not be fitted
    assert J.judge_c3({"headline": (t, t)}).verdict == "not judged: non-finite"
    t.loc[(t.kind == "GNN") & (t.L == 10), "r_out"] = np.nan      # ... only at a depth that is not judged: fine
    t.loc[(t.kind == "GNN") & (t.L == 40), "r_out"] = 0.21
    assert J.judge_c3({"headline": (t, t)}).verdict == "reproduced"
    shallow = valley(depths=(10,))                                 # no depth the claim speaks of
    v = J.judge_c3({"headline": (shallow, shallow)})
    assert v.verdict == "not judged" and "0 seeds" in v.measured


def test_c3_readings_are_judged_by_the_same_rule():
    t = valley()
    gnn_only = t[t.kind == "GNN"]
    tables = {"headline": (t, t), "L = 10 included": (t, t, replace(J.C3Criterion(), min_depth=10)),
              "orthogonal init": (gnn_only, gnn_only)}
    v = J.judge_c3(tables, J.C3Criterion(), settings={"L = 10 included": "every depth", "orthogonal init": "orth"})
    shallow, orth = v.readings
    assert (shallow.setting, shallow.verdict, shallow.key) == ("every depth", "partly reproduced", "mid peak 0/3")
    assert shallow.measured.startswith("3/3 seeds; (i) on 0, (ii) on 3 seeds, MLP peak on 0; L=10: thirds -5.0/-3.0/-1.0")
    assert (orth.verdict, orth.key) == ("reproduced", "mid peak 3/3") and "MLP peak on -" in orth.measured
    summary = J.c3_summary(tables)
    assert list(summary.index) == list(tables) and summary.loc["orthogonal init", "mlp_peak"] == "-"


def test_valley_verdict_on_measured_valley_tables():
    def profile(values, depth, kind="GNN"):
        return pd.DataFrame(dict(layer=np.arange(1, depth + 1), E_B=values, rel_mu_B=values / values.max(), seed=0,
                                 kind=kind, L=depth, s=1.0, **{"lambda": 0.5}))
    k = np.arange(1, 31)
    valley_ = 1e-1 * 0.1 ** (30 - k) + 1e-2 * 0.2 ** k       # both rates below lambda*s = 0.5, lowest in the middle
    monotone = 0.3 ** (30 - k)                               # only shrinks towards the input
    t = smoothing.valley_table(pd.concat([profile(valley_, 30), profile(monotone, 30, "MLP")]), "E_B", 4, 1e-13)
    v = J.valley_verdict(t[t.kind == "GNN"], control=t[t.kind == "MLP"])
    assert v == dict(peak=True, rates=True, verdict="reproduced", control_peak=False)
    # the same valley in the MLP: not a GNN effect
    t2 = smoothing.valley_table(pd.concat([profile(valley_, 30), profile(valley_, 30, "MLP")]), "E_B", 4, 1e-13)
    assert J.valley_verdict(t2[t2.kind == "GNN"], control=t2[t2.kind == "MLP"])["verdict"] == "partly reproduced"
    # a slow output end (rate 0.6 > lambda*s = 0.5): rates fail, peak holds
    k = np.arange(1, 61)
    t3 = smoothing.valley_table(profile(1e-1 * 0.6 ** (60 - k) + 1e3 * 0.2 ** k, 60), "E_B", 4, 1e-13)
    assert t3.middle_lowest.all() and J.valley_verdict(t3)["verdict"] == "partly reproduced"
    assert J.valley_verdict(t3.iloc[:0])["verdict"] == "not reproduced"    # no rows: nothing shown

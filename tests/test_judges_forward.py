"""The judges of chapter 01 (oversmoothing.judges.forward): C1 on fitted rates of E(X(k)), C13 on the steps k_1%,
on small synthetic tables that reach every verdict each judge can give."""
import math

import numpy as np
import pandas as pd
import pytest

from oversmoothing.judges import forward as F
from oversmoothing.report import ClaimsTable

SL = [0.25, 0.5, 1.0, 2.0, 4.0]
GNN_OK = [0.05, 0.10, 0.22, 0.55, 1.20]   # below the bound under 1, escapes at s*lambda = 4 only
MLP_OK = [0.40, 0.90, 1.00, 1.50, 2.00]   # the control: slower than the bound at s*lambda = 0.25, fails (a)


def c1_rates(gnn=GNN_OK, mlp=MLP_OK, seeds=(0, 1, 2), r2=1.0, per_seed=None):
    """A rates table like smoothing.layer_rates(...) of chapter 01: one row per seed x kind x s*lambda.
    ``per_seed``: {seed: gnn rates} overriding ``gnn`` for that seed."""
    rows = []
    for sd in seeds:
        for kind, rates in (("GNN", (per_seed or {}).get(sd, gnn)), ("MLP", mlp)):
            for sl, r in zip(SL, rates):
                rows.append(dict(seed=sd, kind=kind, L=12, s_lambda=sl, rate=r, R2=r2, rel_rate=0.2))
    return pd.DataFrame(rows)


def judge(rates, criterion=F.C1Criterion(), **kw):
    return F.judge_c1({"headline": rates}, criterion, setting="setting X", fit_layers=8, **kw)


# ---- forward_verdict: C1's rule on one network ----------------------------------------------------------------

@pytest.mark.parametrize("rates, escape, expected", [
    ([0.05, 0.1, 0.5, 1.2], "some", "reproduced"),          # decays below 1, escapes at s*lambda = 4
    ([0.05, 0.1, 0.5, 1.2], "every", "partly reproduced"),  # ... but not at s*lambda = 2
    ([0.05, 0.1, 1.1, 1.2], "every", "reproduced"),
    ([0.05, 0.1, 0.5, 0.9], "some", "partly reproduced"),   # never escapes
    ([0.30, 0.1, 0.5, 1.2], "some", "not reproduced"),      # slower than the bound at s*lambda = 0.25
])
def test_forward_verdict(rates, escape, expected):
    sl = [0.25, 0.5, 2.0, 4.0]
    assert F.forward_verdict(sl, rates, [1.0] * 4, F.C1Criterion(escape=escape))["verdict"] == expected


def test_forward_verdict_poor_fit_and_control():
    sl, r = [0.25, 0.5, 1.0, 4.0], [0.05, 0.1, 5.0, 1.2]   # s*lambda = 1 belongs to neither part
    assert F.forward_verdict(sl, r, [0.95, 0.95, 0.1, 0.5])["verdict"] == "reproduced"
    assert F.forward_verdict(sl, r, [0.95, 0.5, 1, 1])["verdict"] == "not reproduced"  # not exponential
    assert F.forward_verdict(sl, r, [0.95, 0.5, 1, 1], F.C1Criterion(r2_min=0.4))["verdict"] == "reproduced"
    mlp_decays = F.forward_verdict(sl, r, [1] * 4, control=([0.1, 0.2, 1, 1], [1] * 4))
    assert mlp_decays["control_decays"] and mlp_decays["verdict"] == "partly reproduced"
    mlp_not = F.forward_verdict(sl, r, [1] * 4, control=([0.4, 0.9, 1, 1], [1] * 4))
    assert not mlp_not["control_decays"] and mlp_not["verdict"] == "reproduced"
    assert F.forward_verdict([2.0, 4.0], [1.5, 2.0], [1, 1])["verdict"] == "not reproduced"  # no s*lambda < 1: (a) not shown
    with pytest.raises(ValueError):
        F.C1Criterion(escape="most")


def test_c1_criterion_text_is_the_chapters():
    assert F.C1Criterion().text == (
        "per seed: (a) every s*lambda<1: R2>=0.9 and r<=s*lambda; (b) SOME s*lambda>1: r>=1 (no decay); "
        "(c) the MLP fails (a). (a)+(b)+(c): reproduced; (a): partly")
    assert "(b) EVERY s*lambda>1" in F.C1Criterion(escape="every").text
    assert "R2>=0.8" in F.C1Criterion(r2_min=0.8).text


# ---- judge_c1 ----------------------------------------------------------------------------------------------------

def test_c1_reproduced_with_its_measured_text_key_and_metrics():
    v = judge(c1_rates())
    assert v.id == "C1" and v.verdict == "reproduced" and v.claim == F.C1_CLAIM
    assert v.measured.startswith("reproduced, 3/3 seeds (setting X); fitted rate r of E(X(k)) on k<=8, range over seeds, GNN: ")
    assert "s*lambda=0.25: r=0.050..0.050; s*lambda=0.5: r=0.100..0.100; s*lambda=2: r=0.550..0.550; s*lambda=4: r=1.200..1.200" in v.measured
    assert "(a) holds on 3, (b) on 3 of 3 seeds; MLP (P = I) passes (a) on 0 seeds (its rates at s*lambda<1: s*lambda=0.25: r=0.400..0.400" in v.measured
    assert v.key == "r ≤ 0.100 (sλ<1)" and v.criterion == F.C1Criterion().text
    assert v.metrics["C1 GNN rate at s*lambda=1 (mean over seeds)"] == pytest.approx(0.22)
    assert v.metrics["C1 GNN relative-measure rate at s*lambda=4 (mean over seeds)"] == pytest.approx(0.2)
    assert len(v.metrics) == 6 and v.readings == []


def test_c1_partly_when_nothing_escapes_or_the_mlp_decays_too():
    v = judge(c1_rates(gnn=[0.05, 0.1, 0.22, 0.55, 0.9]))
    assert v.verdict == "partly reproduced" and v.key == "sλ>1: r ≤ 0.90" and "(b) on 0 of 3" in v.measured
    v = judge(c1_rates(mlp=[0.2, 0.4, 1.0, 1.5, 2.0]))   # the MLP passes (a): not a graph effect
    assert v.verdict == "partly reproduced" and "MLP (P = I) passes (a) on 3 seeds" in v.measured


def test_c1_seeds_combine_by_unanimity():
    slow = [0.30, 0.1, 0.22, 0.55, 1.2]                  # slower than the bound at s*lambda = 0.25: not reproduced
    v = judge(c1_rates(per_seed={1: slow, 2: slow}))
    assert v.verdict == "partly reproduced"              # one seed reproduced: partly, never the majority's verdict
    assert v.measured.startswith("partly reproduced, reproduced on 1/3 seeds, not reproduced on 2/3 (setting X)")
    assert v.key == "sλ>1: r ≤ 1.20"


def test_c1_not_reproduced():
    v = judge(c1_rates(gnn=[0.30, 0.6, 0.9, 0.95, 1.2]))
    assert v.verdict == "not reproduced" and v.key == "sλ<1: r ≤ 0.60" and "(a) holds on 0" in v.measured


def test_c1_non_finite_and_not_judged():
    r = c1_rates()
    r.loc[3, "rate"] = np.nan                              # a failed fit: the verdict rests on it
    assert judge(r).verdict == "not judged: non-finite"
    r = c1_rates()
    r.loc[0, "R2"] = np.inf
    assert judge(r).verdict == "not judged: non-finite"
    empty = c1_rates().iloc[:0]                            # no seed: nothing to judge
    v = judge(empty)
    assert v.verdict == "not judged" and "0 seeds" in v.measured


def test_c1_readings_are_judged_by_the_same_rule():
    strict = F.C1Criterion(escape="every")
    tanh = c1_rates(gnn=[0.1, 0.2, 0.4, 0.4, 0.55])
    v = F.judge_c1({"headline": c1_rates(), "every s lambda > 1": (c1_rates(), strict), "tanh": tanh},
                   F.C1Criterion(), setting="s", fit_layers=8,
                   settings={"every s lambda > 1": "criterion (b) for every tested s*lambda > 1", "tanh": "rho = tanh"})
    assert v.verdict == "reproduced"
    (e, t) = v.readings
    assert (e.name, e.setting, e.verdict, e.key) == ("every s lambda > 1", "criterion (b) for every tested s*lambda > 1",
                                                    "partly reproduced", "r=0.55 at sλ=2")
    assert e.measured.startswith("3/3 seeds; GNN rates s*lambda=0.25: r=0.050..0.050;") and e.measured.endswith(
        "MLP passes (a) on 0 seeds")
    assert (t.setting, t.verdict, t.key) == ("rho = tanh", "partly reproduced", "sλ>1: r ≤ 0.55")
    bad = c1_rates()
    bad.loc[0, "rate"] = np.nan
    v = F.judge_c1({"headline": c1_rates(), "bad": bad}, F.C1Criterion())
    assert v.verdict == "reproduced" and v.readings[0].verdict == "not judged: non-finite"
    summary = F.c1_summary({"headline": c1_rates(), "tanh": tanh})
    assert list(summary.index) == ["headline", "tanh"] and summary.loc["tanh", "escapes"] == 0


def test_c1_is_masked_by_a_table_that_does_not_judge():
    claims = ClaimsTable("x", judge=False)
    c = claims.record(judge(c1_rates()))
    assert c.verdict == "not judged" and "C1 GNN rate at s*lambda=4 (mean over seeds)" in claims.metrics


# ---- judge_c13 ---------------------------------------------------------------------------------------------------

def spectra(k_csbm=2.0, k_ring=math.inf, lam_cora=0.9999, names=None):
    rows = [("complete ($n$=100)", 0.0101, 2.0), ("CSBM ($n$=1000)", 0.157, k_csbm),
            ("Cora (largest component)", lam_cora, math.inf), ("ring ($n$=101)", 0.9995, k_ring)]
    rows = [r for r in rows if names is None or r[0].split()[0] in names]
    return pd.DataFrame(rows, columns=["graph", "lambda", "k_1% measured"]).set_index("graph")


def test_c13_criterion_text_is_the_chapters():
    assert F.C13Criterion().text == (
        "k_1% (steps for E(P^k X)/E(X) < 0.01, random Gaussian X) non-decreasing in lambda, <= 5 for the dense graphs "
        "(complete, CSBM), > 20 for the sparse ones (ring, Cora)")


def test_c13_reproduced():
    v = F.judge_c13(spectra())
    assert v.id == "C13" and v.verdict == "reproduced" and v.key == "k1% 2 vs ∞"
    assert v.measured == ("complete (n=100): lambda=0.0101, k_1%=2; CSBM (n=1000): lambda=0.157, k_1%=2; "
                          "ring (n=101): lambda=0.9995, k_1%=inf; Cora (largest component): lambda=0.9999, k_1%=inf")
    assert v.metrics == {"C13 lambda complete (n=100)": 0.0101, "C13 lambda CSBM (n=1000)": 0.157,
                         "C13 lambda ring (n=101)": 0.9995, "C13 lambda Cora (largest component)": 0.9999}


def test_c13_not_reproduced():
    assert F.judge_c13(spectra(k_csbm=7.0)).verdict == "not reproduced"             # a dense graph smooths slowly
    v = F.judge_c13(spectra(k_ring=15.0))                                            # a sparse one too fast
    assert v.verdict == "not reproduced" and v.key == "k1% 2 vs 15"


def test_c13_k_must_not_fall_as_lambda_grows():
    s = spectra(k_ring=30.0)
    assert F.judge_c13(s).verdict == "reproduced"        # ring (lambda 0.9995): 30 steps, Cora (0.9999): never
    s.loc["ring ($n$=101)", "lambda"] = 0.99999          # now the ring has the larger lambda but smooths sooner
    v = F.judge_c13(s)
    assert v.verdict == "not reproduced" and v.measured.index("Cora") < v.measured.index("ring")


def test_c13_non_finite_and_not_judged():
    assert F.judge_c13(spectra(lam_cora=np.nan)).verdict == "not judged: non-finite"
    v = F.judge_c13(spectra(names=("complete", "CSBM")))                              # no sparse graph to compare
    assert v.verdict == "not judged" and "needs a dense and a sparse graph" in v.measured and v.key == ""

"""The helpers of chapters 01-03 (oversmoothing.experiments.smoothing): rate fits, the C1 and C3 criteria, seeds that agree,
and the per-layer profiles of random-weight networks."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from oversmoothing import graphs, measures
from oversmoothing.experiments import smoothing
from oversmoothing.judges import backward as judge_backward, forward as judge_forward


def test_fit_rate_recovers_a_geometric_sequence_and_skips_bad_points():
    v = 3.0 * 0.2 ** np.arange(9)
    r, r2 = smoothing.fit_rate(v)
    assert r == pytest.approx(0.2, rel=1e-10) and r2 == pytest.approx(1.0)
    v[4] = 0.0          # rounded to zero: left out, the fit is unchanged
    v[6] = np.nan
    assert smoothing.fit_rate(v)[0] == pytest.approx(0.2, rel=1e-10)
    assert math.isnan(smoothing.fit_rate([1.0, 0.0, -1.0])[0])
    r, r2 = smoothing.fit_rate([1.0, 0.1, 1.0, 0.1])   # not exponential: poor R^2
    assert r2 < 0.5


def test_end_rates_of_a_two_term_profile():
    """v_k = a q_out^(L-k) + b q_in^k: the output end decays at q_out, the input end at q_in."""
    L, k = 40, np.arange(1, 41)
    v = 1e-2 * 0.05 ** (L - k) + 1e-3 * 0.3 ** k
    assert smoothing.end_rate(v, "out", 4) == pytest.approx(0.05, rel=1e-6)
    assert smoothing.end_rate(v, "in", 4) == pytest.approx(0.3, rel=1e-6)
    valid = np.ones(L, bool)
    valid[-2:] = False  # two points left out: still a rate from the other two
    assert smoothing.end_rate(v, "out", 4, valid) == pytest.approx(0.05, rel=1e-6)
    with pytest.raises(ValueError):
        smoothing.end_rate(v, "middle", 4)


def test_fit_theorem2_recovers_the_constants():
    lam, s, L = 0.2, 1.0, 30
    k = np.arange(1, L + 1)
    v = measures.theorem2_bound(lam, s, k, L, a=1e-3, b=5.0)
    a, b, rms = smoothing.fit_theorem2(v, lam, s)
    assert a == pytest.approx(1e-3, rel=1e-5) and b == pytest.approx(5.0, rel=1e-5) and rms < 1e-6


@pytest.mark.parametrize("rates, escape, expected", [
    ([0.05, 0.1, 0.5, 1.2], "some", "reproduced"),          # decays below 1, escapes at s*lambda = 4
    ([0.05, 0.1, 0.5, 1.2], "every", "partly reproduced"),  # ... but not at s*lambda = 2
    ([0.05, 0.1, 1.1, 1.2], "every", "reproduced"),
    ([0.05, 0.1, 0.5, 0.9], "some", "partly reproduced"),   # never escapes
    ([0.30, 0.1, 0.5, 1.2], "some", "not reproduced"),      # slower than the bound at s*lambda = 0.25
])
def test_forward_verdict(rates, escape, expected):
    sl = [0.25, 0.5, 2.0, 4.0]
    assert judge_forward.forward_verdict(sl, rates, [1.0] * 4, escape=escape)["verdict"] == expected


def test_forward_verdict_poor_fit_and_control():
    sl, r = [0.25, 0.5, 1.0, 4.0], [0.05, 0.1, 5.0, 1.2]   # s*lambda = 1 belongs to neither part
    assert judge_forward.forward_verdict(sl, r, [0.95, 0.95, 0.1, 0.5])["verdict"] == "reproduced"
    assert judge_forward.forward_verdict(sl, r, [0.95, 0.5, 1, 1])["verdict"] == "not reproduced"  # not exponential
    mlp_decays = judge_forward.forward_verdict(sl, r, [1] * 4, control=([0.1, 0.2, 1, 1], [1] * 4))
    assert mlp_decays["control_decays"] and mlp_decays["verdict"] == "partly reproduced"
    mlp_not = judge_forward.forward_verdict(sl, r, [1] * 4, control=([0.4, 0.9, 1, 1], [1] * 4))
    assert not mlp_not["control_decays"] and mlp_not["verdict"] == "reproduced"


def _profile(values, L, seed=0, kind="GNN", lam=0.5, s=1.0):
    return pd.DataFrame(dict(layer=np.arange(1, L + 1), E_B=values, rel_mu_B=values / values.max(), seed=seed, kind=kind,
                             L=L, s=s, **{"lambda": lam}))


def test_valley_table_and_verdict():
    L, k = 30, np.arange(1, 31)
    valley = 1e-1 * 0.1 ** (L - k) + 1e-2 * 0.2 ** k       # both rates below lambda*s = 0.5, lowest in the middle
    monotone = 0.3 ** (L - k)                               # only shrinks towards the input
    t = smoothing.valley_table(pd.concat([_profile(valley, L), _profile(monotone, L, kind="MLP")]), "E_B", 4, 1e-13)
    gnn, mlp = t[t.kind == "GNN"].iloc[0], t[t.kind == "MLP"].iloc[0]
    assert gnn.middle_lowest and gnn.rates_ok and gnn.r_out == pytest.approx(0.1, rel=1e-3)
    assert not mlp.middle_lowest and mlp.k_star == 1
    v = judge_backward.valley_verdict(t[t.kind == "GNN"], control=t[t.kind == "MLP"])
    assert v == dict(peak=True, rates=True, verdict="reproduced", control_peak=False)
    # the same valley in the MLP: not a GNN effect
    t2 = smoothing.valley_table(pd.concat([_profile(valley, L), _profile(valley, L, kind="MLP")]), "E_B", 4, 1e-13)
    assert judge_backward.valley_verdict(t2[t2.kind == "GNN"], control=t2[t2.kind == "MLP"])["verdict"] == "partly reproduced"
    # a slow output end (rate 0.6 > lambda*s = 0.5): rates fail, peak holds
    k = np.arange(1, 61)
    slow = 1e-1 * 0.6 ** (60 - k) + 1e3 * 0.2 ** k
    t3 = smoothing.valley_table(_profile(slow, 60), "E_B", 4, 1e-13)
    assert t3.middle_lowest.all() and t3.r_out.iloc[0] == pytest.approx(0.6, rel=1e-3)
    assert judge_backward.valley_verdict(t3)["verdict"] == "partly reproduced"


@pytest.fixture(scope="module")
def draws():
    return smoothing.csbm_draws([0, 1], 200, 140, 0.3)


def test_csbm_draws_share_the_model(draws):
    g0, g1 = draws
    assert g0.meta["ratio"] == g1.meta["ratio"] and [g.meta["seed"] for g in draws] == [0, 1]
    assert abs(g0.meta["lambda"] - 0.3) <= 0.01 and abs(g1.meta["lambda"] - 0.3) < 0.05
    assert not torch.equal(g0.edge_index, g1.edge_index)
    assert float(g0.x.mean(0).norm()) < 1e-5          # the standard CSBM: centred features


def test_profile_grid_forward_bound_and_mlp_control(draws):
    df = smoothing.profile_grid(draws, 8, s_lambda=[0.5], activation="centred_softplus")
    assert set(df.kind) == {"GNN", "MLP"} and set(df.seed) == {0, 1} and (df.scale == 0.5).all()
    for (sd, kind), d in df.groupby(["seed", "kind"]):
        d = d.sort_values("layer")
        assert (d.E_B.iloc[1:] > 0).all() and (d.grad_norm.iloc[1:] > 0).all()
        if kind == "GNN":  # E(X(k)) <= (s lambda)^k E(X(0)), the output H(L) included
            assert (d.E_X.to_numpy() <= 0.5 ** d.layer.to_numpy() * d.E_X.iloc[0] * (1 + 1e-9)).all()
            assert d.rel_mu_X.iloc[-2] < 0.05
        else:              # no P: no smoothing
            assert d.rel_mu_X.min() > 0.1
    X = torch.randn(50, 3, dtype=torch.float64) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert smoothing._const_norm(X) == pytest.approx(float(torch.linalg.norm(X - (X - X.mean(0)))), rel=1e-12)
    with pytest.raises(ValueError):
        smoothing.profile_grid(draws, 4, s=[1.0], s_lambda=[0.5])

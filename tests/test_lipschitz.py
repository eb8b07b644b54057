"""Paper 2's Lipschitz normalisation and gradient expansion (chapters 06 and 07), at a small size."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from oversmoothing import datasets, graphs, models
from oversmoothing.experiments import gradients
from oversmoothing.measures import mu
from oversmoothing.models import weights
from oversmoothing.signals import trace
from oversmoothing.training import fit


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids spin-waiting on a loaded 2-core machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def graph():
    return graphs.csbm(200, 2, 10.0, dim=16, seed=0)


@pytest.mark.parametrize("arch", ["res_gcn", "res_gat"])
def test_frobenius_norm_stays_c_during_training(graph, arch):
    c = 2.5
    model = models.build(gradients.model_name(arch), 16, 16, 2, 4, lipschitz_c=c, seed=0)
    h = fit(model, graph, epochs=5, lr=0.05, measures=(), signals=(), device="cpu", progress=False)
    assert not h.diverged
    raw = [p for n, p in model.named_parameters() if n.endswith("parametrizations.weight.original")]
    assert len(raw) == 4
    assert any(abs(float(torch.linalg.norm(p.detach())) - c) > 1e-2 for p in raw)  # the raw weights moved freely...
    for W in weights(model):  # ...while every effective W(k) keeps ||W||_F = c
        assert math.isclose(float(torch.linalg.norm(W.detach())), c, rel_tol=1e-5)


def _expansion(graph, c):
    model = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 32, lipschitz_c=c, seed=0)
    _, sig = trace(model, graph.x, model.operator(graph), graph.y, graph.train_mask)
    grad_ratio = mu(sig.G[1]) / mu(sig.G[-1])  # mu(G(1)) / mu(G(L))
    repr_ratio = float(sig.X[-1].norm() / sig.X[0].norm())  # ||X(L)||_F / ||X(0)||_F
    return grad_ratio, repr_ratio


def test_residual_gcn_expands_without_normalisation_and_not_with_c1(graph):
    g_none, x_none = _expansion(graph, None)
    g_c1, x_c1 = _expansion(graph, 1.0)
    # 32 residual layers, Glorot init: gradient similarity and representation norm grow by orders of magnitude
    assert g_none > 100 and x_none > 1000
    # with W <- 1 * W/||W||_F both stay within one order of magnitude
    assert g_c1 < 10 and x_c1 < 10


def test_c_equal_to_glorot_frobenius_norm_changes_nothing_at_init(graph):
    # a 16x16 Glorot-uniform matrix has ||W||_F^2 = 16*16 * 2/(16+16) = 16, so c = 4 rescales by about 1
    g_none, _ = _expansion(graph, None)
    g_c4, _ = _expansion(graph, 4.0)
    assert 0.1 < g_c4 / g_none < 10


def test_gat_divergence_is_recorded_not_raised(graph):
    model = models.build(gradients.model_name("res_gat"), 16, 16, 2, 16, seed=0)
    h = fit(model, graph, epochs=20, lr=1e6, measures=("mu",), signals=("X", "G"), device="cpu", progress=False)
    assert h.diverged and h.diverged_at is not None and h.diverged_at <= 20
    assert bool(h.epochs["diverged"].iloc[-1]) and math.isnan(h.epochs["loss"].iloc[-1])
    summary, _ = gradients.run(graph, "res_gat", 16, epochs=20, lr=1e6, record_every=5, device="cpu", progress=False)
    assert summary["diverged"] and summary["diverged_at"] == h.diverged_at


# ----------------------------------------------------------------------------- residual readings (chapter 07)
@pytest.mark.parametrize("activation,alpha", [("relu", 1.0), ("relu", 0.125), ("tanh", 1.0)])
def test_scaled_or_bounded_residual_layer_keeps_its_lipschitz_bound(graph, activation, alpha):
    # X -> X + alpha rho(P X W) with ||W||_2 <= ||W||_F = c, ||P||_2 <= 1 and 1-Lipschitz rho is (1 + alpha c)-Lipschitz
    c = 3.0
    model = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, lipschitz_c=c, activation=activation, branch_scale=alpha, seed=0)
    op, layer = model.operator(graph), model.layers[0]
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    with torch.no_grad():
        for _ in range(20):
            X, Y = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen)
            f = lambda Z: Z + alpha * model.rho(model._branch(layer, Z, op))  # noqa: E731
            worst = max(worst, float(torch.linalg.norm(f(X) - f(Y)) / torch.linalg.norm(X - Y)))
    assert worst <= 1 + alpha * c + 1e-5
    assert worst > 1.0  # the branch does something


def test_branch_scale_scales_the_branch_and_defaults_to_one(graph):
    m1 = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, seed=0)
    ma = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, branch_scale=0.25, seed=0)
    assert m1.branch_scale == 1.0
    from oversmoothing.models import Trace
    t1, ta = Trace(), Trace()
    op = m1.operator(graph)
    with torch.no_grad():
        m1(graph.x, op, t1), ma(graph.x, op, ta)
    X0 = t1.X[0]
    assert torch.allclose(ta.X[1] - X0, 0.25 * (t1.X[1] - X0), atol=1e-6)
    with pytest.raises(ValueError):
        models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, branch_scale=0.0)


def test_residual_mlp_is_the_residual_gcn_with_identity(graph):
    model = models.build(gradients.model_name("res_mlp"), 16, 16, 2, 3, seed=0)
    assert model.operator(graph) is None


def test_mean_field_growth_matches_the_residual_mlp_and_predicts_the_512_layer_overflow(graph):
    # ReLU branch: the positive mean of relu(h) turns x towards the all-ones direction and ||x|| then
    # grows by ~ 1 + c/sqrt(2 pi d) per layer
    d = 32
    for c in (1.0, 4.0):
        meas = gradients.init_scale(graph, "res_mlp", 64, hidden=d, lipschitz_c=c)["log10_growth"]
        pred = gradients.residual_growth(c, d, 64)[-1]
        assert abs(meas - pred) < 0.5, (c, meas, pred)
    # asymptotic slope per layer: the cosine a = m/sqrt(q) settles at the root a* of
    # 2k a^3 + (b^2/2) a^2 - 2k a - k^2 = 0 (b = c/sqrt(d), k = b/sqrt(2 pi)), then q'/q = 1 + 2 a* k + b^2/2
    g = gradients.residual_growth(4.0, 64, 512)
    slope = (g[-1] - g[-101]) / 100
    b = 4 / math.sqrt(64)
    k = b / math.sqrt(2 * math.pi)
    a = max(r.real for r in np.roots([2 * k, b * b / 2, -2 * k, -k * k]) if abs(r.imag) < 1e-12 and 0 < r.real <= 1)
    assert 0.85 < a < 0.95
    assert math.isclose(slope, 0.5 * math.log10(1 + 2 * a * k + b * b / 2), rel_tol=0.01)
    assert g[-1] > math.log10(np.finfo(np.float32).max)  # L = 512, d = 64, c = 4 overflows float32 ...
    assert gradients.residual_growth(4.0, 64, 512, activation="tanh")[-1] < 4  # ... a bounded (tanh) branch does not
    assert gradients.residual_growth(4.0, 64, 512, branch_scale=1 / math.sqrt(512))[-1] < 4  # nor alpha = 1/sqrt(L)


def test_c4_is_not_glorot_at_width_64(graph):
    # at d = 64 a Glorot matrix has ||W||_F ~ 8, so c = 4 halves every branch: at L = 64 it cuts the growth of
    # the representation (and the largest logit) by several decades
    none = gradients.init_scale(graph, "res_gcn", 64, hidden=64)
    c4 = gradients.init_scale(graph, "res_gcn", 64, hidden=64, lipschitz_c=4.0)
    assert none["log10_growth"] - c4["log10_growth"] > 3
    assert none["max_logit"] / c4["max_logit"] > 1e3


# ----------------------------------------------------------------------------- C11 statistics
def test_partial_spearman_on_constructed_data():
    rng = np.random.default_rng(0)
    n = 400
    z = rng.normal(size=n)
    y = z + 0.3 * rng.normal(size=n)
    only_via_z = z + 0.3 * rng.normal(size=n)      # knows y only through z
    adds = y + 0.3 * rng.normal(size=n)            # knows y beyond z
    df = pd.DataFrame(dict(y=y, z=z, a=only_via_z, b=adds))
    assert gradients.partial_spearman(df, "y", "a") > 0.8           # plain rho is high ...
    assert abs(gradients.partial_spearman(df, "y", "a", ["z"])) < 0.15  # ... but a adds nothing to z
    assert gradients.partial_spearman(df, "y", "b", ["z"]) > 0.5
    # one given column: the textbook formula on the ranks
    r = df.rank().corr()
    expect = (r.y.a - r.y.z * r.a.z) / math.sqrt((1 - r.y.z ** 2) * (1 - r.a.z ** 2))
    assert math.isclose(gradients.partial_spearman(df, "y", "a", ["z"]), expect, abs_tol=1e-9)
    cmp = gradients.compare_predictors(df, "y", "b", "a", given=["z"], n_boot=200)
    assert cmp["diff"] > 0.4 and cmp["ci_low"] > 0


def test_spearman_within_strata_removes_a_between_strata_confound():
    # across strata x and y both rise (a confound); within each stratum y falls with x
    rng = np.random.default_rng(1)
    rows = []
    for s in range(4):
        x = rng.normal(size=50)
        rows.append(pd.DataFrame(dict(s=s, x=10 * s + x, y=10 * s - x + 0.2 * rng.normal(size=50))))
    df = pd.concat(rows, ignore_index=True)
    assert gradients.partial_spearman(df, "y", "x") > 0.5
    assert gradients.partial_spearman(df, "y", "x", strata=["s"]) < -0.9

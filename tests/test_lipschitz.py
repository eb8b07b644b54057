"""Paper 2's Lipschitz normalisation and gradient expansion (chapters 06 and 07), at a small size."""
from __future__ import annotations

import math

import pytest
import torch

from oversmoothing import graphs, runs
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
    model = runs.make_model(arch, 16, 16, 2, 4, lipschitz_c=c, seed=0)
    h = fit(model, graph, epochs=5, lr=0.05, measures=(), signals=(), device="cpu", progress=False)
    assert not h.diverged
    raw = [p for n, p in model.named_parameters() if n.endswith("parametrizations.weight.original")]
    assert len(raw) == 4
    assert any(abs(float(torch.linalg.norm(p.detach())) - c) > 1e-2 for p in raw)  # the raw weights moved freely...
    for W in weights(model):  # ...while every effective W(k) keeps ||W||_F = c
        assert math.isclose(float(torch.linalg.norm(W.detach())), c, rel_tol=1e-5)


def _expansion(graph, c):
    model = runs.make_model("res_gcn", 16, 16, 2, 32, lipschitz_c=c, seed=0)
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
    model = runs.make_model("res_gat", 16, 16, 2, 16, seed=0)
    h = fit(model, graph, epochs=20, lr=1e6, measures=("mu",), signals=("X", "G"), device="cpu", progress=False)
    assert h.diverged and h.diverged_at is not None and h.diverged_at <= 20
    assert bool(h.epochs["diverged"].iloc[-1]) and math.isnan(h.epochs["loss"].iloc[-1])
    summary, _ = runs.run(graph, "res_gat", 16, epochs=20, lr=1e6, record_every=5, device="cpu", progress=False)
    assert summary["diverged"] and summary["diverged_at"] == h.diverged_at

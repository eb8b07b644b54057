"""Chapter 06's controls at initialisation (models.build with the twins, he_rescale_, init_gradients,
init_summary)."""
import dataclasses
import math

import pytest
import torch

from oversmoothing import datasets, graphs, models
from oversmoothing.experiments import gradients
from oversmoothing.models import weights


@pytest.fixture(scope="module")
def graph():
    return graphs.csbm(n=200, classes=3, avg_degree=8, ratio=3.0, dim=16, seed=0)


@pytest.mark.parametrize("arch, twin", [("gcn", "mlp"), ("res_gcn", "res_mlp")])
def test_the_identity_twin_starts_from_the_same_weights(graph, arch, twin):
    a = models.build(gradients.model_name(arch), 16, 8, 3, 5, seed=3)
    b = models.build(gradients.model_name(twin), 16, 8, 3, 5, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(weights(a), weights(b)))
    assert models.twin(gradients.model_name(arch)) == gradients.model_name(twin)
    op = b.operator(graph)
    X = torch.randn(graph.num_nodes, 8)
    assert op is None or torch.allclose(op @ X, X)  # P = I


def test_he_rescale_multiplies_the_relu_layers_by_sqrt2_and_leaves_the_output_layer(graph):
    a = models.build("paper2.gcn", 16, 8, 3, 4, seed=0)
    b = models.he_rescale_(models.build("paper2.gcn", 16, 8, 3, 4, seed=0))
    Wa, Wb = weights(a), weights(b)
    for k in range(3):
        assert torch.allclose(Wb[k], math.sqrt(2) * Wa[k])
    assert torch.equal(Wb[3], Wa[3])


def test_relu_halving_sets_the_mlp_gradient_decay_and_he_init_removes_it(graph):
    """Glorot (variance 1/d) + ReLU halves the gradient's mean square per layer: over L - 1 = 23 layers
    mu(G(1))/mu(G(L)) ~ 2^(-11.5) ~ 3.5e-4 for the MLP twin; with He's sqrt(2) it is of order one."""
    L = 24
    glorot = gradients.init_summary(gradients.init_gradients(graph, "mlp", L, hidden=64, seed=0))
    he = gradients.init_summary(gradients.init_gradients(graph, "mlp", L, hidden=64, seed=0, he=True))
    assert 2 ** -11.5 / 10 < glorot["ratio"] < 2 ** -11.5 * 10
    assert 0.1 < he["ratio"] < 10
    assert glorot["spearman"] > 0.9


def test_init_gradients_reports_every_layer_and_agrees_across_precisions(graph):
    r32 = gradients.init_gradients(graph, "res_gcn", 6, hidden=8, seed=1)
    r64 = gradients.init_gradients(graph, "res_gcn", 6, hidden=8, seed=1, dtype=torch.float64)
    la32, la64 = r32["layers"], r64["layers"]
    assert list(la32.layer) == list(range(7)) and la32.finite_G.all() and r32["forward_finite"]
    assert r64["dtype"] == "float64"
    assert torch.allclose(torch.tensor(la32.norm_G.values), torch.tensor(la64.norm_G.values), rtol=1e-4)
    assert r32["loss"] == pytest.approx(r64["loss"], rel=1e-5)
    s = gradients.init_summary(r32)
    assert s["finite_G"] == s["layers_G"] == 7
    assert s["ratio"] == pytest.approx(float(la32.mu_G[1] / la32.mu_G[6]))
    assert 0 <= s["rel_mu_gcn_G1"] <= 1


def test_a_non_finite_signal_is_reported_not_raised(graph):
    """Features of order 1e38 (stored in float64) overflow float32 but not float64: init_gradients says so."""
    huge = dataclasses.replace(graph, x=graph.x.double() * 1e38)
    res = gradients.init_gradients(huge, "res_mlp", 2, hidden=4, seed=0)
    assert not (res["forward_finite"] and res["layers"].finite_G.all())
    assert math.isnan(gradients.init_summary(res)["ratio"])
    assert gradients.init_gradients(huge, "res_mlp", 2, hidden=4, seed=0, dtype=torch.float64)["layers"].finite_G.all()


def test_small_component_share_counts_the_rows_of_isolated_nodes_and_pairs():
    # nodes 0-1-2 a path, 3-4 a pair, 5 isolated
    ei = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    G = torch.tensor([[1.0], [1.0], [1.0], [2.0], [0.0], [1.0]])
    assert gradients.small_component_mask(ei, 6).tolist() == [False, False, False, True, True, True]
    assert gradients.small_component_share(G, ei) == pytest.approx(5 / 8)

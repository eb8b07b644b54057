"""Chapter 04/05 facts at a small size: the last-layer trap of deep GNNs (Theorem 3), Proposition 2's
MLP counter-example, the chance levels (Corollary 2) and the helpers of `oversmoothing.experiments`."""
import math

import pandas as pd
import pytest
import torch

from oversmoothing.experiments import (chance_loss, collapse_epoch, make_vanilla, orthogonal_init_, proposition2,
                                       solve_last_layer_)
from oversmoothing.graphs import csbm
from oversmoothing.models import weights


@pytest.fixture(scope="module")
def graph():
    # dense CSBM: lambda ~ 0.3, so s*lambda = 0.51 < 1 with s = 1.7
    return csbm(200, 2, 140, dim=8, mean_sep=2.0, lam=0.3, seed=0)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_last_layer_trap_gnn_not_mlp(graph, loss):
    """After W(L) alone is solved, every layer of a deep GNN has ~0 gradient; the same-depth MLP does not."""
    depth = 20
    gnn = make_vanilla("GNN", graph.num_features, 8, 2, depth, s=1.7, seed=0)
    mlp = make_vanilla("MLP", graph.num_features, 8, 2, depth, s=1.7, seed=0)
    sg, ig = solve_last_layer_(gnn, graph, loss=loss, device="cpu")
    sm, im = solve_last_layer_(mlp, graph, loss=loss, device="cpu")
    assert ig["last_grad"] < 1e-5 and im["last_grad"] < 1e-3  # the last layer is stationary in both
    assert max(float(torch.linalg.norm(d)) for d in sg.dW) < 1e-4
    assert max(float(torch.linalg.norm(d)) for d in sm.dW[:-1]) > 1e-2
    # the trapped GNN sits at chance level (Corollary 2); the MLP does better
    assert ig["loss"] >= 0.95 * chance_loss(graph, loss)
    assert im["loss"] < 0.95 * chance_loss(graph, loss)


def test_proposition2_gradients():
    p = proposition2(target_grad=1.0).set_index(["model", "layer"]).grad
    assert p[("MLP", 1)] == pytest.approx(1.0, abs=1e-12)
    assert abs(p[("MLP", 2)]) < 1e-12
    assert abs(p[("GNN", 1)]) < 1e-12 and abs(p[("GNN", 2)]) < 1e-12


def test_chance_levels(graph):
    p1 = float(graph.y[graph.train_mask].float().mean())
    assert chance_loss(graph, "ce") == pytest.approx(-(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1)))
    assert chance_loss(graph, "mse") == pytest.approx(p1 * (1 - p1))  # (1 - p0^2 - p1^2)/2
    with pytest.raises(ValueError):
        chance_loss(graph, "hinge")


def test_orthogonal_init_sets_every_singular_value():
    m = make_vanilla("GNN", 5, 7, 3, 4, s=1.3, seed=0)
    for W in weights(m):
        sv = torch.linalg.svdvals(W.detach())
        assert torch.allclose(sv, torch.full_like(sv, 1.3), atol=1e-5)
    a = orthogonal_init_(make_vanilla("MLP", 5, 7, 3, 2, seed=0), 1.0, seed=1).layers[0].weight.detach().clone()
    b = orthogonal_init_(make_vanilla("MLP", 5, 7, 3, 2, seed=0), 1.0, seed=1).layers[0].weight.detach()
    assert torch.equal(a, b)


def test_collapse_epoch_detector():
    layers = pd.DataFrame({"epoch": [0, 0, 1, 1, 2, 2, 3, 3], "layer": [1, 2] * 4,
                           "grad_norm": [1.0, 1.0, 1e-3, 0.5, 1e-3, 1e-3, float("nan"), 1e-4]})
    assert collapse_epoch(layers, 1e-2) == 2
    assert collapse_epoch(layers, 1e-5) is None
    epochs = pd.DataFrame({"epoch": [0, 1, 2, 3], "loss": [0.7, 0.69, 0.1, 0.1]})
    assert collapse_epoch(layers, 1e-2, epochs, min_loss=0.5) is None  # converged, not trapped

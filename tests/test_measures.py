"""Oversmoothing measures: identities, invariances and the Theorem 2 bound's shape."""
import numpy as np
import pytest
import torch

from oversmoothing import graphs as G
from oversmoothing import measures as M


@pytest.fixture(scope="module")
def graph():
    return G.csbm(n=120, classes=3, avg_degree=8, ratio=3.0, dim=5, seed=0)


@pytest.fixture
def X():
    return torch.randn(120, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_pairwise_identity_links_E_and_mu(X):
    n = X.shape[0]
    # sum_{i,j} ||x_i - x_j||^2 = 2 n ||X - 11^T X / n||_F^2
    assert M.pairwise_sq_sum(X) == pytest.approx(2 * n * M.mu(X) ** 2, rel=1e-10)
    assert M.E(X) == pytest.approx(np.sqrt(M.pairwise_sq_sum(X)) / n, rel=1e-10)
    assert M.E(X) == pytest.approx(np.sqrt(2 / n) * M.mu(X), rel=1e-12)


def test_dirichlet_equals_trace_form(X, graph):
    assert M.dirichlet(X, graph.edge_index) == pytest.approx(M.laplacian_quadratic(X, graph.edge_index), rel=1e-10)


OVERSMOOTHING_MEASURES = sorted(set(M.MEASURES) - {"norm"})  # "norm" is recorded for scale, not a measure


@pytest.mark.parametrize("name", OVERSMOOTHING_MEASURES)
def test_every_measure_vanishes_on_a_constant_signal(name, graph):
    const = torch.ones(graph.num_nodes, 1) * torch.tensor([[0.3, -2.0, 5.0]])
    assert M.measure(name, const, graph) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", sorted(M.MEASURES))
def test_every_measure_is_positive_on_a_random_signal(name, graph, X):
    assert M.measure(name, X, graph) > 1e-3


def test_relative_measures_are_scale_free_and_absolute_ones_are_not(X, graph):
    for rel in ("rel_mu", "rel_dirichlet", "mad"):
        assert M.measure(rel, 1e3 * X, graph) == pytest.approx(M.measure(rel, X, graph), rel=1e-9)
    assert M.E(10 * X) == pytest.approx(10 * M.E(X))
    assert M.dirichlet(10 * X, graph.edge_index) == pytest.approx(100 * M.dirichlet(X, graph.edge_index))
    assert 0 <= M.rel_mu(X) <= 1


def test_mad_matches_the_definition_on_a_small_example():
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    c = 1 / np.sqrt(2)
    # cosine distances: (0,1) = 1, (0,2) = 1 - c, (1,2) = 1 - c; mean over the 6 ordered pairs
    assert M.mad(X) == pytest.approx(2 * (1 + 2 * (1 - c)) / 6)


def test_measures_ignore_the_mean_row(X, graph):
    shifted = X + torch.tensor([4.0] * 7, dtype=X.dtype)
    for name in ("E", "mu", "dirichlet"):
        assert M.measure(name, shifted, graph) == pytest.approx(M.measure(name, X, graph), rel=1e-9)


def test_unknown_measure_is_a_clear_error(X):
    with pytest.raises(ValueError, match="unknown measure 'energy'"):
        M.measure("energy", X)


def test_spectral_norm_is_the_largest_singular_value():
    W = torch.diag(torch.tensor([3.0, -5.0, 1.0]))
    assert M.spectral_norm(W) == pytest.approx(5.0)


def test_theorem2_bound_is_smallest_in_the_middle_when_lambda_s_below_one():
    L = 40
    k = np.arange(1, L + 1)
    b = M.theorem2_bound(0.5, 1.2, k, L)
    assert b.argmin() + 1 in (L // 2, L // 2 + 1)
    assert b[0] > b[L // 2] and b[-1] > b[L // 2]
    assert M.theorem2_bound(0.5, 1.0, 0, 10) == pytest.approx(0.5 ** 10 + 1.0)
    with pytest.raises(ValueError):
        M.theorem2_bound(0.5, 1.0, 1, 0)

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
    # cosine distances: (0,1) = 1, (0,2) = 1 - c, (1,2) = 1 - c, all non-zero; node means (1 + (1 - c))/2,
    # (1 + (1 - c))/2 and 1 - c, whose mean here equals the flat mean over the 6 ordered pairs
    node = [(2 - c) / 2, (2 - c) / 2, 1 - c]
    assert M.mad(X) == pytest.approx(np.mean(node))
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


# ----------------------------------------------------------------------------- rel_mu_gcn's basis cache
def _random_tree(n, gen):
    """edge_index (both directions) of a random recursive tree on n nodes: node i hangs from a node < i."""
    child = torch.arange(1, n)
    parent = (torch.rand(n - 1, generator=gen) * child).long()
    return torch.cat([torch.stack([child, parent]), torch.stack([parent, child])], 1)


def _uncached_rel_mu_gcn(X, edge_index):
    U = M.gcn_limit_basis(edge_index, X.shape[0])
    X = X.double()
    return float(torch.linalg.norm(X - U @ (U.t() @ X)) / torch.linalg.norm(X))


def test_rel_mu_gcn_is_never_stale_for_new_graphs_built_in_a_loop():
    """40 trees of the same size built one after the other: a new edge tensor often lands at the address
    the previous one freed, which a cache keyed on (address, shape, n) mistook for the same graph."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    wrong = []
    for t in range(40):
        ei = _random_tree(30, gen)
        got, want = M.rel_mu_gcn(X, ei), _uncached_rel_mu_gcn(X, ei)
        if abs(got - want) > 1e-12:
            wrong.append((t, got - want))
    assert not wrong, f"{len(wrong)} of 40 trees got a stale basis: {wrong[:3]}"


def test_rel_mu_gcn_follows_an_in_place_edit_of_edge_index():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    ei = _random_tree(30, gen)
    before = M.rel_mu_gcn(X, ei)
    assert before == pytest.approx(_uncached_rel_mu_gcn(X, ei), abs=1e-12)
    m = ei.shape[1] // 2  # column m - 1 is (child 29 -> its parent p), column 2m - 1 the reverse
    p = int(ei[1, m - 1])
    ei[1, m - 1] = ei[0, 2 * m - 1] = (p + 1) % 29  # rehang node 29 under another node: still a tree
    after = M.rel_mu_gcn(X, ei)
    assert after == pytest.approx(_uncached_rel_mu_gcn(X, ei), abs=1e-12)
    assert abs(after - before) > 1e-6  # the edit changed the degrees, so the answer must change


# ----------------------------------------------------------------------------- MAD convention (Chen et al. 2020)
def _chen_mad(X):
    """Chen et al.'s MAD written as in their paper: node means of the non-zero cosine distances,
    averaged over the nodes with a non-zero mean (a zero row has no cosine: distance 0)."""
    X = X.double().numpy()
    nrm = np.linalg.norm(X, axis=1)
    U = np.divide(X, nrm[:, None], out=np.zeros_like(X), where=nrm[:, None] > 0)
    D = 1 - U @ U.T
    D[(nrm == 0)[:, None] | (nrm == 0)[None, :]] = 0
    D[np.abs(D) < 1e-12] = 0
    Di = np.array([row[row > 0].mean() if (row > 0).any() else 0.0 for row in D])
    return Di[Di > 0].mean() if (Di > 0).any() else 0.0


def test_mad_ignores_dead_relu_rows_as_chen_et_al_do():
    """Rows of a ReLU layer whose units are all off are zero.  Chen et al. average over non-zero
    distances, so those rows drop out; counting them at distance 0 over all n(n-1) pairs (this library's
    first convention) shrinks MAD by about the squared fraction of live rows."""
    gen = torch.Generator().manual_seed(0)
    X = torch.relu(torch.randn(60, 5, generator=gen, dtype=torch.float64))
    X[::2] = 0.0  # half the nodes dead
    live = X[1::2]
    assert M.mad(X) == pytest.approx(M.mad(live), rel=1e-12)
    assert M.mad(X) == pytest.approx(_chen_mad(X), rel=1e-12)
    n = X.shape[0]
    all_pairs = float(((1 - torch.nn.functional.normalize(live, dim=1) @ torch.nn.functional.normalize(live, dim=1).t())
                       .sum()) / (n * (n - 1)))
    assert all_pairs < 0.3 * M.mad(X)  # the two conventions differ by about (30/60)^2


def test_mad_averages_node_means_over_non_zero_distances():
    """Unequal counts of non-zero distances per node: Chen's two-stage mean, not a flat pair mean."""
    X = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    # rows 0 and 1 are parallel (distance 0, dropped), row 4 is zero (dropped)
    assert M.mad(X) == pytest.approx(_chen_mad(X), rel=1e-12)
    c = 1 - 1 / np.sqrt(2)
    node = [(1 + c) / 2, (1 + c) / 2, (2 + c) / 3, c]
    assert M.mad(X) == pytest.approx(np.mean(node), rel=1e-12)
    assert M.mad(torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]])) == 0.0  # one direction only


# the edge cases of the convention (Chen et al.: node means over non-zero distances, nodes without one left out)
def test_mad_of_one_row_or_no_rows_is_zero():
    assert M.mad(torch.tensor([[1.0, 2.0, 3.0]])) == 0.0
    assert M.mad(torch.zeros(1, 4)) == 0.0
    assert M.mad(torch.zeros(0, 3)) == 0.0


def test_mad_of_zero_rows_only_is_zero_and_zero_rows_drop_out():
    assert M.mad(torch.zeros(5, 3)) == 0.0
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    padded = torch.cat([X, torch.zeros(3, 2)])
    assert M.mad(X) == pytest.approx(1.0) and M.mad(padded) == pytest.approx(1.0)   # not 2/20, the flat pair mean
    assert M.mad(torch.cat([torch.zeros(3, 2), X])) == pytest.approx(1.0)           # wherever the zero rows are


def test_mad_with_duplicate_rows_drops_only_the_duplicate_pair():
    """Rows 0 and 1 are equal: their pair is at distance 0 and leaves both node means; each still averages its
    distance to row 2, so every node mean is 1 (the flat pair mean would be 4/6)."""
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert M.mad(X) == pytest.approx(1.0)
    assert M.mad(torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])) == pytest.approx(1.0)   # parallel, not equal
    # duplicating every row of a signal leaves its MAD unchanged (the copies add only zero distances)
    Y = torch.randn(12, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert M.mad(torch.cat([Y, Y])) == pytest.approx(M.mad(Y), rel=1e-12)
    assert M.mad(torch.cat([Y, Y])) == pytest.approx(_chen_mad(torch.cat([Y, Y])), rel=1e-12)
    # every row the same direction (constant signal, or all duplicates): no non-zero distance at all
    assert M.mad(torch.ones(6, 3)) == 0.0
    assert M.mad(torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])) == 0.0


def test_mad_does_not_depend_on_the_chunk_size():
    Y = torch.relu(torch.randn(50, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    Y[::5] = 0.0
    Y[1] = Y[2]
    assert M.mad(Y, chunk=7) == pytest.approx(M.mad(Y), rel=1e-12)
    assert M.mad(Y) == pytest.approx(_chen_mad(Y), rel=1e-12)

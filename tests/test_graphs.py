"""Propagation operators, spectra and the CSBM generator."""
import networkx as nx
import numpy as np
import pytest
import torch

from oversmoothing import graphs as G


def dense(P):
    return G.to_scipy(P).toarray()


@pytest.fixture(scope="module")
def small_csbm():
    return G.csbm(n=200, classes=3, avg_degree=12, ratio=4.0, seed=1)


@pytest.mark.parametrize("make", [lambda: G.ring(30), lambda: G.csbm(150, 2, 10, ratio=3.0, seed=2),
                                  lambda: G.from_networkx(nx.star_graph(20))])
def test_bistochastic_is_symmetric_nonnegative_stochastic(make):
    P = dense(G.bistochastic(make()))
    assert np.allclose(P, P.T)
    assert P.min() >= 0
    assert np.allclose(P.sum(1), 1.0) and np.allclose(P.sum(0), 1.0)


def test_gcn_operator_is_symmetric_with_known_top_eigenvector(small_csbm):
    P = dense(G.gcn(small_csbm))
    assert np.allclose(P, P.T) and P.min() >= 0
    d = G.adjacency(small_csbm).sum(1).A.ravel() + 1
    v = np.sqrt(d)
    assert np.allclose(P @ v, v)  # D~^{1/2} 1 has eigenvalue 1


def test_identity_operator_is_identity(small_csbm):
    assert np.allclose(dense(G.identity(small_csbm)), np.eye(small_csbm.num_nodes))


@pytest.mark.parametrize("make", [lambda: G.ring(40), lambda: G.complete(25), lambda: G.csbm(200, 2, 15, ratio=5.0, seed=3),
                                  lambda: G.from_networkx(nx.path_graph(30))])
def test_second_eigenvalue_matches_dense_eigendecomposition(make):
    g = make()
    for kind in ("bistochastic", "gcn"):
        P = G.propagation(g, kind)
        ev = np.sort(np.linalg.eigvalsh(dense(P)))
        expected = max(abs(ev[-2]), abs(ev[0]))  # the top eigenvalue 1 is simple for connected graphs
        assert G.second_eigenvalue(P) == pytest.approx(expected, abs=1e-6)


def test_ring_second_eigenvalue_has_closed_form():
    n = 50
    g = G.ring(n)
    # ring: degrees 2 = d_max, P = I - L/2, eigenvalues 1 - (1 - cos(2 pi j/n)) = cos(2 pi j / n)
    ev = np.cos(2 * np.pi * np.arange(1, n) / n)
    assert G.second_eigenvalue(G.bistochastic(g)) == pytest.approx(np.abs(ev).max(), abs=1e-8)


@pytest.mark.parametrize("n,deg,lam", [(400, 250, 0.3), (300, 60, 0.6)])
def test_csbm_hits_target_lambda(n, deg, lam):
    g = G.csbm(n, 2, deg, lam=lam, seed=0)
    measured = G.second_eigenvalue(G.bistochastic(g))
    assert abs(measured - lam) <= 0.01
    assert g.meta["lambda"] == pytest.approx(measured)


def test_csbm_unreachable_lambda_is_a_clear_error():
    with pytest.raises(ValueError, match="unreachable.*avg_degree"):
        G.csbm(200, 2, 10, lam=0.1)


def test_csbm_record_is_consistent_and_seeded(small_csbm):
    g = small_csbm
    assert g.x.shape == (200, 16) and g.y.shape == (200,)
    assert g.num_classes == 3
    assert not (g.edge_index[0] == g.edge_index[1]).any()  # no self-loops
    A = G.adjacency(g)
    assert (A != A.T).nnz == 0
    masks = torch.stack([g.train_mask, g.val_mask, g.test_mask]).int()
    assert (masks.sum(0) == 1).all()  # a partition of the nodes
    g2 = G.csbm(n=200, classes=3, avg_degree=12, ratio=4.0, seed=1)
    assert torch.equal(g.x, g2.x) and torch.equal(g.edge_index, g2.edge_index)
    # homophily: more intra-class edges than a ratio-1 graph would give
    src, dst = g.edge_index
    assert (g.y[src] == g.y[dst]).float().mean() > 0.5


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=3, classes=2, avg_degree=1), "n >= 2\\*classes"),
    (dict(n=100, classes=1, avg_degree=5), "at least 2 classes"),
    (dict(n=100, classes=2, avg_degree=-1), "avg_degree"),
    (dict(n=100, classes=2, avg_degree=5, lam=1.5), "lam must be in"),
])
def test_csbm_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        G.csbm(**kwargs)


def test_unknown_propagation_is_a_clear_error(small_csbm):
    with pytest.raises(ValueError, match="unknown propagation 'laplacian'.*bistochastic"):
        G.propagation(small_csbm, "laplacian")


def test_dense_graphs_get_a_dense_operator_with_the_same_values():
    g = G.csbm(120, 2, 80, ratio=1.5, seed=0)
    P = G.bistochastic(g)
    assert P.layout == torch.strided
    sparse = G.bistochastic(G.ring(120))
    assert sparse.layout == torch.sparse_csr
    assert np.allclose(P.numpy().sum(1), 1.0, atol=1e-6)


def test_csbm_search_stays_within_feasible_ratios():
    # d = 560 > n/C = 350 bounds p_in/p_out by (700-350)/(560-350) = 1.67; the search must not step past it
    g = G.csbm(700, 2, 560, lam=0.16, seed=0)
    assert abs(g.meta["lambda"] - 0.16) <= 0.01
    assert g.meta["p_in"] <= 1.0


@pytest.mark.parametrize("classes", [2, 3])
def test_standard_csbm_has_zero_feature_mean_symmetric_means_and_the_requested_lambda(classes):
    g = G.csbm(400, classes, 240, dim=8, mean_sep=2.0, lam=0.3, seed=4)
    assert abs(g.meta["lambda"] - 0.3) <= 0.01
    assert float(g.x.mean(0).abs().max()) < 1e-6           # the sampled mean is removed exactly
    m = G.class_means(classes, 8, 2.0)
    assert torch.allclose(m.sum(0), torch.zeros(8), atol=1e-6) and torch.allclose(m.norm(dim=1), torch.full((classes,), 2.0))
    if classes == 2:
        assert torch.allclose(m[0], -m[1])
    # class structure survives the centring: class averages differ by about the distance of the means
    gap = float((g.x[g.y == 0].mean(0) - g.x[g.y == 1].mean(0)).norm())
    assert abs(gap - float((m[0] - m[1]).norm())) < 0.5


def test_first_edition_csbm_keeps_its_offset():
    g = G.csbm(400, 2, 240, dim=8, mean_sep=2.0, ratio=1.0, seed=4, means="orthogonal", centre=False)
    # means 2 e1 and 2 e2: the global mean is about (1, 1, 0, ...), norm about sqrt(2)
    assert abs(float(g.x.mean(0).norm()) - 2 ** 0.5) < 0.3
    with pytest.raises(ValueError, match="means must be"):
        G.csbm(100, 2, 10, means="random")

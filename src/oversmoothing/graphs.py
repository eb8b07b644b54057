"""Graphs, propagation operators and their spectra.

Notation (paper 1, Keriven 2025): a graph with adjacency A and degrees D = diag(A 1);
the propagation matrix of the vanilla GNN is the symmetric bi-stochastic

    P = I - (D - A) / d_max ,

whose eigenvalues are 1 = lambda_1 >= lambda_2 >= ... >= lambda_n >= -1, with the constant
vector 1 as eigenvector of lambda_1.  Throughout the book

    lambda := max(|lambda_2|, |lambda_n|)   (largest modulus on the subspace orthogonal to 1),

the rate at which P contracts every non-constant signal: ||P X - 1 1^T X / n||_F <= lambda ||X - 1 1^T X/n||_F.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

__all__ = [
    "Graph", "csbm", "ring", "complete", "from_networkx",
    "adjacency", "bistochastic", "gcn", "gcn_matrix", "gcn_edges", "identity", "propagation", "PROPAGATIONS",
    "second_eigenvalue", "to_scipy", "random_masks",
]

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass
class Graph:
    """A node-classification graph: features ``x`` [n, d], labels ``y`` [n], undirected
    ``edge_index`` [2, m] (both directions stored, no self-loops) and boolean masks [n]."""

    x: torch.Tensor
    y: torch.Tensor
    edge_index: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    name: str = "graph"
    meta: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        """Number of stored (directed) edges, as PyG counts them."""
        return int(self.edge_index.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def to(self, device) -> "Graph":
        move = lambda t: t.to(device)  # noqa: E731
        return replace(self, x=move(self.x), y=move(self.y), edge_index=move(self.edge_index),
                       train_mask=move(self.train_mask), val_mask=move(self.val_mask),
                       test_mask=move(self.test_mask))

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, nodes={self.num_nodes}, edges={self.num_edges}, "
                f"features={self.num_features}, classes={self.num_classes})")


# ----------------------------------------------------------------------------- structure
def _clean_edges(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Symmetrise, drop self-loops and duplicates."""
    from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

    edge_index = to_undirected(edge_index, num_nodes=n)
    edge_index, _ = remove_self_loops(edge_index)
    return coalesce(edge_index, num_nodes=n)


def random_masks(n: int, train: float = 0.6, val: float = 0.2, seed: int = 0):
    """Random train/val/test masks with the given fractions."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_tr, n_va = int(train * n), int(val * n)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][perm[:n_tr]] = True
    masks[1][perm[n_tr:n_tr + n_va]] = True
    masks[2][perm[n_tr + n_va:]] = True
    return masks


def from_networkx(G, features: torch.Tensor | None = None, name: str = "networkx", seed: int = 0) -> Graph:
    """A structure-only Graph from a networkx graph (random Gaussian features, zero labels)."""
    import networkx as nx

    G = nx.convert_node_labels_to_integers(G)
    n = G.number_of_nodes()
    edges = torch.tensor(list(G.edges()), dtype=torch.long).t().reshape(2, -1)
    gen = torch.Generator().manual_seed(seed)
    x = features if features is not None else torch.randn(n, 16, generator=gen)
    return Graph(x, torch.zeros(n, dtype=torch.long), _clean_edges(edges, n), *random_masks(n, seed=seed), name=name)


def ring(n: int = 100, **kw) -> Graph:
    """Cycle graph C_n, a slowly mixing connected regular graph: P = A/2 has eigenvalues cos(2 pi j / n), so
    lambda = cos(pi / n) for odd n; an even ring is bipartite (eigenvalue -1 at j = n/2), so lambda = 1 and a
    signal alternating in sign is never smoothed."""
    import networkx as nx

    return from_networkx(nx.cycle_graph(n), name=f"ring({n})", **kw)


def complete(n: int = 100, **kw) -> Graph:
    """Complete graph K_n: P = 11^T/n up to the diagonal, the fastest-mixing graph."""
    import networkx as nx

    return from_networkx(nx.complete_graph(n), name=f"complete({n})", **kw)


# ----------------------------------------------------------------------------- CSBM
def class_means(classes: int, dim: int, mean_sep: float, means: str = "symmetric") -> torch.Tensor:
    """The CSBM's class means, one row per class, each of norm ``mean_sep``.

    "symmetric" (the standard CSBM): the regular simplex, summing to zero; for two classes +mu and -mu.
    "orthogonal" (this book's first edition): mean_sep * e_c, whose average mean_sep/C * (1,..,1,0..)
    is a node-independent offset that P never contracts.
    """
    if means not in ("symmetric", "orthogonal"):
        raise ValueError(f"means must be 'symmetric' or 'orthogonal', got {means!r}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    m = torch.zeros(classes, dim)
    m[torch.arange(classes), torch.arange(classes) % dim] = 1.0
    if means == "symmetric":
        m = m - m.mean(0, keepdim=True)
        norms = m.norm(dim=1, keepdim=True)
        m = torch.where(norms > 0, m / norms.clamp_min(1e-30), m)
    return mean_sep * m


def _csbm_once(n, classes, avg_degree, ratio, dim, mean_sep, gen, means="symmetric", centre=True) -> Graph:
    """One draw of a CSBM with p_in / p_out = ratio at the given expected average degree."""
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=gen)]
    # expected degree d = (n/C) p_in + (n - n/C) p_out  with p_in = ratio * p_out
    p_out = avg_degree / ((n / classes) * ratio + (n - n / classes))
    p_in = ratio * p_out
    if p_in > 1 + 1e-9:
        raise ValueError(f"avg_degree={avg_degree} with p_in/p_out={ratio:.3g} needs p_in={p_in:.3g} > 1; "
                         f"lower avg_degree or raise n (n={n})")
    p_in = min(p_in, 1.0)  # the bisection's upper end r_max gives p_in = 1 up to rounding
    same = y[:, None] == y[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu(torch.rand(n, n, generator=gen) < prob, diagonal=1)
    edge_index = _clean_edges(upper.nonzero().t(), n)
    # Gaussian mixture features x_i = mu_{y_i} + N(0, I_dim)
    x = class_means(classes, dim, mean_sep, means)[y] + torch.randn(n, dim, generator=gen)
    if centre:  # the usual preprocessing: remove the sampled global feature mean (1/n) 1^T X
        x = x - x.mean(0, keepdim=True)
    return Graph(x, y, edge_index, *random_masks(n, seed=int(torch.randint(0, 2**31, (1,), generator=gen))),
                 name="csbm", meta=dict(p_in=p_in, p_out=p_out, avg_degree=avg_degree, means=means, centred=centre))


def csbm(n: int = 1000, classes: int = 2, avg_degree: float = 50.0, *, dim: int = 16, mean_sep: float = 1.0,
         ratio: float | None = None, lam: float | None = None, lam_tol: float = 0.01, seed: int = 0,
         means: str = "symmetric", centre: bool = True) -> Graph:
    """Contextual stochastic block model.

    ``n`` nodes in ``classes`` balanced communities; an edge between two nodes of the same
    (different) community with probability p_in (p_out), scaled to the expected ``avg_degree``;
    features x_i = mu_{y_i} + N(0, I_dim) with class means of norm ``mean_sep``.

    The standard CSBM (the default): symmetric means (+mu/-mu for two classes, see
    :func:`class_means`) and the sampled global feature mean removed (``centre``), so that
    1^T X = 0 exactly. ``means="orthogonal", centre=False`` is the book's first-edition variant,
    whose features carry a node-independent offset.

    Give either ``ratio`` = p_in/p_out (1 = no community structure) or a target ``lam``, the
    second eigenvalue in modulus of ``bistochastic(P)``: the ratio is then found by bisection
    (same seed for every trial) until |lambda - lam| <= lam_tol.  A target below the random
    bulk of the spectrum (set by the degree fluctuations) is unreachable and raises
    ``ValueError``: raise ``avg_degree`` to lower that floor.
    """
    if n < 2 * classes:
        raise ValueError(f"csbm needs n >= 2*classes, got n={n}, classes={classes}")
    if classes < 2:
        raise ValueError(f"csbm needs at least 2 classes, got {classes}")
    if not 0 < avg_degree < n - 1:
        raise ValueError(f"avg_degree must be in (0, n-1) = (0, {n - 1}), got {avg_degree}")
    if lam is None:
        g = _csbm_once(n, classes, avg_degree, 1.0 if ratio is None else ratio, dim, mean_sep,
                       torch.Generator().manual_seed(seed), means, centre)
        g.meta["lambda"] = second_eigenvalue(bistochastic(g))
        return g
    if not 0 < lam < 1:
        raise ValueError(f"target lam must be in (0, 1), got {lam}")

    def draw(r):
        g = _csbm_once(n, classes, avg_degree, r, dim, mean_sep, torch.Generator().manual_seed(seed), means, centre)
        return g, second_eigenvalue(bistochastic(g))

    lo, hi = 1.0, 1.0
    g, l_lo = draw(lo)
    if l_lo > lam + lam_tol:
        raise ValueError(f"lam={lam} is unreachable: with n={n}, avg_degree={avg_degree} the random part of the "
                         f"spectrum already gives lambda={l_lo:.3f}; raise avg_degree (denser graphs have a lower floor)")
    # grow the ratio until lambda overshoots the target, then bisect (lambda increases with p_in/p_out)
    # p_in = r d / ((n/C) r + n - n/C) <= 1  <=>  r (d - n/C) <= n - n/C: bounded only when d > n/C
    block = n / classes
    r_max = (n - block) / (avg_degree - block) if avg_degree > block else float("inf")
    while True:
        hi = min(hi * 2, r_max)
        g, l_hi = draw(hi)
        if l_hi >= lam - lam_tol or hi >= r_max or hi > 1e6:
            break
    if l_hi < lam - lam_tol:
        raise ValueError(f"lam={lam} is unreachable: even p_in=1 gives lambda={l_hi:.3f}; lower avg_degree")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        g, l_mid = draw(mid)
        if abs(l_mid - lam) <= lam_tol:
            break
        lo, hi = (mid, hi) if l_mid < lam else (lo, mid)
    g.meta.update(ratio=mid, **{"lambda": l_mid})
    return g


# ----------------------------------------------------------------------------- operators
def adjacency(graph: Graph) -> sp.csr_matrix:
    """Binary symmetric adjacency A as a scipy CSR matrix."""
    n = graph.num_nodes
    ei = graph.edge_index.cpu().numpy()
    A = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    A.data[:] = 1.0
    return A


DENSE_ABOVE = 0.05  # operators with more than this fraction of non-zeros are stored dense (faster matmul)


def _to_torch(M: sp.spmatrix, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sparse CSR tensor, or a dense one when the density exceeds DENSE_ABOVE (e.g. dense CSBMs)."""
    M = sp.csr_matrix(M)
    if M.nnz > DENSE_ABOVE * M.shape[0] * M.shape[1]:
        return torch.as_tensor(M.toarray(), dtype=dtype, device=device)
    M.sort_indices()
    # int32 indices: the CPU kernel of CSR @ dense converts int64 ones at every product (~20 % of its time)
    idx = torch.int32 if M.nnz < 2 ** 31 - 1 else torch.int64
    return torch.sparse_csr_tensor(torch.from_numpy(M.indptr).to(idx), torch.from_numpy(M.indices).to(idx),
                                   torch.from_numpy(M.data).to(dtype), size=M.shape, device=device,
                                   check_invariants=False)


def to_scipy(P: torch.Tensor) -> sp.csr_matrix:
    """A torch sparse (CSR/COO) or dense operator as a scipy CSR matrix (float64)."""
    if P.layout == torch.sparse_csr:
        return sp.csr_matrix((P.values().double().cpu().numpy(), P.col_indices().cpu().numpy(),
                              P.crow_indices().cpu().numpy()), shape=tuple(P.shape))
    if P.layout == torch.sparse_coo:
        P = P.coalesce()
        i = P.indices().cpu().numpy()
        return sp.csr_matrix((P.values().double().cpu().numpy(), (i[0], i[1])), shape=tuple(P.shape))
    return sp.csr_matrix(P.detach().double().cpu().numpy())


def bistochastic(graph: Graph, device=None, dtype=torch.float32) -> torch.Tensor:
    """P = I - (D - A) / d_max  (paper 1): symmetric, non-negative, rows and columns sum to 1."""
    A = adjacency(graph)
    deg = np.asarray(A.sum(1)).ravel()
    d_max = deg.max() if deg.size and deg.max() > 0 else 1.0
    P = sp.eye(graph.num_nodes) - (sp.diags(deg) - A) / d_max
    return _to_torch(P, device, dtype)


# The GCN operator P = D~^{-1/2} (A + I) D~^{-1/2}, D~ = D + I (Kipf & Welling; paper 2's GCN), in its two
# layouts: a matrix (gcn_matrix, gcn) for the library's own product P X, and PyG's edge list with weights
# (gcn_edges) for PyG's message-passing layers (APPNP, GCNII, DropEdge). Both are built here and nowhere else.
def gcn_matrix(edge_index: torch.Tensor, num_nodes: int) -> sp.csr_matrix:
    """P = D~^{-1/2} (A + I) D~^{-1/2} as a float64 scipy CSR matrix, A the binary adjacency of ``edge_index``."""
    ei = edge_index.cpu().numpy()
    A = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(num_nodes, num_nodes))
    A.data[:] = 1.0
    A = A + sp.eye(num_nodes)
    d = np.asarray(A.sum(1)).ravel()
    Dm = sp.diags(1.0 / np.sqrt(d))
    return sp.csr_matrix(Dm @ A @ Dm)


def gcn(graph: Graph, device=None, dtype=torch.float32) -> torch.Tensor:
    """P = D~^{-1/2} (A + I) D~^{-1/2}, D~ = D + I  (Kipf & Welling; paper 2's GCN), as a torch operator.

    Symmetric and non-negative; its top eigenvector is D~^{1/2} 1, not 1, so rows do not sum to 1."""
    return _to_torch(gcn_matrix(graph.edge_index, graph.num_nodes), device, dtype)


def gcn_edges(edge_index: torch.Tensor, num_nodes: int, dtype=torch.float32):
    """The same P as (edge_index with self-loops, edge_weight) for PyG's message passing, by PyG's own
    ``gcn_norm`` (cheap enough to recompute at every forward pass, as DropEdge does after dropping edges)."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    return gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True, dtype=dtype)


def identity(graph: Graph, device=None, dtype=torch.float32) -> torch.Tensor:
    """P = I: turns every GNN of this library into the MLP of the same depth."""
    return _to_torch(sp.eye(graph.num_nodes), device, dtype)


PROPAGATIONS = {"bistochastic": bistochastic, "gcn": gcn, "identity": identity}


def propagation(graph: Graph, kind: str = "bistochastic", device=None, dtype=torch.float32) -> torch.Tensor:
    """The propagation operator ``kind`` of ``graph`` on ``device``: a sparse CSR tensor, or a
    dense tensor for graphs denser than ``DENSE_ABOVE``.  ``dtype=torch.float64`` builds it in double
    precision from the float64 scipy matrix (rows then sum to 1 to ~1e-16, not ~1e-7), for measurements
    that follow a signal below float32 resolution."""
    try:
        make = PROPAGATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown propagation {kind!r}; choose one of {sorted(PROPAGATIONS)}") from None
    return make(graph, device) if dtype == torch.float32 else make(graph, device, dtype=dtype)


# ----------------------------------------------------------------------------- spectrum
def second_eigenvalue(P, *, tol: float = 1e-8) -> float:
    """lambda = max(|lambda_2|, |lambda_n|) of a symmetric operator whose top eigenvector is
    known (1 for bi-stochastic P): the largest-modulus eigenvalue of P restricted to 1^perp.

    Uses the Lanczos solver ``scipy.sparse.linalg.eigsh`` on the deflated operator
    v -> P v - (1^T P v) 1 / n  (never a dense eigendecomposition).  For the ``gcn`` operator,
    whose top eigenvector is D~^{1/2} 1, that vector is deflated instead.
    """
    M = P if sp.issparse(P) else to_scipy(P)
    n = M.shape[0]
    if n < 3:
        raise ValueError(f"second_eigenvalue needs at least 3 nodes, got {n}")
    rows = np.asarray(M.sum(1)).ravel()
    if np.allclose(rows, 1.0, atol=1e-6):
        u = np.ones(n) / np.sqrt(n)
    else:  # top eigenvector of a non-negative symmetric matrix (Perron vector)
        _, vec = spla.eigsh(M, k=1, which="LA", tol=tol)
        u = np.abs(vec[:, 0]) / np.linalg.norm(vec[:, 0])

    def matvec(v):
        v = np.asarray(v).ravel()
        v = v - u * (u @ v)
        w = M @ v
        return w - u * (u @ w)

    op = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    v0 -= u * (u @ v0)
    if np.linalg.norm(matvec(v0)) <= 1e-12 * np.linalg.norm(v0):
        return 0.0  # P = u u^T exactly (e.g. the GCN operator of a complete graph): nothing else survives
    val = spla.eigsh(op, k=1, which="LM", tol=tol, v0=v0, return_eigenvectors=False)
    return float(abs(val[0]))


"""Oversmoothing measures of a node signal X in R^{n x d} (rows x_i = nodes).

Let  X_bar = 1 1^T X / n  (every row replaced by the mean row).

* ``mu``        mu(X) = ||X - 1 1^T X / n||_F                               (paper 2, Park & Kim)
* ``E``         E(X)  = sqrt( (1/n^2) sum_{i,j} ||x_i - x_j||^2 )           (paper 1's pairwise
                difference, normalised here as a root-mean over all n^2 ordered pairs, so that
                it scales like X and decays like (s lambda)^k, not its square)
                Since sum_{i,j} ||x_i - x_j||^2 = 2 n ||X - X_bar||_F^2,  E(X) = sqrt(2/n) mu(X).
* ``dirichlet`` D(X)  = sum_{(i,j) in edges} ||x_i - x_j||^2 = tr(X^T (D - A) X), each undirected
                edge counted once
* ``mad``       mean average (cosine) distance of Chen et al. (2020), their convention: with
                D_ij = 1 - cos(x_i, x_j), each node averages D_ij over the j with D_ij > 0, and MAD
                averages those node means over the nodes that have such a j (a zero row, whose cosine
                is undefined, and a parallel or duplicate pair count as distance 0, so they drop out;
                one row, or no pair at a non-zero distance: MAD = 0)
* relative forms, scale-free:  mu(X)/||X||_F,  D(X)/||X||_F^2  (MAD is already scale-free)

Every measure is zero on a constant signal X = 1 v^T.
"""
from __future__ import annotations

import math

import torch

__all__ = ["mu", "E", "dirichlet", "mad", "rel_mu", "rel_E", "rel_dirichlet", "rel_mu_gcn", "gcn_limit_basis", "MEASURES",
           "OPERATOR_MEASURES",
           "measure", "spectral_norm", "theorem2_bound", "pairwise_sq_sum", "laplacian_quadratic"]


def _centred64(X: torch.Tensor) -> torch.Tensor:
    """X - 1 1^T X / n in float64, as a new tensor (the float64 copy centred in place: the same numbers as
    ``X.double() - X.double().mean(0)`` with one allocation less)."""
    Xc = X.to(torch.float64, copy=True)
    Xc -= Xc.mean(0, keepdim=True)
    return Xc


def mu(X: torch.Tensor) -> float:
    """mu(X) = ||X - 1 1^T X / n||_F."""
    return float(torch.linalg.norm(_centred64(X)))


def pairwise_sq_sum(X: torch.Tensor) -> float:
    """sum_{i,j} ||x_i - x_j||^2 computed directly (O(n^2 d); for tests and small graphs)."""
    X = X.double()
    return float(torch.cdist(X, X).pow(2).sum())


def E(X: torch.Tensor) -> float:
    """E(X) = sqrt((1/n^2) sum_{i,j} ||x_i - x_j||^2) = sqrt(2/n) mu(X)."""
    n = X.shape[0]
    return math.sqrt(2.0 / n) * mu(X)


def _edge_diff_sq(X, edge_index):
    src, dst = edge_index
    X = X.double()
    return (X[src] - X[dst]).pow(2).sum()


def dirichlet(X: torch.Tensor, edge_index: torch.Tensor) -> float:
    """D(X) = sum over undirected edges {i,j} of ||x_i - x_j||^2 (edge_index stores both directions)."""
    return float(_edge_diff_sq(X, edge_index)) / 2.0


def laplacian_quadratic(X: torch.Tensor, edge_index: torch.Tensor) -> float:
    """tr(X^T (D - A) X), the trace form of the Dirichlet energy."""
    n = X.shape[0]
    X = X.double()
    A = torch.zeros(n, n, dtype=torch.float64, device=X.device)
    A[edge_index[0], edge_index[1]] = 1.0
    L = torch.diag(A.sum(1)) - A
    return float(torch.trace(X.t() @ L @ X))


def mad(X: torch.Tensor, chunk: int = 4096, tol: float = 1e-12) -> float:
    """MAD(X) of Chen et al. (2020), "Measuring and relieving the over-smoothing problem", global mask:

        D_ij = 1 - cos(x_i, x_j),   D_i = sum_j D_ij / #{j : D_ij > 0},   MAD = sum_i D_i / #{i : D_i > 0},

    i.e. the mean, over the nodes that have at least one pair at a non-zero distance, of each node's mean
    NON-ZERO cosine distance (the book's convention, Chen et al.'s).  The edge cases follow from it:

    * a zero row (e.g. a node whose ReLU units are all off) has no direction: its distances count as 0 and
      drop out, so MAD(X) is the MAD of the non-zero rows alone (all rows zero: 0);
    * duplicate or parallel rows are at distance 0 from each other: that pair drops out of both node means,
      and each of them still averages its distances to the other rows (a set of rows with one direction: 0);
    * one row has no pair: MAD = 0.

    Distances below ``tol`` count as 0 (parallel rows up to rounding: 1 - cos is computed in float64)."""
    n = X.shape[0]
    if n < 2:
        return 0.0
    X = X.double()
    norms = torch.linalg.norm(X, dim=1, keepdim=True)
    U = torch.where(norms > 0, X / norms.clamp_min(1e-300), torch.zeros_like(X))
    nonzero = norms.squeeze(1) > 0
    node_means = []
    for start in range(0, n, chunk):  # D_ij for a block of rows i, all j
        D = (1.0 - U[start:start + chunk] @ U.t()).clamp_min(0.0)
        D = D * (nonzero[start:start + chunk, None] & nonzero[None, :])
        D = torch.where(D > tol, D, torch.zeros_like(D))  # also the diagonal, 1 - cos(x_i, x_i) ~ 1e-16
        count = (D > 0).sum(1)
        node_means.append(torch.where(count > 0, D.sum(1) / count.clamp_min(1), torch.zeros_like(D[:, 0])))
    Di = torch.cat(node_means)
    k = int((Di > 0).sum())
    return float(Di.sum()) / k if k else 0.0


def rel_mu(X: torch.Tensor) -> float:
    """mu(X) / ||X||_F in [0, 1]: the fraction of X not explained by the mean row."""
    nrm = float(torch.linalg.norm(X.double()))
    return 0.0 if nrm == 0 else mu(X) / nrm


rel_E = rel_mu  # E(X)/(sqrt(2/n) ||X||_F) is the same number


def rel_dirichlet(X: torch.Tensor, edge_index: torch.Tensor) -> float:
    """D(X) / ||X||_F^2, the Rayleigh quotient of the graph Laplacian."""
    nrm2 = float(torch.linalg.norm(X.double()) ** 2)
    return 0.0 if nrm2 == 0 else dirichlet(X, edge_index) / nrm2


def gcn_limit_basis(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Orthonormal basis U [n, c] of the eigenvalue-1 eigenspace of the GCN operator
    D~^{-1/2}(A+I)D~^{-1/2}: one vector u_c proportional to sqrt(d_i + 1) on each connected component c
    (zero elsewhere).  Powers of the operator converge to U U^T (self-loops exclude the eigenvalue -1)."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    ei = edge_index.detach().cpu().numpy()
    A = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    ncomp, labels = connected_components(A, directed=False)
    deg = np.bincount(ei[0], minlength=n).astype(float) + 1.0
    U = np.zeros((n, ncomp))
    U[np.arange(n), labels] = np.sqrt(deg)
    U /= np.linalg.norm(U, axis=0, keepdims=True)
    return torch.from_numpy(U)


_BASIS_CACHE: dict = {}


def _cached_gcn_limit_basis(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`gcn_limit_basis` cached while ``edge_index`` is alive and unmodified: keyed on the tensor's
    identity (a weak reference, so a new tensor at a freed address or with a recycled id() misses) and its
    version counter (bumped by every in-place edit), like ``models._nonzeros``."""
    import weakref

    hit = _BASIS_CACHE.get(id(edge_index))
    if hit is not None and hit[0]() is edge_index and hit[1] == edge_index._version and hit[2] == n:
        return hit[3]
    U = gcn_limit_basis(edge_index, n)
    if len(_BASIS_CACHE) > 8:
        _BASIS_CACHE.clear()
    _BASIS_CACHE[id(edge_index)] = (weakref.ref(edge_index), edge_index._version, n, U)
    return U


def rel_mu_gcn(X: torch.Tensor, edge_index: torch.Tensor) -> float:
    """||X - U U^T X||_F / ||X||_F with U = :func:`gcn_limit_basis`: the relative distance of X from the
    subspace that powers of the GCN operator D~^{-1/2}(A+I)D~^{-1/2} converge to (on a connected graph
    span(D~^{1/2} 1) v^T, not the constant rows 1 v^T that ``rel_mu`` measures against).  On a graph with
    unequal degrees or several components ``rel_mu`` of a GCN-oversmoothed signal stays at a floor; this
    one goes to 0.  Equal to ``rel_mu`` on a connected regular graph."""
    U = _cached_gcn_limit_basis(edge_index, X.shape[0])
    X = X.double()
    U = U.to(X.device)
    nrm = float(torch.linalg.norm(X))
    return 0.0 if nrm == 0 else float(torch.linalg.norm(X - U @ (U.t() @ X))) / nrm


MEASURES = {
    "E": lambda X, g: E(X),
    "mu": lambda X, g: mu(X),
    "rel_mu": lambda X, g: rel_mu(X),
    "dirichlet": lambda X, g: dirichlet(X, g.edge_index),
    "rel_dirichlet": lambda X, g: rel_dirichlet(X, g.edge_index),
    "mad": lambda X, g: mad(X),
    "norm": lambda X, g: float(torch.linalg.norm(X.double())),
}


# Measured against the limit subspace of a propagation operator rather than the constant rows, so
# (unlike MEASURES) not zero on a constant signal X = 1 v^T on an irregular graph.
OPERATOR_MEASURES = {
    "rel_mu_gcn": lambda X, g: rel_mu_gcn(X, g.edge_index),
}


def measure(name: str, X: torch.Tensor, graph=None) -> float:
    """Evaluate one of :data:`MEASURES` or :data:`OPERATOR_MEASURES` by name (graph-based ones need ``graph``)."""
    fn = MEASURES.get(name) or OPERATOR_MEASURES.get(name)
    if fn is None:
        raise ValueError(f"unknown measure {name!r}; choose one of {sorted(MEASURES) + sorted(OPERATOR_MEASURES)}")
    if X is None:
        return float("nan")
    return fn(X, graph)


def spectral_norm(W: torch.Tensor) -> float:
    """||W||_2, the largest singular value."""
    return float(torch.linalg.matrix_norm(W.detach().double(), ord=2))


def theorem2_bound(lam: float, s: float, k, L: int, *, a: float = 1.0, b: float = 1.0):
    """Shape of paper 1's Theorem 2 bound on the backward pairwise difference E(B(k)):

        E(B(k)) <= a (lambda s)^(L-k)  +  b (lambda s)^k ,

    the first term the smoothing of the output error over the L-k backward steps, the second
    the forward oversmoothing of X(k) that makes rho'(H(k)) nearly constant.  The constants a, b
    (which in the paper depend on the output error, the weights and D_rho) are left to the
    caller, e.g. fitted on measurements.  Small when both k and L-k are large: the middle layers.
    """
    import numpy as np

    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    k = np.asarray(k, dtype=float)
    q = lam * s
    return a * q ** (L - k) + b * q ** k

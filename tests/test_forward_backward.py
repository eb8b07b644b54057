"""Forward and backward oversmoothing of paper 1's vanilla GNN (chapters 01-03), at small sizes, in float64."""
import math

import numpy as np
import pytest
import torch

from oversmoothing import graphs, measures, models, signals


@pytest.fixture(scope="module")
def csbm():
    g = graphs.csbm(200, 2, 140, ratio=1.0, seed=0)  # dense: lambda ~ 0.27
    P = graphs.propagation(g, dtype=torch.float64)
    return g, P, graphs.second_eigenvalue(P)


def _trace(g, P, depth, s, prop="bistochastic", activation="softplus", x=None, seed=0, hidden=32):
    model = models.VanillaGNN(g.num_features if x is None else x.shape[1], hidden, g.num_classes, depth, s=s,
                              activation=activation, propagation=prop, seed=seed).double()
    op = None if prop == "identity" else P
    x = g.x.double() if x is None else x
    _, sig = signals.trace(model, x, op, g.y, g.train_mask)
    return sig, op


def test_float64_operator_is_bistochastic(csbm):
    g, P, _ = csbm
    assert P.dtype == torch.float64
    assert torch.allclose(P.sum(0), torch.ones(g.num_nodes, dtype=torch.float64), atol=1e-13)


def test_forward_bound_s_lambda(csbm):
    """E(X(k)) <= (s lambda)^k E(X(0)) for a softplus GNN whose weights have spectral norm s."""
    g, P, lam = csbm
    for s in (0.5 / lam, 2.0 / lam):
        sig, _ = _trace(g, P, 8, s)
        E0 = measures.E(sig.X[0])
        for k in range(1, 8):  # X(8) = H(8) is the output, also covered by the bound
            assert measures.E(sig.X[k]) <= (s * lam) ** k * E0 * (1 + 1e-9)


def test_forward_rate_near_linear(csbm):
    """Near-linear case (tanh at tiny amplitude, orthogonal weights times s, input along lambda's eigenvector):
    E(X(k)) decays by s*lambda per layer."""
    g, P, lam = csbm
    evals, evecs = torch.linalg.eigh(P)
    v = evecs[:, int(torch.argmax(torch.where((evals - 1).abs() > 1e-9, evals.abs(), torch.zeros_like(evals))))]
    d, s = 8, 0.5 / lam
    x = 1e-4 * v[:, None] * torch.ones(1, d, dtype=torch.float64)
    model = models.VanillaGNN(d, d, d, 6, activation="tanh", seed=0).double()
    with torch.no_grad():
        for layer in model.layers:
            q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
            layer.weight.copy_(s * q)
    _, sig = signals.trace(model, x, P, g.y, g.train_mask, backward=False)
    rates = [measures.E(sig.X[k]) / measures.E(sig.X[k - 1]) for k in range(1, 7)]
    assert np.allclose(rates, s * lam, rtol=1e-3)


def test_backward_smallest_in_the_middle(csbm):
    """rel_mu(B(k)) is smaller in the middle third of a deep GNN than in either outer third, at initialisation."""
    g, P, _ = csbm
    L = 18
    sig, _ = _trace(g, P, L, 1.0)
    logs = np.log10([measures.rel_mu(b) for b in sig.B])
    thirds = np.array_split(logs, 3)
    assert thirds[1].mean() < thirds[0].mean() and thirds[1].mean() < thirds[2].mean()
    assert logs[-1] - logs[L // 2] > 3  # at least 3 decades of backward smoothing from the output to the middle


def test_mlp_backward_does_not_collapse(csbm):
    g, P, _ = csbm
    sig, _ = _trace(g, P, 18, 1.0, prop="identity")
    assert min(measures.rel_mu(b) for b in sig.B) > 0.1


def test_linear_backward_regime(csbm):
    """The linearised recursion is accurate where X(k) is oversmoothed, not in the first layer."""
    g, P, _ = csbm
    sig, op = _trace(g, P, 12, 1.0)
    err = signals.linear_backward_error(sig, op, "softplus")
    assert err.shape == (12,) and math.isnan(err[-1])
    smooth = [k for k in range(1, 12) if measures.rel_mu(sig.X[k]) < 1e-4]
    assert len(smooth) >= 5
    assert max(err[k - 1] for k in smooth) < 1e-3
    for k in range(1, 12):  # the error tracks the forward smoothness: it is O(mu(X(k))/||X(k)||_F)
        assert err[k - 1] <= 2 * measures.rel_mu(sig.X[k])
    assert err[0] > 10 * max(err[k - 1] for k in smooth)


def test_linear_backward_error_matches_hand_computation(csbm):
    """The helper against a hand computation on one layer, and the exact recursion against autograd."""
    g, P, _ = csbm
    sig, op = _trace(g, P, 4, 2.0)
    k = 2
    c = torch.sigmoid(sig.H[k - 1]).mean(0, keepdim=True)
    pred = c * (P @ (sig.B[k] @ sig.W[k].t()))
    manual = float(torch.linalg.norm(sig.B[k - 1] - pred) / torch.linalg.norm(sig.B[k - 1]))
    assert signals.linear_backward_error(sig, op)[k - 1] == pytest.approx(manual, rel=1e-12)
    exact = torch.sigmoid(sig.H[k - 1]) * (P @ (sig.B[k] @ sig.W[k].t()))  # the exact recursion
    assert torch.allclose(exact, sig.B[k - 1], rtol=1e-10, atol=1e-300)


def test_backward_mean_prediction(csbm):
    """The node-average of B(k) is predicted from the average output error in oversmoothed layers."""
    g, P, _ = csbm
    L = 20
    sig, _ = _trace(g, P, L, 1.0)
    pred = signals.backward_mean_prediction(sig, "softplus")
    assert torch.equal(pred[-1], sig.B[-1].mean(0))
    for k in range(4, L):
        b = sig.B[k - 1].mean(0)
        assert float(torch.linalg.norm(b - pred[k - 1]) / torch.linalg.norm(b)) < 1e-6
    # and B(L/2) is the constant matrix 1 b_hat^T
    B = sig.B[L // 2 - 1]
    assert float(torch.linalg.norm(B - pred[L // 2 - 1][None]) / torch.linalg.norm(B)) < 1e-4


def test_theorem2_bound_two_terms():
    q, L = 0.3, 20
    k = np.arange(L + 1)
    b = measures.theorem2_bound(0.3, 1.0, k, L)
    assert np.argmin(b) == L // 2 and b[0] == pytest.approx(1 + q ** L) and b[L] == pytest.approx(1 + q ** L)

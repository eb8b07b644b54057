"""One traced pass gives the same B(k) = dL/dH(k) and dL/dW(k) as autograd, layer by layer."""
import pytest
import torch
import torch.nn.functional as F

from oversmoothing import graphs as G
from oversmoothing import models as M
from oversmoothing import signals as S


@pytest.fixture(scope="module")
def graph():
    return G.csbm(n=80, classes=2, avg_degree=8, ratio=3.0, dim=6, seed=0)


def _models(g):
    kw = dict(in_dim=g.num_features, hidden=8, out_dim=g.num_classes, seed=0)
    return {
        "gnn": M.VanillaGNN(depth=6, s=1.5, **kw),
        "mlp": M.VanillaGNN(depth=6, propagation="identity", s=1.5, **kw),
        "gnn_tanh_mse": M.VanillaGNN(depth=4, activation="tanh", **kw),
        "residual_gcn": M.ResidualGCN(depth=4, **kw),
        "residual_gcn_lipschitz": M.ResidualGCN(depth=4, lipschitz_c=2.0, **kw),
        "residual_gat": M.ResidualGAT(depth=3, **kw),
    }


@pytest.mark.parametrize("name", ["gnn", "mlp", "gnn_tanh_mse", "residual_gcn", "residual_gcn_lipschitz", "residual_gat"])
def test_trace_matches_autograd_layer_by_layer(graph, name):
    model = _models(graph)[name]
    model.double()
    x = graph.x.double()
    op = model.operator(graph)
    op = op.double() if op is not None and op.is_floating_point() else op
    loss = "mse" if name.endswith("mse") else "ce"
    _, sig = S.trace(model, x, op, graph.y, graph.train_mask, loss=loss)
    L = model.depth
    assert len(sig.H) == len(sig.B) == len(sig.dW) == L and len(sig.X) == L + 1

    for k in range(L):  # a fresh forward pass per layer, and autograd.grad w.r.t. that layer only
        rec = M.Trace()
        out = model(x, op, trace=rec)
        lossval = S.loss_fn(loss)(out, graph.y, graph.train_mask)
        B_k, = torch.autograd.grad(lossval, rec.H[k])
        assert torch.allclose(sig.B[k], B_k, rtol=1e-9, atol=1e-12), f"B({k + 1}) differs"
        W = M.weights(model)[k]
        raw = model.layers[k]
        raw = raw.lin if hasattr(raw, "lin") else raw
        param = raw.parametrizations.weight.original if hasattr(raw, "parametrizations") else raw.weight
        lossval = S.loss_fn(loss)(model(x, op), graph.y, graph.train_mask)
        dW, = torch.autograd.grad(lossval, param)
        dW = dW.t() if hasattr(model.layers[k], "lin") else dW
        assert torch.allclose(sig.dW[k], dW, rtol=1e-9, atol=1e-12), f"dL/dW({k + 1}) differs"
        assert sig.W[k].shape == W.shape


def test_vanilla_backward_recursion_holds(graph):
    """B(k) = rho'(H(k)) * (P^T B(k+1) W(k+1)^T)  and  dL/dW(k) = (P X(k-1))^T B(k)."""
    model = M.VanillaGNN(graph.num_features, 8, 2, 5, s=1.2, seed=1).double()
    op = model.operator(graph).double()
    _, sig = S.trace(model, graph.x.double(), op, graph.y, graph.train_mask)
    P = op.to_dense() if op.layout != torch.strided else op
    for k in range(model.depth - 1):
        expected = torch.sigmoid(sig.H[k]) * (P.t() @ sig.B[k + 1] @ sig.W[k + 1].t())  # softplus' = sigmoid
        assert torch.allclose(sig.B[k], expected, atol=1e-12)
        assert torch.allclose(sig.dW[k], (P @ sig.X[k]).t() @ sig.B[k], atol=1e-12)


def test_mlp_has_no_propagation(graph):
    model = M.VanillaGNN(graph.num_features, 8, 2, 3, propagation="identity")
    assert model.operator(graph) is None


def test_unknown_loss_is_a_clear_error(graph):
    model = M.VanillaGNN(graph.num_features, 8, 2, 2)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        S.trace(model, graph.x, model.operator(graph), graph.y, graph.train_mask, loss="hinge")


def test_sparse_symmetric_propagation_has_the_exact_gradient():
    g = G.ring(60)  # sparse enough to be stored as CSR
    for kind in ("bistochastic", "gcn"):
        P = G.propagation(g, kind).double()
        assert P.layout == torch.sparse_csr
        X = torch.randn(60, 5, dtype=torch.float64, requires_grad=True)
        Xd = X.detach().clone().requires_grad_(True)
        weights_out = torch.randn(60, 5, dtype=torch.float64)
        (M.propagate(P, X) * weights_out).sum().backward()
        (P.to_dense() @ Xd * weights_out).sum().backward()
        assert torch.allclose(X.grad, Xd.grad, atol=1e-12)

"""The remedy architectures (oversmoothing.remedies): interface, traced signals, and the facts
chapter 8 relies on, at a tiny size."""
import pytest
import torch

from oversmoothing import graphs, models, remedies, signals
from oversmoothing.measures import rel_mu, rel_mu_gcn


@pytest.fixture(scope="module")
def graph():
    return graphs.csbm(120, 3, 8, dim=12, mean_sep=1.0, seed=0)


@pytest.mark.parametrize("name", sorted(remedies.REMEDIES))
def test_every_remedy_traces_forward_and_backward(name, graph):
    L, hidden = 3, 8
    model = remedies.build(name, graph.num_features, hidden, graph.num_classes, L, seed=0)
    assert len(model.layers) == L
    op = model.operator(graph, "cpu")
    model.train()
    loss, sig = signals.trace(model, graph.x, op, graph.y, graph.train_mask)
    assert torch.isfinite(loss)
    assert sig.depth == L and len(sig.X) == L + 1 and len(sig.B) == L
    assert len(sig.W) == L and len(sig.dW) == L
    n = graph.num_nodes
    for k in range(L):
        assert sig.H[k].shape[0] == n and sig.B[k] is not None and sig.B[k].shape == sig.H[k].shape
        assert sig.X[k + 1].shape == sig.H[k].shape
        if sig.W[k] is None:  # weightless propagation (APPNP)
            assert name == "appnp" and sig.dW[k] is None
        else:
            assert sig.dW[k].shape == sig.W[k].shape
            assert sig.W[k].shape[0] == sig.X[k].shape[1]  # [d_in, d_out] orientation
    logits = model(graph.x, op)
    assert logits.shape == (n, graph.num_classes)


def test_unknown_remedy_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown remedy 'resnet'.*appnp.*gcnii"):
        remedies.build("resnet", 4, 4, 2, 2)


@pytest.mark.parametrize("name", ["gcnii", "transformer"])
def test_trace_matches_autograd_for_pyg_layers(name, graph):
    """dW(k) from the traced pass equals autograd's gradient of the declared main weight, and B(k)
    equals dL/dH(k) computed independently with torch.autograd.grad."""
    L = 3
    model = remedies.build(name, graph.num_features, 6, graph.num_classes, L, seed=1, dropout=0.0)
    op = model.operator(graph, "cpu")
    model.eval()
    model.zero_grad()
    _, sig = signals.trace(model, graph.x, op, graph.y, graph.train_mask)
    rec = models.Trace()
    logits = model(graph.x, op, trace=rec)
    loss = torch.nn.functional.cross_entropy(logits[graph.train_mask], graph.y[graph.train_mask])
    specs = [models.main_weight(layer) for layer in model.layers]
    raw = [getattr(owner, attr) for owner, attr, _ in specs]
    grads = torch.autograd.grad(loss, rec.H + raw)
    for k in range(L):
        torch.testing.assert_close(sig.B[k], grads[k], rtol=1e-5, atol=1e-8)
        dW = grads[L + k].t() if specs[k][2] else grads[L + k]
        torch.testing.assert_close(sig.dW[k], dW, rtol=1e-5, atol=1e-8)
        assert sig.W[k].shape == dW.shape


def test_main_weight_declared_paths():
    gcn2 = remedies.build("gcnii", 5, 4, 2, 2, seed=0)
    owner, name, transposed = models.main_weight(gcn2.layers[0])
    assert name == "weight1" and not transposed
    tr = remedies.build("transformer", 5, 4, 2, 2, seed=0)
    owner, name, transposed = models.main_weight(tr.layers[0])
    assert owner is tr.layers[0].lin_value and transposed
    assert models.main_weight(remedies.build("appnp", 5, 4, 2, 2).layers[0]) is None


def test_pairnorm_keeps_deep_representations_apart(graph):
    """Chapter 8: at depth 32, plain GCN's X(L) has collapsed onto the GCN operator's fixed
    subspace D~^{1/2} 1 v^T, while PairNorm's stays spread (rel_mu_gcn of X(L) at initialisation)."""
    L = 32
    vals = {}
    for name in ("gcn", "pairnorm"):
        model = remedies.build(name, graph.num_features, 16, graph.num_classes, L, seed=0)
        model.eval()
        rec = models.Trace()
        with torch.no_grad():
            model(graph.x, model.operator(graph, "cpu"), trace=rec)
        vals[name] = rel_mu_gcn(rec.X[-1], graph.edge_index)
    assert vals["gcn"] < 0.01
    assert vals["pairnorm"] > 0.5


def test_dropedge_is_random_in_training_only(graph):
    model = remedies.build("dropedge", graph.num_features, 8, graph.num_classes, 2, seed=0, dropout=0.0)
    op = model.operator(graph, "cpu")
    model.train()
    a, b = model(graph.x, op), model(graph.x, op)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(graph.x, op), model(graph.x, op))


def test_rel_mu_gcn_vanishes_on_the_gcn_fixed_subspace(graph):
    """rel_mu_gcn is 0 on D~^{1/2} 1 v^T (where rel_mu is not, on an irregular graph)."""
    deg = torch.bincount(graph.edge_index[0], minlength=graph.num_nodes).double() + 1
    X = deg.sqrt().unsqueeze(1) * torch.randn(1, 5, dtype=torch.float64)
    assert rel_mu_gcn(X, graph.edge_index) < 1e-10
    assert rel_mu(X) > 0.01

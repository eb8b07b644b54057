"""models.attention.GATLayer: PyG's GATConv with its attention as sparse products, the same numbers."""
import pytest
import torch
from torch_geometric.nn import GATConv
from torch_geometric.utils import add_self_loops, remove_self_loops

from oversmoothing import graphs
from oversmoothing.models import ResidualGAT, attention_source_map, build, lipschitz_normalise
from oversmoothing.models.attention import GATLayer, attention_structure


def _edges(n=60, seed=0):
    g = graphs.csbm(n, 2, 8.0, dim=4, seed=seed)
    ei, _ = add_self_loops(remove_self_loops(g.edge_index)[0], num_nodes=n)
    return g, ei


def _pair(d_in, d_out, dtype, bias=True):
    torch.manual_seed(0)
    ref = GATConv(d_in, d_out, heads=1, bias=bias, add_self_loops=False).to(dtype)
    new = GATLayer(d_in, d_out, heads=1, bias=bias, add_self_loops=False).to(dtype)
    with torch.no_grad():  # attention vectors and bias away from their zero / small defaults
        for p in ref.parameters():
            p.normal_()
    new.load_state_dict(ref.state_dict())
    return ref, new


def _run(conv, x, ei):
    x = x.clone().requires_grad_(True)
    out = conv(x, ei)
    (out * torch.linspace(-1, 1, out.shape[1], dtype=x.dtype)).sin().sum().backward()
    return [out.detach(), x.grad] + [p.grad.clone() for p in conv.parameters()]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_every_gradient_equal_pyg_to_rounding(dtype, tol, bias):
    g, ei = _edges()
    ref, new = _pair(4, 5, dtype, bias)
    x = torch.randn(g.num_nodes, 4, dtype=dtype)
    for a, b in zip(_run(ref, x, ei), _run(new, x, ei)):
        assert torch.allclose(a, b, rtol=tol, atol=tol * float(a.abs().max())), float((a - b).abs().max())


def test_edges_in_any_order_and_nodes_with_only_a_self_loop():
    n = 30
    _, ei = _edges(n)
    keep = (ei[0] >= 5) | (ei[0] == ei[1])          # nodes 0-4 send messages only to themselves
    ei = ei[:, keep]
    ei = ei[:, torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(1))]
    ref, new = _pair(3, 3, torch.float64)
    x = torch.randn(n, 3, dtype=torch.float64)
    for a, b in zip(_run(ref, x, ei), _run(new, x, ei)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_huge_scores_stay_finite_like_pyg():
    """The softmax subtracts each target's largest score (PyG's detached max): scores of 1e4 do not overflow."""
    g, ei = _edges()
    ref, new = _pair(4, 4, torch.float32)
    x = 1e3 * torch.randn(g.num_nodes, 4)
    a, b = ref(x, ei).detach(), new(x, ei).detach()
    assert torch.isfinite(b).all() and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_other_uses_fall_back_to_pygs_forward():
    g, ei = _edges()
    _, new = _pair(4, 4, torch.float64)
    x = torch.randn(g.num_nodes, 4, dtype=torch.float64)
    out, (edges, alpha) = new(x, ei, return_attention_weights=True)     # PyG's own path: attention returned
    assert out.shape == (g.num_nodes, 4) and alpha.shape[0] == ei.shape[1]
    drop = GATLayer(4, 4, heads=1, add_self_loops=False, dropout=0.5).double().train()
    assert not drop._fast(x, ei, (), {})                                 # attention dropout: PyG's path
    assert drop.eval()._fast(x, ei, (), {})


def test_structure_is_cached_and_rebuilt_when_the_edges_change():
    _, ei = _edges()
    s1 = attention_structure(ei, 60)
    assert attention_structure(ei, 60) is s1
    ei[0, 0] = ei[0, 0]            # an in-place write bumps the version
    assert attention_structure(ei, 60) is not s1


def test_residual_gat_uses_it_and_keeps_gatconvs_parameters_and_normalisation():
    model = ResidualGAT(4, 8, 2, 3, seed=0, lipschitz_c=1.0)
    conv = model.layers[0]
    assert isinstance(conv, GATConv) and type(conv).__name__ == "GATLayer"
    assert set(conv.state_dict()) == set(GATConv(8, 8, heads=1, bias=False, add_self_loops=False).state_dict()) | {
        k for k in conv.state_dict() if "parametrizations" in k}
    W = attention_source_map(conv).weight.detach()
    assert float(torch.linalg.norm(W)) == pytest.approx(1.0, rel=1e-5)   # c W/||W||_F on GATConv's lin
    assert type(build("remedy.gat", 4, 8, 2, 2, seed=0).layers[0]).__name__ == "GATLayer"


def test_lipschitz_normalised_layer_equals_pyg_with_the_same_normalisation():
    g, ei = _edges()
    ref, new = _pair(4, 4, torch.float64)
    for conv in (ref, new):
        lipschitz_normalise(attention_source_map(conv), 2.0)
    x = torch.randn(g.num_nodes, 4, dtype=torch.float64)
    for a, b in zip(_run(ref, x, ei), _run(new, x, ei)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)

"""The remedy architectures (oversmoothing.models.remedies, built through oversmoothing.models.build): interface, traced signals, and the facts
chapter 8 relies on, at a tiny size."""
import math

import pytest
import torch

from oversmoothing import datasets, graphs, models, signals
from oversmoothing.experiments import remedies
from oversmoothing.measures import rel_mu, rel_mu_gcn


@pytest.fixture(scope="module")
def graph():
    return graphs.csbm(120, 3, 8, dim=12, mean_sep=1.0, seed=0)


@pytest.mark.parametrize("name", sorted(remedies.REMEDIES))
def test_every_remedy_traces_forward_and_backward(name, graph):
    L, hidden = 3, 8
    model = models.build(remedies.remedy(name), graph.num_features, hidden, graph.num_classes, L, seed=0)
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
        remedies.remedy("resnet")


@pytest.mark.parametrize("name", ["gcnii", "transformer"])
def test_trace_matches_autograd_for_pyg_layers(name, graph):
    """dW(k) from the traced pass equals autograd's gradient of the declared main weight, and B(k)
    equals dL/dH(k) computed independently with torch.autograd.grad."""
    L = 3
    model = models.build(remedies.remedy(name), graph.num_features, 6, graph.num_classes, L, seed=1, dropout=0.0)
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
    gcn2 = models.build("remedy.gcnii", 5, 4, 2, 2, seed=0)
    owner, name, transposed = models.main_weight(gcn2.layers[0])
    assert name == "weight1" and not transposed
    tr = models.build("remedy.transformer", 5, 4, 2, 2, seed=0)
    owner, name, transposed = models.main_weight(tr.layers[0])
    assert owner is tr.layers[0].lin_value and transposed
    assert models.main_weight(models.build("remedy.appnp", 5, 4, 2, 2).layers[0]) is None


def test_pairnorm_keeps_deep_representations_apart(graph):
    """Chapter 8: at depth 32, plain GCN's X(L) has collapsed onto the GCN operator's fixed
    subspace D~^{1/2} 1 v^T, while PairNorm's stays spread (rel_mu_gcn of X(L) at initialisation)."""
    L = 32
    vals = {}
    for name in ("gcn", "pairnorm"):
        model = models.build(remedies.remedy(name), graph.num_features, 16, graph.num_classes, L, seed=0)
        model.eval()
        rec = models.Trace()
        with torch.no_grad():
            model(graph.x, model.operator(graph, "cpu"), trace=rec)
        vals[name] = rel_mu_gcn(rec.X[-1], graph.edge_index)
    assert vals["gcn"] < 0.01
    assert vals["pairnorm"] > 0.5


def test_dropedge_is_random_in_training_only(graph):
    model = models.build("remedy.dropedge", graph.num_features, 8, graph.num_classes, 2, seed=0, dropout=0.0)
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


# ----------------------------------------------------------------------------- chapter 8, second edition
def _power_limit_graph():
    """Two components with unequal degrees: a star on 5 nodes and a path on 4 nodes."""
    star = [(0, i) for i in range(1, 5)]
    path = [(5, 6), (6, 7), (7, 8)]
    e = torch.tensor(star + path).t()
    return torch.cat([e, e.flip(0)], 1), 9


def test_gcn_operator_limit_is_sqrt_degree_per_component_not_constant():
    """Powers of D~^{-1/2}(A+I)D~^{-1/2} converge to rows proportional to sqrt(d_i + 1) within each
    component (its eigenvalue-1 eigenvectors), not to per-component constants."""
    import numpy as np

    ei, n = _power_limit_graph()
    lim = remedies.gcn_power_limit(ei, n, steps=(1, 2000))
    assert lim["spread_over_sqrt_deg"].iloc[-1] < 1e-8
    assert lim["spread_raw"].iloc[-1] > 0.2          # the star's centre (d+1 = 5) vs its leaves (d+1 = 2)
    assert lim["spread_over_sqrt_deg"].iloc[0] > 1e-3  # not trivially flat after one step
    # the same from the eigenvectors: P u = u for u = sqrt(d+1) on one component
    mask = torch.ones(n, dtype=torch.bool)
    g = graphs.Graph(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), ei, mask, mask, mask)
    P = graphs.propagation(g, "gcn", dtype=torch.float64).to_dense()
    deg = torch.bincount(ei[0], minlength=n).double() + 1
    u = torch.where(torch.arange(n) < 5, deg.sqrt(), torch.zeros(n, dtype=torch.float64))
    torch.testing.assert_close(P @ u, u)
    assert np.ptp(u[:5].numpy()) > 0


def test_choose_by_validation_keeps_the_better_rate_and_ignores_test():
    import pandas as pd

    runs = pd.DataFrame([
        dict(model="pairnorm", depth=16, seed=0, dropout=0.0, val_acc=0.55, test_acc=0.50),
        dict(model="pairnorm", depth=16, seed=0, dropout=0.5, val_acc=0.12, test_acc=0.90),  # test must not matter
        dict(model="gcn", depth=2, seed=0, dropout=0.0, val_acc=0.70, test_acc=0.70),
        dict(model="gcn", depth=2, seed=0, dropout=0.5, val_acc=0.78, test_acc=0.80),
        dict(model="gcn", depth=2, seed=1, dropout=0.5, val_acc=0.60, test_acc=0.60),
        dict(model="gcn", depth=2, seed=1, dropout=0.0, val_acc=0.60, test_acc=0.65),       # tie: smaller rate
    ])
    kept = remedies.choose_by_validation(runs).set_index(["model", "depth", "seed"])["dropout"]
    assert kept[("pairnorm", 16, 0)] == 0.0
    assert kept[("gcn", 2, 0)] == 0.5
    assert kept[("gcn", 2, 1)] == 0.0
    assert len(kept) == 3


def test_lipschitz_c_rule_and_arm():
    assert models.lipschitz_c_rule(32, 16) == pytest.approx(16 ** 0.5 / 32 ** 0.5)
    c = models.lipschitz_c_rule(16, 16, budget=4.0)
    assert c == pytest.approx(2.0) and c ** 2 * 16 / 16 == pytest.approx(4.0)
    with pytest.raises(ValueError):
        models.lipschitz_c_rule(0, 16)
    m = models.build("remedy.lipschitz", 12, 16, 3, 8, seed=0)
    assert m.lipschitz_c == pytest.approx(2 ** 0.5)                 # sqrt(16/8)
    assert models.build("remedy.lipschitz", 12, 16, 3, 8, seed=0, c=4.0).lipschitz_c == 4.0
    W = models.weights(m)[0]
    assert float(torch.linalg.norm(W.detach())) == pytest.approx(2 ** 0.5, rel=1e-5)


def test_fast_gcn_stack_equals_pyg_gcnconv(graph):
    """The GCN layers' sparse product by P gives GCNConv's own output (message passing on gcn_norm)."""
    model = models.build("remedy.gcn", graph.num_features, 8, graph.num_classes, 3, seed=0)
    model.eval()
    ei, ew = graphs.gcn_edges(graph.edge_index, graph.num_nodes)
    with torch.no_grad():
        fast = model(graph.x, model.operator(graph, "cpu"))
        X = graph.x
        for k, layer in enumerate(model.layers):
            X = layer(X, ei, ew)
            X = X.relu() if k < 2 else X
    torch.testing.assert_close(fast, X, rtol=1e-5, atol=1e-6)


def test_mlp_twin_is_the_gcn_without_the_graph(graph):
    gcn = models.build("remedy.gcn", graph.num_features, 8, graph.num_classes, 3, seed=0)
    mlp = models.build("remedy.mlp", graph.num_features, 8, graph.num_classes, 3, seed=0)
    for a, b in zip(gcn.parameters(), mlp.parameters()):
        torch.testing.assert_close(a, b)                 # same initialisation
    assert mlp.operator(graph, "cpu") is None
    mlp.eval()
    with torch.no_grad():
        X = graph.x
        for k, layer in enumerate(mlp.layers):
            X = layer.lin(X) + layer.bias
            X = X.relu() if k < 2 else X
        torch.testing.assert_close(mlp(graph.x, None), X)


def test_sparse_input_linear_matches_dense_dropout_in_law_and_gradient():
    """input_linear: the same product and weight gradient as the dense path (no dropout), and with
    dropout each non-zero entry is kept with probability 1-p and scaled by 1/(1-p)."""
    torch.manual_seed(0)
    x = (torch.rand(400, 300) < 0.02).float()            # mostly zero, 120000 entries
    W = torch.randn(5, 300, dtype=torch.float32, requires_grad=True)
    y = models.input_linear(x, W, 0.0, True)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    gW, W.grad = W.grad.clone(), None
    y2 = torch.nn.functional.linear(x, W)
    (y2 * g).sum().backward()
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gW, W.grad, rtol=1e-5, atol=1e-5)
    # dropout: with W = identity-like probe, the mean over draws of the output equals x W^T
    probe = torch.eye(300)[:5]
    outs = torch.stack([models.input_linear(x, probe, 0.5, True) for _ in range(400)])
    vals = outs[:, x[:, :5] > 0]
    assert set(torch.unique(vals).tolist()) <= {0.0, 2.0}
    assert abs(float((vals > 0).float().mean()) - 0.5) < 0.03
    torch.testing.assert_close(models.input_linear(x, probe, 0.5, False), x[:, :5])


def test_fast_dropout_law():
    torch.manual_seed(0)
    X = torch.ones(200, 50)
    D = models.dropout(X, 0.3, True)
    assert torch.isclose(D[D > 0], torch.tensor(1 / 0.7)).all()
    assert abs(float((D > 0).float().mean()) - 0.7) < 0.02
    assert models.dropout(X, 0.3, False) is X


def test_summarise_reads_a_shorter_budget_off_the_same_run(graph):
    """test_acc_<b>ep is the test accuracy at the best validation epoch among epochs <= b."""
    from oversmoothing.training import fit

    model = models.build("remedy.gcn", graph.num_features, 8, graph.num_classes, 2, seed=0)
    h = fit(model, graph, epochs=12, measures=remedies.SWEEP_MEASURES, signals=("X", "B"), record_every=12,
            device="cpu", seed=0, progress=False)
    row = remedies.summarise(h, "gcn", 2, 0, budgets=(4,))
    ep = h.epochs[h.epochs["epoch"] <= 4]
    assert row["val_acc_4ep"] == pytest.approx(ep["val_acc"].max())
    assert row["test_acc_4ep"] == pytest.approx(float(ep.loc[ep["val_acc"].idxmax(), "test_acc"]))
    assert row["val_acc"] >= row["val_acc_4ep"]


def _sweep_summary():
    """A depth_sweep-like summary (already chosen on validation) of two remedies at depths 2 and 16."""
    import pandas as pd

    rows = []
    for model, fwd16, bwd16 in (("gcn", 0.1, 1e-6), ("appnp", 0.8, 0.5)):
        for depth, fwd, bwd in ((2, 0.9, 1.0), (16, fwd16, bwd16)):
            for seed in (0, 1):
                rows.append(dict(model=model, depth=depth, seed=seed, dropout=0.5 if model == "gcn" else 0.0,
                                 test_acc=0.8 if depth == 2 or model == "appnp" else 0.2 + 0.1 * seed,
                                 train_acc=1.0, name=model.upper(),
                                 rel_mu_gcn_X_L_init=fwd, rel_mu_gcn_X_L_end=fwd / 2,
                                 E_B_mid_init=bwd, E_B_mid_end=bwd / 10,
                                 rel_mu_gcn_B_mid_init=0.5 + seed / 10, rel_mu_gcn_B_mid_end=0.4 + depth / 100))
    return pd.DataFrame(rows)


def test_sweep_mean_selects_model_depth_and_options():
    s = _sweep_summary()
    assert remedies.sweep_mean(s, "gcn", 16) == pytest.approx(0.25)
    assert remedies.sweep_mean(s, "gcn", 16, "train_acc") == 1.0
    assert remedies.sweep_mean(s, "gcn", 16, seed=1) == pytest.approx(0.3)
    assert math.isnan(remedies.sweep_mean(s, "gcn", 16, dropout=0.0))    # no such run


def test_remedies_table_compares_each_remedy_with_its_shallow_self():
    t = remedies.remedies_table(_sweep_summary(), ["gcn", "appnp"], {"gcn": "plain GCN"})
    assert list(t.index) == ["plain GCN", "appnp"]                        # unnamed: the key itself
    g, a = t.loc["plain GCN"], t.loc["appnp"]
    assert g["fwd ratio (init)"] == pytest.approx(0.1 / 0.9) and not g["forward kept (init)"]
    assert g["bwd ratio (init)"] == pytest.approx(1e-6) and not g["backward kept (init)"]
    assert a["forward kept (init)"] and a["backward kept (init)"] and a["backward kept (end)"]
    assert a["bwd ratio (end)"] == pytest.approx(0.5)
    assert g["acc L=2"] == pytest.approx(0.8) and g["acc L=16"] == pytest.approx(0.25)
    assert g["dropout L=16"] == 0.5 and g["train acc L=16"] == 1.0
    assert g["min over runs of mu_P(B(L/2))"] == pytest.approx(0.42)
    strict = remedies.remedies_table(_sweep_summary(), ["appnp"], forward_kept=0.95, backward_kept=0.6)
    assert not strict.loc["appnp", "forward kept (init)"] and not strict.loc["appnp", "backward kept (init)"]


def test_attention_history_and_rows(graph):
    h = remedies.attention_history(graph, "gat", 3, hidden=6, epochs=4, lr=0.01, weight_decay=5e-4,
                                   record_every=2, device="cpu", seed=0)
    assert sorted(h.layers["epoch"].unique()) == [0, 2, 4]
    rows = remedies.attention_rows(h, 3, "plain GAT")
    assert [r["epoch"] for r in rows] == [0, 4] and rows[0]["model"] == "plain GAT"
    at = h.layers[(h.layers["epoch"] == 4) & (h.layers["layer"] >= 1)].set_index("layer")
    assert rows[1]["E B(1)"] == at.loc[1, "E_B"] and rows[1]["E B(3)"] == at.loc[3, "E_B"]
    assert rows[1]["min_k E B(k)"] == at["E_B"].min() and 1 <= rows[1]["argmin k"] <= 3
    assert set(rows[0]) >= {"min_k rel_mu B(k)", "rel_mu X(3)", "median grad norm"}
    assert remedies.best_test_acc(h.epochs) == float(h.epochs.loc[h.epochs["val_acc"].idxmax(), "test_acc"])


def test_depth_panels_and_training_profiles_draw(graph):
    import matplotlib.pyplot as plt

    from oversmoothing import figures

    s = _sweep_summary()
    fig = figures.depth_panels(s, [("E_B_mid_init", "E(B)", True), ("test_acc", "accuracy", False),
                                   ("train_acc", "train", False)], title="t")
    axes = fig.get_axes()
    assert len(axes) == 4 and not axes[3].axison                          # the fourth panel is blank
    assert axes[0].get_yscale() == "log" and axes[1].get_yscale() == "linear"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["2", "16"]
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in axes)
    plt.close(fig)
    h = remedies.attention_history(graph, "transformer", 3, hidden=6, epochs=4, lr=0.01, weight_decay=5e-4,
                                   record_every=1, device="cpu", seed=0)
    fig = figures.training_profiles(h.layers, title="TransformerConv")
    b, f = fig.axes[0], fig.axes[1]
    assert b.get_title() == "backward" and f.get_title() == "forward" and b.get_yscale() == "log"
    assert [t.get_text() for t in b.get_legend().get_texts()] == ["0", "2", "4"] and f.get_legend() is None
    plt.close(fig)

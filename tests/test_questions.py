"""Chapter 09's measurements (experiments.questions) and the library additions they need: the residual GCN's
spectral / LayerNorm / PairNorm options, the vanilla GNN with the GCN operator, PubMed's clear error."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from oversmoothing import graphs, measures
from oversmoothing.experiments import questions as Q
from oversmoothing.models import build, twin, weights


@pytest.fixture(scope="module")
def small():
    return graphs.csbm(60, 2, 12, dim=8, mean_sep=2.0, ratio=4.0, seed=0)


# ---------------------------------------------------------------------------------------------- models

def test_spectral_normalisation_sets_every_branch_weight_to_spectral_norm_c(small):
    for c in (1.0, 2.5):
        m = build("paper2.res_gcn", small.num_features, 16, 2, 3, seed=0, lipschitz_c=c, lipschitz_mode="spectral")
        m.eval()
        for W in weights(m):
            assert measures.spectral_norm(W) == pytest.approx(c, rel=1e-3)
    torch.manual_seed(1)
    a = build("paper2.res_gcn", small.num_features, 16, 2, 3, seed=0, lipschitz_c=1.0, lipschitz_mode="spectral")
    torch.manual_seed(2)
    b = build("paper2.res_gcn", small.num_features, 16, 2, 3, seed=0, lipschitz_c=1.0, lipschitz_mode="spectral")
    op = a.operator(small)
    assert torch.equal(a(small.x, op), b(small.x, op))                # reproducible whatever the global RNG


def test_branch_norms_run_trace_and_leave_the_default_network_unchanged(small):
    plain = build("paper2.res_gcn", small.num_features, 16, 2, 3, seed=0)
    again = build("paper2.res_gcn", small.num_features, 16, 2, 3, seed=0, norm=None)
    assert list(plain.state_dict()) == list(again.state_dict())     # no new parameters without a norm
    op = plain.operator(small)
    assert torch.equal(plain(small.x, op), again(small.x, op))
    for norm in ("layernorm", "pairnorm"):
        m = build("paper2.res_gcn", small.num_features, 16, 2, 3, seed=0, norm=norm)
        for a, b in zip(m.encoder.parameters(), plain.encoder.parameters()):
            assert torch.equal(a, b)                                  # the same draws as the plain network
        from oversmoothing.models import Trace

        t = Trace()
        m(small.x, op, trace=t)
        H = t.H[0].detach()
        if norm == "pairnorm":   # PairNorm: centred columns, mean squared row norm 1
            assert H.mean(0).abs().max() < 1e-5 and float(H.pow(2).sum(1).mean()) == pytest.approx(1.0, rel=1e-3)
        else:                    # LayerNorm (gain 1, bias 0 at init): every row centred with unit variance
            assert H.mean(1).abs().max() < 1e-5
    with pytest.raises(ValueError, match="unknown norm"):
        build("paper2.res_gcn", small.num_features, 16, 2, 3, norm="batchnorm")


def test_vanilla_gnn_with_the_gcn_operator(small):
    m = build("paper1.gnn_gcn", small.num_features, 8, 2, 3, s=1.0)
    assert m.propagation == "gcn" and twin("paper1.gnn_gcn") == "paper1.mlp"
    P = m.operator(small)
    assert torch.allclose(P.to_dense() if P.layout != torch.strided else P, graphs.gcn(small).to_dense()
                          if graphs.gcn(small).layout != torch.strided else graphs.gcn(small))


def test_pubmed_is_a_clear_error_naming_the_missing_file_and_what_is_available(tmp_path, monkeypatch):
    from oversmoothing import datasets

    monkeypatch.setenv("OVERSMOOTHING_DATA_MIRROR", str(tmp_path))
    with pytest.raises(datasets.DatasetUnavailable, match=r"'pubmed' is not in the offline mirror.*ind\.pubmed\.allx.*"
                                                          r"Available offline: cora, citeseer"):
        datasets.load("pubmed", root=tmp_path / "cache")
    assert "pubmed" not in datasets.offline() and "cora" in datasets.offline()
    with pytest.raises(ValueError, match="unknown dataset 'pubmedx'"):
        datasets.load("pubmedx", root=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------- Q1

def test_weight_bounds_reads_lambda_times_the_largest_spectral_norm():
    la = pd.DataFrame([dict(graph=0, model="GNN L=2", seed=0, epoch=e, layer=k, w_spec=w)
                       for e, ws in enumerate([(1.0, 2.0), (1.5, 3.0), (1.0, 6.0)]) for k, w in enumerate((0.0,) + ws)])
    la.loc[la.layer == 0, "w_spec"] = np.nan
    runs = pd.DataFrame([dict(graph=0, model="GNN L=2", seed=0, status="trapped")])
    b = Q.weight_bounds(runs, la, {0: 0.25}).iloc[0]
    assert (b.s0, b.w_max, b.growth) == (2.0, 6.0, 3.0)
    assert b.slam0 == 0.5 and b.slam_max == 1.5 and b.slam_end == 1.5 and b.cross_epoch == 2.0 and b.status == "trapped"
    w = Q.weight_trajectories(la, {0: 0.25})
    assert list(w.slam) == [0.5, 0.75, 1.5]


def test_trap_grid_trains_each_graph_with_its_seed(small):
    G = {("a", 0): small, ("b", 1): small}
    EP, LA, T = Q.trap_grid(G, [("GNN", 2), ("MLP", 2)], 0.01, hidden=4, epochs=2, s=1.0, device="cpu")
    assert set(zip(T.graph, T.seed)) == {("a", 0), ("b", 1)} and set(T.model) == {"GNN L=2", "MLP L=2"}
    assert {"status", "chance", "w_spec_max"} <= set(T.columns) and LA.w_spec.notna().any()
    _, _, Tg = Q.trap_grid({("a", 0): small}, [("GNN", 2)], 0.01, names={"GNN": "paper1.gnn_gcn"}, hidden=4, epochs=2,
                           s=1.0, device="cpu")
    assert list(Tg.model) == ["GNN L=2"] and not np.isclose(Tg.final_loss.iloc[0], T.final_loss.iloc[0])


# ---------------------------------------------------------------------------------------------- Q2

def test_homophily_and_the_sweep_keep_labels_features_masks():
    sw = Q.csbm_sweep([0.2, 5.0], [0], 80, 10, dim=4, mean_sep=1.0)
    lo, hi = sw[0.2, 0], sw[5.0, 0]
    assert torch.equal(lo.x, hi.x) and torch.equal(lo.y, hi.y) and torch.equal(lo.train_mask, hi.train_mask)
    assert not torch.equal(lo.edge_index, hi.edge_index)
    assert lo.meta["homophily"] < 0.4 < 0.6 < hi.meta["homophily"]
    assert lo.meta["homophily"] == Q.homophily(lo) and 0 < lo.meta["lambda_gcn"] < 1
    two = graphs.Graph(torch.zeros(3, 1), torch.tensor([0, 0, 1]), torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
                       *graphs.random_masks(3))
    assert Q.homophily(two) == 0.5


def test_probe_and_residual_run(small):
    p = Q.probe(small, "paper2.res_gcn", 4, hidden=8, seed=0)
    assert set(p) == {"log10_growth", "log10_expansion", "rel_mu_X_L", "max_logit"} and all(map(math.isfinite, p.values()))
    tame = Q.probe(small, "paper2.res_gcn", 4, hidden=8, seed=0, lipschitz_c=0.5)
    assert tame["log10_growth"] < p["log10_growth"]
    row = Q.residual_run(dict(model="paper2.res_gcn", depth=4, hidden=8, seed=0, epochs=3, lr=0.01, variant="x",
                              options={"norm": "pairnorm"}, device="cpu"), small)
    assert row["variant"] == "x" and "options" not in row
    assert {"init_log10_expansion", "end_log10_expansion", "train_acc", "test_acc", "best_train_acc"} <= set(row)
    assert Q.residual_run(dict(model="paper2.res_mlp", depth=4, hidden=8, seed=0), small).keys() >= {"init_log10_growth"}


def test_expansion_sweep_and_its_graph_parts():
    sw = Q.csbm_sweep([0.25, 4.0], [0, 1], 60, 10, dim=4, mean_sep=1.0)
    real = {("toy", 0): sw[0.25, 0]}
    sweep, r = Q.expansion_sweep(sw, real, epochs=2, hidden=8, depth=3, lr=0.01, device="cpu")
    assert len(sweep) == 4 + 2 and sweep.loc[sweep.arch == "res_mlp", "ratio"].isna().all()
    parts = Q.expansion_parts(sweep)
    assert len(parts) == 4 and np.allclose(parts.g, parts.gcn - parts.mlp)
    assert "train_acc" not in r or r["train_acc"].isna().all()      # real graphs only probed by default
    rp = Q.real_expansion_parts(r)
    assert list(rp.dataset) == ["toy"] and np.isfinite(rp.g).all()


def test_normalisations_name_the_six_variants():
    v = Q.normalisations(2.0)
    assert list(v) == ["none", "Frobenius (hard)", "Frobenius (soft)", "spectral", "LayerNorm", "PairNorm"]
    assert v["spectral"] == dict(lipschitz_c=2.0, lipschitz_mode="spectral")


# ---------------------------------------------------------------------------------------------- Q4

def test_rel_limit_against_a_profile():
    u = torch.tensor([1.0, 2.0, 3.0])
    b = torch.tensor([[0.5, -1.0]])
    assert Q.rel_limit(u[:, None] * b, u) == pytest.approx(0.0, abs=1e-12)
    X = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    assert Q.rel_limit(X, torch.ones(3)) == pytest.approx(measures.rel_mu(X))


def test_limit_profile_is_the_in_degree_of_the_aggregation(small):
    gat = build("remedy.gat", small.num_features, 8, 2, 2, dropout=0.0)
    deg = torch.bincount(small.edge_index[1], minlength=small.num_nodes).double()
    assert torch.equal(Q.limit_profile(gat, small), deg + 1)          # GATConv's self-loops
    assert torch.equal(Q.limit_profile(build("remedy.gat_mlp", small.num_features, 8, 2, 2), small), torch.ones(small.num_nodes))
    assert torch.equal(Q.limit_profile(build("paper1.gnn", small.num_features, 8, 2, 2), small), torch.ones(small.num_nodes))
    tr = build("remedy.transformer", small.num_features, 8, 2, 2, dropout=0.0)
    assert torch.equal(Q.limit_profile(tr, small), deg)


def test_backward_grid_profiles(small):
    runs = [dict(model=m, depth=4, seed=0, options=dict(dropout=0.0)) for m in ("remedy.gat", "remedy.gat_mlp")]
    P = Q.backward_grid(small, runs, hidden=8, device="cpu")
    assert set(P.model) == {"remedy.gat", "remedy.gat_mlp"} and sorted(P.layer.unique()) == [1, 2, 3, 4]
    twin_ = P.loc[P.model == "remedy.gat_mlp"]
    assert np.allclose(twin_.rel_lim_B, twin_.rel_mu_B)              # u = 1 for the twin
    trained = Q.backward_grid(small, [dict(runs[0], epochs=2)], hidden=8, lr=0.01, device="cpu")
    assert (trained.epochs == 2).all() and not np.allclose(trained.rel_lim_B, P.loc[P.model == "remedy.gat", "rel_lim_B"])


# ---------------------------------------------------------------------------------------------- Q5

def test_centred_removes_the_mean_row(small):
    off = graphs.Graph(small.x + 3.0, small.y, small.edge_index, small.train_mask, small.val_mask, small.test_mask)
    c = Q.centred(off)
    assert c.x.mean(0).abs().max() < 1e-5 and c.meta["centred"] and torch.equal(c.edge_index, small.edge_index)

"""Paper 2's Lipschitz normalisation and gradient expansion (chapters 06 and 07), at a small size."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from oversmoothing import datasets, graphs, models
from oversmoothing.experiments import gradients
from oversmoothing.measures import mu
from oversmoothing.models import weights
from oversmoothing.signals import trace
from oversmoothing.training import fit


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids spin-waiting on a loaded 2-core machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def graph():
    return graphs.csbm(200, 2, 10.0, dim=16, seed=0)


@pytest.mark.parametrize("arch", ["res_gcn", "res_gat"])
def test_frobenius_norm_stays_c_during_training(graph, arch):
    c = 2.5
    model = models.build(gradients.model_name(arch), 16, 16, 2, 4, lipschitz_c=c, seed=0)
    h = fit(model, graph, epochs=5, lr=0.05, measures=(), signals=(), device="cpu", progress=False)
    assert not h.diverged
    raw = [p for n, p in model.named_parameters() if n.endswith("parametrizations.weight.original")]
    assert len(raw) == 4
    assert any(abs(float(torch.linalg.norm(p.detach())) - c) > 1e-2 for p in raw)  # the raw weights moved freely...
    for W in weights(model):  # ...while every effective W(k) keeps ||W||_F = c
        assert math.isclose(float(torch.linalg.norm(W.detach())), c, rel_tol=1e-5)


def _expansion(graph, c):
    model = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 32, lipschitz_c=c, seed=0)
    _, sig = trace(model, graph.x, model.operator(graph), graph.y, graph.train_mask)
    grad_ratio = mu(sig.G[1]) / mu(sig.G[-1])  # mu(G(1)) / mu(G(L))
    repr_ratio = float(sig.X[-1].norm() / sig.X[0].norm())  # ||X(L)||_F / ||X(0)||_F
    return grad_ratio, repr_ratio


def test_residual_gcn_expands_without_normalisation_and_not_with_c1(graph):
    g_none, x_none = _expansion(graph, None)
    g_c1, x_c1 = _expansion(graph, 1.0)
    # 32 residual layers, Glorot init: gradient similarity and representation norm grow by orders of magnitude
    assert g_none > 100 and x_none > 1000
    # with W <- 1 * W/||W||_F both stay within one order of magnitude
    assert g_c1 < 10 and x_c1 < 10


def test_c_equal_to_glorot_frobenius_norm_changes_nothing_at_init(graph):
    # a 16x16 Glorot-uniform matrix has ||W||_F^2 = 16*16 * 2/(16+16) = 16, so c = 4 rescales by about 1
    g_none, _ = _expansion(graph, None)
    g_c4, _ = _expansion(graph, 4.0)
    assert 0.1 < g_c4 / g_none < 10


def test_gat_divergence_is_recorded_not_raised(graph):
    model = models.build(gradients.model_name("res_gat"), 16, 16, 2, 16, seed=0)
    h = fit(model, graph, epochs=20, lr=1e6, measures=("mu",), signals=("X", "G"), device="cpu", progress=False)
    assert h.diverged and h.diverged_at is not None and h.diverged_at <= 20
    assert bool(h.epochs["diverged"].iloc[-1]) and math.isnan(h.epochs["loss"].iloc[-1])
    summary, _ = gradients.run(graph, "res_gat", 16, epochs=20, lr=1e6, record_every=5, device="cpu", progress=False)
    assert summary["diverged"] and summary["diverged_at"] == h.diverged_at


# ----------------------------------------------------------------------------- residual readings (chapter 07)
@pytest.mark.parametrize("activation,alpha", [("relu", 1.0), ("relu", 0.125), ("tanh", 1.0)])
def test_scaled_or_bounded_residual_layer_keeps_its_lipschitz_bound(graph, activation, alpha):
    # X -> X + alpha rho(P X W) with ||W||_2 <= ||W||_F = c, ||P||_2 <= 1 and 1-Lipschitz rho is (1 + alpha c)-Lipschitz
    c = 3.0
    model = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, lipschitz_c=c, activation=activation, branch_scale=alpha, seed=0)
    op, layer = model.operator(graph), model.layers[0]
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    with torch.no_grad():
        for _ in range(20):
            X, Y = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen)
            f = lambda Z: Z + alpha * model.rho(model._branch(layer, Z, op))  # noqa: E731
            worst = max(worst, float(torch.linalg.norm(f(X) - f(Y)) / torch.linalg.norm(X - Y)))
    assert worst <= 1 + alpha * c + 1e-5
    assert worst > 1.0  # the branch does something


def test_branch_scale_scales_the_branch_and_defaults_to_one(graph):
    m1 = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, seed=0)
    ma = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, branch_scale=0.25, seed=0)
    assert m1.branch_scale == 1.0
    from oversmoothing.models import Trace
    t1, ta = Trace(), Trace()
    op = m1.operator(graph)
    with torch.no_grad():
        m1(graph.x, op, t1), ma(graph.x, op, ta)
    X0 = t1.X[0]
    assert torch.allclose(ta.X[1] - X0, 0.25 * (t1.X[1] - X0), atol=1e-6)
    with pytest.raises(ValueError):
        models.build(gradients.model_name("res_gcn"), 16, 16, 2, 1, branch_scale=0.0)


def test_residual_mlp_is_the_residual_gcn_with_identity(graph):
    model = models.build(gradients.model_name("res_mlp"), 16, 16, 2, 3, seed=0)
    assert model.operator(graph) is None


def test_mean_field_growth_matches_the_residual_mlp_and_predicts_the_512_layer_overflow(graph):
    # ReLU branch: the positive mean of relu(h) turns x towards the all-ones direction and ||x|| then
    # grows by ~ 1 + c/sqrt(2 pi d) per layer
    d = 32
    for c in (1.0, 4.0):
        meas = gradients.init_scale(graph, "res_mlp", 64, hidden=d, lipschitz_c=c)["log10_growth"]
        pred = gradients.residual_growth(c, d, 64)[-1]
        assert abs(meas - pred) < 0.5, (c, meas, pred)
    # asymptotic slope per layer: the cosine a = m/sqrt(q) settles at the root a* of
    # 2k a^3 + (b^2/2) a^2 - 2k a - k^2 = 0 (b = c/sqrt(d), k = b/sqrt(2 pi)), then q'/q = 1 + 2 a* k + b^2/2
    g = gradients.residual_growth(4.0, 64, 512)
    slope = (g[-1] - g[-101]) / 100
    b = 4 / math.sqrt(64)
    k = b / math.sqrt(2 * math.pi)
    a = max(r.real for r in np.roots([2 * k, b * b / 2, -2 * k, -k * k]) if abs(r.imag) < 1e-12 and 0 < r.real <= 1)
    assert 0.85 < a < 0.95
    assert math.isclose(slope, 0.5 * math.log10(1 + 2 * a * k + b * b / 2), rel_tol=0.01)
    assert g[-1] > math.log10(np.finfo(np.float32).max)  # L = 512, d = 64, c = 4 overflows float32 ...
    assert gradients.residual_growth(4.0, 64, 512, activation="tanh")[-1] < 4  # ... a bounded (tanh) branch does not
    assert gradients.residual_growth(4.0, 64, 512, branch_scale=1 / math.sqrt(512))[-1] < 4  # nor alpha = 1/sqrt(L)


def test_c4_is_not_glorot_at_width_64(graph):
    # at d = 64 a Glorot matrix has ||W||_F ~ 8, so c = 4 halves every branch: at L = 64 it cuts the growth of
    # the representation (and the largest logit) by several decades
    none = gradients.init_scale(graph, "res_gcn", 64, hidden=64)
    c4 = gradients.init_scale(graph, "res_gcn", 64, hidden=64, lipschitz_c=4.0)
    assert none["log10_growth"] - c4["log10_growth"] > 3
    assert none["max_logit"] / c4["max_logit"] > 1e3


# ----------------------------------------------------------------------------- C11 statistics
def test_partial_spearman_on_constructed_data():
    rng = np.random.default_rng(0)
    n = 400
    z = rng.normal(size=n)
    y = z + 0.3 * rng.normal(size=n)
    only_via_z = z + 0.3 * rng.normal(size=n)      # knows y only through z
    adds = y + 0.3 * rng.normal(size=n)            # knows y beyond z
    df = pd.DataFrame(dict(y=y, z=z, a=only_via_z, b=adds))
    assert gradients.partial_spearman(df, "y", "a") > 0.8           # plain rho is high ...
    assert abs(gradients.partial_spearman(df, "y", "a", ["z"])) < 0.15  # ... but a adds nothing to z
    assert gradients.partial_spearman(df, "y", "b", ["z"]) > 0.5
    # one given column: the textbook formula on the ranks
    r = df.rank().corr()
    expect = (r.y.a - r.y.z * r.a.z) / math.sqrt((1 - r.y.z ** 2) * (1 - r.a.z ** 2))
    assert math.isclose(gradients.partial_spearman(df, "y", "a", ["z"]), expect, abs_tol=1e-9)
    cmp = gradients.compare_predictors(df, "y", "b", "a", given=["z"], n_boot=200)
    assert cmp["diff"] > 0.4 and cmp["ci_low"] > 0


def test_spearman_within_strata_removes_a_between_strata_confound():
    # across strata x and y both rise (a confound); within each stratum y falls with x
    rng = np.random.default_rng(1)
    rows = []
    for s in range(4):
        x = rng.normal(size=50)
        rows.append(pd.DataFrame(dict(s=s, x=10 * s + x, y=10 * s - x + 0.2 * rng.normal(size=50))))
    df = pd.concat(rows, ignore_index=True)
    assert gradients.partial_spearman(df, "y", "x") > 0.5
    assert gradients.partial_spearman(df, "y", "x", strata=["s"]) < -0.9


# ----------------------------------------------------------------------------- the two forms of the normalisation
from oversmoothing.models import FrobeniusNormalisation  # noqa: E402


def _W(scale, seed=0):
    return scale * torch.randn(6, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_hard_form_has_norm_c_and_soft_form_is_the_identity_below_c_and_the_hard_form_above():
    c = 3.0   # not a power of two: c W/||W|| and W/(||W||/c) then round differently, and only the first is the hard form
    hard, soft = FrobeniusNormalisation(c, "hard"), FrobeniusNormalisation(c, "soft")
    for scale in (0.01, 0.2, 3.0, 7.0):
        W = _W(scale)
        n = float(torch.linalg.norm(W))
        assert float(torch.linalg.norm(hard(W))) == pytest.approx(c, rel=1e-12)
        if n < c:
            assert torch.equal(soft(W), W)                               # below c: untouched
        else:
            assert torch.equal(soft(W), hard(W))                         # above c: the very same numbers
        assert float(torch.linalg.norm(soft(W))) == pytest.approx(min(n, c), rel=1e-12)
    with pytest.raises(ValueError):
        FrobeniusNormalisation(1.0, "medium")
    with pytest.raises(ValueError):
        FrobeniusNormalisation(0.0)


@pytest.mark.parametrize("mode,scale", [("hard", 0.1), ("hard", 3.0), ("soft", 0.1), ("soft", 3.0)])
def test_gradients_flow_to_the_raw_weight_in_both_forms(mode, scale):
    c = 2.0
    W = _W(scale).requires_grad_(True)
    G = _W(1.0, seed=1)
    (FrobeniusNormalisation(c, mode)(W) * G).sum().backward()
    n = float(torch.linalg.norm(W.detach()))
    if mode == "soft" and n < c:
        assert torch.equal(W.grad, G)                                    # the identity's gradient, exactly
    else:                                                                # d(cW/||W||) = c/||W|| (I - u u^T) G
        u = W.detach() / n
        expect = c / n * (G - (u * G).sum() * u)
        assert torch.allclose(W.grad, expect, atol=1e-12)
        assert abs(float((W.grad * W.detach()).sum())) < 1e-9            # orthogonal to W: only the direction learns


def test_the_smallest_raw_norm_ratio_is_recorded():
    f = FrobeniusNormalisation(2.0, "soft")
    assert f.min_ratio == math.inf
    f(_W(1.0)); f(_W(0.1)); f(_W(5.0))
    assert f.min_ratio == pytest.approx(float(torch.linalg.norm(_W(0.1))) / 2.0)
    f.reset_min()
    assert f.min_ratio == math.inf


def _train(graph, mode, c, arch="res_gcn", epochs=25):
    model = models.build(gradients.model_name(arch), 16, 16, 2, 6, lipschitz_c=c, seed=0, lipschitz_mode=mode)
    h = fit(model, graph, epochs=epochs, lr=0.01, weight_decay=5e-4, measures=("mu",), signals=("X", "G"),
            record_every=5, device="cpu", progress=False)
    return model, h


@pytest.mark.parametrize("arch", ["res_gcn", "res_gat"])
def test_soft_and_hard_runs_are_the_same_run_bit_for_bit_while_the_raw_norms_stay_above_c(graph, arch):
    """What chapter 07's soft_twins relies on: above c the soft form performs the hard form's operations."""
    (mh, hh), (ms, hs) = _train(graph, "hard", 1.3, arch), _train(graph, "soft", 1.3, arch)
    assert min(n.min_ratio for n in models.normalisations(mh)) > 1
    assert hh.epochs.drop(columns="seconds").equals(hs.epochs.drop(columns="seconds"))
    assert hh.layers.equals(hs.layers)
    assert all(torch.equal(p, q) for p, q in zip(mh.parameters(), ms.parameters()))


def test_soft_and_hard_runs_differ_once_the_raw_norm_is_below_c(graph):
    (mh, hh), (ms, hs) = _train(graph, "hard", 50.0), _train(graph, "soft", 50.0)
    assert max(n.min_ratio for n in models.normalisations(ms)) < 1
    assert not hh.epochs.loss.equals(hs.epochs.loss)


def test_the_gat_normalises_the_attentions_source_map(graph):
    """PyG 2.8's single-head GATConv has one shared map `lin` (no lin_src/lin_dst): the map the authors' code
    normalises under its older name lin_src.  The layer computes with the normalised weight."""
    from torch_geometric.nn import GATConv

    c = 1.5
    model = models.build(gradients.model_name("res_gat"), 16, 16, 2, 2, lipschitz_c=c, seed=0)
    conv = model.layers[0]
    assert conv.lin_src is None and conv.lin_dst is None
    assert models.attention_source_map(conv) is conv.lin
    assert "weight" in conv.lin.parametrizations
    assert float(torch.linalg.norm(conv.lin.weight.detach())) == pytest.approx(c, rel=1e-5)
    plain = GATConv(16, 16, heads=1, bias=False, add_self_loops=False)
    with torch.no_grad():
        plain.lin.weight.copy_(conv.lin.weight)
        plain.att_src.copy_(conv.att_src)
        plain.att_dst.copy_(conv.att_dst)
    ei = model.operator(graph)
    X = torch.randn(graph.num_nodes, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(conv(X, ei), plain(X, ei), atol=1e-6)
    bip = GATConv((16, 8), 16, heads=1)   # a bipartite layer keeps separate maps: the source one is lin_src
    assert models.attention_source_map(bip) is bip.lin_src


def test_the_authors_block_is_pygs_gcnconv_with_its_bias_and_their_encoder_and_decoder(graph):
    from torch_geometric.nn import GCNConv

    model = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 2, seed=0, branch_bias=True, encoder="linear_relu",
                         decoder="mlp", lipschitz_c=4.0, lipschitz_mode="soft")
    layer = model.layers[0]
    with torch.no_grad():
        layer.bias.copy_(torch.linspace(-1, 1, 16))
    conv = GCNConv(16, 16)
    with torch.no_grad():
        conv.lin.weight.copy_(layer.weight.t())
        conv.bias.copy_(layer.bias)
    X = torch.randn(graph.num_nodes, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model._branch(layer, X, model.operator(graph))
        assert torch.allclose(ours, conv(X, graph.edge_index), atol=1e-5)
    from oversmoothing.models import Trace
    t = Trace()
    with torch.no_grad():
        logits = model(graph.x, model.operator(graph), t)
    assert bool((t.X[0] >= 0).all())                         # Linear -> ReLU encoder
    assert model.decoder_hidden.weight.shape == (16, 16) and logits.shape == (graph.num_nodes, 2)
    # normalised: the blocks' weights only, never a bias, the encoder or the decoder
    assert len(models.normalisations(model)) == 2
    assert not hasattr(model.encoder, "parametrizations") and not hasattr(model.decoder, "parametrizations")
    with pytest.raises(ValueError):
        models.build(gradients.model_name("res_gcn"), 16, 16, 2, 2, encoder="conv")


# ----------------------------------------------------------------------------- early stopping, data, soft twins
def test_early_stopping_ends_the_run_patience_epochs_after_the_best_validation_accuracy(graph):
    model = models.build(gradients.model_name("res_gcn"), 16, 16, 2, 3, seed=0)
    h = fit(model, graph, epochs=300, lr=0.05, patience=5, measures=("mu",), signals=("G",), record_every=100,
            device="cpu", progress=False)
    ep = h.epochs
    stop, best = int(ep.epoch.iloc[-1]), int(ep.loc[ep.val_acc.idxmax(), "epoch"])
    assert h.meta["stopped_at"] == stop < 300 and stop - best == 5
    assert ep.val_acc.iloc[best + 1:].max() <= ep.val_acc.max()
    assert stop in set(h.layers.epoch)                       # the last epoch is recorded (traced)
    full = fit(models.build(gradients.model_name("res_gcn"), 16, 16, 2, 3, seed=0), graph, epochs=stop + 10, lr=0.05,
               measures=(), signals=(), device="cpu", progress=False)
    assert full.meta["stopped_at"] is None and len(full.epochs) == stop + 11
    # up to the stop, early stopping changes nothing
    assert ep.loss.to_numpy().tolist() == full.epochs.loss.iloc[:stop + 1].to_numpy().tolist()
    with pytest.raises(ValueError):
        fit(model, graph, epochs=3, patience=0, device="cpu", progress=False)


def test_row_normalised_features_and_random_splits():
    g = graphs.csbm(100, 2, 5.0, dim=6, seed=1)
    g.x[3] = 0.0
    g.x[4] = g.x.min()                                        # becomes a zero row after the shift
    r = datasets.row_normalise(g)
    sums = r.x.sum(1)
    big = (g.x - g.x.min()).sum(1) >= 1
    assert torch.allclose(sums[big], torch.ones(int(big.sum())))
    assert bool((r.x >= 0).all()) and float(r.x[4].abs().sum()) == 0.0
    s0, s0b, s1 = datasets.random_split(g, 0), datasets.random_split(g, 0), datasets.random_split(g, 1)
    masks = torch.stack([s0.train_mask, s0.val_mask, s0.test_mask]).int()
    assert bool((masks.sum(0) == 1).all())                    # disjoint and covering
    assert [int(m.sum()) for m in (s0.train_mask, s0.val_mask, s0.test_mask)] == [60, 20, 20]
    assert torch.equal(s0.train_mask, s0b.train_mask) and not torch.equal(s0.train_mask, s1.train_mask)
    assert s0.meta["split"] == "random 0.6/0.2/0.2, seed 0"


def test_the_authors_data_handling():
    assert gradients.authors_data("cora", 2, seed=10) == dict(split=None, normalise_features=True, random_split_seed=12)
    assert gradients.authors_data("chameleon_filtered", 2) == dict(split=2)
    cfg = gradients.authors_config("citeseer", "res_gcn", 64, 4.0, 1, seed=0, epochs=50)
    assert cfg["hidden"] == 256 and cfg["lr"] == 0.005 and cfg["weight_decay"] == 0.0 and cfg["patience"] == 100
    assert cfg["epochs"] == cfg["record_every"] == 50 and cfg["lipschitz_mode"] == "soft" and cfg["seed"] == 1
    assert cfg["encoder"] == "linear_relu" and cfg["decoder"] == "mlp" and cfg["branch_bias"] is True


def test_soft_twins_reuse_the_hard_run_only_where_the_raw_norms_stayed_above_c(graph, monkeypatch, tmp_path):
    monkeypatch.setenv("OVERSMOOTHING_GRID_CACHE", "off")
    common = dict(epochs=6, record_every=6, device="cpu", hidden=16)
    configs = [dict(arch="res_gcn", depth=3, lipschitz_c=None, seed=0), dict(arch="res_gcn", depth=3, lipschitz_c=1.0, seed=0),
               dict(arch="res_gcn", depth=3, lipschitz_c=40.0, seed=0)]
    done = pd.DataFrame([gradients.run(graph, **cfg, **common)[0] for cfg in configs])
    calls = []
    monkeypatch.setattr(gradients, "sweep", lambda todo, **kw: calls.append(todo) or pd.DataFrame(
        [gradients.run(graph, **{k: v for k, v in t.items() if k != "dataset"}, **kw)[0] for t in todo]))
    twins = gradients.soft_twins(configs, done, **common)
    assert list(twins.c) == [1.0, 40.0] and list(twins.coincides) == [True, False]
    assert len(calls) == 1 and [t["lipschitz_c"] for t in calls[0]] == [40.0]   # only the twin below c is trained
    assert twins.lipschitz_mode.tolist() == ["soft", "soft"]
    trained, _ = gradients.run(graph, **{**configs[1], "lipschitz_mode": "soft"}, **common)
    assert twins.train_acc.iloc[0] == trained["train_acc"] and twins.final_loss.iloc[0] == trained["final_loss"]


def test_chapters_06_and_07_label_the_equations_they_cite():
    import json
    import re
    from pathlib import Path

    book = Path(__file__).resolve().parents[1] / "book"
    for name, want in (("06_gradient_similarity", {"eq-mu", "eq-gradient-similarity"}),
                       ("07_lipschitz_remedies", {"eq-lipschitz-hard", "eq-lipschitz-soft", "eq-mean-field", "eq-growth"})):
        text = "".join("".join(c["source"]) for c in json.loads((book / f"{name}.ipynb").read_text())["cells"]
                       if c["cell_type"] == "markdown")
        labels = set(re.findall(r"\$\$\s*\((eq-[\w-]+)\)", text))
        refs = set(re.findall(r"\{eq\}`([^`]+)`", text))
        assert want <= labels and want <= refs, name

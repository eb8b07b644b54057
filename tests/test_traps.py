"""Chapter 04/05 facts at a small size: the last-layer trap of deep GNNs (Theorem 3), Proposition 2's
MLP counter-example, the chance levels (Corollary 2) and the helpers of `oversmoothing.experiments.traps`
(the verdicts on them, C4-C7, are tested in test_judges_traps.py)."""
import math

import pandas as pd
import pytest
import torch

from oversmoothing.models import build, orthogonal_init_
from oversmoothing.experiments.traps import (chance_loss, component_decay, last_layer_summary, offset_graph, proposition2, run_table,
                                             s_grid, solve_last_layer_, solve_last_layers, train_grid, trap_status)
from oversmoothing.graphs import csbm
from oversmoothing.models import weights


@pytest.fixture(scope="module")
def graph():
    # dense CSBM: lambda ~ 0.3, so s*lambda = 0.51 < 1 with s = 1.7
    return csbm(200, 2, 140, dim=8, mean_sep=2.0, lam=0.3, seed=0)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_last_layer_trap_gnn_not_mlp(graph, loss):
    """After W(L) alone is solved, every layer of a deep GNN has ~0 gradient; the same-depth MLP does not."""
    depth = 20  # plain softplus: with a zero-offset activation at this small size the least-squares W(L) is huge
    gnn = build("paper1.gnn", graph.num_features, 8, 2, depth, activation="softplus", s=1.7, seed=0)
    mlp = build("paper1.mlp", graph.num_features, 8, 2, depth, activation="softplus", s=1.7, seed=0)
    sg, ig = solve_last_layer_(gnn, graph, loss=loss, device="cpu")
    sm, im = solve_last_layer_(mlp, graph, loss=loss, device="cpu")
    assert ig["last_grad"] < 1e-5 and im["last_grad"] < 1e-3  # the last layer is stationary in both
    assert max(float(torch.linalg.norm(d)) for d in sg.dW) < 1e-4
    assert max(float(torch.linalg.norm(d)) for d in sm.dW[:-1]) > 1e-2
    # the trapped GNN sits at chance level (Corollary 2); the MLP does better
    assert ig["loss"] >= 0.95 * chance_loss(graph, loss)
    assert im["loss"] < 0.95 * chance_loss(graph, loss)


def test_proposition2_gradients():
    p = proposition2(target_grad=1.0).set_index(["model", "layer"]).grad
    assert p[("MLP", 1)] == pytest.approx(1.0, abs=1e-12)
    assert abs(p[("MLP", 2)]) < 1e-12
    assert abs(p[("GNN", 1)]) < 1e-12 and abs(p[("GNN", 2)]) < 1e-12


def test_chance_levels(graph):
    p1 = float(graph.y[graph.train_mask].float().mean())
    assert chance_loss(graph, "ce") == pytest.approx(-(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1)))
    assert chance_loss(graph, "mse") == pytest.approx(p1 * (1 - p1))  # (1 - p0^2 - p1^2)/2
    with pytest.raises(ValueError):
        chance_loss(graph, "hinge")


def test_orthogonal_init_sets_every_singular_value():
    m = build("paper1.gnn", 5, 7, 3, 4, s=1.3, seed=0)
    for W in weights(m):
        sv = torch.linalg.svdvals(W.detach())
        assert torch.allclose(sv, torch.full_like(sv, 1.3), atol=1e-5)
    a = orthogonal_init_(build("paper1.mlp", 5, 7, 3, 2, seed=0), 1.0, seed=1).layers[0].weight.detach().clone()
    b = orthogonal_init_(build("paper1.mlp", 5, 7, 3, 2, seed=0), 1.0, seed=1).layers[0].weight.detach()
    assert torch.equal(a, b)


def _run(losses, grads, acc=None):
    """A synthetic run: one loss per epoch, one list of per-layer gradient norms per epoch."""
    ep = pd.DataFrame({"epoch": range(len(losses)), "loss": losses,
                       "train_acc": acc if acc is not None else [0.5] * len(losses)})
    la = pd.DataFrame([dict(epoch=e, layer=k + 1, grad_norm=g) for e, gs in enumerate(grads) for k, g in enumerate(gs)])
    return ep, la


def test_trap_status_rejects_a_run_whose_loss_falls_after_the_collapse():
    chance = math.log(2)
    small = [1e-4, 1e-4]
    ep, la = _run([0.69, 0.69, 0.69, 0.30, 0.05], [[1.0, 1.0], small, small, small, small],
                  acc=[0.5, 0.5, 0.5, 0.9, 1.0])
    assert trap_status(ep, la, chance, 1e-2) == ("trained", None)  # the collapse at epoch 1 was not a trap
    ep2 = ep.assign(train_acc=0.6)
    assert trap_status(ep2, la, chance, 1e-2) == ("not trapped", None)
    # the same gradients with the loss kept at chance: trapped from epoch 1
    ep3, la3 = _run([0.69, 0.693, 0.693, 0.693, 0.693], [[1.0, 1.0], small, small, small, small])
    assert trap_status(ep3, la3, chance, 1e-2) == ("trapped", 1)
    # one layer with a large gradient is not a collapse
    ep4, la4 = _run([0.69] * 3, [[1.0, 1.0], [1e-4, 0.5], [1e-4, 0.5]])
    assert trap_status(ep4, la4, chance, 1e-2) == ("not trapped", None)


def test_trap_status_diverged_or_exploding_runs_did_not_train():
    chance = math.log(2)
    ep, la = _run([0.69, 0.69, float("nan")], [[1e-4, 1e-4], [1e-4, 1e-4], [float("nan"), 1e-4]])
    assert trap_status(ep, la, chance, 1e-2) == ("did not train", 2)
    ep, la = _run([0.69, 0.69, 0.69], [[1.0, 1.0], [1.0, float("inf")], [1.0, 1.0]])
    assert trap_status(ep, la, chance, 1e-2) == ("did not train", 1)
    ep, la = _run([1e3, 1e5, 1e7], [[1e3, 1e3]] * 3)  # exploding: never "not trapped"
    assert trap_status(ep, la, chance, 1e-2)[0] == "did not train"


def test_trap_status_recognises_a_real_trap_and_the_mlp_control(graph):
    """A 20-layer GNN on a dense CSBM (lambda ~ 0.3) is trapped at chance level; the same MLP (P = I) trains."""
    EP, LA = train_grid(graph, [dict(kind=k, depth=20, seed=0) for k in ("GNN", "MLP")], hidden=8, s=1.7, epochs=40,
                        device="cpu", progress=False)
    t = run_table(EP, LA, ["kind", "seed"], chance_loss(graph), 1e-2).set_index("kind")
    assert t.loc["GNN", "status"] == "trapped"
    assert t.loc["GNN", "final_loss"] >= 0.95 * chance_loss(graph) and t.loc["GNN", "tail_change"] < 1e-3
    assert t.loc["MLP", "status"] == "trained"


def test_run_table_orders_the_models():
    rows = [(m, sd) for sd in (1, 0) for m in ("MLP L=4", "GNN L=4", "GNN L=2")]
    EP = pd.concat([_run([0.69, 0.69], [[1.0], [1.0]])[0].assign(model=m, seed=sd, test_acc=0.5) for m, sd in rows], ignore_index=True)
    LA = pd.concat([_run([0.69, 0.69], [[1.0], [1.0]])[1].assign(model=m, seed=sd) for m, sd in rows], ignore_index=True)
    t = run_table(EP, LA, ["model", "seed"], math.log(2), 1e-2, order=["GNN L=2", "GNN L=4", "MLP L=4"])
    assert list(zip(t.model, t.seed)) == [("GNN L=2", 0), ("GNN L=2", 1), ("GNN L=4", 0), ("GNN L=4", 1), ("MLP L=4", 0), ("MLP L=4", 1)]


def test_s_grid_trains_the_gnn_and_mlp_from_every_s(graph):
    EP, LA, T = s_grid({0: graph}, [0.5, 1.5], 3, 1e-2, hidden=8, epochs=3, device="cpu", progress=False)
    assert sorted(zip(T.kind, T.s)) == [("GNN", 0.5), ("GNN", 1.5), ("MLP", 0.5), ("MLP", 1.5)]
    assert set(T.graph) == {0} and set(T.seed) == {0} and set(T.status) <= {"trapped", "trained", "did not train", "not trapped"}
    assert T.chance.tolist() == pytest.approx([chance_loss(graph)] * 4)
    assert set(EP.s) == set(LA.s) == {0.5, 1.5} and EP.epoch.max() == 3  # the epochs' losses and the final state


def test_solve_last_layers_and_their_summary(graph):
    """One row per (loss, model, layer); the summary splits the last layer's gradient from the others'."""
    t = solve_last_layers(graph, 20, seed=0, label="g", hidden=8, activation="softplus", s=1.7, losses=("mse",), device="cpu")
    assert len(t) == 2 * 20 and set(t.model) == {"GNN L=20", "MLP L=20"} and set(t.graph) == {"g"}
    S = last_layer_summary(t).set_index("model")
    assert S.loc["GNN L=20", "max_grad_other_layers"] < 1e-4 < 1e-2 < S.loc["MLP L=20", "max_grad_other_layers"]
    assert S.loc["GNN L=20", "grad_last_layer"] < 1e-5
    assert S.loc["GNN L=20", "ratio"] == pytest.approx(S.loc["GNN L=20", "loss"] / chance_loss(graph, "mse"))
    assert S.loc["GNN L=20", "ratio"] >= 0.95


def test_offset_is_kept_whole_by_propagation(graph):
    """P 1 = 1: the constant part of P^k X stays whole while the class part shrinks (the offset mechanism)."""
    d = component_decay(offset_graph(graph, 1.0), 4)
    n = graph.num_nodes
    assert d["constant"].to_numpy() == pytest.approx([math.sqrt(n)] * 5, rel=1e-6)  # ||1 u^T||_F for |u| = 1
    lam = graph.meta["lambda"]
    assert d["class"].iloc[4] < 1.5 * lam ** 4 * d["class"].iloc[0]
    assert component_decay(graph, 2)["constant"].max() < 1e-4 * math.sqrt(n)  # the standard CSBM is centred


# ---- the init and gradient-descent readings of chapter 04 (issue 22) -------------------------------------------

def test_initial_spectral_norm_is_s_for_the_orthogonal_init_and_the_largest_norm_otherwise():
    from oversmoothing.experiments.traps import initial_spectral_norm
    from oversmoothing.measures import spectral_norm
    assert initial_spectral_norm(6, 16, 2, 5, init="orthogonal", s=1.3, seed=0) == pytest.approx(1.3, rel=1e-5)
    he = initial_spectral_norm(6, 16, 2, 5, init="he", seed=1)
    m = build("paper1.mlp", 6, 16, 2, 5, init="he", seed=1)
    assert he == pytest.approx(max(spectral_norm(W) for W in weights(m)))
    # He with gain 2 on a 16 x 16 Gaussian: ||W||_2 ~ 2 (1 + 1) = 4 (Marchenko-Pastur edge), far above Glorot's gain 1
    assert 2.5 < he < 5.5 and initial_spectral_norm(6, 16, 2, 5, init="glorot", seed=1) < he / 1.5


def test_largest_stable_lr_and_status_cell():
    from oversmoothing.experiments.traps import largest_stable_lr, status_cell
    t = pd.DataFrame(dict(model="MLP L=40", lr=[0.03, 0.1, 0.3, 1.0], status=["trapped", "trained", "did not train", "did not train"],
                          final_loss=[0.68, 0.0115, float("nan"), float("nan")]))
    assert largest_stable_lr(t) == 0.1
    assert math.isnan(largest_stable_lr(t[t.lr > 0.2]))
    assert largest_stable_lr(t.assign(status="trained")) == 1.0
    assert status_cell(t[t.lr <= 0.1], "MLP L=40") == "trapped 1/2, trained 1/2 (loss 0.0115-0.68)"
    assert status_cell(t[t.lr > 0.2], "MLP L=40") == "did not train 2/2 (loss diverged)"
    assert status_cell(t, "GNN L=5") == "-"


def test_init_setting_names_the_gain_and_the_scale():
    from oversmoothing.experiments.traps import INIT_NAMES, init_setting
    from oversmoothing.models import INITS
    assert set(INIT_NAMES) == set(INITS)
    assert init_setting("he", "centred_softplus") == ("He/Kaiming normal N(0, g^2 / d_in) with centred_softplus's gain g = 2, "
                                                       "output layer g = 1")
    assert "gain g = 1.41" in init_setting("glorot_gain", "relu")
    assert init_setting("orthogonal", "tanh", 1.7) == "every singular value of W(k) equal to s = 1.7"
    assert init_setting("gaussian", "tanh").startswith("Gaussian W(k) rescaled to ||W(k)||_2 = s (")


def test_sgd_runs_go_through_train_grid_tagged_by_their_learning_rate(graph):
    """train_grid passes optimizer="sgd" to fit and tags each run with its own lr (the lr grid of chapter 04)."""
    EP, LA = train_grid(graph, [dict(kind="MLP", depth=3, seed=0, lr=v) for v in (0.1, 1e4)], hidden=8, s=1.7, epochs=4,
                        optimizer="sgd", device="cpu")
    t = run_table(EP, LA, ["model", "seed", "lr"], chance_loss(graph), 0.01)
    assert sorted(t.lr) == [0.1, 1e4]
    assert t.set_index("lr").status[1e4] == "did not train"  # GD at a huge step diverges
    from oversmoothing.experiments.traps import largest_stable_lr
    assert largest_stable_lr(t) == 0.1


def test_figure1_draws_every_layer_with_the_output_layer_outlined(graph):
    import matplotlib
    matplotlib.use("Agg")
    from oversmoothing.figures import figure1
    runs = [dict(kind=k, depth=L, seed=0) for k in ("GNN", "MLP") for L in (2, 5)]
    EP, LA = train_grid(graph, runs, hidden=8, s=1.7, epochs=3, device="cpu")
    fig = figure1(LA, EP, ["GNN L=5", "MLP L=5"], ["GNN L=2", "GNN L=5", "MLP L=2", "MLP L=5"], chance=0.69, near_zero=0.01)
    grads = [ax for ax in fig.axes if ax.get_title() in ("GNN L=5", "MLP L=5")]
    assert len(grads) == 2
    for ax in grads:
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
        assert len(lines) == 5 + 1  # one per layer, plus the black outline of the output layer
        black = [ln for ln in lines if ln.get_color() == "black"]
        assert len(black) == 1 and black[0].get_linewidth() > max(ln.get_linewidth() for ln in lines if ln not in black)
    loss = next(ax for ax in fig.axes if ax.get_title() == "training loss")
    assert loss.get_ylabel() == "training loss" and len(loss.get_lines()) == 4 + 1  # four networks and the chance line
    assert any(ax.get_ylabel().startswith("layer $k$") for ax in fig.axes)  # the colour bar

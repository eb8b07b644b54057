"""Initialisation, Lipschitz normalisation, training records and bad input."""
import math

import pandas as pd
import pytest
import torch

from oversmoothing import graphs as G
from oversmoothing import measures as ms
from oversmoothing import models as M
from oversmoothing import training as T


@pytest.fixture(scope="module")
def graph():
    return G.csbm(n=100, classes=2, avg_degree=8, ratio=3.0, dim=6, mean_sep=2.0, seed=0)


@pytest.mark.parametrize("s", [0.3, 1.0, 6.25])
def test_spectral_init_sets_every_spectral_norm_to_s(graph, s):
    model = M.VanillaGNN(graph.num_features, 16, 2, 5, s=s, seed=0)
    for W in M.weights(model):
        assert ms.spectral_norm(W) == pytest.approx(s, rel=1e-5)


@pytest.mark.parametrize("make", [
    lambda g: M.VanillaGNN(g.num_features, 16, 2, 4, lipschitz_c=4.0, seed=0),
    lambda g: M.ResidualGCN(g.num_features, 16, 2, 4, lipschitz_c=4.0, seed=0),
    lambda g: M.ResidualGAT(g.num_features, 16, 2, 3, lipschitz_c=4.0, seed=0),
])
def test_lipschitz_normalisation_holds_before_and_during_training(graph, make):
    model = make(graph)
    T.fit(model, graph, epochs=5, lr=0.05, progress=False, measures=())
    for W in M.weights(model):
        fro = float(torch.linalg.norm(W.detach()))
        assert fro == pytest.approx(4.0, rel=1e-5)
        assert ms.spectral_norm(W) <= fro + 1e-5


def test_lipschitz_parametrisation_leaves_raw_weights_to_the_optimiser(graph):
    model = M.ResidualGCN(graph.num_features, 16, 2, 2, lipschitz_c=4.0, seed=0)
    layer = model.layers[0]
    raw = layer.parametrizations.weight.original
    assert raw.requires_grad and not torch.allclose(torch.linalg.norm(raw), torch.tensor(4.0))


def test_same_seed_same_numbers_different_seed_different_numbers(graph):
    def run(seed):
        model = M.VanillaGNN(graph.num_features, 8, 2, 3, seed=seed)
        return T.fit(model, graph, epochs=5, seed=seed, progress=False).epochs["loss"].tolist()

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_fit_history_is_tidy(graph):
    model = M.VanillaGNN(graph.num_features, 8, 2, 4, seed=0)
    h = T.fit(model, graph, epochs=6, record_every=3, measures=("E", "rel_mu"), signals=("X", "B", "G"), progress=False)
    assert list(h.epochs.epoch) == list(range(7))
    assert set(h.layers.epoch) == {0, 3, 6}
    assert set(h.layers.layer) == set(range(5))
    for col in ("grad_norm", "w_spec", "E_X", "E_B", "rel_mu_X", "rel_mu_G"):
        assert col in h.layers
    at0 = h.layers[h.layers.epoch == 0].set_index("layer")
    assert math.isnan(at0.loc[0, "E_B"]) and at0.loc[1:, "E_B"].gt(0).all()
    assert not h.diverged and h.meta["device"] == "cpu"


def test_training_only_the_last_layer_still_records_every_gradient(graph):
    model = M.VanillaGNN(graph.num_features, 8, 2, 4, seed=0)
    first = model.layers[0].weight.detach().clone()
    h = T.fit(model, graph, epochs=3, params=model.layers[-1].parameters(), progress=False)
    assert torch.equal(first, model.layers[0].weight.detach())
    assert h.layers[(h.layers.epoch == 3) & (h.layers.layer == 1)].grad_norm.item() > 0


def test_divergence_is_recorded_not_raised(graph):
    model = M.VanillaGNN(graph.num_features, 8, 2, 6, activation="relu", propagation="identity", s=50.0, seed=0)
    h = T.fit(model, graph, epochs=50, lr=1e3, optimizer="sgd", progress=False)
    assert h.diverged and h.epochs.diverged.iloc[-1]
    assert h.diverged_at == h.epochs.epoch.iloc[-1] < 50


@pytest.mark.parametrize("call,match", [
    (lambda g: M.VanillaGNN(6, 8, 2, -1), "depth must be an integer >= 1, got -1"),
    (lambda g: M.VanillaGNN(6, 8, 2, 0), "depth must be an integer >= 1, got 0"),
    (lambda g: M.ResidualGCN(6, 8, 2, 2.5), "depth must be an integer"),
    (lambda g: M.VanillaGNN(6, 8, 2, 3, activation="sigmoidish"), "unknown activation 'sigmoidish'.*softplus"),
    (lambda g: M.ResidualGCN(6, 8, 2, 3, lipschitz_c=0), "c must be > 0, got 0"),
    (lambda g: M.ResidualGAT(6, 8, 2, 3, lipschitz_c=-1.0), "c must be > 0"),
    (lambda g: M.VanillaGNN(6, 8, 2, 3, s=0.0), "spectral norm s must be > 0"),
    (lambda g: T.fit(M.VanillaGNN(6, 8, 2, 2), g, epochs=-3), "epochs must be a non-negative integer"),
    (lambda g: T.fit(M.VanillaGNN(6, 8, 2, 2), g, optimizer="lbfgs"), "unknown optimizer"),
    (lambda g: T.fit(M.VanillaGNN(6, 8, 2, 2), g, measures=("energy",)), "unknown measure"),
    (lambda g: T.fit(M.VanillaGNN(6, 8, 2, 2), g, signals=("Q",)), "unknown signal"),
    (lambda g: T.resolve_device("tpu"), "unknown device 'tpu'"),
])
def test_bad_input_gives_a_clear_error(graph, call, match):
    with pytest.raises(ValueError, match=match):
        call(graph)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_a_clear_error(graph):
    with pytest.raises(ValueError, match="device='cuda'.*no CUDA GPU.*'auto' or 'cpu'"):
        T.resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        T.fit(M.VanillaGNN(6, 8, 2, 2), graph, device="cuda", progress=False)


def test_auto_device_resolves_to_an_available_one():
    assert T.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_centred_softplus_is_zero_at_zero_and_one_lipschitz():
    from oversmoothing.models import ACTIVATIONS
    f = ACTIVATIONS["centred_softplus"]
    x = torch.linspace(-20, 20, 2001, dtype=torch.float64)
    assert float(f(torch.zeros(1))) == pytest.approx(0.0, abs=1e-7)
    assert float((f(x[1:]) - f(x[:-1])).abs().max() / (x[1] - x[0])) <= 1.0
    assert torch.allclose(f(x) - ACTIVATIONS["softplus"](x), torch.full_like(x, -0.6931471805599453))


@pytest.mark.parametrize("name, kw", [("paper2.res_gcn", dict(lipschitz_c=2.0)), ("remedy.gcn", dict(dropout=0.5))])
def test_untraced_epochs_change_nothing_that_is_recorded(graph, name, kw):
    """fit traces only the recorded epochs (the others are plain steps): the rows recorded every 3 epochs are those
    of recording every epoch, digit for digit, and so is the whole epochs table (dropout masks included)."""
    def run(every):
        m = M.build(name, graph.num_features, 8, graph.num_classes, 3, seed=0, **kw)
        return T.fit(m, graph, epochs=7, measures=("E", "rel_mu"), signals=("X", "B"), record_every=every,
                     device="cpu", progress=False)
    every, some = run(1), run(3)
    cols = [c for c in every.epochs.columns if c != "seconds"]
    pd.testing.assert_frame_equal(every.epochs[cols], some.epochs[cols], check_exact=True)
    kept = every.layers[every.layers.epoch.isin([0, 3, 6, 7])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, some.layers.reset_index(drop=True), check_exact=True)


def test_a_divergence_between_recorded_epochs_is_recorded_traced(graph):
    m = M.build("paper2.res_gcn", graph.num_features, 8, graph.num_classes, 3, seed=1)
    h = T.fit(m, graph, epochs=6, lr=1e9, measures=("mu",), signals=("X",), record_every=4, device="cpu", progress=False)
    assert h.diverged_at is not None and h.diverged_at % 4 != 0
    assert set(h.layers.epoch) == {0, h.diverged_at} and "mu_X" in h.layers


# ---- the standard inits with the activation's gain (chapter 04's init readings) -------------------------------

def _second_moment_ratio(activation, gain, q, d=1024, n=512, centre=False, seed=0):
    """E[(rho(X) W)^2] / E[X^2] through one wide random layer, X ~ N(0, q), W ~ N(0, gain^2 / d) (He, fan-in);
    ``centre``: the fluctuation of rho(X) around its mean (softplus' log 2 offset removed)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64) * math.sqrt(q)
    W = torch.randn(d, d, generator=gen, dtype=torch.float64) * (gain / math.sqrt(d))
    R = M.ACTIVATIONS[activation](X)
    if centre:
        R = R - R.mean()
    return float((R @ W).pow(2).mean() / X.pow(2).mean())


@pytest.mark.parametrize("activation, q, centre, tol", [
    ("relu", 1.0, False, 0.03), ("relu", 9.0, False, 0.03),          # positively homogeneous: exact at every scale
    ("centred_softplus", 1e-2, False, 0.03),                          # slope 1/2 at 0: gain 2 for a small signal
    ("softplus", 1e-2, True, 0.03),                                    # the same, around its log 2 offset
    ("elu", 1e-3, False, 0.03),                                        # slope 1 at 0: gain 1
    ("tanh", 1.0, False, 0.10),                                        # PyTorch's 5/3: within 10 % at unit variance
])
def test_activation_gain_preserves_the_second_moment_through_a_wide_random_layer(activation, q, centre, tol):
    g = M.activation_gain(activation)
    assert _second_moment_ratio(activation, g, q, centre=centre) == pytest.approx(1.0, abs=tol)
    # without the gain the second moment is not kept (the test can fail): gain 1 loses rho'(0)^2 per layer
    if g != 1.0:
        assert abs(_second_moment_ratio(activation, 1.0, q, centre=centre) - 1.0) > 0.3


def test_gains_match_torch_calculate_gain_where_torch_has_one():
    assert M.activation_gain("relu") == pytest.approx(torch.nn.init.calculate_gain("relu"))
    assert M.activation_gain("tanh") == pytest.approx(torch.nn.init.calculate_gain("tanh"))
    assert M.activation_gain("centred_softplus") == 2.0
    with pytest.raises(ValueError, match="no gain for activation 'swish'"):
        M.activation_gain("swish")


@pytest.mark.parametrize("init", ["he", "glorot_gain"])
@pytest.mark.parametrize("activation", ["centred_softplus", "relu"])
def test_registry_inits_use_the_activations_gain_and_leave_the_output_layer_at_gain_1(init, activation):
    m = M.build("paper1.gnn", 64, 256, 8, 4, activation=activation, init=init, seed=0)
    g = M.activation_gain(activation)
    for k, W in enumerate(M.weights(m)):
        d_in, d_out = W.shape
        gain = 1.0 if k == 3 else g
        expected = gain ** 2 / d_in if init == "he" else gain ** 2 * 2 / (d_in + d_out)
        assert float(W.detach().double().var()) == pytest.approx(expected, rel=0.1)
        if init == "glorot_gain":  # uniform on [-a, a]
            assert float(W.detach().abs().max()) <= gain * math.sqrt(6 / (d_in + d_out)) + 1e-7
    again = M.build("paper1.gnn", 64, 256, 8, 4, activation=activation, init=init, seed=0)
    other = M.build("paper1.gnn", 64, 256, 8, 4, activation=activation, init=init, seed=1)
    assert torch.equal(M.weights(m)[1], M.weights(again)[1]) and not torch.equal(M.weights(m)[1], M.weights(other)[1])
    with pytest.raises(ValueError, match="init must be one of"):
        M.build("paper1.gnn", 4, 8, 2, 3, init="lecun")


def test_fit_with_sgd_is_plain_full_batch_gradient_descent(graph):
    """optimizer="sgd": W <- W - lr dL/dW on the full training set (no momentum, no weight decay)."""
    from oversmoothing.signals import trace
    m = M.build("paper1.gnn", graph.num_features, 8, 2, 3, init="he", seed=0)
    before = [W.detach().clone() for W in M.weights(m)]
    _, sig = trace(m, graph.x, m.operator(graph), graph.y, graph.train_mask)
    grads = [d.detach().clone() for d in sig.dW]
    m.zero_grad(set_to_none=True)
    T.fit(m, graph, epochs=1, lr=0.3, optimizer="sgd", measures=(), device="cpu", progress=False)
    for W0, dW, W1 in zip(before, grads, M.weights(m)):
        assert torch.allclose(W1.detach(), W0 - 0.3 * dW, atol=1e-6)


def test_fit_trains_with_the_fixed_thread_count_whatever_the_caller_set_and_restores_it(graph):
    """Thread counts change the order of torch's parallel reductions, hence the rounding, and a chaotic run turns
    rounding into another result (chapter 07's tanh-branch run: train accuracy 0.89 at 1 thread, 0.98 at 2). fit
    trains with devices.TRAINING_THREADS on the CPU, so a run's numbers do not depend on where it runs."""
    from oversmoothing.devices import TRAINING_THREADS, cpu_threads

    seen = []

    class Spy(M.VanillaGNN):
        def forward(self, x, op, trace=None):
            seen.append(torch.get_num_threads())
            return super().forward(x, op, trace)

    histories = []
    for n in (1, 2):
        with cpu_threads(n):
            histories.append(T.fit(Spy(graph.num_features, 8, 2, 3, seed=0), graph, epochs=4, progress=False))
            assert torch.get_num_threads() == n  # the caller's setting is back
    assert set(seen) == {TRAINING_THREADS}
    assert [h.meta["threads"] for h in histories] == [TRAINING_THREADS] * 2
    cols = ["epoch", "loss", "train_acc", "val_acc", "test_acc", "diverged"]
    pd.testing.assert_frame_equal(histories[0].epochs[cols], histories[1].epochs[cols])
    pd.testing.assert_frame_equal(histories[0].layers, histories[1].layers)


def test_cpu_threads_restores_the_setting_after_an_error():
    from oversmoothing.devices import cpu_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), cpu_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before

"""The classic remedies for oversmoothing, built from PyG's layers, behind the library's one interface.

Every model here, like those of :mod:`oversmoothing.models`, has

  * ``op = model.operator(graph, device)``: what its layers propagate with.  For the GCN-type
    models it is the cached normalised adjacency P = D~^{-1/2}(A+I)D~^{-1/2} as PyG's
    ``(edge_index, edge_weight)`` pair (computed once with ``gcn_norm``); for DropEdge, GAT and
    TransformerConv it is the raw ``edge_index`` (DropEdge re-normalises after dropping edges);
  * ``logits = model(x, op, trace=None)``;
  * ``model.layers``: the L propagation layers; when ``trace`` is a :class:`~oversmoothing.models.Trace`
    layer k appends its pre-activation H(k) to ``trace.H`` and its output X(k) to ``trace.X``
    (``X[0]`` = the input of the first propagation layer), so :func:`oversmoothing.signals.trace`
    and :func:`oversmoothing.training.fit` work on them unchanged.

"Depth" is always the number L of propagation layers (message-passing steps).  The models:

=================  ===========================================================================
``gcn``            plain GCN (Kipf & Welling) generalised to depth L: GCNConv, ReLU, dropout;
                   the last GCNConv outputs the logits.  L = 2 is the textbook 2-layer GCN.
``residual``       :class:`oversmoothing.models.ResidualGCN`: X(k) = X(k-1) + relu(P X(k-1) W(k)).
``lipschitz``      the same with paper 2's Lipschitz normalisation W <- 4 W/||W||_F.
``jknet``          GCNConv+ReLU stack whose L outputs are concatenated by PyG's
                   ``JumpingKnowledge('cat')`` and read out by a linear layer (Xu et al. 2018).
``dropedge``       plain GCN whose edges are dropped at random (``dropout_edge``, p = 0.3) at every
                   training forward pass, then re-normalised (Rong et al. 2020).
``pairnorm``       plain GCN with PyG's ``PairNorm`` after every hidden GCNConv (Zhao & Akoglu 2020).
``appnp``          2-layer MLP, then L steps of PyG's APPNP personalised-PageRank propagation,
                   X(k) = (1-alpha) P X(k-1) + alpha X(0), alpha = 0.1 (Klicpera et al. 2019).
                   Its propagation layers have no weights.
``gcnii``          PyG's GCN2Conv (initial residual alpha = 0.1 and identity mapping
                   beta_k = log(theta/k + 1), theta = 0.5), linear encoder/decoder (Chen et al. 2020).
``gat``            plain GAT: PyG's single-head GATConv, ELU, dropout (no residual).
``transformer``    plain graph transformer: PyG's single-head TransformerConv (attention over
                   neighbours, with its root/skip weight), ReLU, dropout.
=================  ===========================================================================

A layer whose main weight is not ``.weight`` (``models.Dense``) or ``.lin.weight`` (PyG convs) says
where it is with the class attribute ``main_weight = (dotted attribute path, transposed)`` (``None``:
no weight); see :func:`oversmoothing.models.main_weight`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .graphs import Graph
from .models import ResidualGCN, Trace, _check_depth, _seeded, input_dropout, record_input, record_layer

__all__ = ["REMEDIES", "build", "PlainGCN", "JKNet", "DropEdgeGCN", "PairNormGCN", "APPNPNet", "GCNII",
           "PlainGAT", "GraphTransformer", "gcn_operator"]


def gcn_operator(edge_index: torch.Tensor, num_nodes: int, dtype=torch.float32):
    """PyG's cached GCN normalisation: (edge_index with self-loops, edge_weight) of D~^{-1/2}(A+I)D~^{-1/2}."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    return gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True, dtype=dtype)


# ----------------------------------------------------------------------------- GCN family
class _GCNStack(nn.Module):
    """L GCNConv layers (normalize=False: they take the cached (edge_index, edge_weight))."""

    def __init__(self, in_dim, hidden, out_dim, depth, dropout, seed, last_is_output=True):
        super().__init__()
        _check_depth(depth)
        from torch_geometric.nn import GCNConv

        self.depth, self.dropout = depth, dropout
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim if last_is_output else hidden]
        with _seeded(seed):
            self.layers = nn.ModuleList(GCNConv(a, b, normalize=False) for a, b in zip(dims[:-1], dims[1:]))
            self._extra(hidden, out_dim)

    def _extra(self, hidden, out_dim):
        pass

    def operator(self, graph: Graph, device=None):
        return gcn_operator(graph.edge_index.to(device), graph.num_nodes)

    def _op(self, op, x):
        return op

    def _hidden(self, H):
        """What follows a hidden GCNConv: ReLU (PairNorm inserts its normalisation first)."""
        return F.relu(H)

    def forward(self, x, op, trace: Trace | None = None):
        ei, ew = self._op(op, x)
        X = x
        record_input(trace, X)
        for k, layer in enumerate(self.layers, start=1):
            H = layer(input_dropout(X, self.dropout, self.training), ei, ew)
            X = self._hidden(H) if k < self.depth else H
            record_layer(trace, H, X)
        return X


class PlainGCN(_GCNStack):
    """H(k) = P X(k-1) W(k) + b(k) (PyG GCNConv), X(k) = relu(H(k)) for k < L, logits = H(L);
    dropout on every layer's input."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed)


class DropEdgeGCN(_GCNStack):
    """Plain GCN with DropEdge: during training each forward pass keeps a random subset of the
    undirected edges (``torch_geometric.utils.dropout_edge``, probability ``p_edge`` of dropping),
    shared by all layers, and re-normalises P on the kept edges; evaluation uses the whole graph."""

    stochastic = True

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, p_edge: float = 0.3,
                 seed: int | None = None):
        self.p_edge = p_edge
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed)

    def operator(self, graph: Graph, device=None):
        return graph.edge_index.to(device)

    def _op(self, edge_index, x):
        from torch_geometric.utils import dropout_edge

        if self.training and self.p_edge > 0:
            edge_index, _ = dropout_edge(edge_index, p=self.p_edge, force_undirected=True, training=True)
        return gcn_operator(edge_index, x.shape[0], x.dtype)


class PairNormGCN(_GCNStack):
    """Plain GCN with PyG's PairNorm after every hidden layer: X(k) = relu(PairNorm(H(k))), k < L.
    PairNorm centres the rows and rescales them to a fixed total norm (``scale``)."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, scale: float = 1.0,
                 seed: int | None = None):
        from torch_geometric.nn import PairNorm

        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed)
        self.norm = PairNorm(scale=scale)

    def _hidden(self, H):
        return F.relu(self.norm(H))


class JKNet(_GCNStack):
    """JumpingKnowledge network: X(k) = relu(GCNConv_k(X(k-1))) for k = 1..L, then
    logits = Linear(JumpingKnowledge('cat')([X(1), ..., X(L)]))."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, mode: str = "cat",
                 seed: int | None = None):
        self.mode = mode
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed, last_is_output=False)

    def _extra(self, hidden, out_dim):
        from torch_geometric.nn import JumpingKnowledge

        self.jk = JumpingKnowledge(self.mode)
        width = hidden * self.depth if self.mode == "cat" else hidden
        self.decoder = nn.Linear(width, out_dim)

    def forward(self, x, op, trace: Trace | None = None):
        ei, ew = op
        X, outs = x, []
        record_input(trace, X)
        for layer in self.layers:
            H = layer(input_dropout(X, self.dropout, self.training), ei, ew)
            X = F.relu(H)
            outs.append(X)
            record_layer(trace, H, X)
        return self.decoder(F.dropout(self.jk(outs), self.dropout, self.training))


# ----------------------------------------------------------------------------- decoupled / initial residual
def _appnp_step_class():
    from torch_geometric.nn import APPNP

    class APPNPStep(APPNP):
        """One step of PyG's APPNP propagation, X(k) = (1 - alpha) P X(k-1) + alpha X(0),
        using APPNP's own message passing (weightless: ``main_weight = None``)."""

        main_weight = None

        def __init__(self, alpha):
            super().__init__(K=1, alpha=alpha, normalize=False)

        def forward(self, x, x0, edge_index, edge_weight):  # noqa: D401 - one step with the true X(0)
            out = self.propagate(edge_index, x=x, edge_weight=edge_weight)
            return out * (1 - self.alpha) + self.alpha * x0

    return APPNPStep


class APPNPNet(nn.Module):
    """APPNP (predict, then propagate): X(0) = MLP(x) (Linear-ReLU-Linear, dropout), then L
    propagation steps X(k) = (1-alpha) P X(k-1) + alpha X(0); logits = X(L).  H(k) = X(k)
    (no activation).  The propagation has no weights: its layers' gradient norms are undefined."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, alpha: float = 0.1, dropout: float = 0.5,
                 seed: int | None = None):
        super().__init__()
        _check_depth(depth)
        self.depth, self.dropout, self.alpha = depth, dropout, alpha
        step = _appnp_step_class()
        with _seeded(seed):
            self.lin1, self.lin2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)
            self.layers = nn.ModuleList(step(alpha) for _ in range(depth))

    def operator(self, graph: Graph, device=None):
        return gcn_operator(graph.edge_index.to(device), graph.num_nodes)

    def forward(self, x, op, trace: Trace | None = None):
        ei, ew = op
        h = F.relu(self.lin1(input_dropout(x, self.dropout, self.training)))
        X0 = self.lin2(F.dropout(h, self.dropout, self.training))
        X = X0
        record_input(trace, X)
        for layer in self.layers:
            X = layer(X, X0, ei, ew)
            record_layer(trace, X, X)
        return X


def _gcn2_class():
    from torch_geometric.nn import GCN2Conv

    class GCN2Layer(GCN2Conv):
        """PyG's GCN2Conv; its main weight is ``weight1`` ([in, out], used as X W)."""

        main_weight = ("weight1", False)

    return GCN2Layer


class GCNII(nn.Module):
    """GCNII: X(0) = relu(Linear(x)); H(k) = GCN2Conv_k(X(k-1), X(0)) =
    ((1-alpha) P X(k-1) + alpha X(0)) ((1-beta_k) I + beta_k W(k)),  beta_k = log(theta/k + 1);
    X(k) = relu(H(k)); logits = Linear(X(L))."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, alpha: float = 0.1, theta: float = 0.5,
                 dropout: float = 0.5, seed: int | None = None):
        super().__init__()
        _check_depth(depth)
        self.depth, self.dropout = depth, dropout
        layer = _gcn2_class()
        with _seeded(seed):
            self.encoder = nn.Linear(in_dim, hidden)
            self.layers = nn.ModuleList(layer(hidden, alpha, theta, k, normalize=False)
                                        for k in range(1, depth + 1))
            self.decoder = nn.Linear(hidden, out_dim)

    def operator(self, graph: Graph, device=None):
        return gcn_operator(graph.edge_index.to(device), graph.num_nodes)

    def forward(self, x, op, trace: Trace | None = None):
        ei, ew = op
        X0 = F.relu(self.encoder(input_dropout(x, self.dropout, self.training)))
        X = X0
        record_input(trace, X)
        for layer in self.layers:
            H = layer(F.dropout(X, self.dropout, self.training), X0, ei, ew)
            X = F.relu(H)
            record_layer(trace, H, X)
        return self.decoder(F.dropout(X, self.dropout, self.training))


# ----------------------------------------------------------------------------- attention
class _EdgeIndexStack(nn.Module):
    """Plain (non-residual) stack of L message-passing layers on the raw edge_index;
    hidden layers followed by ``act``, the last one outputs the logits."""

    def __init__(self, in_dim, hidden, out_dim, depth, dropout, act, seed):
        super().__init__()
        _check_depth(depth)
        self.depth, self.dropout, self.act = depth, dropout, act
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
        with _seeded(seed):
            self.layers = nn.ModuleList(self._layer(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def operator(self, graph: Graph, device=None):
        return graph.edge_index.to(device)

    def forward(self, x, edge_index, trace: Trace | None = None):
        X = x
        record_input(trace, X)
        for k, layer in enumerate(self.layers, start=1):
            H = layer(input_dropout(X, self.dropout, self.training), edge_index)
            X = self.act(H) if k < self.depth else H
            record_layer(trace, H, X)
        return X


class PlainGAT(_EdgeIndexStack):
    """Plain GAT (Velickovic et al. 2018): L single-head PyG GATConv layers (self-loops added by
    GATConv), ELU between them, dropout on every layer's input; no residual connections."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, F.elu, seed)

    @staticmethod
    def _layer(a, b):
        from torch_geometric.nn import GATConv

        return GATConv(a, b, heads=1)


def _transformer_class():
    from torch_geometric.nn import TransformerConv

    class TransformerLayer(TransformerConv):
        """PyG's TransformerConv; the main weight W(k) is the value projection (the map that the
        attention-weighted average P_att X W_V propagates, the analogue of W in P X W)."""

        main_weight = ("lin_value.weight", True)

    return TransformerLayer


class GraphTransformer(_EdgeIndexStack):
    """Plain graph-transformer stack: L single-head PyG TransformerConv layers
    H(k) = softmax-attention over neighbours of (X W_V) + X W_skip, ReLU between layers, dropout."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, F.relu, seed)

    @staticmethod
    def _layer(a, b):
        return _transformer_class()(a, b, heads=1, root_weight=True)


# ----------------------------------------------------------------------------- factory
def _residual(in_dim, hidden, out_dim, depth, *, dropout=0.5, seed=None):
    return ResidualGCN(in_dim, hidden, out_dim, depth, activation="relu", dropout=dropout, seed=seed)


def _lipschitz(in_dim, hidden, out_dim, depth, *, dropout=0.5, seed=None):
    return ResidualGCN(in_dim, hidden, out_dim, depth, activation="relu", dropout=dropout, lipschitz_c=4,
                       seed=seed)


REMEDIES = {
    "gcn": PlainGCN,
    "residual": _residual,
    "jknet": JKNet,
    "dropedge": DropEdgeGCN,
    "pairnorm": PairNormGCN,
    "appnp": APPNPNet,
    "gcnii": GCNII,
    "lipschitz": _lipschitz,
    "gat": PlainGAT,
    "transformer": GraphTransformer,
}


def build(name: str, in_dim: int, hidden: int, out_dim: int, depth: int, *, seed: int | None = None, **kw):
    """The model ``name`` (a key of :data:`REMEDIES`) with L = ``depth`` propagation layers.
    Extra keyword arguments (e.g. ``dropout``, ``alpha``) go to its constructor."""
    try:
        make = REMEDIES[name]
    except KeyError:
        raise ValueError(f"unknown remedy {name!r}; choose one of {sorted(REMEDIES)}") from None
    return make(in_dim, hidden, out_dim, depth, seed=seed, **kw)


# ----------------------------------------------------------------------------- depth sweep
SWEEP_MEASURES = ("E", "rel_mu", "rel_mu_gcn")


def middle_layer(depth: int) -> int:
    """The layer k = max(1, L // 2) whose backward signal E(B(k)) the sweep reports (paper 1: the
    middle layers, far from both the input and the output, are where B(k) oversmooths most)."""
    return max(1, depth // 2)


def summarise(history, name: str, depth: int, seed: int) -> dict:
    """One row of a depth sweep from a :class:`~oversmoothing.training.History` recorded with
    measures :data:`SWEEP_MEASURES` and signals ("X", "B"): accuracy (test at the best validation epoch,
    and final), forward E(X(L)), backward E(B(k_mid)) and the median over layers of
    ||dL/dW(k)||_F, each at initialisation (``_init``) and at the last recorded epoch (``_end``)."""
    import numpy as np

    ep, lay = history.epochs, history.layers
    best = ep.loc[ep["val_acc"].idxmax()] if ep["val_acc"].notna().any() else ep.iloc[-1]
    k_mid = middle_layer(depth)
    row = dict(model=name, depth=depth, seed=seed, test_acc=float(best["test_acc"]),
               best_epoch=int(best["epoch"]), final_test_acc=float(ep["test_acc"].iloc[-1]),
               train_acc=float(ep["train_acc"].iloc[-1]), diverged=history.diverged,
               seconds=float(ep["seconds"].sum()))
    for tag, e in (("init", lay["epoch"].min()), ("end", lay["epoch"].max())):
        at = lay[lay["epoch"] == e].set_index("layer")
        for m in SWEEP_MEASURES:
            row[f"{m}_X_L_{tag}"] = float(at.loc[depth, f"{m}_X"])
            row[f"{m}_X_0_{tag}"] = float(at.loc[0, f"{m}_X"])
            row[f"{m}_B_mid_{tag}"] = float(at.loc[k_mid, f"{m}_B"])
        g = at.loc[1:, "grad_norm"].to_numpy(dtype=float)
        row[f"grad_norm_{tag}"] = float(np.nanmedian(g)) if np.isfinite(g).any() else float("nan")
    return row


def depth_sweep(graph, names, depths, seeds=(0,), *, hidden: int = 16, epochs: int = 100, lr: float = 0.01,
                weight_decay: float = 5e-4, record_every: int | None = None, device="auto",
                progress: bool | None = None, model_kw: dict | None = None):
    """Train every model of ``names`` at every depth and seed on ``graph`` (Adam, cross-entropy,
    full batch) and record forward/backward diagnostics.

    Returns ``(summary, layers)``: ``summary`` has one row per run (see :func:`summarise`);
    ``layers`` is the concatenation of the runs' ``History.layers`` with columns model, depth,
    seed added.  ``record_every`` defaults to ``epochs`` (record at initialisation and at the end)."""
    import pandas as pd

    from .training import fit

    model_kw = model_kw or {}
    rows, layer_frames = [], []
    for name in names:
        for depth in depths:
            for seed in seeds:
                model = build(name, graph.num_features, hidden, graph.num_classes, depth, seed=seed,
                              **model_kw.get(name, {}))
                hist = fit(model, graph, epochs=epochs, lr=lr, weight_decay=weight_decay, measures=SWEEP_MEASURES,
                           signals=("X", "B"), record_every=record_every or max(epochs, 1), device=device,
                           seed=seed, progress=progress, desc=f"{name} L={depth} seed={seed}")
                rows.append(summarise(hist, name, depth, seed))
                layer_frames.append(hist.layers.assign(model=name, depth=depth, seed=seed))
    return pd.DataFrame(rows), pd.concat(layer_frames, ignore_index=True)

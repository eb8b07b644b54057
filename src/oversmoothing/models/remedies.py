"""The classic remedies for oversmoothing, built from PyG's layers, behind the library's one interface.

Every model here, like those of :mod:`oversmoothing.models`, has

  * ``op = model.operator(graph, device)``: what its layers propagate with.  For the GCN-stack models
    (plain GCN, its MLP twin, JK-Net, PairNorm) it is the GCN operator P = D~^{-1/2}(A+I)D~^{-1/2} as a
    sparse CSR tensor (``None``, P = I, for the MLP twin): their GCNConv layers compute GCNConv's formula
    P (X W) + b with the product by P done by :func:`oversmoothing.models.propagate` (same numbers as
    PyG's message passing, ~2x faster on CPU); for APPNP and GCNII it is PyG's cached ``(edge_index,
    edge_weight)`` pair (``gcn_norm``); for DropEdge, GAT and TransformerConv the raw ``edge_index``
    (DropEdge re-normalises after dropping edges);
  * ``logits = model(x, op, trace=None)``;
  * ``model.layers``: the L propagation layers; when ``trace`` is a :class:`~oversmoothing.models.Trace`
    layer k appends its pre-activation H(k) to ``trace.H`` and its output X(k) to ``trace.X``
    (``X[0]`` = the input of the first propagation layer), so :func:`oversmoothing.signals.trace`
    and :func:`oversmoothing.training.fit` work on them unchanged.

A first layer applied to a constant, mostly-zero input (Cora's bag of words) runs as a sparse product
(:func:`input_linear`, Kipf & Welling's sparse dropout); hidden dropout is :func:`dropout` (the law of
``F.dropout``, drawn faster).

"Depth" is always the number L of propagation layers (message-passing steps).  The models:

=================  ===========================================================================
``gcn``            plain GCN (Kipf & Welling) generalised to depth L: GCNConv, ReLU, dropout;
                   the last GCNConv outputs the logits.  L = 2 is the textbook 2-layer GCN.
``residual``       :class:`oversmoothing.models.ResidualGCN`: X(k) = X(k-1) + relu(P X(k-1) W(k)).
``lipschitz``      the same with paper 2's Lipschitz normalisation W <- c W/||W||_F; c from
                   :func:`lipschitz_c_rule` (c^2 L/d = 1) unless ``c=`` is given (the paper's c = 4).
``mlp``            the plain GCN's P = I twin (same layers, init and dropout): the control.
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

from ..graphs import Graph, gcn_edges
from ..graphs import propagation as _propagation
from .attention import GATLayer
from .layers import (Trace, _check_depth, _seeded, check_propagation, dropout, graph_edges, input_dropout, input_linear,
                     propagate, record_input, record_layer)

__all__ = ["PlainGCN", "MLP", "JKNet", "DropEdgeGCN", "PairNormGCN", "APPNPNet", "GCNII", "PlainGAT",
           "GraphTransformer", "lipschitz_c_rule"]



# ----------------------------------------------------------------------------- GCN family
class _GCNStack(nn.Module):
    """L PyG GCNConv layers.  Layer k computes GCNConv's own formula H(k) = P (X(k-1) W(k)) + b(k) with its
    weights (``layer.lin``, ``layer.bias``), the product by P running through the library's symmetric
    sparse operator (:func:`oversmoothing.models.propagate`: P^T = P in the backward, ~2x faster on CPU
    than message passing, same numbers: tests/test_remedies.py); the first layer's product with a
    mostly-zero input runs sparse (:func:`input_linear`).  ``propagation="identity"``: P = I (the MLP twin)."""

    propagation = "gcn"

    def __init__(self, in_dim, hidden, out_dim, depth, dropout, seed, last_is_output=True, propagation=None):
        super().__init__()
        _check_depth(depth)
        if propagation is not None:
            self.propagation = check_propagation(propagation, ("gcn", "identity"))
        from torch_geometric.nn import GCNConv

        self.depth, self.dropout = depth, dropout
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim if last_is_output else hidden]
        with _seeded(seed):
            self.layers = nn.ModuleList(GCNConv(a, b, normalize=False) for a, b in zip(dims[:-1], dims[1:]))
            self._extra(hidden, out_dim)

    def _extra(self, hidden, out_dim):
        pass

    def operator(self, graph: Graph, device=None):
        """P = D~^{-1/2}(A+I)D~^{-1/2} as a sparse CSR tensor (``None``, i.e. P = I, for the MLP twin)."""
        return None if self.propagation == "identity" else _propagation(graph, "gcn", device)

    def _op(self, op, x):
        return op

    def _propagate(self, layer, op, Z):
        return propagate(op, Z)

    def _conv(self, k, layer, X, op):
        """H(k) = P dropout(X(k-1)) W(k) + b(k)."""
        if k == 1:
            Z = input_linear(X, layer.lin.weight, self.dropout, self.training)
        else:
            Z = layer.lin(dropout(X, self.dropout, self.training))
        H = self._propagate(layer, op, Z)
        return H if layer.bias is None else H + layer.bias

    def _hidden(self, H):
        """What follows a hidden GCNConv: ReLU (PairNorm inserts its normalisation first)."""
        return F.relu(H)

    def forward(self, x, op, trace: Trace | None = None):
        op = self._op(op, x)
        X = x
        record_input(trace, X)
        for k, layer in enumerate(self.layers, start=1):
            H = self._conv(k, layer, X, op)
            X = self._hidden(H) if k < self.depth else H
            record_layer(trace, H, X)
        return X


class PlainGCN(_GCNStack):
    """H(k) = P X(k-1) W(k) + b(k) (PyG GCNConv), X(k) = relu(H(k)) for k < L, logits = H(L);
    dropout on every layer's input."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None,
                 propagation: str | None = None):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed, propagation=propagation)


class MLP(PlainGCN):
    """The plain GCN's P = I twin: the same layers, initialisation, dropout and depth without the graph,
    H(k) = X(k-1) W(k) + b(k) (the control for "deep GCNs fail because of the graph")."""

    propagation = "identity"


class DropEdgeGCN(_GCNStack):
    """Plain GCN with DropEdge: during training each forward pass keeps a random subset of the
    undirected edges (``torch_geometric.utils.dropout_edge``, probability ``p_edge`` of dropping),
    shared by all layers, and re-normalises P on the kept edges (PyG's ``gcn_norm`` and GCNConv's
    message passing); evaluation uses the whole graph."""

    stochastic = True

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, p_edge: float = 0.3,
                 seed: int | None = None, propagation: str | None = None):
        self.p_edge = p_edge
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed, propagation=propagation)

    def operator(self, graph: Graph, device=None):
        return graph_edges(self, graph, device)

    def _op(self, edge_index, x):
        from torch_geometric.utils import dropout_edge

        if self.training and self.p_edge > 0:
            edge_index, _ = dropout_edge(edge_index, p=self.p_edge, force_undirected=True, training=True)
        return gcn_edges(edge_index, x.shape[0], x.dtype)

    def _propagate(self, layer, op, Z):
        ei, ew = op
        return layer.propagate(ei, x=Z, edge_weight=ew)


class PairNormGCN(_GCNStack):
    """Plain GCN with PyG's PairNorm after every hidden layer: X(k) = relu(PairNorm(H(k))), k < L.
    PairNorm centres the rows and rescales them to a fixed total norm (``scale``)."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, scale: float = 1.0,
                 seed: int | None = None, propagation: str | None = None):
        from torch_geometric.nn import PairNorm

        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed, propagation=propagation)
        self.norm = PairNorm(scale=scale)

    def _hidden(self, H):
        return F.relu(self.norm(H))


class JKNet(_GCNStack):
    """JumpingKnowledge network: X(k) = relu(GCNConv_k(X(k-1))) for k = 1..L, then
    logits = Linear(JumpingKnowledge('cat')([X(1), ..., X(L)]))."""

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, mode: str = "cat",
                 seed: int | None = None, propagation: str | None = None):
        self.mode = mode
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed, last_is_output=False, propagation=propagation)

    def _extra(self, hidden, out_dim):
        from torch_geometric.nn import JumpingKnowledge

        self.jk = JumpingKnowledge(self.mode)
        width = hidden * self.depth if self.mode == "cat" else hidden
        self.decoder = nn.Linear(width, out_dim)

    def forward(self, x, op, trace: Trace | None = None):
        X, outs = x, []
        record_input(trace, X)
        for k, layer in enumerate(self.layers, start=1):
            H = self._conv(k, layer, X, op)
            X = F.relu(H)
            outs.append(X)
            record_layer(trace, H, X)
        return self.decoder(dropout(self.jk(outs), self.dropout, self.training))


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

    propagation = "gcn"

    def __init__(self, in_dim, hidden, out_dim, depth, *, alpha: float = 0.1, dropout: float = 0.5,
                 seed: int | None = None, propagation: str = "gcn"):
        super().__init__()
        _check_depth(depth)
        self.depth, self.dropout, self.alpha = depth, dropout, alpha
        self.propagation = check_propagation(propagation, ("gcn", "identity"))
        step = _appnp_step_class()
        with _seeded(seed):
            self.lin1, self.lin2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)
            self.layers = nn.ModuleList(step(alpha) for _ in range(depth))

    def operator(self, graph: Graph, device=None):
        return gcn_edges(graph_edges(self, graph, device), graph.num_nodes)

    def forward(self, x, op, trace: Trace | None = None):
        ei, ew = op
        h = F.relu(input_linear(x, self.lin1.weight, self.dropout, self.training) + self.lin1.bias)
        X0 = self.lin2(dropout(h, self.dropout, self.training))
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
                 dropout: float = 0.5, seed: int | None = None, propagation: str = "gcn"):
        super().__init__()
        _check_depth(depth)
        self.depth, self.dropout = depth, dropout
        self.propagation = check_propagation(propagation, ("gcn", "identity"))
        layer = _gcn2_class()
        with _seeded(seed):
            self.encoder = nn.Linear(in_dim, hidden)
            self.layers = nn.ModuleList(layer(hidden, alpha, theta, k, normalize=False)
                                        for k in range(1, depth + 1))
            self.decoder = nn.Linear(hidden, out_dim)

    def operator(self, graph: Graph, device=None):
        return gcn_edges(graph_edges(self, graph, device), graph.num_nodes)

    def forward(self, x, op, trace: Trace | None = None):
        ei, ew = op
        X0 = F.relu(input_linear(x, self.encoder.weight, self.dropout, self.training) + self.encoder.bias)
        X = X0
        record_input(trace, X)
        for layer in self.layers:
            H = layer(dropout(X, self.dropout, self.training), X0, ei, ew)
            X = F.relu(H)
            record_layer(trace, H, X)
        return self.decoder(dropout(X, self.dropout, self.training))


# ----------------------------------------------------------------------------- attention
class _EdgeIndexStack(nn.Module):
    """Plain (non-residual) stack of L message-passing layers on the raw edge_index;
    hidden layers followed by ``act``, the last one outputs the logits."""

    def __init__(self, in_dim, hidden, out_dim, depth, dropout, act, seed, propagation="graph"):
        super().__init__()
        _check_depth(depth)
        self.depth, self.dropout, self.act = depth, dropout, act
        self.propagation = check_propagation(propagation, ("graph", "identity"))
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
        with _seeded(seed):
            self.layers = nn.ModuleList(self._layer(a, b) for a, b in zip(dims[:-1], dims[1:]))

    self_loops = False  # GATConv's self-loops, added once by operator()

    def operator(self, graph: Graph, device=None):
        return graph_edges(self, graph, device, self_loops=self.self_loops)

    def forward(self, x, edge_index, trace: Trace | None = None):
        X = x
        record_input(trace, X)
        for k, layer in enumerate(self.layers, start=1):
            H = layer(input_dropout(X, self.dropout, self.training) if k == 1 else dropout(X, self.dropout, self.training),
                      edge_index)
            X = self.act(H) if k < self.depth else H
            record_layer(trace, H, X)
        return X


class PlainGAT(_EdgeIndexStack):
    """Plain GAT (Velickovic et al. 2018): L single-head PyG GATConv layers (self-loops added by
    GATConv), ELU between them, dropout on every layer's input; no residual connections."""

    self_loops = True

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None,
                 propagation: str = "graph"):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, F.elu, seed, propagation)

    @staticmethod
    def _layer(a, b):
        return GATLayer(a, b, heads=1, add_self_loops=False)  # the self-loops come with operator()


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

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None,
                 propagation: str = "graph"):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, F.relu, seed, propagation)

    @staticmethod
    def _layer(a, b):
        return _transformer_class()(a, b, heads=1, root_weight=True)


# ----------------------------------------------------------------------------- factory
def lipschitz_c_rule(depth: int, width: int, budget: float = 1.0) -> float:
    """The Lipschitz bound c with c^2 L / d = ``budget``:  c = sqrt(budget * d / L).

    With W(k) <- c W(k)/||W(k)||_F a d x d weight has singular values of order c/sqrt(d), so a residual
    layer X + relu(P X W) adds a branch of relative squared size about c^2/(2d) (relu keeps half, ||P|| <= 1)
    and L layers grow the signal by about exp(c^2 L / (2d)).  Depth therefore needs c^2 L / d of order 1;
    c = 4 at d = 16, L = 32 gives c^2 L/d = 32, a growth of ~e^16, i.e. no normalisation at all."""
    if depth < 1 or width < 1 or budget <= 0:
        raise ValueError(f"need depth >= 1, width >= 1, budget > 0; got {depth}, {width}, {budget}")
    return float((budget * width / depth) ** 0.5)

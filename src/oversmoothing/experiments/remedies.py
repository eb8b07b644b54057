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

from ..graphs import Graph
from ..graphs import propagation as _propagation
from ..models import (ResidualGCN, Trace, _check_depth, _seeded, input_dropout, propagate, record_input,
                     record_layer)

__all__ = ["REMEDIES", "build", "PlainGCN", "MLP", "JKNet", "DropEdgeGCN", "PairNormGCN", "APPNPNet", "GCNII",
           "PlainGAT", "GraphTransformer", "gcn_operator", "input_linear", "lipschitz_c_rule",
           "choose_by_validation", "gcn_power_limit", "depth_run", "depth_sweep", "summarise"]


def gcn_operator(edge_index: torch.Tensor, num_nodes: int, dtype=torch.float32):
    """PyG's cached GCN normalisation: (edge_index with self-loops, edge_weight) of D~^{-1/2}(A+I)D~^{-1/2}."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    return gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True, dtype=dtype)


def dropout(X: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, X * m / (1-p) with m_ij ~ Bernoulli(1-p): the distribution of ``F.dropout``,
    drawn as ``rand >= p`` (about 3x faster on CPU than torch's Bernoulli kernel)."""
    if not training or p == 0:
        return X
    return X * ((torch.rand_like(X) >= p).to(X.dtype) / (1 - p))


class _ConstSparseMM(torch.autograd.Function):
    """Y = S W for a constant sparse S (CSR) whose transpose S^T is given: dL/dW = S^T dL/dY."""

    @staticmethod
    def forward(ctx, S, ST, W):
        ctx.ST = ST
        return S @ W

    @staticmethod
    def backward(ctx, grad_out):
        return None, None, ctx.ST @ grad_out


_SPARSE_INPUTS: dict = {}


def _sparse_input(x: torch.Tensor):
    """(crow, col, values, permutation to the CSR of x^T, crow^T, col^T) of a constant mostly-zero ``x``,
    cached while ``x`` is alive and unmodified (same keying as :func:`oversmoothing.models.input_dropout`)."""
    import weakref

    hit = _SPARSE_INPUTS.get(id(x))
    if hit is not None and hit[0]() is x and hit[1] == x._version:
        return hit[2]
    if len(_SPARSE_INPUTS) > 8:
        _SPARSE_INPUTS.clear()
    if x.numel() < 100_000 or int(x.count_nonzero()) > 0.2 * x.numel():   # not worth it: dense path
        _SPARSE_INPUTS[id(x)] = (weakref.ref(x), x._version, None)
        return None
    S = x.to_sparse_csr()
    crow, col, vals = S.crow_indices(), S.col_indices(), S.values()
    rows = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), crow[1:] - crow[:-1])
    perm = torch.argsort(col * x.shape[0] + rows)           # order of the entries in x^T's CSR
    crow_t = torch.zeros(x.shape[1] + 1, dtype=crow.dtype, device=x.device)
    crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=x.shape[1]), 0)
    rec = (crow, col, vals, perm, crow_t, rows[perm])
    _SPARSE_INPUTS[id(x)] = (weakref.ref(x), x._version, rec)
    return rec


def input_linear(x: torch.Tensor, weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """dropout_p(x) W^T for the first layer (``weight`` [d_out, d_in] as in ``nn.Linear``, no bias).

    Same distribution as ``F.linear(models.input_dropout(x, p, training), weight)``: for a constant
    (no gradient), mostly-zero input such as Cora's bag-of-words rows the non-zero entries are kept with
    probability 1-p and scaled by 1/(1-p), and the product runs as a sparse matrix product with the
    gradient dL/dW = x_drop^T dL/dY also sparse (~50x cheaper than the dense 2708 x 1433 product on CPU)."""
    rec = None if x.requires_grad or x.layout != torch.strided or x.dim() != 2 else _sparse_input(x)
    if rec is None:
        return F.linear(input_dropout(x, p, training), weight)
    crow, col, vals, perm, crow_t, col_t = rec
    if training and p > 0:
        vals = vals * (torch.rand(len(vals), device=x.device) >= p) / (1 - p)
    vals = vals.to(weight.dtype)
    n, d = x.shape
    S = torch.sparse_csr_tensor(crow, col, vals, (n, d), check_invariants=False)
    ST = torch.sparse_csr_tensor(crow_t, col_t, vals[perm], (d, n), check_invariants=False)
    return _ConstSparseMM.apply(S, ST, weight.t())


# ----------------------------------------------------------------------------- GCN family
class _GCNStack(nn.Module):
    """L PyG GCNConv layers.  Layer k computes GCNConv's own formula H(k) = P (X(k-1) W(k)) + b(k) with its
    weights (``layer.lin``, ``layer.bias``), the product by P running through the library's symmetric
    sparse operator (:func:`oversmoothing.models.propagate`: P^T = P in the backward, ~2x faster on CPU
    than message passing, same numbers: tests/test_remedies.py); the first layer's product with a
    mostly-zero input runs sparse (:func:`input_linear`).  ``propagation="identity"``: P = I (the MLP twin)."""

    propagation = "gcn"

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

    def __init__(self, in_dim, hidden, out_dim, depth, *, dropout: float = 0.5, seed: int | None = None):
        super().__init__(in_dim, hidden, out_dim, depth, dropout, seed)


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

    def _propagate(self, layer, op, Z):
        ei, ew = op
        return layer.propagate(ei, x=Z, edge_weight=ew)


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
            H = layer(input_dropout(X, self.dropout, self.training) if k == 1 else dropout(X, self.dropout, self.training),
                      edge_index)
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
def lipschitz_c_rule(depth: int, width: int, budget: float = 1.0) -> float:
    """The Lipschitz bound c with c^2 L / d = ``budget``:  c = sqrt(budget * d / L).

    With W(k) <- c W(k)/||W(k)||_F a d x d weight has singular values of order c/sqrt(d), so a residual
    layer X + relu(P X W) adds a branch of relative squared size about c^2/(2d) (relu keeps half, ||P|| <= 1)
    and L layers grow the signal by about exp(c^2 L / (2d)).  Depth therefore needs c^2 L / d of order 1;
    c = 4 at d = 16, L = 32 gives c^2 L/d = 32, a growth of ~e^16, i.e. no normalisation at all."""
    if depth < 1 or width < 1 or budget <= 0:
        raise ValueError(f"need depth >= 1, width >= 1, budget > 0; got {depth}, {width}, {budget}")
    return float((budget * width / depth) ** 0.5)


def _residual(in_dim, hidden, out_dim, depth, *, dropout=0.5, seed=None):
    return ResidualGCN(in_dim, hidden, out_dim, depth, activation="relu", dropout=dropout, seed=seed)


def _lipschitz(in_dim, hidden, out_dim, depth, *, dropout=0.5, c: float | None = None, budget: float = 1.0,
               seed=None):
    """Residual GCN with W <- c W/||W||_F; ``c=None``: c from :func:`lipschitz_c_rule` (c^2 L/d = ``budget``)."""
    c = lipschitz_c_rule(depth, hidden, budget) if c is None else c
    return ResidualGCN(in_dim, hidden, out_dim, depth, activation="relu", dropout=dropout, lipschitz_c=c,
                       seed=seed)


REMEDIES = {
    "gcn": PlainGCN,
    "mlp": MLP,
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
    Extra keyword arguments (e.g. ``dropout``, ``alpha``, ``c`` for ``lipschitz``) go to its constructor."""
    try:
        make = REMEDIES[name]
    except KeyError:
        raise ValueError(f"unknown remedy {name!r}; choose one of {sorted(REMEDIES)}") from None
    return make(in_dim, hidden, out_dim, depth, seed=seed, **kw)


# ----------------------------------------------------------------------------- the GCN operator's limit
def gcn_power_limit(edge_index: torch.Tensor, num_nodes: int, steps=(10, 100, 1000, 10000), seed: int = 0):
    """What powers of the GCN operator P = D~^{-1/2}(A+I)D~^{-1/2} converge to, checked numerically.

    P is symmetric with spectrum in (-1, 1]; its eigenvalue 1 has one eigenvector per connected
    component c, u_c = D~^{1/2} 1_c / ||D~^{1/2} 1_c||, so P^k x -> sum_c u_c u_c^T x: within a component the
    limit's entries are proportional to sqrt(d_i + 1), *not* constant.  For a random x >= 0 (float64) and
    each k in ``steps`` this returns one row with the largest over components (of >= 2 nodes) of the
    relative spread std/mean of (P^k x)_i / sqrt(d_i+1) (-> 0) and of (P^k x)_i itself (stays > 0 on an
    irregular graph): a DataFrame with columns k, spread_over_sqrt_deg, spread_raw."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    ei = edge_index.cpu().numpy()
    A = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(num_nodes, num_nodes)).tocsr()
    A = A + sp.eye(num_nodes, format="csr")
    deg = np.asarray(A.sum(1)).ravel()                      # d_i + 1
    Dm = sp.diags(1 / np.sqrt(deg))
    P = (Dm @ A @ Dm).tocsr()
    _, comp = connected_components(A, directed=False)
    big = [c for c in np.unique(comp) if (comp == c).sum() >= 2]
    v = np.random.default_rng(seed).random(num_nodes)
    rows, done = [], 0

    def spread(z):
        return max(float(np.std(z[comp == c]) / abs(np.mean(z[comp == c]))) for c in big)

    for k in sorted(steps):
        for _ in range(k - done):
            v = P @ v
        done = k
        rows.append(dict(k=k, spread_over_sqrt_deg=spread(v / np.sqrt(deg)), spread_raw=spread(v)))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- choosing on validation
def choose_by_validation(summary, option: str = "dropout", keys=("model", "depth", "seed"),
                         score: str = "val_acc"):
    """For each group ``keys`` of a sweep's summary keep the run whose ``option`` (e.g. the dropout
    rate) has the best validation score ``score`` (ties: the smallest option value).  Test accuracy is
    never looked at, so the choice is a fair model selection."""
    ranked = summary.sort_values([score, option], ascending=[False, True], kind="mergesort")
    return ranked.groupby(list(keys), sort=False).head(1).sort_values(list(keys)).reset_index(drop=True)


# ----------------------------------------------------------------------------- depth sweep
SWEEP_MEASURES = ("E", "rel_mu", "rel_mu_gcn")


def middle_layer(depth: int) -> int:
    """The layer k = max(1, L // 2) whose backward signal E(B(k)) the sweep reports (paper 1: the
    middle layers, far from both the input and the output, are where B(k) oversmooths most)."""
    return max(1, depth // 2)


def _best(ep, upto=None):
    """The epoch row of best validation accuracy (first one on ties) among epochs <= ``upto``."""
    e = ep if upto is None else ep[ep["epoch"] <= upto]
    return e.loc[e["val_acc"].idxmax()] if e["val_acc"].notna().any() else e.iloc[-1]


def summarise(history, name: str, depth: int, seed: int, budgets=()) -> dict:
    """One row of a depth sweep from a :class:`~oversmoothing.training.History` recorded with
    measures :data:`SWEEP_MEASURES` and signals ("X", "B"): accuracy (test at the best validation epoch,
    that validation accuracy, and final), forward E(X(L)), backward E(B(k_mid)) and the median over layers
    of ||dL/dW(k)||_F, each at initialisation (``_init``) and at the last recorded epoch (``_end``).
    For each b in ``budgets``: ``test_acc_<b>ep``, ``val_acc_<b>ep``, the same selection among epochs <= b
    (what a run of only b epochs would have reported)."""
    import numpy as np

    ep, lay = history.epochs, history.layers
    best = _best(ep)
    k_mid = middle_layer(depth)
    row = dict(model=name, depth=depth, seed=seed, test_acc=float(best["test_acc"]),
               val_acc=float(best["val_acc"]), best_epoch=int(best["epoch"]),
               final_test_acc=float(ep["test_acc"].iloc[-1]), train_acc=float(ep["train_acc"].iloc[-1]),
               final_loss=float(ep["loss"].iloc[-1]), diverged=history.diverged,
               seconds=float(ep["seconds"].sum()))
    for b in budgets:
        bb = _best(ep, b)
        row[f"test_acc_{b}ep"], row[f"val_acc_{b}ep"] = float(bb["test_acc"]), float(bb["val_acc"])
    for tag, e in (("init", lay["epoch"].min()), ("end", lay["epoch"].max())):
        at = lay[lay["epoch"] == e].set_index("layer")
        for m in SWEEP_MEASURES:
            row[f"{m}_X_L_{tag}"] = float(at.loc[depth, f"{m}_X"])
            row[f"{m}_X_0_{tag}"] = float(at.loc[0, f"{m}_X"])
            row[f"{m}_B_mid_{tag}"] = float(at.loc[k_mid, f"{m}_B"])
        g = at.loc[1:, "grad_norm"].to_numpy(dtype=float)
        row[f"grad_norm_{tag}"] = float(np.nanmedian(g)) if np.isfinite(g).any() else float("nan")
    return row


def depth_run(config: dict, graph: Graph):
    """One run of :func:`depth_sweep` (a task of :func:`oversmoothing.experiments.grid.run_grid`): model ``name`` at
    ``depth``, ``seed``, ``dropout`` (None: the model's default).  Returns (summary row, layers, epochs)."""
    from ..training import fit

    name, depth, seed, p, epochs = config["name"], config["depth"], config["seed"], config["dropout"], config["epochs"]
    kw = dict(config["model_kw"], **({} if p is None else {"dropout": p}))
    model = build(name, graph.num_features, config["hidden"], graph.num_classes, depth, seed=seed, **kw)
    hist = fit(model, graph, epochs=epochs, lr=config["lr"], weight_decay=config["weight_decay"],
               measures=SWEEP_MEASURES, signals=("X", "B"), record_every=config["record_every"] or max(epochs, 1),
               device=config["device"], seed=seed, desc=f"{name} L={depth} p={p} seed={seed}")
    tag = dict(model=name, depth=depth, seed=seed, dropout=float("nan") if p is None else p)
    return (dict(summarise(hist, name, depth, seed, config["budgets"]), dropout=tag["dropout"]),
            hist.layers.assign(**tag), hist.epochs.assign(**tag))


def depth_sweep(graph, names, depths, seeds=(0,), *, dropouts=(None,), hidden: int = 16, epochs: int = 100,
                lr: float = 0.01, weight_decay: float = 5e-4, record_every: int | None = None, budgets=(),
                device="auto", progress: bool | None = None, model_kw: dict | None = None):
    """Train every model of ``names`` at every depth, seed and dropout rate on ``graph`` (Adam,
    cross-entropy, full batch) and record forward/backward diagnostics; each run is a task of
    :func:`oversmoothing.experiments.grid.run_grid` (cached, resumable, on Dask when the runner was given ``--workers``).
    ``dropouts``: rates passed as ``dropout=`` (``None``: the model's default, recorded as NaN).

    Returns ``(summary, layers, epochs)``: ``summary`` has one row per run (see :func:`summarise`, with
    ``budgets``) and a ``dropout`` column; ``layers`` and ``epochs`` concatenate the runs' ``History.layers``
    and ``History.epochs`` with columns model, depth, seed, dropout added.  ``record_every`` defaults to
    ``epochs`` (record at initialisation and at the end)."""
    import pandas as pd

    from .grid import plain, run_grid

    model_kw = model_kw or {}
    shared = plain(dict(hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay, record_every=record_every,
                        budgets=list(budgets)))
    configs = [dict(shared, name=name, depth=plain(depth), dropout=plain(p), seed=plain(seed),
                    model_kw=plain(model_kw.get(name, {})))
               for name in names for depth in depths for p in dropouts for seed in seeds]
    results = run_grid(depth_run, configs, inputs={"graph": graph}, device=str(device), desc="training runs",
                       progress=progress)
    return (pd.DataFrame([row for row, _, _ in results]), pd.concat([la for _, la, _ in results], ignore_index=True),
            pd.concat([ep for _, _, ep in results], ignore_index=True))

"""Paper 2's residual networks: X(k) = X(k-1) + rho(H(k)) between a linear encoder and decoder."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..graphs import Graph, propagation
from .attention import GATLayer
from .layers import (Dense, Trace, _activation, _check_depth, _seeded, attention_source_map, check_propagation,
                     graph_edges, input_dropout, lipschitz_normalise, propagate, record_input, record_layer)

__all__ = ["ResidualGCN", "ResidualGAT", "ENCODERS", "DECODERS", "NORMS", "spectral_normalise"]

#: X(0) from the input x: "linear" x W + b (Glorot; the book's form), "linear_relu" relu(x W + b) with
#: ``torch.nn.Linear``'s default initialisation (the encoder of ``ml-postech/reverse-gnn``, ``src/model_resgnn_rep.py``)
ENCODERS = ("linear", "linear_relu")
#: logits from X(L): "linear" X W + b (Glorot; the book's form), "mlp" relu(X W1 + b1) W2 + b2 of width ``hidden``
#: with ``torch.nn.Linear``'s default initialisation (the decoder of the same file)
DECODERS = ("linear", "mlp")
#: normalisations of the residual branch H(k) before the activation (``norm=``): PyTorch's LayerNorm over each
#: node's features (learnable gain and bias), PyG's PairNorm over the nodes (centre the columns, rescale to a
#: fixed mean row norm; no parameters)
NORMS = ("layernorm", "pairnorm")


class _Scale(nn.Module):
    """W -> c W (a parametrisation stacked on torch's spectral normalisation for a bound c other than 1)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = float(c)

    def forward(self, W):
        return self.c * W


def spectral_normalise(module: nn.Module, c: float = 1.0, name: str = "weight", power_iterations: int = 100) -> nn.Module:
    """W <- c W / ||W||_2 on ``module.<name>`` (in place): torch's
    ``torch.nn.utils.parametrizations.spectral_norm`` (a power-iteration estimate of the largest singular
    value, refreshed at every training forward pass), then a scale by ``c``.  The layer's Lipschitz constant
    is then ``c`` (times the operator's and the activation's), the bound the Frobenius forms reach only
    through ||W||_2 <= ||W||_F.  The power iteration starts from a fixed random vector (the caller's RNG is not
    touched, so a seeded network is reproducible) and runs ``power_iterations`` steps at once, so that
    ||W||_2 = c from the first forward pass (torch's 15 leave it a few per cent off)."""
    import torch
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm

    if not c > 0:
        raise ValueError(f"Lipschitz constant c must be > 0, got {c}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        spectral_norm(module, name)
    was = module.training
    module.train()
    with torch.no_grad():
        for _ in range(power_iterations):   # each access in training mode is one power-iteration step
            getattr(module, name)
    module.train(was)
    if float(c) != 1.0:
        parametrize.register_parametrization(module, name, _Scale(c))
    return module


def _branch_norm(norm: str | None, hidden: int):
    if norm is None:
        return None
    if norm == "layernorm":
        return nn.LayerNorm(hidden)
    if norm == "pairnorm":
        from torch_geometric.nn import PairNorm

        return PairNorm(scale=1.0)
    raise ValueError(f"unknown norm {norm!r}; choose None or one of {NORMS}")



class _Residual(nn.Module):
    """Encoder, L residual layers X(k) = X(k-1) + alpha rho(H(k)), decoder.

    X(0) = x W_in + b_in;  logits = X(L) W_out + b_out (``encoder`` / ``decoder``: :data:`ENCODERS`,
    :data:`DECODERS`).  Lipschitz normalisation, when asked, applies to the weight of each of the L residual
    layers (the ones whose product the depth compounds), never to a bias, the encoder or the decoder, as in the
    authors' code.  ``branch_scale`` alpha (default 1, the papers' form) scales every residual branch: with
    ||W(k)||_2 <= c, ||P||_2 <= 1 and a 1-Lipschitz rho, a GCN layer is then (1 + alpha c)-Lipschitz.
    ``branch_bias``: H(k) carries a bias b(k) added after the propagation (PyG's ``GCNConv`` / ``GATConv`` with
    their default ``bias=True``, the authors' blocks); the book's form has none.  ``lipschitz_mode``: "hard" or
    "soft" (:class:`~oversmoothing.models.FrobeniusNormalisation`) or "spectral" (:func:`spectral_normalise`,
    W <- c W/||W||_2).  ``norm`` (:data:`NORMS`): a LayerNorm or PairNorm of every branch before the activation."""

    def __init__(self, in_dim, hidden, out_dim, depth, activation, dropout, lipschitz_c, seed, branch_scale=1.0,
                 lipschitz_mode="hard", encoder="linear", decoder="linear", branch_bias=False, norm=None):
        super().__init__()
        _check_depth(depth)
        if not branch_scale > 0:
            raise ValueError(f"branch_scale must be > 0, got {branch_scale}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.rho = _activation(activation)
        self.act_name, self.depth, self.dropout = activation, depth, dropout
        self.branch_scale = float(branch_scale)
        self.encoder_form, self.decoder_form, self.branch_bias = encoder, decoder, bool(branch_bias)
        with _seeded(seed):
            self.encoder = Dense(in_dim, hidden, bias=True, init="glorot" if encoder == "linear" else "torch")
            self.layers = nn.ModuleList(self._layer(hidden, self.branch_bias) for _ in range(depth))
            if decoder == "linear":
                self.decoder = Dense(hidden, out_dim, bias=True)
            else:
                self.decoder_hidden = Dense(hidden, hidden, bias=True, init="torch")
                self.decoder = Dense(hidden, out_dim, bias=True, init="torch")
        self.lipschitz_c, self.lipschitz_mode = lipschitz_c, lipschitz_mode
        if lipschitz_c is not None:
            for layer in self.layers:
                if lipschitz_mode == "spectral":
                    spectral_normalise(self._normalised(layer), lipschitz_c)
                else:
                    lipschitz_normalise(self._normalised(layer), lipschitz_c, mode=lipschitz_mode)
        self.norm = norm
        if norm is not None:  # made after the weights: the seeded draws are those of the network without it
            self.norms = nn.ModuleList(_branch_norm(norm, hidden) for _ in range(depth))

    @staticmethod
    def _normalised(layer):
        """The module whose ``weight`` the Lipschitz normalisation applies to (a residual GCN layer itself)."""
        return layer

    def forward(self, x, op, trace: Trace | None = None):
        X = self.encoder(input_dropout(x, self.dropout, self.training))
        if self.encoder_form == "linear_relu":
            X = F.relu(X)
        record_input(trace, X)
        for k, layer in enumerate(self.layers):
            H = self._branch(layer, F.dropout(X, self.dropout, self.training), op)
            if self.norm is not None:
                H = self.norms[k](H)
            R = self.rho(H)
            X = X + (R if self.branch_scale == 1.0 else self.branch_scale * R)
            record_layer(trace, H, X)
        if self.decoder_form == "mlp":
            X = F.relu(self.decoder_hidden(X))
        return self.decoder(X)


class ResidualGCN(_Residual):
    """Residual GCN (paper 2): X(k) = X(k-1) + rho(P X(k-1) W(k)), P the GCN operator
    D~^{-1/2}(A+I)D~^{-1/2}; optional Lipschitz normalisation of W(k) (``lipschitz_mode`` "hard":
    c W/||W||_F, "soft": W/max(1, ||W||_F/c); :class:`~oversmoothing.models.FrobeniusNormalisation`).
    ``propagation='identity'`` gives the residual MLP (P = I); ``branch_scale`` alpha gives
    X(k) = X(k-1) + alpha rho(P X(k-1) W(k)) (a reading of the residual form, e.g. alpha = 1/sqrt(L));
    ``branch_bias`` gives X(k-1) + rho(P X(k-1) W(k) + b(k)), PyG's ``GCNConv`` with its bias (the authors' block
    in ``ml-postech/reverse-gnn``, ``src/model_resgnn_rep.py``); ``encoder`` / ``decoder``: :data:`ENCODERS`,
    :data:`DECODERS`; ``lipschitz_mode="spectral"`` normalises W(k) <- c W(k)/||W(k)||_2 instead, and ``norm``
    ("layernorm", "pairnorm") gives X(k) = X(k-1) + rho(Norm(P X(k-1) W(k))) (chapter 09's other normalisations)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, *, activation: str = "relu",
                 propagation: str = "gcn", dropout: float = 0.0, lipschitz_c: float | None = None,
                 seed: int | None = None, branch_scale: float = 1.0, lipschitz_mode: str = "hard",
                 encoder: str = "linear", decoder: str = "linear", branch_bias: bool = False, norm: str | None = None):
        self.propagation = propagation
        super().__init__(in_dim, hidden, out_dim, depth, activation, dropout, lipschitz_c, seed, branch_scale,
                         lipschitz_mode, encoder, decoder, branch_bias, norm)

    @staticmethod
    def _layer(hidden, bias=False):
        return Dense(hidden, hidden, bias=bias)

    def operator(self, graph: Graph, device=None):
        return None if self.propagation == "identity" else propagation(graph, self.propagation, device)

    @staticmethod
    def _branch(layer, X, op):
        if layer.bias is None:
            return propagate(op, layer(X))
        return propagate(op, X @ layer.weight) + layer.bias   # GCNConv: the bias after the propagation


class ResidualGAT(_Residual):
    """Residual GAT (paper 2): X(k) = X(k-1) + rho(GATConv_k(X(k-1))) with PyG's single-head GATConv.

    Lipschitz normalisation applies to each GATConv's source map, the linear map of the neighbours' features that
    the attention weighs (:func:`~oversmoothing.models.attention_source_map`): in PyG 2.8 a single-head
    ``GATConv`` with one integer ``in_channels`` has one shared map ``lin`` (no ``lin_src``/``lin_dst``), the
    module PyG before 2.5 called ``lin_src`` and the authors' code normalises (``ml-postech/reverse-gnn``,
    ``src/spectral_norm_gnn.py``).  The attention vectors and the bias are not normalised there either.
    ``branch_bias``: the GATConv keeps its bias (PyG's default, the authors' block)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, *, activation: str = "elu",
                 dropout: float = 0.0, lipschitz_c: float | None = None, seed: int | None = None,
                 branch_scale: float = 1.0, lipschitz_mode: str = "hard", propagation: str = "graph",
                 encoder: str = "linear", decoder: str = "linear", branch_bias: bool = False):
        self.propagation = check_propagation(propagation, ("graph", "identity"))
        super().__init__(in_dim, hidden, out_dim, depth, activation, dropout, lipschitz_c, seed, branch_scale,
                         lipschitz_mode, encoder, decoder, branch_bias)

    @staticmethod
    def _layer(hidden, bias=False):
        return GATLayer(hidden, hidden, heads=1, bias=bias, add_self_loops=False)  # loops: operator()

    @staticmethod
    def _normalised(layer):
        return attention_source_map(layer)

    def operator(self, graph: Graph, device=None):
        return graph_edges(self, graph, device, self_loops=True)

    @staticmethod
    def _branch(layer, X, edge_index):
        return layer(X, edge_index)

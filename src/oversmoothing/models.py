"""The networks of the two papers, with one interface.

Every model has
  * ``model.operator(graph)``: what its layers propagate with (a sparse P, or edge_index for GAT),
    built once per graph;
  * ``model(x, op, trace=None)``: logits; when ``trace`` is a :class:`Trace`, each layer appends its
    pre-activation H(k) and its output representation X(k), so that one backward pass gives every
    B(k) = dL/dH(k) (see :mod:`oversmoothing.signals`).

Conventions (paper 1): weights act on the right, H = P X W with W of shape [d_in, d_out];
layers are numbered k = 1..L and X(0) is the input.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .graphs import Graph, propagation

__all__ = ["ACTIVATIONS", "Trace", "record_input", "record_layer", "Dense", "FrobeniusNormalisation", "lipschitz_normalise",
           "VanillaGNN", "ResidualGCN", "ResidualGAT", "spectral_init_", "weights", "main_weight",
           "input_dropout"]

# softplus and tanh satisfy paper 1's Assumption 4 (rho' Lipschitz); relu and elu do not.
_LOG2 = math.log(2.0)


def centred_softplus(x: torch.Tensor) -> torch.Tensor:
    """softplus(x) - log 2: smooth, 1-Lipschitz, rho' Lipschitz (Assumption 4) and rho(0) = 0, so a
    bias-free network does not re-create a constant offset at every layer."""
    return F.softplus(x) - _LOG2


ACTIVATIONS = {"softplus": F.softplus, "centred_softplus": centred_softplus, "tanh": torch.tanh, "relu": F.relu,
               "elu": F.elu}


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Initialise from ``seed`` without touching the caller's global RNG state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def _check_depth(depth, minimum=1):
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < minimum:
        raise ValueError(f"depth must be an integer >= {minimum}, got {depth!r}")


_NONZEROS: dict = {}


def _nonzeros(x: torch.Tensor):
    """(flat indices, values) of the non-zero entries of ``x``, cached while ``x`` is alive and unmodified."""
    import weakref

    hit = _NONZEROS.get(id(x))
    if hit is not None and hit[0]() is x and hit[1] == x._version:
        return hit[2], hit[3]
    flat = x.reshape(-1)
    idx = flat.nonzero().squeeze(1)
    vals = flat[idx]
    if len(_NONZEROS) > 8:
        _NONZEROS.clear()
    _NONZEROS[id(x)] = (weakref.ref(x), x._version, idx, vals)
    return idx, vals


def input_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on the input features.  For a large, mostly-zero input that needs no gradient (Cora's
    bag-of-words rows) it drops only the non-zero entries, like Kipf & Welling's sparse dropout:
    the same distribution as ``F.dropout`` (zeros stay zero) at a fraction of the random draws
    (the non-zero positions are found once per input tensor and cached)."""
    if not training or p == 0:
        return x
    if x.requires_grad or x.numel() < 1_000_000:
        return F.dropout(x, p, True)
    idx, vals = _nonzeros(x)
    if len(idx) > 0.2 * x.numel():
        return F.dropout(x, p, True)
    keep = torch.rand(len(idx), device=x.device) >= p
    out = torch.zeros(x.numel(), dtype=x.dtype, device=x.device)
    out[idx[keep]] = vals[keep] / (1 - p)
    return out.view_as(x)


@dataclass
class Trace:
    """Per-layer tensors recorded during one forward pass: H[k-1] = H(k), X[k] = X(k) (X[0] = input)."""

    H: list = field(default_factory=list)
    X: list = field(default_factory=list)


class _SymmetricSparseMM(torch.autograd.Function):
    """Y = P X for a constant, symmetric sparse P, with backward dL/dX = P^T dL/dY = P dL/dY.

    Autograd's generic rule for ``csr @ dense`` transposes P at every backward pass; using the
    symmetry instead makes the backward about 4x faster on CPU (benchmarks/bench_library.py)."""

    @staticmethod
    def forward(ctx, P, X):
        ctx.P = P
        return P @ X

    @staticmethod
    def backward(ctx, grad_out):
        return None, ctx.P @ grad_out


def record_input(trace: Trace | None, X: torch.Tensor) -> None:
    """Append X(0) to ``trace`` (nothing without one)."""
    if trace is not None:
        trace.X.append(X)


def record_layer(trace: Trace | None, H: torch.Tensor, X: torch.Tensor) -> None:
    """Append layer k's pre-activation H(k) and output X(k) to ``trace`` (nothing without one)."""
    if trace is not None:
        trace.H.append(H)
        trace.X.append(X)


def propagate(op, X: torch.Tensor) -> torch.Tensor:
    """P X  (``op is None`` stands for P = I, the MLP).  Every operator built by
    :func:`oversmoothing.graphs.propagation` is symmetric, which the sparse backward relies on."""
    if op is None:
        return X
    if op.layout == torch.sparse_csr and not op.requires_grad:
        return _SymmetricSparseMM.apply(op, X)
    return op @ X


# ----------------------------------------------------------------------------- weights
class Dense(nn.Module):
    """X -> X W with W of shape [d_in, d_out] (the papers' right-multiplication convention)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    def forward(self, X):
        out = X @ self.weight
        return out if self.bias is None else out + self.bias


@torch.no_grad()
def spectral_init_(W: torch.Tensor, s: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian W rescaled so that its spectral norm ||W||_2 (largest singular value) equals s."""
    if not (math.isfinite(float(s)) and s > 0):     # inf would make every weight inf, nan every weight nan
        raise ValueError(f"spectral norm s must be > 0 and finite, got {s}")
    W.copy_(torch.randn(W.shape, generator=generator, dtype=W.dtype))
    W.mul_(s / torch.linalg.matrix_norm(W, ord=2))
    return W


class FrobeniusNormalisation(nn.Module):
    """Paper 2's Lipschitz normalisation as a parametrisation: W = c W_raw / ||W_raw||_F.

    Since ||W||_2 <= ||W||_F = c, the layer's Lipschitz constant is at most c (times the operator's
    and the activation's).  The optimiser updates W_raw; the forward pass sees W."""

    def __init__(self, c: float):
        super().__init__()
        if not c > 0:
            raise ValueError(f"Lipschitz constant c must be > 0, got {c}")
        self.c = float(c)

    def forward(self, W):
        return self.c * W / torch.linalg.norm(W)


def lipschitz_normalise(module: nn.Module, c: float, name: str = "weight") -> nn.Module:
    """Register W <- c W/||W||_F on ``module.<name>`` (in place; returns the module)."""
    parametrize.register_parametrization(module, name, FrobeniusNormalisation(c))
    return module


def main_weight(layer: nn.Module):
    """Where a propagation layer keeps its main weight W(k): ``(owner module, parameter name,
    transposed)``, or None for a weightless layer (e.g. an APPNP propagation step).

    Defaults: a :class:`Dense` keeps ``.weight`` in [d_in, d_out]; a PyG conv keeps ``.lin.weight`` in
    torch's [d_out, d_in].  Any other layer declares the class attribute
    ``main_weight = ("dotted.path.to.weight", transposed)`` (or ``None``)."""
    spec = getattr(type(layer), "main_weight", ...)
    if spec is ...:
        if isinstance(layer, Dense):
            spec = ("weight", False)
        elif getattr(layer, "lin", None) is not None:
            spec = ("lin.weight", True)
        else:
            raise TypeError(f"{type(layer).__name__} has no .weight/.lin.weight; give it a class attribute "
                            f"main_weight = ('path.to.weight', transposed) or None")
    if spec is None:
        return None
    path, transposed = spec
    *owners, name = path.split(".")
    owner = layer
    for attr in owners:
        owner = getattr(owner, attr)
    return owner, name, transposed


def weights(model: nn.Module) -> list[torch.Tensor | None]:
    """The effective weight matrix W(k) of every propagation layer, k = 1..L, in paper orientation
    [d_in, d_out] (None for a weightless layer; see :func:`main_weight`)."""
    out = []
    for layer in model.layers:
        spec = main_weight(layer)
        if spec is None:
            out.append(None)
            continue
        owner, name, transposed = spec
        W = getattr(owner, name)
        out.append(W.t() if transposed else W)
    return out


# ----------------------------------------------------------------------------- paper 1
class VanillaGNN(nn.Module):
    """Paper 1's vanilla GNN, no biases:

        H(k) = P X(k-1) W(k),   X(k) = rho(H(k)),   k = 1..L-1,
        output H(L) = P X(L-1) W(L)  (logits, no activation).

    ``propagation='identity'`` gives the MLP of the same depth (P = I).  ``s`` sets the spectral
    norm of every W(k) at initialisation (None: Glorot).  ``lipschitz_c`` applies W <- c W/||W||_F.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, *, activation: str = "softplus",
                 propagation: str = "bistochastic", s: float | None = None, lipschitz_c: float | None = None,
                 seed: int | None = None):
        super().__init__()
        _check_depth(depth)
        self.act_name, self.rho = activation, _activation(activation)
        self.propagation = propagation
        self.depth = depth
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
        with _seeded(seed):
            self.layers = nn.ModuleList(Dense(a, b) for a, b in zip(dims[:-1], dims[1:]))
            if s is not None:
                for layer in self.layers:
                    spectral_init_(layer.weight, s)
        if lipschitz_c is not None:
            for layer in self.layers:
                lipschitz_normalise(layer, lipschitz_c)

    def operator(self, graph: Graph, device=None):
        return None if self.propagation == "identity" else propagation(graph, self.propagation, device)

    def forward(self, x, op, trace: Trace | None = None):
        X = x
        record_input(trace, X)
        for k, layer in enumerate(self.layers, start=1):
            H = propagate(op, layer(X))  # H(k) = P X(k-1) W(k)   (P (X W) = (P X) W)
            X = self.rho(H) if k < self.depth else H
            record_layer(trace, H, X)
        return X


# ----------------------------------------------------------------------------- paper 2
class _Residual(nn.Module):
    """Encoder, L residual layers X(k) = X(k-1) + alpha rho(H(k)), decoder.

    X(0) = x W_in + b_in;  logits = X(L) W_out + b_out.  Lipschitz normalisation, when asked,
    applies to the L residual layers (the ones whose product the depth compounds).  ``branch_scale``
    alpha (default 1, the papers' form) scales every residual branch: with ||W(k)||_2 <= c, ||P||_2 <= 1
    and a 1-Lipschitz rho, a GCN layer is then (1 + alpha c)-Lipschitz."""

    def __init__(self, in_dim, hidden, out_dim, depth, activation, dropout, lipschitz_c, seed, branch_scale=1.0):
        super().__init__()
        _check_depth(depth)
        if not branch_scale > 0:
            raise ValueError(f"branch_scale must be > 0, got {branch_scale}")
        self.rho = _activation(activation)
        self.act_name, self.depth, self.dropout = activation, depth, dropout
        self.branch_scale = float(branch_scale)
        with _seeded(seed):
            self.encoder = Dense(in_dim, hidden, bias=True)
            self.layers = nn.ModuleList(self._layer(hidden) for _ in range(depth))
            self.decoder = Dense(hidden, out_dim, bias=True)
        self.lipschitz_c = lipschitz_c
        if lipschitz_c is not None:
            for layer in self.layers:
                lipschitz_normalise(layer if isinstance(layer, Dense) else layer.lin, lipschitz_c)

    def forward(self, x, op, trace: Trace | None = None):
        X = self.encoder(input_dropout(x, self.dropout, self.training))
        record_input(trace, X)
        for layer in self.layers:
            H = self._branch(layer, F.dropout(X, self.dropout, self.training), op)
            R = self.rho(H)
            X = X + (R if self.branch_scale == 1.0 else self.branch_scale * R)
            record_layer(trace, H, X)
        return self.decoder(X)


class ResidualGCN(_Residual):
    """Residual GCN (paper 2): X(k) = X(k-1) + rho(P X(k-1) W(k)), P the GCN operator
    D~^{-1/2}(A+I)D~^{-1/2}; optional Lipschitz normalisation W(k) <- c W(k)/||W(k)||_F.
    ``propagation='identity'`` gives the residual MLP (P = I); ``branch_scale`` alpha gives
    X(k) = X(k-1) + alpha rho(P X(k-1) W(k)) (a reading of the residual form, e.g. alpha = 1/sqrt(L))."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, *, activation: str = "relu",
                 propagation: str = "gcn", dropout: float = 0.0, lipschitz_c: float | None = None,
                 seed: int | None = None, branch_scale: float = 1.0):
        self.propagation = propagation
        super().__init__(in_dim, hidden, out_dim, depth, activation, dropout, lipschitz_c, seed, branch_scale)

    @staticmethod
    def _layer(hidden):
        return Dense(hidden, hidden)

    def operator(self, graph: Graph, device=None):
        return None if self.propagation == "identity" else propagation(graph, self.propagation, device)

    @staticmethod
    def _branch(layer, X, op):
        return propagate(op, layer(X))


class ResidualGAT(_Residual):
    """Residual GAT (paper 2): X(k) = X(k-1) + rho(GATConv_k(X(k-1))) with PyG's single-head GATConv;
    Lipschitz normalisation applies to each GATConv's linear map."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int, *, activation: str = "elu",
                 dropout: float = 0.0, lipschitz_c: float | None = None, seed: int | None = None,
                 branch_scale: float = 1.0):
        super().__init__(in_dim, hidden, out_dim, depth, activation, dropout, lipschitz_c, seed, branch_scale)

    @staticmethod
    def _layer(hidden):
        from torch_geometric.nn import GATConv

        return GATConv(hidden, hidden, heads=1, bias=False)

    def operator(self, graph: Graph, device=None):
        return graph.edge_index.to(device)

    @staticmethod
    def _branch(layer, X, edge_index):
        return layer(X, edge_index)

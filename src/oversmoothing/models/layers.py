"""The pieces every network of the book is made of, in the papers' notation.

* weights act on the right, H = P X W with W of shape [d_in, d_out] (:class:`Dense`); layers are numbered
  k = 1..L and X(0) is the input;
* :func:`propagate` is the product P X (``op=None`` stands for P = I, the MLP twin), with the backward of a
  symmetric sparse P reusing P;
* a :class:`Trace` records each layer's pre-activation H(k) and output X(k) during one forward pass
  (:func:`record_input`, :func:`record_layer`), so that one backward pass gives every B(k) = dL/dH(k);
* paper 2's Lipschitz normalisation :class:`FrobeniusNormalisation` as a parametrisation;
* dropout on inputs and hidden signals (:func:`input_dropout`, :func:`input_linear`, :func:`dropout`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["ACTIVATIONS", "centred_softplus", "Trace", "record_input", "record_layer", "propagate", "Dense",
           "FrobeniusNormalisation", "lipschitz_normalise", "normalisations", "attention_source_map",
           "main_weight", "weights", "check_propagation", "graph_edges", "input_dropout", "input_linear", "dropout"]

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
    """X -> X W (+ b) with W of shape [d_in, d_out] (the papers' right-multiplication convention).

    ``init="glorot"`` (default): W Glorot-uniform, b = 0; ``init="torch"``: ``torch.nn.Linear``'s own default,
    W and b uniform in +-1/sqrt(d_in) (what a plain ``nn.Linear`` encoder or decoder starts from)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = False, init: str = "glorot"):
        super().__init__()
        if init not in ("glorot", "torch"):
            raise ValueError(f"init must be 'glorot' or 'torch', got {init!r}")
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        if init == "glorot":
            nn.init.xavier_uniform_(self.weight)
        else:   # nn.Linear.reset_parameters on the [d_out, d_in] view
            bound = 1 / math.sqrt(d_in)
            nn.init.kaiming_uniform_(self.weight.data.t(), a=math.sqrt(5))
            if self.bias is not None:
                nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, X):
        out = X @ self.weight
        return out if self.bias is None else out + self.bias


class FrobeniusNormalisation(nn.Module):
    """Paper 2's Lipschitz normalisation of a weight, as a parametrisation (the optimiser updates W_raw, the
    forward pass sees W):

    * ``mode="hard"``: W = c W_raw / ||W_raw||_F, so ||W||_F = c at every step: the summary's wording of
      paper 2 ("W <- c W/||W||_F");
    * ``mode="soft"``: W = W_raw / max(1, ||W_raw||_F / c), a rescaling only when ||W_raw||_F exceeds c (the
      identity below c, the hard form above it): the form of the same first author's public code for deep
      residual GNNs (repository ``ml-postech/reverse-gnn``, file ``src/spectral_norm_gnn.py``, the
      normalisation of its invertible residual GCN/GAT blocks).

    Either way ||W||_2 <= ||W||_F <= c, so the layer's Lipschitz constant is at most c (times the
    operator's and the activation's).  Above c the soft form computes exactly the hard form's floating-point
    operations (its other branch gets a zero gradient), so a training run whose raw norms stay above c at every
    forward pass is the same run, bit for bit, under either mode.  :attr:`min_ratio` keeps the smallest
    ||W_raw||_F / c this parametrisation has seen since it was made (or :meth:`reset_min`): above 1, the soft
    form never acted differently from the hard one."""

    MODES = ("hard", "soft")

    def __init__(self, c: float, mode: str = "hard"):
        super().__init__()
        if not c > 0:
            raise ValueError(f"Lipschitz constant c must be > 0, got {c}")
        if mode not in self.MODES:
            raise ValueError(f"unknown normalisation mode {mode!r}; choose 'hard' (c W/||W||_F) or "
                             f"'soft' (W/max(1, ||W||_F/c))")
        self.c, self.mode = float(c), mode
        self._min_norm = None   # a 0-dim tensor on the weight's device (no host sync per forward pass)

    @property
    def min_ratio(self) -> float:
        return math.inf if self._min_norm is None else float(self._min_norm) / self.c

    def reset_min(self) -> None:
        self._min_norm = None

    def forward(self, W):
        norm = torch.linalg.norm(W)
        n = norm.detach()
        self._min_norm = n if self._min_norm is None else torch.minimum(self._min_norm.to(n.device), n)
        hard = self.c * W / norm
        if self.mode == "hard":
            return hard
        return torch.where(norm > self.c, hard, W)


def lipschitz_normalise(module: nn.Module, c: float, name: str = "weight", mode: str = "hard") -> nn.Module:
    """Register :class:`FrobeniusNormalisation` (``mode`` "hard": W <- c W/||W||_F; "soft":
    W <- W/max(1, ||W||_F/c)) on ``module.<name>`` (in place; returns the module)."""
    parametrize.register_parametrization(module, name, FrobeniusNormalisation(c, mode))
    return module


def normalisations(model: nn.Module) -> list[FrobeniusNormalisation]:
    """Every :class:`FrobeniusNormalisation` registered in ``model`` (in module order)."""
    return [m for m in model.modules() if isinstance(m, FrobeniusNormalisation)]


def attention_source_map(conv: nn.Module) -> nn.Module:
    """The linear map a PyG ``GATConv`` applies to the source (neighbour) features x_j before attending: the
    one paper 2's first author normalises (``lin_src`` in ``ml-postech/reverse-gnn``, ``src/spectral_norm_gnn.py``).

    With one integer ``in_channels`` PyG 2.8's ``GATConv`` keeps a single shared map ``lin`` (``lin_src`` and
    ``lin_dst`` are None): the same matrix maps sources and targets.  PyG before 2.5 called that shared map
    ``lin_src`` (with ``lin_dst = lin_src``), which is the module the authors' code normalised.  So the source
    map is ``conv.lin`` when there is one, else ``conv.lin_src`` (a bipartite layer)."""
    lin = getattr(conv, "lin", None)
    if lin is None:
        lin = getattr(conv, "lin_src", None)
    if lin is None:
        raise TypeError(f"{type(conv).__name__} has neither .lin nor .lin_src")
    return lin


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



def check_propagation(propagation: str, allowed) -> str:
    if propagation not in allowed:
        raise ValueError(f"unknown propagation {propagation!r}; choose one of {list(allowed)} ('identity' is the "
                         "same network with P = I, its MLP twin)")
    return propagation


def graph_edges(model, graph: Graph, device=None, self_loops: bool = False) -> torch.Tensor:
    """The edges a message-passing model propagates on: the graph's, or for its P = I twin
    (``model.propagation == "identity"``) one self-loop per node, so that every node only sees itself
    (attention over one neighbour has weight 1; the GCN normalisation of self-loops alone is I).

    ``self_loops``: with the self-loops PyG's ``GATConv`` adds at every call (existing ones removed, one per
    node appended), computed once here so that the layers can run with ``add_self_loops=False`` on the very
    same edge list (the same numbers, without rebuilding it L times per pass)."""
    if model.propagation == "identity":
        i = torch.arange(graph.num_nodes, device=device)
        ei = torch.stack([i, i])
    else:
        ei = graph.edge_index.to(device)
    if self_loops:
        from torch_geometric.utils import add_self_loops, remove_self_loops

        ei, _ = add_self_loops(remove_self_loops(ei)[0], num_nodes=graph.num_nodes)
    return ei


# ----------------------------------------------------------------------------- dropout
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
    i32 = torch.int32  # CSR @ dense converts int64 indices at every product
    rec = (crow.to(i32), col.to(i32), vals, perm, crow_t.to(i32), rows[perm].to(i32))
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



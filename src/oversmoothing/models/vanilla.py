"""Paper 1's vanilla GNN (and, with P = I, the MLP of the same depth)."""
from __future__ import annotations

from torch import nn

from ..graphs import Graph, propagation
from .init import spectral_init_
from .layers import Dense, Trace, _activation, _check_depth, _seeded, lipschitz_normalise, propagate, record_input, record_layer

__all__ = ["VanillaGNN"]


class VanillaGNN(nn.Module):
    """Paper 1's vanilla GNN, no biases:

        H(k) = P X(k-1) W(k),   X(k) = rho(H(k)),   k = 1..L-1,
        output H(L) = P X(L-1) W(L)  (logits, no activation).

    ``propagation='identity'`` gives the MLP of the same depth (P = I).  ``s`` sets the spectral
    norm of every W(k) at initialisation (None: Glorot).  ``lipschitz_c`` applies W <- c W/||W||_F.
    """

    last_layer_is_output = True  # W(L) maps to the logits, no activation after it

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

"""Forward and backward signals of every layer from ONE forward and ONE backward pass.

For a model traced as in :mod:`oversmoothing.models` (layers k = 1..L):

    H(k)          pre-activation of layer k           (paper 1: H(k) = P X(k-1) W(k))
    X(k)          representation after layer k        (X(0): the input, or the encoder output)
    B(k)          = dL/dH(k), the backpropagated error; for the vanilla GNN it obeys
                  B(k) = rho'(H(k)) ⊙ (P^T B(k+1) W(k+1)^T),   B(L) = dL/dH(L)
    G(k)          = dL/dX(k), the gradient w.r.t. the representation (paper 2's "gradient")
    dW(k)         = dL/dW(k)  ( = (P X(k-1))^T B(k) for the vanilla GNN )

The per-layer tensors are kept alive with ``retain_grad`` so a single ``loss.backward()`` fills
all of them (never L separate backward passes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models import Trace, weights

__all__ = ["Signals", "trace", "loss_fn", "LOSSES"]


def _cross_entropy(logits, y, mask):
    return F.cross_entropy(logits[mask], y[mask])


def _mse(logits, y, mask):
    """Paper 1's regression variant: 1/(2|mask|) sum_i ||h_i - onehot(y_i)||^2."""
    target = F.one_hot(y[mask], logits.shape[1]).to(logits.dtype)
    return 0.5 * ((logits[mask] - target) ** 2).sum(1).mean()


LOSSES = {"ce": _cross_entropy, "mse": _mse}


def loss_fn(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None


@dataclass
class Signals:
    """Per-layer signals; lists are indexed by layer k-1 for k = 1..L (X and G by k = 0..L)."""

    loss: float
    logits: torch.Tensor
    H: list
    X: list
    B: list
    G: list
    W: list
    dW: list

    @property
    def depth(self) -> int:
        return len(self.H)


def trace(model, x, op, y, mask, *, loss: str = "ce", backward: bool = True) -> tuple[torch.Tensor, Signals]:
    """One forward and one backward pass through ``model``, recording every layer.

    Returns (loss tensor, :class:`Signals`).  Parameter ``.grad`` are populated as by a plain
    ``loss.backward()``, so a training step can follow with ``optimizer.step()``.
    """
    record = Trace()
    logits = model(x, op, trace=record)
    for t in record.H + record.X:
        if t.requires_grad:
            t.retain_grad()
    L = loss_fn(loss)(logits, y, mask)
    if backward:
        L.backward()
    Ws = weights(model)
    grad = lambda t: None if t.grad is None else t.grad.detach()  # noqa: E731
    sig = Signals(
        loss=float(L.detach()),
        logits=logits.detach(),
        H=[h.detach() for h in record.H],
        X=[xk.detach() for xk in record.X],
        B=[grad(h) for h in record.H],
        G=[grad(xk) if xk.requires_grad else None for xk in record.X],
        W=[w.detach() for w in Ws],
        dW=[_weight_grad(model, k) for k in range(len(Ws))],
    )
    return L, sig


def _weight_grad(model, k):
    """dL/dW(k) in paper orientation [d_in, d_out].  Under Lipschitz normalisation
    W = c W_raw/||W_raw||_F this is the gradient of the raw parameter, the one the optimiser uses."""
    layer = model.layers[k]
    mod = layer if hasattr(layer, "weight") and not hasattr(layer, "lin") else layer.lin
    if hasattr(mod, "parametrizations") and "weight" in mod.parametrizations:
        g = mod.parametrizations.weight.original.grad
    else:
        g = mod.weight.grad
    if g is None:
        return None
    return g.detach() if not hasattr(layer, "lin") else g.detach().t()

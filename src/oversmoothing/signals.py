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

from .models import Trace, main_weight, weights

__all__ = ["Signals", "trace", "step", "weight_grads", "loss_fn", "LOSSES", "ACTIVATION_DERIVATIVES", "linear_backward_error",
           "backward_mean_prediction"]


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


def trace(model, x, op, y, mask, *, loss: str = "ce", backward: bool = True,
          keep=("H", "X", "B", "G")) -> tuple[torch.Tensor, Signals]:
    """One forward and one backward pass through ``model``, recording every layer.

    Returns (loss tensor, :class:`Signals`).  Parameter ``.grad`` are populated as by a plain
    ``loss.backward()``, so a training step can follow with ``optimizer.step()``.  ``keep``: the backward
    signals to keep ("B" = dL/dH(k), "G" = dL/dX(k)); one left out is not retained (its list holds None), which
    spares the backward pass a copy per layer.
    """
    record = Trace()
    logits = model(x, op, trace=record)
    for t in (record.H if "B" in keep else []) + (record.X if "G" in keep else []):
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
        B=[grad(h) if "B" in keep else None for h in record.H],
        G=[grad(xk) if "G" in keep and xk.requires_grad else None for xk in record.X],
        W=[None if w is None else w.detach() for w in Ws],
        dW=weight_grads(model),
    )
    return L, sig


def step(model, x, op, y, mask, *, loss: str = "ce", weights_too: bool = False) -> Signals:
    """One forward and one backward pass WITHOUT a trace (what a training step needs, nothing more): the
    loss, the logits, every dL/dW(k) (and, with ``weights_too``, every W(k)); no H, X, B, G are kept.  The
    numbers are those of :func:`trace` (the same operations, without its ``retain_grad`` hooks)."""
    logits = model(x, op)
    L = loss_fn(loss)(logits, y, mask)
    L.backward()
    Ws = [None if w is None else w.detach() for w in weights(model)] if weights_too else []
    return Signals(loss=float(L.detach()), logits=logits.detach(), H=[], X=[], B=[], G=[], W=Ws,
                   dW=weight_grads(model))


def weight_grads(model) -> list:
    """dL/dW(k) of every propagation layer k = 1..L (see :func:`_weight_grad`)."""
    return [_weight_grad(model, k) for k in range(len(model.layers))]


def _weight_grad(model, k):
    """dL/dW(k) in paper orientation [d_in, d_out] (None for a weightless layer).  Under Lipschitz
    normalisation W = c W_raw/||W_raw||_F this is the gradient of the raw parameter, the one the
    optimiser uses."""
    spec = main_weight(model.layers[k])
    if spec is None:
        return None
    owner, name, transposed = spec
    if hasattr(owner, "parametrizations") and name in owner.parametrizations:
        g = owner.parametrizations[name].original.grad
    else:
        g = getattr(owner, name).grad
    if g is None:
        return None
    return g.detach().t() if transposed else g.detach()


# ----------------------------------------------------------------------------- paper 1, Section 4
ACTIVATION_DERIVATIVES = {
    "softplus": torch.sigmoid,                                   # softplus' = sigmoid
    "centred_softplus": torch.sigmoid,                           # (softplus - log 2)' = sigmoid
    "tanh": lambda h: 1.0 - torch.tanh(h) ** 2,
    "relu": lambda h: (h > 0).to(h.dtype),
    "elu": lambda h: torch.where(h > 0, torch.ones_like(h), torch.exp(h)),
}


def _rho_prime(activation: str):
    try:
        return ACTIVATION_DERIVATIVES[activation]
    except KeyError:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATION_DERIVATIVES)}") from None


def linear_backward_error(sig: Signals, op, activation: str = "softplus"):
    """How far the backward recursion of a traced :class:`~oversmoothing.models.VanillaGNN` is from linear.

    The exact recursion (P symmetric, as every operator of this library; ``op=None`` is P = I, the MLP) is

        B(k) = rho'(H(k)) ⊙ (P^T B(k+1) W(k+1)^T),          k = 1..L-1.

    Paper 1's linear regime replaces rho'(H(k)) by its node-average, the row vector
    c_k = 1^T rho'(H(k)) / n (one value per feature), broadcast to every node:

        B_lin(k) = 1 c_k^T ⊙ (P^T B(k+1) W(k+1)^T).

    It is accurate when H(k) is nearly constant across nodes, i.e. once the forward signal is
    oversmoothed.  Returns a numpy array ``err`` of length L with
    err[k-1] = ||B(k) - B_lin(k)||_F / ||B(k)||_F  for k = 1..L-1 and err[L-1] = nan (no layer after L).
    """
    import numpy as np

    from .models import propagate

    drho = _rho_prime(activation)
    L = sig.depth
    err = np.full(L, np.nan)
    for k in range(1, L):  # paper layer k; lists are 0-based
        Bk, Bnext, Wnext, Hk = sig.B[k - 1], sig.B[k], sig.W[k], sig.H[k - 1]
        back = propagate(op, Bnext @ Wnext.t())            # P^T B(k+1) W(k+1)^T  (P^T = P)
        c = drho(Hk).mean(0, keepdim=True)                 # node-average of rho'(H(k)), shape [1, d]
        nrm = float(torch.linalg.norm(Bk.double()))
        err[k - 1] = float(torch.linalg.norm((Bk - c * back).double())) / nrm if nrm > 0 else np.nan
    return err


def backward_mean_prediction(sig: Signals, activation: str = "softplus") -> list:
    """Paper 1's oversmoothed limit of the backward errors, predicted from the average output error.

    In the linear regime B(k) ≈ 1 c_k^T ⊙ (P^T B(k+1) W(k+1)^T), and since P is bi-stochastic
    (1^T P^T = 1^T; also for P = I), the node-averages b(k) = B(k)^T 1 / n obey

        b(k) = c_k ⊙ (W(k+1) b(k+1)),      b(L) = B(L)^T 1 / n  (the average output error),

    so every b(k) is set by 1^T B(L) alone.  Returns the predicted b(k) for k = 1..L (index k-1) as
    1-D tensors; compare with the measured ``sig.B[k-1].mean(0)``.  When the forward signal is
    oversmoothed B(k) itself tends to the constant matrix 1 b(k)^T.
    """
    drho = _rho_prime(activation)
    L = sig.depth
    pred = [None] * L
    pred[L - 1] = sig.B[L - 1].mean(0)
    for k in range(L - 1, 0, -1):
        c = drho(sig.H[k - 1]).mean(0)
        pred[k - 1] = c * (sig.W[k] @ pred[k])
    return pred

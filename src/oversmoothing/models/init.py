"""Initialisations of the weights W(k) (paper 1's spectral norm s, orthogonal, He's gain)."""
from __future__ import annotations

import math

import torch

from .layers import main_weight

__all__ = ["spectral_init_", "orthogonal_init_", "he_rescale_"]


@torch.no_grad()
def spectral_init_(W: torch.Tensor, s: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian W rescaled so that its spectral norm ||W||_2 (largest singular value) equals s."""
    if not (math.isfinite(float(s)) and s > 0):     # inf would make every weight inf, nan every weight nan
        raise ValueError(f"spectral norm s must be > 0 and finite, got {s}")
    W.copy_(torch.randn(W.shape, generator=generator, dtype=W.dtype))
    W.mul_(s / torch.linalg.matrix_norm(W, ord=2))
    return W


@torch.no_grad()
def orthogonal_init_(model, gain: float = 1.0, seed: int | None = None):
    """Re-initialise every W(k) of ``model.layers`` as ``gain`` times a (semi-)orthogonal matrix,
    so that every singular value of W(k), hence its spectral norm ||W(k)||_2, equals ``gain``."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for layer in model.layers:
        W = layer.weight
        A = torch.randn(max(W.shape), min(W.shape), generator=gen, dtype=torch.float64)
        Q, R = torch.linalg.qr(A)
        Q = Q * torch.sign(torch.diagonal(R))  # uniform (Haar) orientation
        W.copy_((Q if W.shape[0] >= W.shape[1] else Q.t()).to(W.dtype) * gain)
    return model


def he_rescale_(model, gain: float = math.sqrt(2.0)):
    """Multiply by ``gain`` the weight of every propagation layer followed by a ReLU (all but the last layer
    of a :class:`VanillaGNN`, every residual branch of a residual model), in place.  Glorot's uniform init
    gives a d x d weight the variance 1/d; ReLU keeps half of the second moment, so each layer multiplies
    the signal's (and the gradient's) mean square by about 1/2.  sqrt(2) (He et al., 2015) compensates."""
    layers = list(model.layers)[:-1] if getattr(model, "last_layer_is_output", False) else list(model.layers)
    with torch.no_grad():
        for layer in layers:
            owner, name, _ = main_weight(layer)
            getattr(owner, name).mul_(gain)
    return model

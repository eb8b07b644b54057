"""Initialisations of the weights W(k) (paper 1's spectral norm s, orthogonal, He's gain, the standard inits with the
activation's gain)."""
from __future__ import annotations

import math

import torch

from .layers import main_weight

__all__ = ["spectral_init_", "orthogonal_init_", "he_rescale_", "GAINS", "activation_gain", "glorot_init_", "kaiming_init_"]


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


#: calculate_gain-style gains: the factor g by which a layer's weight scale is multiplied so that the layer keeps the
#: second moment of its input through the activation that follows it.  relu and tanh are PyTorch's
#: (``torch.nn.init.calculate_gain``: sqrt(2), exact at every scale since relu is positively homogeneous; 5/3,
#: a heuristic that keeps the second moment within about 10 % at unit pre-activation variance); the smooth activations
#: PyTorch has no gain for get 1 / rho'(0), the gain that keeps the second moment of a small signal (rho(x) ~
#: rho'(0) x): centred softplus and softplus have slope 1/2 at 0, so 2 (for softplus: of the fluctuation around its
#: log 2 offset); elu has slope 1, so 1.
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "centred_softplus": 2.0, "softplus": 2.0, "elu": 1.0,
         "linear": 1.0, "identity": 1.0}


def activation_gain(activation: str) -> float:
    """The variance-preserving gain of ``activation`` (:data:`GAINS`), like ``torch.nn.init.calculate_gain``."""
    try:
        return GAINS[activation]
    except KeyError:
        raise ValueError(f"no gain for activation {activation!r}; known: {sorted(GAINS)}") from None


def _gains(model, gain: float):
    """(layer, gain) for every layer of ``model.layers``: ``gain`` for each layer followed by the activation, 1 for an
    output layer that maps to the logits with no activation after it (``model.last_layer_is_output``)."""
    layers = list(model.layers)
    out = len(layers) - 1 if getattr(model, "last_layer_is_output", False) else None
    return [(layer, 1.0 if k == out else gain) for k, layer in enumerate(layers)]


@torch.no_grad()
def glorot_init_(model, gain: float = 1.0, seed: int | None = None):
    """Glorot (Xavier) uniform init with ``gain`` (``torch.nn.init.xavier_uniform_``): every W(k) of shape
    [d_in, d_out] drawn from U(-a, a), a = gain sqrt(6 / (d_in + d_out)), i.e. variance gain^2 2 / (d_in + d_out);
    the output layer (no activation after it) keeps gain 1.  ``gain=1`` on every layer is PyG's default (its
    ``glorot``)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for layer, g in _gains(model, gain):
        W = layer.weight
        a = g * math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
        W.copy_((torch.rand(W.shape, generator=gen, dtype=torch.float64) * 2 - 1).to(W.dtype) * a)
    return model


@torch.no_grad()
def kaiming_init_(model, gain: float = math.sqrt(2.0), seed: int | None = None):
    """He (Kaiming) normal init with ``gain`` (``torch.nn.init.kaiming_normal_``, fan-in mode): every W(k) of shape
    [d_in, d_out] drawn from N(0, gain^2 / d_in), so that E||x W||^2 = gain^2 E||x||^2 and the activation after it
    (whose gain this is) brings the second moment back; the output layer (no activation after it) keeps gain 1."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for layer, g in _gains(model, gain):
        W = layer.weight
        W.copy_(torch.randn(W.shape, generator=gen, dtype=torch.float64).to(W.dtype) * (g / math.sqrt(W.shape[0])))
    return model

"""The networks of the two papers, with one interface (:mod:`~oversmoothing.models.registry`: every model by
name, each with its P = I twin).

Every model has
  * ``model.operator(graph)``: what its layers propagate with (a sparse P, or edge_index for attention),
    built once per graph;
  * ``model(x, op, trace=None)``: logits; when ``trace`` is a :class:`Trace`, each layer appends its
    pre-activation H(k) and its output representation X(k), so that one backward pass gives every
    B(k) = dL/dH(k) (see :mod:`oversmoothing.signals`);
  * ``model.layers``: the L propagation layers, k = 1..L (X(0) is the input).

Modules: :mod:`~.layers` (Dense, P X, traces, normalisation, dropout), :mod:`~.init`, :mod:`~.vanilla`
(paper 1), :mod:`~.residual` (paper 2), :mod:`~.remedies` (chapter 08), :mod:`~.registry`.
"""
from .init import GAINS, activation_gain, glorot_init_, he_rescale_, kaiming_init_, orthogonal_init_, spectral_init_
from .layers import (ACTIVATIONS, Dense, FrobeniusNormalisation, Trace, attention_source_map, centred_softplus,
                     check_propagation, dropout, graph_edges, input_dropout, input_linear, lipschitz_normalise, main_weight,
                     normalisations, propagate, record_input, record_layer, weights)
from .registry import INITS, MODELS, ModelSpec, build, twin
from .remedies import (GCNII, MLP, APPNPNet, DropEdgeGCN, GraphTransformer, JKNet, PairNormGCN, PlainGAT, PlainGCN,
                       lipschitz_c_rule)
from .residual import ResidualGAT, ResidualGCN
from .vanilla import VanillaGNN

__all__ = ["ACTIVATIONS", "centred_softplus", "Trace", "record_input", "record_layer", "propagate", "Dense",
           "FrobeniusNormalisation", "lipschitz_normalise", "normalisations", "attention_source_map", "main_weight", "weights", "check_propagation",
           "graph_edges", "input_dropout", "input_linear", "dropout", "spectral_init_", "orthogonal_init_",
           "he_rescale_", "GAINS", "activation_gain", "glorot_init_", "kaiming_init_", "VanillaGNN", "ResidualGCN", "ResidualGAT", "PlainGCN", "MLP", "JKNet", "DropEdgeGCN",
           "PairNormGCN", "APPNPNet", "GCNII", "PlainGAT", "GraphTransformer", "lipschitz_c_rule", "MODELS",
           "ModelSpec", "INITS", "build", "twin"]

"""Every network of the book by name, each entry naming its P = I twin (the control of every
"specific to GNNs" statement: the same network, same weights, with the graph replaced by the identity).

    model = models.build("paper1.gnn", in_dim, hidden, out_dim, depth, init="orthogonal", s=1.7, seed=0)
    control = models.build(models.MODELS["paper1.gnn"].twin, in_dim, hidden, out_dim, depth, init="orthogonal",
                           s=1.7, seed=0)

Families: ``paper1.*`` (Keriven's vanilla GNN, P = I - (D-A)/d_max), ``paper2.*`` (Park & Kim's deep GCN,
residual GCN and residual GAT, optionally Lipschitz-normalised), ``remedy.*`` (the classic remedies of
chapter 08, built from PyG's layers).  ``depth`` is always the number L of propagation layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .init import activation_gain, glorot_init_, kaiming_init_, orthogonal_init_
from .remedies import (GCNII, MLP, APPNPNet, DropEdgeGCN, GraphTransformer, JKNet, PairNormGCN, PlainGAT, PlainGCN,
                       lipschitz_c_rule)
from .residual import ResidualGAT, ResidualGCN
from .vanilla import VanillaGNN

__all__ = ["ModelSpec", "MODELS", "INITS", "build", "twin"]

#: initialisations of paper 1's networks: Glorot (PyTorch's xavier_uniform, gain 1: PyG's default; ``s`` ignored),
#: every singular value of W(k) equal to ``s`` ("orthogonal"), Gaussian rescaled to ||W(k)||_2 = ``s`` ("gaussian"),
#: and the standard inits with the activation's gain (:func:`~oversmoothing.models.init.activation_gain`, e.g. 2 for
#: the centred softplus; ``s`` ignored): Glorot uniform ("glorot_gain") and He/Kaiming normal, fan-in ("he")
INITS = ("glorot", "orthogonal", "gaussian", "glorot_gain", "he")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    make: Callable    # make(in_dim, hidden, out_dim, depth, **options) -> nn.Module
    twin: str         # the registry name of the same network with P = I (itself for an MLP)
    summary: str


def _vanilla(propagation: str):
    def make(in_dim, hidden, out_dim, depth, *, activation: str = "centred_softplus", init: str = "orthogonal",
             s: float = 1.0, seed: int = 0):
        """Paper 1's vanilla GNN (no biases) with weights from ``init`` (:data:`INITS`) at scale ``s``."""
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        model = VanillaGNN(in_dim, hidden, out_dim, depth, activation=activation, propagation=propagation,
                           s=s if init == "gaussian" else None, seed=seed)
        if init == "orthogonal":
            orthogonal_init_(model, s, seed=seed)
        elif init == "glorot_gain":
            glorot_init_(model, activation_gain(activation), seed=seed)
        elif init == "he":
            kaiming_init_(model, activation_gain(activation), seed=seed)
        return model
    return make


def _deep_gcn(propagation: str):
    def make(in_dim, hidden, out_dim, depth, *, lipschitz_c=None, seed: int = 0, activation=None, **_residual_only):
        """Paper 2's GCN without residual connections: X(k) = relu(P X(k-1) W(k)), Glorot weights."""
        return VanillaGNN(in_dim, hidden, out_dim, depth, activation=activation or "relu", propagation=propagation,
                          lipschitz_c=lipschitz_c, seed=seed)
    return make


def _paper2_residual(cls, **fixed):
    def make(in_dim, hidden, out_dim, depth, *, lipschitz_c=None, dropout: float = 0.0, seed: int = 0,
             activation=None, branch_scale: float = 1.0, lipschitz_mode: str = "hard", encoder: str = "linear",
             decoder: str = "linear", branch_bias: bool = False, norm: str | None = None):
        """Paper 2's residual network X(k) = X(k-1) + rho(H(k)) (``activation=None``: its own default;
        ``encoder``/``decoder``/``branch_bias``: the book's form by default, the authors' code's form with
        "linear_relu"/"mlp"/True; ``norm`` ("layernorm", "pairnorm"; residual GCN only) normalises every branch
        before rho)."""
        kw = dict(dropout=dropout, lipschitz_c=lipschitz_c, seed=seed, branch_scale=branch_scale,
                  lipschitz_mode=lipschitz_mode, encoder=encoder, decoder=decoder, branch_bias=branch_bias, **fixed)
        if activation is not None:
            kw["activation"] = activation
        if norm is not None:
            kw["norm"] = norm
        return cls(in_dim, hidden, out_dim, depth, **kw)
    return make


def _residual(propagation: str):
    def make(in_dim, hidden, out_dim, depth, *, dropout=0.5, seed=None):
        return ResidualGCN(in_dim, hidden, out_dim, depth, activation="relu", dropout=dropout, seed=seed,
                           propagation=propagation)
    return make


def _lipschitz(propagation: str):
    def make(in_dim, hidden, out_dim, depth, *, dropout=0.5, c: float | None = None, budget: float = 1.0, seed=None,
             lipschitz_mode: str = "hard"):
        """Residual GCN with W <- c W/||W||_F; ``c=None``: c from :func:`lipschitz_c_rule` (c^2 L/d = ``budget``)."""
        c = lipschitz_c_rule(depth, hidden, budget) if c is None else c
        return ResidualGCN(in_dim, hidden, out_dim, depth, activation="relu", dropout=dropout, lipschitz_c=c, seed=seed,
                           propagation=propagation, lipschitz_mode=lipschitz_mode)
    return make


def _with(cls, **fixed):
    def make(*args, **kw):
        return cls(*args, **fixed, **kw)
    return make


def _pair(name, make_graph, make_twin, summary, twin_summary):
    """A graph model and its P = I twin ``<name>_mlp`` (an MLP family's twin is itself)."""
    return {name: ModelSpec(name, make_graph, f"{name}_mlp", summary),
            f"{name}_mlp": ModelSpec(f"{name}_mlp", make_twin, f"{name}_mlp", twin_summary)}


MODELS: dict[str, ModelSpec] = {
    "paper1.gnn": ModelSpec("paper1.gnn", _vanilla("bistochastic"), "paper1.mlp",
                            "paper 1's vanilla GNN H(k) = P X(k-1) W(k), P = I - (D-A)/d_max, no biases"),
    "paper1.mlp": ModelSpec("paper1.mlp", _vanilla("identity"), "paper1.mlp", "the same network with P = I"),
    "paper1.gnn_gcn": ModelSpec("paper1.gnn_gcn", _vanilla("gcn"), "paper1.mlp",
                                "paper 1's vanilla GNN with the GCN operator P = D~^{-1/2}(A+I)D~^{-1/2} (a reading)"),
    "paper2.gcn": ModelSpec("paper2.gcn", _deep_gcn("gcn"), "paper2.mlp",
                            "paper 2's deep GCN without residual connections, ReLU, Glorot"),
    "paper2.mlp": ModelSpec("paper2.mlp", _deep_gcn("identity"), "paper2.mlp", "the same network with P = I"),
    "paper2.res_gcn": ModelSpec("paper2.res_gcn", _paper2_residual(ResidualGCN), "paper2.res_mlp",
                                "paper 2's residual GCN X(k) = X(k-1) + relu(P X(k-1) W(k))"),
    "paper2.res_mlp": ModelSpec("paper2.res_mlp", _paper2_residual(ResidualGCN, propagation="identity"),
                                "paper2.res_mlp", "the residual GCN with P = I"),
    "paper2.res_gat": ModelSpec("paper2.res_gat", _paper2_residual(ResidualGAT), "paper2.res_gat_mlp",
                                "paper 2's residual GAT X(k) = X(k-1) + elu(GATConv_k(X(k-1)))"),
    "paper2.res_gat_mlp": ModelSpec("paper2.res_gat_mlp", _paper2_residual(ResidualGAT, propagation="identity"),
                                    "paper2.res_gat_mlp", "the residual GAT on self-loops only (each node attends to itself)"),
    "remedy.gcn": ModelSpec("remedy.gcn", PlainGCN, "remedy.mlp", "plain GCN (PyG GCNConv, ReLU, dropout)"),
    "remedy.mlp": ModelSpec("remedy.mlp", MLP, "remedy.mlp", "the plain GCN with P = I"),
    "remedy.dropedge": ModelSpec("remedy.dropedge", DropEdgeGCN, "remedy.mlp",
                                 "plain GCN with DropEdge (without edges: the plain GCN's MLP twin)"),
    **_pair("remedy.residual", _residual("gcn"), _residual("identity"), "residual GCN, dropout 0.5",
            "the residual GCN with P = I"),
    **_pair("remedy.lipschitz", _lipschitz("gcn"), _lipschitz("identity"), "Lipschitz-normalised residual GCN",
            "the Lipschitz residual GCN with P = I"),
    **_pair("remedy.jknet", JKNet, _with(JKNet, propagation="identity"), "JumpingKnowledge network",
            "JK-Net with P = I"),
    **_pair("remedy.pairnorm", PairNormGCN, _with(PairNormGCN, propagation="identity"), "plain GCN with PairNorm",
            "the PairNorm GCN with P = I"),
    **_pair("remedy.appnp", APPNPNet, _with(APPNPNet, propagation="identity"), "APPNP (predict, then propagate)",
            "APPNP with P = I (the 2-layer MLP)"),
    **_pair("remedy.gcnii", GCNII, _with(GCNII, propagation="identity"), "GCNII (initial residual, identity map)",
            "GCNII with P = I"),
    **_pair("remedy.gat", PlainGAT, _with(PlainGAT, propagation="identity"), "plain GAT (PyG GATConv, ELU)",
            "the GAT on self-loops only"),
    **_pair("remedy.transformer", GraphTransformer, _with(GraphTransformer, propagation="identity"),
            "plain graph transformer (PyG TransformerConv)", "the transformer on self-loops only"),
}


def build(name: str, in_dim: int, hidden: int, out_dim: int, depth: int, **options):
    """The registered network ``name`` (a key of :data:`MODELS`) with L = ``depth`` propagation layers;
    ``options`` (``seed``, ``activation``, ``lipschitz_c``, ``dropout``, ...) go to its constructor."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return spec.make(in_dim, hidden, out_dim, depth, **options)


def twin(name: str) -> str:
    """The registry name of ``name``'s P = I twin."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name].twin

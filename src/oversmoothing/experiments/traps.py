"""What chapters 04-05 (paper 1's training traps) run: training grids of the vanilla GNN and its MLP twin,
and the measurements of one run.

* :func:`train_grid` / :func:`train_graphs` train a list of paper 1's networks (``models.build("paper1.gnn" |
  "paper1.mlp")``) and stack their histories in two tidy tables;
* :func:`trap_status` says whether one run was *trapped* (near-zero gradients in every layer AND a loss that
  stays near chance to the end), *trained*, *did not train* (diverged or exploded) or is *not trapped*;
  :func:`run_table` applies it to every run of a grid, with the loss change over the last epochs
  (a flat tail shows the budget was long enough);
* :func:`offset_graph` adds a node-independent offset to the features and :func:`component_decay`
  follows, through k propagations, the constant part (kept whole by P) and the class part (~lambda^k);
* :func:`s_grid` trains the deep GNN and its MLP twin from several initial spectral norms s on several graphs
  and classifies every run (chapter 05);
* :func:`solve_last_layer_` trains W(L) alone to stationarity, exactly, and records every layer's gradient
  (Theorem 3); :func:`solve_last_layers` does it for the deep GNN and MLP under both losses, and
  :func:`last_layer_summary` reduces the result to one row per network;
* :func:`chance_loss` is the loss of the best constant predictor (log C for cross-entropy, sigma_y^2
  for the regression variant), the level Corollary 2's trapped points sit at;
* :func:`proposition2` builds the explicit MLP counter-example (and its GNN analogue) by hand;
* :data:`INIT_NAMES` and :func:`init_setting` name the initialisations of the init readings,
  :func:`initial_spectral_norm` gives the largest ||W(k)||_2 an init starts from (the s of Theorem 3's s*lambda), and
  :func:`largest_stable_lr` picks plain gradient descent's learning rate from a grid of runs, and :func:`status_cell`
  sums up one network's runs in a table cell.

The verdicts on these measurements (C4-C7) are :mod:`oversmoothing.judges.traps`'.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..devices import cpu_threads
from ..grid import plain, run_grid
from ..models import build
from ..training import fit

__all__ = ["KINDS", "vanilla", "train_grid", "train_graphs", "TRAP_STATUSES", "trap_status", "tail_change", "run_table",
           "s_grid", "offset_graph", "component_decay", "solve_last_layer_", "solve_last_layers", "last_layer_summary",
           "chance_loss", "proposition2", "INIT_NAMES", "init_setting", "initial_spectral_norm", "largest_stable_lr",
           "status_cell"]

#: paper 1's two networks by the chapters' names: the vanilla GNN and its P = I twin (registry names)
KINDS = {"GNN": "paper1.gnn", "MLP": "paper1.mlp"}


def vanilla(kind: str) -> str:
    """The registry name (:data:`oversmoothing.models.MODELS`) of paper 1's network ``kind`` ("GNN" or "MLP")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind]


def train_run(config: dict, graph) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run of :func:`train_grid` (a task of :func:`oversmoothing.grid.run_grid`): ``config["run"]``
    holds kind, depth, seed, activation, init, s, lr and loss; the other keys are the shared settings
    (hidden, epochs, record_every, fit keywords, device).  Returns its (epochs, layers) tables, tagged."""
    cfg = config["run"]
    model = build(vanilla(cfg["kind"]), graph.num_features, config["hidden"], graph.num_classes, cfg["depth"],
                  activation=cfg["activation"], init=cfg["init"], s=cfg["s"], seed=cfg["seed"])
    h = fit(model, graph, epochs=config["epochs"], lr=cfg["lr"], loss=cfg["loss"], measures=(), signals=(),
            record_every=config["record_every"], device=config["device"], seed=cfg["seed"],
            desc=f"{cfg['kind']} L={cfg['depth']}", **config["fit"])
    tags = {("objective" if k == "loss" else k): v for k, v in cfg.items()}  # keep the 'loss' column
    tags.update(model=f"{cfg['kind']} L={cfg['depth']}", diverged_at=h.diverged_at)
    return h.epochs.assign(**tags), h.layers.assign(**tags)


def train_grid(graph, runs, *, hidden: int = 32, activation: str = "centred_softplus", init: str = "orthogonal",
               s: float = 1.0, epochs: int = 100, lr: float = 0.01, loss: str = "ce", device="auto",
               record_every: int = 1, **fit_kw):
    """Train every run of ``runs`` (dicts with keys ``kind``, ``depth``, ``seed`` and optionally any
    of activation, init, s, lr, loss overriding the defaults) on ``graph``; each run is a task of
    :func:`oversmoothing.grid.run_grid` (cached, resumable, on Dask when the runner was given ``--workers``).

    Returns (epochs, layers): the runs' :class:`~oversmoothing.training.History` tables stacked, each
    row tagged with the run's keys (the loss name as ``objective``) and a ``model`` label such as ``"GNN L=40"``; only the gradient
    norms and spectral norms of the weights are recorded (no per-layer signals) to keep it cheap."""
    shared = plain(dict(hidden=hidden, epochs=epochs, record_every=record_every, fit=fit_kw))
    configs = [dict(shared, run=plain(dict(activation=activation, init=init, s=s, lr=lr, loss=loss) | dict(run)))
               for run in runs]
    results = run_grid(train_run, configs, inputs={"graph": graph}, device=str(device), desc="training runs")
    return (pd.concat([ep for ep, _ in results], ignore_index=True),
            pd.concat([la for _, la in results], ignore_index=True))


def train_graphs(graphs: dict, runs, **kw):
    """:func:`train_grid` on every graph of ``graphs`` ({key: Graph}, e.g. one per graph seed); both tables
    get a ``graph`` column holding the key."""
    ep, la = [], []
    for key, g in graphs.items():
        e, l_ = train_grid(g, runs, **kw)
        ep.append(e.assign(graph=key))
        la.append(l_.assign(graph=key))
    return pd.concat(ep, ignore_index=True), pd.concat(la, ignore_index=True)


TRAP_STATUSES = ("trapped", "trained", "did not train", "not trapped")


def trap_status(epochs: pd.DataFrame, layers: pd.DataFrame, chance: float, threshold: float, *,
                loss_frac: float = 0.95, trained_acc: float = 0.9, explode: float = 10.0) -> tuple[str, int | None]:
    """Classify ONE training run (its ``epochs`` and ``layers`` tables) as ``(status, epoch)``:

    * ``"did not train"``: a loss or gradient became non-finite (epoch: the first such epoch), or the
      final loss exceeds ``explode`` x ``chance`` (an exploding run; epoch: None). Such a run is never
      counted as "not trapped", i.e. as if the trap had been avoided.
    * ``"trapped"``: at some epoch e EVERY layer's ||dL/dW(k)||_F < ``threshold`` AND the training loss
      is >= ``loss_frac`` x ``chance`` at e and at every later epoch (epoch: the first such e). A run whose
      loss falls after its gradients collapsed (convergence, or an escape) is not trapped.
    * ``"trained"``: not trapped and final train accuracy >= ``trained_acc`` (epoch: None).
    * ``"not trapped"``: anything else (large gradients but slow, or stuck elsewhere).
    """
    ep = epochs.sort_values("epoch")
    loss = ep.set_index("epoch")["loss"]
    g = layers.loc[layers["layer"] >= 1]
    bad_grad = g.loc[~g["grad_norm"].map(math.isfinite), "epoch"]
    bad_loss = loss.index[~loss.map(math.isfinite).to_numpy()]
    if "diverged" in ep:
        bad_loss = bad_loss.union(ep.loc[ep["diverged"].astype(bool), "epoch"])
    bad = sorted(set(bad_grad.tolist()) | set(bad_loss.tolist()))
    if bad:
        return "did not train", int(bad[0])
    if loss.iloc[-1] > explode * chance:
        return "did not train", None
    collapsed = g.groupby("epoch")["grad_norm"].apply(lambda v: bool((v < threshold).all()))
    # high[e]: the loss is >= loss_frac * chance at e and at every later epoch (reverse cumulative min)
    high = (loss[::-1].cummin()[::-1] >= loss_frac * chance).reindex(collapsed.index, fill_value=False)
    hits = collapsed.index[(collapsed & high).to_numpy()]
    if len(hits):
        return "trapped", int(hits[0])
    if "train_acc" in ep and ep["train_acc"].iloc[-1] >= trained_acc:
        return "trained", None
    return "not trapped", None


def tail_change(epochs: pd.DataFrame, frac: float = 0.25) -> float:
    """|loss(last epoch) - loss(epoch at 1 - ``frac`` of the run)|: how much the loss still moved over the
    last ``frac`` of the budget (0 for a flat curve: more epochs of the same optimiser would not help)."""
    ep = epochs.sort_values("epoch")
    i = int(round((1 - frac) * (len(ep) - 1)))
    return float(abs(ep["loss"].iloc[-1] - ep["loss"].iloc[i]))


def run_table(EP: pd.DataFrame, LA: pd.DataFrame, keys: list[str], chance, threshold: float, *,
              order: list[str] | None = None, **status_kw) -> pd.DataFrame:
    """One row per run of a grid (``keys`` identify a run in both tables, e.g. graph, model, seed):
    final loss and accuracies, :func:`trap_status` and its epoch, the loss change over the last quarter
    (:func:`tail_change`) and the largest ||W(k)||_2 reached. ``chance``: a number, or a function of the
    row's key dict giving that run's chance loss. ``order`` (model labels, e.g. ``["GNN L=5", "GNN L=40"]``):
    the rows sorted by model in that order, then by the other keys."""
    rows = []
    for vals, la in LA.groupby(keys):
        sel = dict(zip(keys, vals if isinstance(vals, tuple) else (vals,)))
        ep = EP.loc[np.logical_and.reduce([EP[k] == v for k, v in sel.items()])]
        ch = chance(sel) if callable(chance) else float(chance)
        status, epoch = trap_status(ep, la, ch, threshold, **status_kw)
        w = la.loc[la["layer"] >= 1]
        rows.append(dict(sel, final_loss=float(ep["loss"].iloc[-1]), train_acc=float(ep["train_acc"].iloc[-1]),
                         test_acc=float(ep["test_acc"].iloc[-1]), chance=ch, status=status, status_epoch=epoch,
                         tail_change=tail_change(ep),
                         max_grad_end=float(w.loc[w["epoch"] == w["epoch"].max(), "grad_norm"].max()),
                         w_spec_max=float(w["w_spec"].max()) if "w_spec" in w else float("nan")))
    table = pd.DataFrame(rows)
    if order is None:
        return table
    return table.sort_values(["model"] + [k for k in keys if k != "model"],
                             key=lambda c: c.map(order.index) if c.name == "model" else c)


def s_grid(graphs: dict, s_values, depth: int, threshold: float, **train_kw):
    """Train the ``depth``-layer GNN and MLP from every initial spectral norm s of ``s_values`` on every graph of
    ``graphs`` ({graph seed: Graph}; the model seed equals the graph seed) with :func:`train_graphs`
    (``train_kw``: hidden, activation, init, lr, epochs, device, ...).

    Returns (epochs, layers, runs): the two history tables and the :func:`run_table` keyed by graph, kind, s and
    seed, each run classified by :func:`trap_status` (gradients below ``threshold``) against its graph's
    :func:`chance_loss`."""
    runs = [dict(kind=k, depth=depth, s=float(sv), seed=gs) for gs in graphs for sv in s_values for k in ("GNN", "MLP")]
    EP, LA = [], []
    for gs, g in graphs.items():
        ep, la = train_graphs({gs: g}, [r for r in runs if r["seed"] == gs], **train_kw)
        EP.append(ep)
        LA.append(la)
    EP, LA = pd.concat(EP, ignore_index=True), pd.concat(LA, ignore_index=True)
    chance = {gs: chance_loss(g) for gs, g in graphs.items()}
    return EP, LA, run_table(EP, LA, ["graph", "kind", "s", "seed"], lambda r: chance[r["graph"]], threshold)


def offset_graph(graph, size: float, direction: torch.Tensor | None = None):
    """The same graph with a node-independent offset added to every node's features,
    x_i <- x_i + ``size`` u  (u: ``direction`` normalised, default the all-ones direction)."""
    from dataclasses import replace

    u = torch.ones(graph.num_features) if direction is None else direction.to(graph.x.dtype)
    u = u / torch.linalg.norm(u)
    return replace(graph, x=graph.x + size * u, meta=dict(graph.meta, offset=float(size)))


@torch.no_grad()
def component_decay(graph, steps: int, propagation_kind: str = "bistochastic") -> pd.DataFrame:
    """Follow P^k X for k = 0..``steps`` (no weights, no activation), split into three orthogonal parts:

        constant  ||(1/n) 1 1^T P^k X||_F   the node-independent part: P 1 = 1 and 1^T P = 1^T keep it whole;
        class     ||z z^T P^k X||_F         z = the centred, normalised label vector; on a CSBM ~ lambda^k;
        rest      what is left (the within-class noise, contracted at least as fast).

    Returns one row per k with the three norms and class/constant."""
    from ..graphs import propagation

    P = propagation(graph, propagation_kind, dtype=torch.float64)
    X = graph.x.double()
    y = graph.y.double()
    z = y - y.mean()
    z = z / torch.linalg.norm(z)
    rows = []
    for k in range(steps + 1):
        const = X.mean(0, keepdim=True).expand_as(X)
        cls = torch.outer(z, z @ X)
        rest = X - const - cls
        rows.append(dict(k=k, constant=float(torch.linalg.norm(const)), **{"class": float(torch.linalg.norm(cls))},
                         rest=float(torch.linalg.norm(rest))))
        X = P @ X
    out = pd.DataFrame(rows)
    out["class_over_constant"] = out["class"] / out["constant"]
    return out


def solve_last_layer_(model, graph, *, loss: str = "ce", device="auto", max_iter: int = 500):
    """Train W(L) alone to stationarity, exactly: with every other weight frozen, the output
    H(L) = F W(L) is linear in W(L) (F = P X(L-1) fixed), so the last layer's problem is a least-squares
    fit (``loss='mse'``, solved in closed form) or a convex logistic regression (``loss='ce'``, solved
    by L-BFGS in float64).  W(L) is overwritten in place; then ONE traced forward/backward pass gives
    every layer's gradient at that point.  The model is converted to float64 (in place).

    Returns (Signals, info) with info = dict(loss, last_grad, iterations)."""
    from ..graphs import propagation
    from ..signals import loss_fn, trace
    from ..training import resolve_device

    dev = resolve_device(device)
    model = model.to(dev).double()  # float64 throughout: the oversmoothed signal sits below float32 resolution
    g = graph.to(dev)
    op = None if model.propagation == "identity" else propagation(g, model.propagation, dev, dtype=torch.float64)
    x, mask = g.x.double(), g.train_mask
    with torch.no_grad():
        X = x
        for layer in model.layers[:-1]:
            X = model.rho(layer(X) if op is None else op @ layer(X))
        Fm = X if op is None else op @ X  # F = P X(L-1): H(L) = F W(L)
    W = model.layers[-1].weight.detach().clone()
    iters = 0
    if loss == "mse":
        Y = F.one_hot(g.y[mask], W.shape[1]).double()
        A, Y = Fm[mask].cpu(), Y.cpu()
        # truncated-SVD least squares: directions of F below 1e-10 of its top singular value are float64 noise
        # (the oversmoothed F is nearly rank one); fitting them would only blow up W
        W = torch.linalg.lstsq(A, Y, rcond=1e-10, driver="gelsd").solution
        W = W.to(dev)
    elif loss == "ce":
        W.requires_grad_(True)
        opt = torch.optim.LBFGS([W], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                                history_size=50, line_search_fn="strong_wolfe")
        lf = loss_fn("ce")

        def closure():
            opt.zero_grad()
            L = lf(Fm @ W, g.y, mask)
            L.backward()
            return L

        with cpu_threads(1):  # a tiny problem: with several threads (and a busy CPU) each step is ~100x slower
            opt.step(closure)
        iters = opt.state[opt._params[0]].get("n_iter", 0)
        W = W.detach()
    else:
        raise ValueError(f"unknown loss {loss!r}; choose 'ce' or 'mse'")
    with torch.no_grad():
        model.layers[-1].weight.copy_(W)
    model.zero_grad(set_to_none=True)
    _, sig = trace(model, x, op, g.y, mask, loss=loss)
    info = dict(loss=sig.loss, last_grad=float(torch.linalg.norm(sig.dW[-1].double())), iterations=iters)
    return sig, info


def solve_last_layers(graph, depth: int, *, seed: int, label=None, hidden: int = 32, activation: str = "centred_softplus",
                      init: str = "orthogonal", s: float = 1.0, losses=("ce", "mse"), device="auto") -> pd.DataFrame:
    """Theorem 3's experiment on one graph: for every loss of ``losses`` and for the ``depth``-layer GNN and
    MLP (built with ``seed``), W(L) is solved alone (:func:`solve_last_layer_`) and every layer's gradient read.

    Returns one row per (loss_fn, model, layer): ``graph`` (= ``label``), ``grad_norm`` ||dL/dW(k)||_F, the
    solved ``loss`` and the graph's ``chance`` (:func:`chance_loss`) for that loss."""
    rows = []
    for loss in losses:
        for kind in ("GNN", "MLP"):
            model = build(vanilla(kind), graph.num_features, hidden, graph.num_classes, depth, activation=activation,
                          init=init, s=s, seed=seed)
            sig, info = solve_last_layer_(model, graph, loss=loss, device=device)
            for k, dw in enumerate(sig.dW, start=1):
                rows.append(dict(graph=label, loss_fn=loss, model=f"{kind} L={depth}", layer=k,
                                 grad_norm=float(torch.linalg.norm(dw)), loss=info["loss"], chance=chance_loss(graph, loss)))
    return pd.DataFrame(rows)


def last_layer_summary(solved: pd.DataFrame) -> pd.DataFrame:
    """One row per (graph, loss_fn, model) of a :func:`solve_last_layers` table: the solved ``loss`` and ``chance``,
    the last layer's gradient norm ``grad_last_layer``, the largest of the other layers' ``max_grad_other_layers``,
    and ``ratio`` = loss / chance."""
    last = solved.layer == solved.groupby(["graph", "loss_fn", "model"]).layer.transform("max")
    out = (solved.assign(last=last).groupby(["graph", "loss_fn", "model"])
           .apply(lambda d: pd.Series(dict(loss=d.loss.iloc[0], chance=d.chance.iloc[0], grad_last_layer=d[d["last"]].grad_norm.max(),
                                           max_grad_other_layers=d[~d["last"]].grad_norm.max())), include_groups=False)
           .reset_index())
    out["ratio"] = out.loss / out.chance
    return out


def chance_loss(graph, loss: str = "ce", mask=None) -> float:
    """Training loss of the best node-independent (constant) prediction, on ``mask`` (train mask).

    ce  : the entropy of the label frequencies p_c, -sum_c p_c log p_c  (= log C for balanced classes);
    mse : sigma_y^2 := (1/2n) sum_i ||onehot(y_i) - ybar||^2 = (1 - sum_c p_c^2) / 2 with the
          regression loss (1/2n) sum_i ||h_i - onehot(y_i)||^2  (= 1/4 for two balanced classes).
    """
    mask = graph.train_mask if mask is None else mask
    p = torch.bincount(graph.y[mask], minlength=graph.num_classes).double()
    p = p / p.sum()
    if loss == "ce":
        q = p[p > 0]
        return float(-(q * q.log()).sum())
    if loss == "mse":
        return float(0.5 * (1 - (p ** 2).sum()))
    raise ValueError(f"unknown loss {loss!r}; choose 'ce' or 'mse'")


def proposition2(target_grad: float = 1.0) -> pd.DataFrame:
    """Paper 1's Proposition 2, made explicit: a 2-layer scalar network on n = 2 nodes,

        x = (1, 0),  W(1) = W(2) = 1,  rho = softplus,  output h_i = rho(x_i W(1)) W(2),
        loss (1/2n) sum_i (h_i - y_i)^2,

    with targets y chosen so that the output error e = h - y is orthogonal to X(1) = rho(x W(1))
    (hence dL/dW(2) = X(1)^T e / n = 0) and dL/dW(1) = ``target_grad`` for the MLP (P = I).
    The same weights and targets in the GNN with the fully oversmoothed operator P = 11^T/n
    (lambda = 0) give a constant X(1); with the same recipe (targets making dL/dW(2) = 0, i.e. the
    average output error 0) every layer's gradient vanishes.

    Returns one row per (model, layer) with the autograd gradient, and the targets used."""
    x = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    n = x.shape[0]
    rows = []
    for kind, P in (("MLP", torch.eye(n, dtype=torch.float64)), ("GNN", torch.full((n, n), 1.0 / n, dtype=torch.float64))):
        with torch.no_grad():
            h1 = P @ x  # W(1) = 1
            X1 = F.softplus(h1)
            out = P @ X1  # W(2) = 1
            # error direction orthogonal to F(1) = P X(1) (so dL/dW(2) = F(1)^T e / n = 0); for the GNN
            # F(1) is constant, so the error must have zero mean
            F1 = (P @ X1).ravel()
            e = torch.tensor([F1[1], -F1[0]], dtype=torch.float64) if kind == "MLP" else torch.tensor([1.0, -1.0], dtype=torch.float64)
            # dL/dW(1) = F(0)^T [rho'(H(1)) * (P^T e W(2))] / n is linear in e: scale e to hit target_grad
            g1 = float((P @ x).ravel() @ (torch.sigmoid(h1).ravel() * (P.t() @ e))) / n
            if abs(g1) > 1e-12:
                e = e * (target_grad / g1)
            y = (out.ravel() - e)
        W1 = torch.ones(1, 1, dtype=torch.float64, requires_grad=True)
        W2 = torch.ones(1, 1, dtype=torch.float64, requires_grad=True)
        h = P @ (F.softplus(P @ (x @ W1)) @ W2)
        L = 0.5 * ((h.ravel() - y) ** 2).mean()
        L.backward()
        for k, W in ((1, W1), (2, W2)):
            rows.append(dict(model=kind, layer=k, weight=float(W.detach()), grad=float(W.grad),
                             loss=float(L.detach()), targets=[round(float(v), 6) for v in y]))
    return pd.DataFrame(rows)


#: the readings' names of the initialisations (:data:`oversmoothing.models.INITS`), shared by C4-C7's readings
INIT_NAMES = {"glorot": "Glorot init", "glorot_gain": "Glorot with gain", "he": "He init", "orthogonal": "orthogonal",
              "gaussian": "Gaussian init"}


def init_setting(init: str, activation: str, s: float | None = None) -> str:
    """What the initialisation ``init`` draws, in words (with the gain of ``activation`` or the scale ``s``; ``s=None``:
    the symbol s, for a grid of s)."""
    from ..models import activation_gain

    if init in ("glorot_gain", "he"):
        g = activation_gain(activation)
        law = ("Glorot uniform U(-a, a), a = g sqrt(6 / (d_in + d_out))" if init == "glorot_gain"
               else "He/Kaiming normal N(0, g^2 / d_in)")
        return f"{law} with {activation}'s gain g = {g:.3g}, output layer g = 1"
    value = "s" if s is None else f"s = {s:g}"
    return {"glorot": "Glorot uniform with gain 1 (PyTorch's xavier_uniform_, PyG's default)",
            "orthogonal": f"every singular value of W(k) equal to {value}",
            "gaussian": f"Gaussian W(k) rescaled to ||W(k)||_2 = {value} (its other singular values smaller)"}[init]


@torch.no_grad()
def initial_spectral_norm(in_dim: int, hidden: int, out_dim: int, depth: int, *, activation: str = "centred_softplus",
                          init: str = "orthogonal", s: float = 1.0, seed: int = 0) -> float:
    """max_k ||W(k)||_2 of paper 1's network as ``init`` draws it (the same weights for the GNN and its MLP twin):
    the s of Theorem 3's assumption s*lambda < 1 for an init that is not defined by s."""
    from ..measures import spectral_norm
    from ..models import weights

    model = build(vanilla("GNN"), in_dim, hidden, out_dim, depth, activation=activation, init=init, s=s, seed=seed)
    return max(spectral_norm(W) for W in weights(model))


def largest_stable_lr(table: pd.DataFrame, lr_col: str = "lr") -> float:
    """The largest learning rate of a run table (one or more runs per ``lr_col`` value, e.g. the deep MLP under
    plain gradient descent) at which no run diverged or exploded (status "did not train"): the step size of
    gradient descent is bounded by the loss's curvature, and the fastest stable step is the standard choice.
    NaN if every learning rate diverged."""
    ok = table.groupby(lr_col)["status"].apply(lambda v: bool((v != "did not train").all()))
    return float(ok.index[ok.to_numpy()].max()) if ok.any() else float("nan")


def status_cell(table: pd.DataFrame, model: str) -> str:
    """One network's runs of a :func:`run_table` in a few words: the most common status with its count, then the
    others, and the final loss range, e.g. "trained 2/3, not trapped 1/3 (loss 0.015-0.461)"; "-" if it has no run."""
    d = table.loc[table["model"] == model]
    if not len(d):
        return "-"
    counts = d["status"].value_counts()
    text = ", ".join(f"{st} {n}/{len(d)}" for st, n in counts.items())
    lo, hi = d["final_loss"].min(), d["final_loss"].max()
    loss = "diverged" if not np.isfinite([lo, hi]).all() else (f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}")
    return f"{text} (loss {loss})"

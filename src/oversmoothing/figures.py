"""One house style and the plot helpers the chapters share.

All helpers take tidy DataFrames (as :class:`oversmoothing.training.History` produces) and an
optional ``ax``; they label axes and return the axes.  Log scales are used for quantities that
decay exponentially (measures, gradient norms).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = ["use_style", "PALETTE", "subplots", "layer_heatmap", "layer_curves", "loss_curves", "label_for"]

PALETTE = "colorblind"
LABELS = {
    "E_X": r"$E(X^{(k)})$", "E_B": r"$E(B^{(k)})$", "mu_X": r"$\mu(X^{(k)})$", "mu_G": r"$\mu(\partial L/\partial X^{(k)})$",
    "rel_mu_X": r"$\mu(X^{(k)})/\|X^{(k)}\|_F$", "rel_mu_B": r"$\mu(B^{(k)})/\|B^{(k)}\|_F$",
    "rel_mu_G": r"$\mu(G^{(k)})/\|G^{(k)}\|_F$", "grad_norm": r"$\|\partial L/\partial W^{(k)}\|_F$",
    "w_spec": r"$\|W^{(k)}\|_2$", "dirichlet_X": r"Dirichlet energy of $X^{(k)}$", "mad_X": r"MAD$(X^{(k)})$",
    "loss": "training loss", "train_acc": "train accuracy", "test_acc": "test accuracy", "val_acc": "validation accuracy",
    "layer": "layer $k$", "epoch": "epoch",
}


def label_for(column: str) -> str:
    return LABELS.get(column, column.replace("_", " "))


def use_style(context: str = "notebook") -> None:
    """Seaborn whitegrid theme, colour-blind palette, readable sizes, crisp PNGs in the book."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE, font_scale=0.95,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (6.4, 4.0),
                      "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False,
                      "legend.frameon": False, "figure.constrained_layout.use": True})


def subplots(nrows=1, ncols=1, width=4.2, height=3.4, **kw):
    """plt.subplots with a per-panel size (inches)."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def _positive(values):
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v) & (v > 0)]


def layer_heatmap(layers, value: str = "grad_norm", ax=None, log: bool = True, cmap: str = "viridis",
                  title: str | None = None, vmin=None, vmax=None):
    """Heatmap of a per-layer quantity: epochs on x, layers k on y (k = 1 at the bottom)."""
    from matplotlib.colors import LogNorm

    ax = ax or plt.gca()
    table = layers.pivot_table(index="layer", columns="epoch", values=value)
    table = table.loc[table.index >= 1] if value in ("grad_norm", "w_spec") or value.endswith("_B") else table
    data = table.to_numpy(dtype=float)
    pos = _positive(data)
    norm = None
    if log and pos.size:
        norm = LogNorm(vmin=vmin or max(pos.min(), pos.max() * 1e-12), vmax=vmax or pos.max())
        data = np.where(data > 0, data, np.nan)
    epochs, ks = table.columns.to_numpy(), table.index.to_numpy()
    mesh = ax.pcolormesh(_edges(epochs), _edges(ks), data, cmap=cmap, norm=norm, shading="flat")
    ax.figure.colorbar(mesh, ax=ax, label=label_for(value))
    ax.set(xlabel="epoch", ylabel="layer $k$", title=title)
    ax.grid(False)
    return ax


def _edges(centres):
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def layer_curves(df, y: str, x: str = "layer", hue: str | None = None, ax=None, log: bool = True,
                 title: str | None = None, marker: str = "o", **kw):
    """One line per ``hue`` value of a per-layer quantity against the layer (or k/L)."""
    ax = ax or plt.gca()
    sns.lineplot(data=df, x=x, y=y, hue=hue, marker=marker, markersize=3.5, ax=ax,
                 palette=PALETTE if hue else None, **kw)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel=label_for(x), ylabel=label_for(y), title=title)
    return ax


def loss_curves(epochs_df, y: str = "loss", hue: str | None = None, ax=None, log: bool = False,
                title: str | None = None, **kw):
    """Training curves (loss or an accuracy) against epoch, one line per ``hue`` value."""
    ax = ax or plt.gca()
    sns.lineplot(data=epochs_df, x="epoch", y=y, hue=hue, ax=ax, palette=PALETTE if hue else None, **kw)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=label_for(y), title=title)
    return ax

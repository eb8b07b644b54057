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

__all__ = ["use_style", "PALETTE", "PAGE_WIDTH", "subplots", "layer_heatmap", "layer_curves", "loss_curves", "label_for",
           "show_table", "format_number", "depth_panels", "training_profiles", "figure1"]

#: the widest figure (inches) that fits the book's text column unscaled at the house style's figure.dpi (110):
#: 5.9 in = 649 px, 671 px with the 0.1 in margins of the inline PNG: the column is 688 px wide in a 1280 px
#: window (672 px inside a figure); wider PNGs are shrunk by the browser and their fonts with them
PAGE_WIDTH = 5.9

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
    """plt.subplots with a per-panel size (inches).  The figure is never wider than :data:`PAGE_WIDTH`:
    wider requests are narrowed (panel heights kept), so the page shows it at its own size."""
    total = min(width * ncols, PAGE_WIDTH)
    return plt.subplots(nrows, ncols, figsize=(total, height * nrows), **kw)


def format_number(x, digits: int = 3) -> str:
    """One table cell as text: ``digits`` decimals (``digits`` significant digits for values below
    ``10**-(digits-1)``, which would keep one or none), scientific (``digits - 1`` decimals) only below
    10^-3 and from 10^6 in size; integers as integers, booleans as True/False, NaN/None as "–"."""
    if x is None:
        return "–"
    if isinstance(x, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_number(v, digits) for v in x) + "]"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x):d}"
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not np.isfinite(x):
            return "–" if np.isnan(x) else ("∞" if x > 0 else "−∞")
        if x == 0:
            return "0"
        if abs(x) < 1e-3 or abs(x) >= 1e6:
            return f"{x:.{max(digits - 1, 0)}e}"
        if abs(x) < 10.0 ** -(digits - 1):  # 0.00539 would lose its digits at 3 decimals: significant digits
            return f"{x:.{max(digits, 1)}g}"
        return f"{x:.{digits}f}"
    return str(x)


def show_table(df, digits: int = 3, index: bool = False, caption: str | None = None, formats: dict | None = None):
    """A DataFrame as the book shows it: a pandas Styler with every number through :func:`format_number`
    (no raw ``1.377998e+02``), the default 0..n-1 index hidden unless ``index=True`` (keep it when the
    index names the rows), an optional caption.  ``formats`` maps a column to its own format string or
    callable (e.g. ``{"p": "{:.1e}"}``)."""
    import pandas as pd

    df = df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
    fmt = lambda v: format_number(v, digits)  # noqa: E731
    sty = df.style.format(fmt)
    sty = sty.format_index(fmt, axis=0).format_index(fmt, axis=1)
    if formats:
        sty = sty.format({c: f for c, f in formats.items() if c in df.columns}, na_rep="–")
    if not index:
        sty = sty.hide(axis="index")
    if caption:
        sty = sty.set_caption(caption)
    return sty


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


def depth_panels(df, panels, x: str = "depth", hue: str = "name", ncols: int = 2, width: float = 2.95,
                 height: float = 2.7, xlabel: str = "depth $L$", title: str | None = None):
    """One panel per ``(column, label, log)`` of ``panels``: the mean of ``column`` over the rows (runs) against
    ``x`` on a log axis with a tick at every value, one line and marker per ``hue`` value (log y if ``log``);
    one legend for all panels, below them.  Returns the figure."""
    nrows = -(-len(panels) // ncols)
    fig, axes = subplots(nrows, ncols, width=width, height=height)
    axes = np.atleast_1d(axes).ravel()
    ticks = sorted(df[x].unique())
    last = axes[len(panels) - 1]
    for ax, (col, label, log) in zip(axes, panels):
        d = df.groupby([hue, x], sort=False)[col].mean().reset_index()
        sns.lineplot(data=d, x=x, y=col, hue=hue, style=hue, markers=True, dashes=False, ax=ax, palette=PALETTE,
                     legend=ax is last)
        ax.set(xscale="log", yscale="log" if log else "linear", xlabel=xlabel, ylabel=label)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    for ax in axes[len(panels):]:
        ax.axis("off")
    last.get_legend().remove()
    fig.legend(*last.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def training_profiles(layers, backward: str = "E_B", forward: str = "rel_mu_X", heat: str = "grad_norm",
                      titles=("backward", "forward", "gradient norms"), height: float = 6.0,
                      title: str | None = None):
    """A per-layer record over training (a :class:`~oversmoothing.training.History`'s ``layers``) in three
    panels: top left ``backward`` (log) and top right ``forward`` against the layer k at the first, middle and
    last recorded epochs (one legend for both, where it hides the fewest points); below, a heatmap of ``heat``
    over epochs and layers.  Returns the figure."""
    rec = sorted(layers["epoch"].unique())
    shown = sorted({rec[0], rec[len(rec) // 2], rec[-1]})
    sub = layers[layers["epoch"].isin(shown)].assign(epoch=lambda d: d["epoch"].astype(str))
    fig, axd = plt.subplot_mosaic([["b", "f"], ["g", "g"]], figsize=(PAGE_WIDTH, height))
    layer_curves(sub[sub["layer"] >= 1], backward, hue="epoch", ax=axd["b"], log=True, title=titles[0])
    layer_curves(sub, forward, hue="epoch", ax=axd["f"], log=False, title=titles[1])
    axd["f"].get_legend().remove()
    axd["b"].legend(title="epoch", loc="best", framealpha=0.9)
    layer_heatmap(layers, heat, ax=axd["g"], title=titles[2])
    if title:
        fig.suptitle(title)
    return fig


def figure1(layers, epochs, grad_models, loss_models, *, chance: float | None = None, near_zero: float | None = None,
            cmap: str = "viridis", height: float = 6.4, title: str | None = None):
    """Paper 1's Figure 1 as the paper draws it, from ONE training run per network (tidy ``layers`` and ``epochs``
    tables of :func:`oversmoothing.experiments.traps.train_grid`, with a ``model`` column): top, one panel per model
    of ``grad_models`` (e.g. the deep GNN and the deep MLP) with every layer's ||dL/dW(k)||_F against the epoch,
    one line per layer coloured by its depth k (one colour bar for both panels; the output layer k = L drawn last,
    outlined in black); below, the training loss of every model of ``loss_models`` (GNNs solid, MLPs dashed), with
    the ``chance`` loss (dashed grey) and, on the gradient panels, ``near_zero`` (dotted).  Log y axes.  Returns
    the figure."""
    from matplotlib import cm, colors
    from matplotlib import patheffects as pe
    from matplotlib.lines import Line2D

    top = [f"g{i}" for i in range(len(grad_models))]
    fig, axd = plt.subplot_mosaic([top, ["loss"] * len(top)], figsize=(PAGE_WIDTH, height),
                                  height_ratios=[1.15, 1.0])
    depth = int(layers.loc[layers["model"].isin(grad_models), "layer"].max())
    norm = colors.Normalize(1, depth)
    cmap_ = plt.get_cmap(cmap)
    values = layers.loc[layers["model"].isin(grad_models) & (layers["layer"] >= 1), "grad_norm"].to_numpy(dtype=float)
    pos = _positive(values)
    ylim = (pos.min() / 3, pos.max() * 3) if pos.size else None
    for i, (name, model) in enumerate(zip(top, grad_models)):
        ax = axd[name]
        d = layers[(layers["model"] == model) & (layers["layer"] >= 1)].sort_values("epoch")
        L = int(d["layer"].max())
        for k, dk in d.groupby("layer"):
            y = dk["grad_norm"].clip(lower=1e-30)
            if k == L:  # the output layer last, outlined
                ax.plot(dk["epoch"], y, color="black", lw=3.0, zorder=3)
                ax.plot(dk["epoch"], y, color=cmap_(norm(k)), lw=1.4, zorder=4)
            else:
                ax.plot(dk["epoch"], y, color=cmap_(norm(k)), lw=0.8, alpha=0.9, zorder=2)
        if near_zero is not None:
            ax.axhline(near_zero, color="grey", ls=":", lw=1.2, zorder=5)
        ax.set(yscale="log", xlabel="epoch", title=model, ylim=ylim)
        if i == 0:
            ax.set_ylabel(r"$\|\partial L/\partial W^{(k)}\|_F$")
        else:
            ax.tick_params(labelleft=False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap_), ax=[axd[n] for n in top], label="layer $k$ (1: input side)",
                 pad=0.02, fraction=0.05)
    ax = axd["loss"]
    palette = sns.color_palette(PALETTE, len(loss_models))
    for colour, model in zip(palette, loss_models):
        d = epochs[epochs["model"] == model].sort_values("epoch")
        ax.plot(d["epoch"], d["loss"].clip(lower=1e-30), color=colour, lw=1.6,
                ls="--" if str(model).upper().startswith("MLP") else "-", label=model)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance ({chance:.3f})")
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color=cmap_(norm(depth)), lw=1.4, label="top: output layer $k = L$",
                          path_effects=[pe.Stroke(linewidth=3.0, foreground="black"), pe.Normal()]))
    if near_zero is not None:
        handles.append(Line2D([], [], color="grey", ls=":", lw=1.2, label=f"top: near zero ({near_zero:g})"))
    ax.set(yscale="log", xlabel="epoch", ylabel="training loss", title="training loss")
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7.5)
    if title:
        fig.suptitle(title)
    return fig

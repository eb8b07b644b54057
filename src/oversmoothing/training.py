"""Full-batch training that records, every ``record_every`` epochs, the per-layer signals.

Each step is ONE forward/backward pass.  At a recorded epoch that asks for measures of the signals it is
traced (:func:`oversmoothing.signals.trace`): the measures of X(k), B(k) = dL/dH(k), G(k) = dL/dX(k) and
the gradient norms ||dL/dW(k)||_F come from the very pass that produces the update, taken *before* the
update of that epoch (epoch 0 = at init).  Every other epoch is a plain step
(:func:`oversmoothing.signals.step`: the same numbers, no per-layer tensors kept), so the per-layer float64
measures cost only where they are read.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from .devices import TRAINING_THREADS, cpu_threads, resolve_device
from .measures import measure, spectral_norm
from .models import weights
from .signals import Signals, step, trace

__all__ = ["resolve_device", "History", "fit", "accuracy", "OPTIMIZERS"]

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}
SIGNALS = ("X", "H", "B", "G")


def accuracy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    if int(mask.sum()) == 0:
        return float("nan")
    return float((logits[mask].argmax(1) == y[mask]).double().mean())


def _progress_enabled(progress):
    if progress is not None:
        return progress
    return os.environ.get("OVERSMOOTHING_PROGRESS", "1") not in ("0", "false", "no")


@dataclass
class History:
    """Tidy training record.

    epochs : one row per epoch  (epoch, loss, train_acc, val_acc, test_acc, diverged, seconds)
    layers : one row per (recorded epoch, layer k)  (grad_norm = ||dL/dW(k)||_F, w_spec = ||W(k)||_2,
             and one column "<measure>_<signal>" per requested measure and signal)
    """

    epochs: pd.DataFrame
    layers: pd.DataFrame
    diverged_at: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def _finite(sig) -> bool:
    if not math.isfinite(sig.loss):
        return False
    return all(g is None or bool(torch.isfinite(g).all()) for g in sig.dW)


def _layer_rows(epoch, sig, graph, measures, signals):
    rows = []
    L = len(sig.dW)
    per_signal = {"X": sig.X, "G": sig.G, "H": [None] + sig.H, "B": [None] + sig.B}
    for k in range(L + 1):
        row = {"epoch": epoch, "layer": k}
        if k >= 1:
            dw, w = sig.dW[k - 1], sig.W[k - 1]
            row["grad_norm"] = float("nan") if dw is None else float(torch.linalg.norm(dw.double()))
            row["w_spec"] = float("nan") if w is None else spectral_norm(w)
        for s in signals:
            seq = per_signal[s]
            T = seq[k] if k < len(seq) else None
            for m in measures:
                row[f"{m}_{s}"] = measure(m, T, graph) if T is not None else float("nan")
        rows.append(row)
    return rows


#: set by ``oversmoothing build --dry-run``: the path of a log; every fit then trains at most
#: :data:`ESTIMATE_EPOCHS` epochs, timed, and appends {desc, planned epochs, trained epochs, seconds, record_every,
#: patience, each epoch's seconds and whether it was recorded} to it
ESTIMATE_ENV = "OVERSMOOTHING_ESTIMATE"
ESTIMATE_EPOCHS = 2


def _estimating(epochs: int) -> int:
    """The epochs to train: ``epochs``, or at most :data:`ESTIMATE_EPOCHS` while a dry run estimates the cost."""
    return min(epochs, ESTIMATE_EPOCHS) if os.environ.get(ESTIMATE_ENV) else epochs


def _log_estimate(desc: str, planned: int, trained: int, seconds: float, **timing) -> None:
    import json

    with open(os.environ[ESTIMATE_ENV], "a") as f:
        f.write(json.dumps({"kind": "fit", "desc": desc, "planned_epochs": planned, "trained_epochs": trained,
                            "seconds": seconds, **timing}) + "\n")


def fit(model, graph, *, epochs: int = 100, lr: float = 0.01, weight_decay: float = 0.0,
        optimizer: str = "adam", loss: str = "ce", params=None, measures=("E",), signals=("X", "B"),
        record_every: int = 1, device="auto", seed: int | None = 0, progress: bool | None = None,
        desc: str | None = None, patience: int | None = None) -> History:
    """Train ``model`` on ``graph`` full-batch and return a :class:`History`.

    params       : parameters to optimise (default: all); every layer's gradient is recorded anyway,
                   so ``params=model.layers[-1].parameters()`` trains only the last layer (C5).
    measures     : names from :data:`oversmoothing.measures.MEASURES`, applied to each of ``signals``
                   (subset of X, H, B, G) at every recorded epoch.
    NaN/Inf in the loss or a gradient is recorded (``diverged`` column, ``History.diverged_at``)
    and ends training; it never raises.
    threads      : on the CPU fit trains with :data:`~oversmoothing.devices.TRAINING_THREADS` (1) intra-op threads,
                   whatever the caller's setting (restored afterwards): thread counts change float rounding, which
                   a chaotic run amplifies, so a run gives the same numbers in a kernel, a worker or a script.
    patience     : early stopping: training ends at the first epoch whose validation accuracy has not
                   improved strictly on the best one for ``patience`` epochs (that epoch is the last row, and
                   is recorded like the final one; ``History.meta["stopped_at"]``); None: all ``epochs``.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be None or a positive integer, got {patience!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    bad = [s for s in signals if s not in SIGNALS]
    if bad:
        raise ValueError(f"unknown signal(s) {bad}; choose from {SIGNALS}")
    for m in measures:
        measure(m, None)  # validates the name
    dev = resolve_device(device)
    with cpu_threads(TRAINING_THREADS, dev):  # one thread: the same numbers wherever the run trains
        planned, epochs = epochs, _estimating(epochs)
        if seed is not None:
            torch.manual_seed(seed)
        model = model.to(dev)
        g = graph.to(dev)
        op = model.operator(g, dev)
        opt = OPTIMIZERS[optimizer](list(params) if params is not None else model.parameters(), lr=lr,
                                    weight_decay=weight_decay)
        needs_eval_pass = any(getattr(m, "p", 0) for m in model.modules()
                              if isinstance(m, torch.nn.Dropout)) or getattr(model, "dropout", 0) \
            or getattr(model, "stochastic", False)  # e.g. DropEdge: evaluate without the randomness

        from tqdm import tqdm

        epoch_rows, layer_rows, diverged_at = [], [], None
        best_val, best_epoch, stopped_at = -math.inf, 0, None
        start = time.perf_counter()
        bar = tqdm(range(epochs + 1), desc=desc or type(model).__name__, disable=not _progress_enabled(progress),
                   leave=False, mininterval=1.0)
        traced = bool(measures) and bool(signals)  # rows of only grad_norm / w_spec need no trace
        was_recorded = []  # per epoch (the dry run's estimate tells traced epochs from plain ones)

        def recorded_pass(sig, rng):
            """This epoch's plain pass once more as a recorded one (a diverged or an early-stopping epoch is recorded
            too): traced from the same random state (the same dropout masks), or, with nothing to trace, its weights."""
            if not traced:
                return Signals(sig.loss, sig.logits, [], [], [], [], [None if w is None else w.detach()
                                                                    for w in weights(model)], sig.dW)
            torch.set_rng_state(rng)
            opt.zero_grad(set_to_none=True)
            model.train()
            return trace(model, g.x, op, g.y, g.train_mask, loss=loss, keep=signals)[1]

        for epoch in bar:
            t0 = time.perf_counter()
            model.train()
            recorded = epoch % record_every == 0 or epoch == epochs
            rng = torch.get_rng_state() if traced and not recorded else None
            opt.zero_grad(set_to_none=True)
            if recorded and traced:
                _, sig = trace(model, g.x, op, g.y, g.train_mask, loss=loss, keep=signals)
            else:
                sig = step(model, g.x, op, g.y, g.train_mask, loss=loss, weights_too=recorded)
            ok = _finite(sig)
            if not ok and not recorded:
                sig = recorded_pass(sig, rng)
            if needs_eval_pass:
                model.eval()
                with torch.no_grad():
                    logits = model(g.x, op)
            else:
                logits = sig.logits
            row = dict(epoch=epoch, loss=sig.loss if ok else float("nan"),
                       train_acc=accuracy(logits, g.y, g.train_mask), val_acc=accuracy(logits, g.y, g.val_mask),
                       test_acc=accuracy(logits, g.y, g.test_mask), diverged=not ok)
            if patience is not None and ok:
                if row["val_acc"] > best_val:
                    best_val, best_epoch = row["val_acc"], epoch
                elif epoch - best_epoch >= patience and epoch < epochs:
                    stopped_at = epoch
                    if not recorded:
                        sig = recorded_pass(sig, rng)
                    recorded = True
            was_recorded.append(recorded or not ok)
            if recorded or not ok:
                layer_rows += _layer_rows(epoch, sig, g, measures if traced else (), signals if traced else ())
            if not ok or stopped_at is not None:
                diverged_at = None if ok else epoch
                row["seconds"] = time.perf_counter() - t0
                epoch_rows.append(row)
                break
            if epoch < epochs:  # epoch `epochs` only records the final state
                opt.step()
            row["seconds"] = time.perf_counter() - t0
            epoch_rows.append(row)
            bar.set_postfix(loss=f"{sig.loss:.3g}", refresh=False)
        bar.close()
        meta = dict(device=str(dev), seed=seed, epochs=epochs, lr=lr, optimizer=optimizer, loss=loss,
                    wall_time_s=time.perf_counter() - start, patience=patience, stopped_at=stopped_at,
                    threads=torch.get_num_threads() if dev.type == "cpu" else None)
        if os.environ.get(ESTIMATE_ENV):
            _log_estimate(desc or type(model).__name__, planned, len(epoch_rows), meta["wall_time_s"],
                          record_every=record_every, patience=patience,
                          epoch_seconds=[r["seconds"] for r in epoch_rows], recorded=was_recorded)
        return History(pd.DataFrame(epoch_rows), pd.DataFrame(layer_rows), diverged_at, meta)

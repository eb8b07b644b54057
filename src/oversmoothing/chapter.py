"""The opening of every chapter (DESIGN.md, "A chapter's contract") in one call."""
from __future__ import annotations

import os
import warnings

import torch

from .figures import use_style
from .parameters import check_all
from .report import ClaimsTable, Provenance
from .training import resolve_device

__all__ = ["setup_chapter", "chapter_parameters"]

_NOT_PARAMETERS = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_LITERALS = (bool, int, float, str, list, tuple, dict, type(None))


def chapter_parameters(namespace: dict) -> dict:
    """The chapter's parameters in ``namespace`` (the notebook's ``globals()`` right after its
    parameters cell and papermill's injected cell): every public lower-case name bound to a literal value
    (UPPER_CASE names are constants imported from the library, e.g. ``figures.PALETTE``)."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not k.isupper() and k not in _NOT_PARAMETERS and isinstance(v, _LITERALS)}


def setup_chapter(name: str, namespace: dict):
    """Check the parameters, then house style, threads, device, seed; returns ``(device, provenance, claims)``.

    namespace : the notebook's ``globals()``; its parameters are checked against
                :data:`oversmoothing.parameters.RULES` (a bad value stops the chapter here, before any work,
                with a message naming the parameter and what is accepted)
    device    : "auto" | "cpu" | "cuda[:i]", resolved by :func:`oversmoothing.training.resolve_device`
                ("cuda" without a GPU is an error, not a silent fallback)
    seed      : seeds torch's global RNG (models and ``fit`` take their own seeds as well)
    threads   : torch CPU threads are not a chapter parameter: the runner gives every kernel its fair share
                of the cores (``OVERSMOOTHING_THREADS`` = cores // chapters run at once), so parallel chapters do
                not oversubscribe a shared machine; run by hand, torch's default is kept unless that variable is set
    """
    params = check_all(chapter_parameters(namespace), name)
    namespace.update(params)          # e.g. depth = 5.0 from papermill's YAML becomes 5
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's note on ipywidgets: not a result
    use_style()
    share = os.environ.get("OVERSMOOTHING_THREADS", "")
    if share.isdigit() and int(share) > 0:
        torch.set_num_threads(int(share))
    dev = resolve_device(params.get("device", "auto"))
    seed = params.get("seed", 0)
    torch.manual_seed(seed)
    prov = Provenance(seed, dev, parameters=params)
    return dev, prov, ClaimsTable(name, prov, judge=params.get("judge_claims", True))

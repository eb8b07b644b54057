"""The opening of every chapter (DESIGN.md, "A chapter's contract") in one call."""
from __future__ import annotations

import torch

from .figures import use_style
from .report import ClaimsTable, Provenance
from .training import resolve_device

__all__ = ["setup_chapter"]


def setup_chapter(name: str, seed: int, device: str = "auto", threads: int | None = None):
    """House style, device, seed; returns ``(device, provenance, claims)`` for chapter ``name``.

    device  : "auto" | "cpu" | "cuda[:i]", resolved by :func:`oversmoothing.training.resolve_device`
              ("cuda" without a GPU is an error, not a silent fallback)
    seed    : seeds torch's global RNG (models and ``fit`` take their own seeds as well)
    threads : torch CPU threads; None or 0 keeps torch's default
    """
    use_style()
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    prov = Provenance(seed, dev)
    return dev, prov, ClaimsTable(name, prov)

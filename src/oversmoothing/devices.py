"""Which device a run uses (imports only torch): shared by the science (``training.fit``) and the run machinery."""
from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["resolve_device", "TRAINING_THREADS", "cpu_threads"]

#: torch's intra-op threads of every CPU training run (``training.fit``).  The number of threads changes the order
#: of torch's parallel reductions, hence the float rounding, and a chaotic run turns rounding into a different
#: result: chapter 07's tanh-branch residual GCN (L = 64, c = 4, 200 epochs) ends at train accuracy 0.89 with one
#: thread and 0.98 with two (measured 2026-12-08), on either side of the 0.9 bar.  One thread everywhere (the
#: build's workers, a kernel, a script) gives a run the same numbers wherever it runs; parallelism comes from
#: running several runs at once (the build's workers, ``--workers``).
TRAINING_THREADS = 1


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error, not a fallback."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but no CUDA GPU is available "
                             f"(torch.cuda.is_available() is False); use device='auto' or 'cpu'")
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {device!r}; choose 'auto', 'cpu' or 'cuda[:i]'")


@contextmanager
def cpu_threads(n: int, device: str | torch.device = "cpu"):
    """Within the block torch uses ``n`` intra-op threads on the CPU (nothing changes for a CUDA ``device``);
    the caller's setting is restored after it."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

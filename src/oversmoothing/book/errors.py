"""The runner's exceptions: a user error (:class:`BookError`), failed chapters (:class:`BuildFailed`) and
Ctrl-C/SIGTERM (:class:`Interrupted`)."""
from __future__ import annotations


class BookError(Exception):
    """A user error, reported before anything runs."""


class BuildFailed(Exception):
    """One or more chapters raised (or the HTML build failed)."""


class Interrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM: queued notebooks were cancelled and running kernels stopped.

    ``results`` holds the notebooks that finished (and were kept) before the interruption."""

    def __init__(self, message: str, results: list[dict] | None = None):
        super().__init__(message)
        self.results = results or []

"""Locks and atomic folders: a lock that names its holder, run folders never shared, a folder swapped in whole."""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from .errors import BookError
from .execute import _signals_deferred


class FolderLock:
    """An exclusive lock (``flock``, released by the OS when its holder dies, even by SIGKILL) whose
    file names the holder: PID, host, start time, command.

    ``wait``: True = wait for the holder to finish (saying who it is), a number = wait at most that
    many seconds, False = fail at once. Either way the error names the holder and what to do."""

    def __init__(self, path: Path, what: str, wait: bool | float = True, advice: str = ""):
        self.path, self.what, self.wait, self.advice = Path(path), what, wait, advice
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        return (f"PID {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
                f" ({info.get('command', '')})")

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if self.wait is False:
                self._close()
                raise BookError(f"{self.what} is in use by {holder}; wait for it to finish"
                                + (f", or {self.advice}" if self.advice else "")) from None
            print(f"waiting: {self.what} is in use by {holder}; this one goes on when it ends "
                  f"(Ctrl-C to give up{'; or ' + self.advice if self.advice else ''})", file=sys.stderr, flush=True)
            deadline = None if self.wait is True else time.monotonic() + float(self.wait)
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        self._close()
                        raise BookError(f"{self.what} is still in use by {holder} after {self.wait} s"
                                        + (f"; {self.advice}" if self.advice else "")) from None
                    time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started": _dt.datetime.now().isoformat(timespec="seconds"),
                                      "command": " ".join(sys.argv)}).encode())
        return self

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __exit__(self, *exc):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
        self._close()       # closing releases the lock


def new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... : created atomically, never shared with another run."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for i in itertools.count(1):
        folder = parent / (name if i == 1 else f"{name}-{i}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _swap_in(new: Path, dest: Path) -> None:
    """Replace the folder ``dest`` by ``new`` (two renames, signals deferred in between)."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    with _signals_deferred():
        if dest.exists():
            os.rename(dest, old)
        os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def _recover_html(dest: Path) -> None:
    """Undo what a killed swap or copy left: restore ``dest`` from its old copy, drop partial copies."""
    for p in sorted(dest.parent.glob(f".{dest.name}.*")):
        if ".old-" in p.name and not dest.exists():
            os.rename(p, dest)
        else:
            shutil.rmtree(p, ignore_errors=True)

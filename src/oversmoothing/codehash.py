"""The one hash of the library's code, shared by both caches (the chapters' and the training runs').

``library_hash()`` covers every ``*.py`` file of the ``oversmoothing`` package except the runner
(``oversmoothing/book/`` and ``__main__.py``, which never change a result), each by its syntax tree
with docstrings removed: comments, docstrings, blank lines and formatting never count; any other edit
(a criterion, a model, a figure, a parameter rule) does.  Imports nothing but the standard library.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

__all__ = ["PACKAGE", "RUNNER", "source_digest", "library_hash"]

PACKAGE = Path(__file__).resolve().parent  # the oversmoothing package
#: the runner's files, relative to the package (a folder ends in "/"): chapters never import them
RUNNER = ("book/", "__main__.py")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_digest(source: str) -> str:
    """sha256 of Python ``source``'s syntax tree without docstrings (comments, blank lines, line numbers ignored)."""
    return hashlib.sha256(ast.dump(_strip_docstrings(ast.parse(source))).encode()).hexdigest()


def _hashed(rel: str) -> bool:
    return not any(rel == e or (e.endswith("/") and rel.startswith(e)) for e in RUNNER)


def library_hash(root: str | os.PathLike | None = None) -> str:
    """Hash of the library's code: :func:`source_digest` of every ``*.py`` under ``root`` (default: this
    package), the runner (:data:`RUNNER`) excluded.  A comment or docstring edit keeps it."""
    root = Path(root) if root is not None else PACKAGE
    files = sorted(p for p in root.rglob("*.py")
                   if "__pycache__" not in p.parts and _hashed(p.relative_to(root).as_posix()))
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _library_hash(str(root), stamp)


@functools.lru_cache(maxsize=8)
def _library_hash(root: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for path, _, _ in stamp:
        h.update(Path(path).relative_to(root).as_posix().encode())
        h.update(source_digest(Path(path).read_text(encoding="utf-8")).encode())
    return h.hexdigest()

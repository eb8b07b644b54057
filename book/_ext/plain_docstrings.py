"""Sphinx extension for the API appendix: show the library's docstrings as written.

The docstrings state the mathematics in plain text (``||W||_F``, ``E(X) = sqrt(2/n) mu(X)``,
``|lambda_2|``), which reStructuredText would misread as substitutions and emphasis. Each docstring
is rendered as a literal block instead: exactly the text a reader sees with ``help()``.
"""


def _literal(app, what, name, obj, options, lines):
    if not any(line.strip() for line in lines):
        return
    body = ["   " + line if line.strip() else "" for line in lines]
    lines[:] = [".. code-block:: text", "", *body, ""]


def setup(app):
    app.connect("autodoc-process-docstring", _literal)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

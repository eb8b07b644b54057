"""The book runner: execute chapters with papermill, cache them, generate pages, build the HTML.

It imports none of the science modules: chapters are executed in their own kernel.

Layout of one build (``profile`` = smoke/default/paper, ``S = <staging>/<profile>``)::

    S/.lock                  held by the build of this profile (a second one waits, naming the holder)
    S/site/                  the Jupyter Book that is rendered (a staging copy of the project)
      _config.yml _toc.yml   copied; the toc lists every chapter that has an executed copy
      book/NN_name.ipynb     the executed chapter (sources in <root>/book stay output-free); its
                             metadata ``oversmoothing`` holds the cache key and the SHA-256 of
                             its claims table, so the pair is one unit: a chapter is "cached" only
                             when that key is this build's key and the claims file is the one
                             written with it
      book/NN_name.claims.json   its claims table (written by ``ClaimsTable.save()``)
      book/parameters.md book/report.md   generated pages
      book/_summary.md       the verdicts in a few lines, generated (book/intro.md includes it)
    S/tmp/                   notebooks being executed (moved into site/ by the runner only on success)
    S/failed/NN_name.ipynb   the executed copy of a chapter that raised, for debugging
    S/_build/                Sphinx's incremental work folder (html, doctrees)

The HTML is copied to ``<out>/_build/html`` (``out`` defaults to the project root) by building a new
folder next to it and renaming it into place, so readers never see a half-written book.

Every notebook runs in its own worker process (its own session, so a terminal's Ctrl-C reaches only the
runner): Ctrl-C cancels the queued chapters, kills the running kernels and exits 130.

Modules (dependencies point one way, down this list; ``cli`` uses this package's API)::

    errors       BookError, BuildFailed, Interrupted
    toc          the project root, _toc.yml, the chapters, book/profiles.yml
    parameters   a chapter's parameters cell (ast, never executed); -p values, --device, --jobs, --workers, TLS
    cache        cache keys (source tree, lock, data, device) and the record in an executed notebook
    execute      worker processes running papermill, ``n_jobs`` at a time; signals; failure messages
    pages        the generated pages (parameters appendix, reproduction report, summary of verdicts)
    folders      FolderLock, new run folders, a folder swapped in whole
    site         staging, Jupyter Book, :func:`build`
    runs         :func:`run_chapter`, :func:`sweep`
    caches       ``cache info|prune|verify``: the run cache and the executed chapters
    cli          ``python -m oversmoothing {build,run,sweep,params,cache}``
"""
from __future__ import annotations

from .cache import (auto_device, data_digest, environment_digests, executed_record, lock_digest,
                    resolved_device, tree_hash)
from .errors import BookError, BuildFailed, Interrupted
from .pool import auto_cluster, auto_workers, busy_cores, fair_share_threads
from .folders import FolderLock, new_folder
from .pages import claim_rows, key_number, parameters_page, report_page, summary_page, verdict_matrix
from .parameters import (DEVICES, Param, check_value, parameters_source, parse_assignment, parse_parameters,
                         resolve_parameters, scale_out_env, split_values)
from .runs import run_chapter, sweep
from .site import BuildResult, build
from .toc import Chapter, chapters, find_root, load_profiles, load_toc, profile_overrides, resolve_chapter

__all__ = ["BookError", "BuildFailed", "Interrupted", "Chapter", "Param", "build", "chapters", "find_root",
           "parse_parameters", "parse_assignment", "run_chapter", "sweep", "load_profiles"]

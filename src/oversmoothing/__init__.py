"""Models and diagnostics for the deep-GNN oversmoothing companion book.

Layers, one job each (dependencies point one way, top to bottom):

the science core  graphs -> datasets;  graphs -> models -> signals / measures -> training  (imports nothing else)
experiments/      what the chapters run on the core (smoothing, traps, gradients, remedies)
judges/           every verdict, one judge per claim, on the experiments' tables
report, figures, chapter   the claims table and provenance, the house style, each chapter's opening cell
grid/             the run machinery: run_grid, its cache and executors (imports none of the science)
book/             the runner: build / run / sweep / params (imports none of the science)
codehash, devices the one library hash of both caches; the device rule (shared by science and machinery)
"""
__version__ = "0.1.0"

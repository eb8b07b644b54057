"""Models and diagnostics for the deep-GNN oversmoothing companion book.

Modules, one job each (dependencies point one way):
the science core  graphs -> datasets;  graphs -> models -> signals / measures -> training  (imports nothing else);
experiments/      what the chapters run on the core (grid, smoothing, traps, gradients, remedies);
report, figures, chapter   claims and provenance, the house style, each chapter's opening cell;
book/             the runner (build / run / sweep / params; imports none of the science).
"""
__version__ = "0.1.0"

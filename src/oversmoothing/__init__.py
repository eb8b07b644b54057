"""Models and diagnostics for the deep-GNN oversmoothing companion book.

Modules, one job each (dependencies point one way):
graphs -> models -> signals / measures -> training -> figures;  report (claims, provenance);
book / cli (the runner, which imports none of the science).
"""
__version__ = "0.1.0"

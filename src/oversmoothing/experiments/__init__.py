"""What the chapters run, built on the science core (graphs, datasets, models, signals, measures, training):

* :mod:`~oversmoothing.experiments.grid`       ``run_grid``: one training run per task, cached content-addressed,
                                                 resumable, local or on a Dask cluster;
* :mod:`~oversmoothing.experiments.smoothing`  chapters 01-03 (paper 1): per-layer signals of random-weight
                                                 GNNs and their MLP twins, rate fits, the C1/C3 criteria;
* :mod:`~oversmoothing.experiments.traps`      chapters 04-05 (paper 1): training grids of vanilla GNNs/MLPs,
                                                 trap detection, the offset mechanism, chance levels;
* :mod:`~oversmoothing.experiments.gradients`  chapters 06-07 (paper 2): residual GCN/GAT runs on the datasets,
                                                 gradient-similarity summaries, rank comparisons of predictors;
* :mod:`~oversmoothing.experiments.remedies`   chapter 08: the remedy architectures and their depth sweeps.

The science core imports none of these.
"""

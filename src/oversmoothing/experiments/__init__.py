"""What the chapters run, built on the science core (graphs, datasets, models, signals, measures, training):

* :mod:`~oversmoothing.experiments.smoothing`  chapters 01-03 (paper 1): per-layer signals of random-weight
                                                 GNNs and their MLP twins, rate fits, C3's valley table;
* :mod:`~oversmoothing.experiments.traps`      chapters 04-05 (paper 1): training grids of vanilla GNNs/MLPs,
                                                 trap detection, the offset mechanism, chance levels;
* :mod:`~oversmoothing.experiments.gradients`  chapters 06-07 (paper 2): residual GCN/GAT runs on the datasets,
                                                 gradient-similarity summaries, rank comparisons of predictors;
* :mod:`~oversmoothing.experiments.remedies`   chapter 08: depth sweeps of the remedies, model selection;
* :mod:`~oversmoothing.experiments.questions`  chapter 09 (beyond the papers, Q1-Q5): weight bounds during
                                                 training, homophily sweeps, other normalisations, backward
                                                 profiles of attention networks, traps on real graphs.

Only science lives here: the training grids run through :mod:`oversmoothing.grid` (the run machinery), the
networks come from :mod:`oversmoothing.models` and the verdicts are decided in :mod:`oversmoothing.judges`.
The science core imports none of these.
"""

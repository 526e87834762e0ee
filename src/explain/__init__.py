"""The explain stage: the analyzers (iNNvestigate's and the project's baselines,
:mod:`src.explain.analyzers`) and the heatmaps they make of a model's predictions
(:mod:`src.explain.heatmaps`)."""

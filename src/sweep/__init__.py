"""The sweep stage: the launchers that run a multirun's jobs (:mod:`src.sweep.launcher`) and
the sweep's parent run with the comparison of its jobs (:mod:`src.sweep.parent`, Hydra's
``SweepTracker`` callback)."""

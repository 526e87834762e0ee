"""The config stage: the checks of a composed config (:mod:`src.config.checks`) and the
command line around Hydra (:mod:`src.config.cli`: overrides, resolvers, the sweep's jobs)."""

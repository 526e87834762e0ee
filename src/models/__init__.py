"""The model stage: the builders of ``conf/model/*.yaml`` (:mod:`src.models.zoo`; the configs
name them ``src.model.<builder>``, see :mod:`src.model`), model files made elsewhere
(:mod:`src.models.files`), the canonical form analyzers explain (:mod:`src.models.canonical`),
training (:mod:`src.models.training`) and the cache of trained models (:mod:`src.models.cache`)."""

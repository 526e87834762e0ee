"""The model builders under the names the configs give them: ``_target_: src.model.build_cnn``
in ``conf/model/*.yaml``. That name is in every run's params (``model._target_``), in the
training fingerprint that keys the model cache, and in users' own configs and stores, so it
is kept here; the builders themselves live in :mod:`src.models.zoo`."""

from src.models.zoo import (
    build_cnn,
    build_lenet,
    build_mlp,
    build_resnet,
    load_keras_file,
    load_run_model,
)

__all__ = [
    "build_cnn",
    "build_lenet",
    "build_mlp",
    "build_resnet",
    "load_keras_file",
    "load_run_model",
]

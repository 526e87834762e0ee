"""What a config key is for, decided in one table: the model cache's fingerprint, the launcher's
waves, a run's name and a sweep's parent name all read it.

- ``TRAINING``: decides the trained weights and curve (the data's loader and sizes, the model,
  the training settings, the seed, TensorFlow's threads). Jobs that differ in one share no model.
- ``DATA_SOURCE``: where the data is read from. It changes the training through the data, which
  the fingerprint holds by the data's checksum: the same file moved shares its model.
- ``LENGTH``: ``train.epochs``. A shorter training is a snapshot of a longer one.
- ``EXPLANATION``: what is explained and scored, on a trained model.
- ``SPEED``: how fast, never a number (the batch sizes of the explanation and the scores).
- ``RECORDS``: where and how a run is kept and shown (the store, Hydra's folders, the report,
  the model cache's switches).

A key not in :data:`ROLES` takes the role of its nearest listed parent, and a top-level section
not listed is ``TRAINING``: a new config group changes the trained model until this table says
otherwise, so it can never make two different trainings share a cached model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any


class Role(Enum):
    TRAINING = "training"
    DATA_SOURCE = "data source"
    LENGTH = "length"
    EXPLANATION = "explanation"
    SPEED = "speed"
    RECORDS = "records"


ROLES: dict[str, Role] = {
    "seed": Role.TRAINING,
    "threads": Role.TRAINING,
    "dataset": Role.TRAINING,
    "dataset.path": Role.DATA_SOURCE,
    "dataset.cache_dir": Role.DATA_SOURCE,
    "dataset.class_names": Role.TRAINING,  # their count is the output layer's size
    "model": Role.TRAINING,
    "train": Role.TRAINING,
    "train.epochs": Role.LENGTH,
    "train.reuse": Role.RECORDS,
    "train.cache_dir": Role.RECORDS,
    "analyzer": Role.EXPLANATION,
    "explain": Role.EXPLANATION,
    "explain.batch_size": Role.SPEED,
    "evaluate": Role.EXPLANATION,
    "evaluate.batch_size": Role.SPEED,
    "experiment": Role.TRAINING,  # a bundle of overrides: it may change anything
    "report": Role.RECORDS,
    "compare": Role.RECORDS,  # which jobs a sweep adds, never a job's numbers
    "roar": Role.EXPLANATION,  # retrains a model of its own; the run's model is the same
    "roar.fractions": Role.RECORDS,  # which jobs a sweep adds
    "roar.sweep": Role.RECORDS,
    "tracking": Role.RECORDS,
    "paths": Role.RECORDS,
    "hydra": Role.RECORDS,
}


def role(key: str) -> Role:
    """The role of a dotted config key (an override's ``+``/``~`` ignored)."""
    key = key.lstrip("+~")
    while key:
        if key in ROLES:
            return ROLES[key]
        key = key.rpartition(".")[0]
    return Role.TRAINING


def override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def flattened(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, leaf value)`` of a nested mapping."""
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flattened(value, f"{dotted}.")
        else:
            yield dotted, value


# The roles whose change means another training: a job's wave (src/sweep/launcher.py) groups by
# the overrides of these keys. DATA_SOURCE is among them, as another file is (likely) other data.
DECIDE_TRAINING = frozenset({Role.TRAINING, Role.DATA_SOURCE})
# Stand for themselves in no fingerprint: what they decide is measured instead (the data's
# checksum; the intra-op threads TensorFlow really uses, whatever ``threads`` asked for).
MEASURED_INSTEAD = frozenset({"threads"})


def training_part(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a resolved ``config`` that decide its training, by dotted key: what a cached
    model's fingerprint holds besides the measured data checksum and thread count."""
    return {
        key: value
        for key, value in flattened(config)
        if role(key) is Role.TRAINING and key not in MEASURED_INSTEAD
    }

"""The model of a run's config: built in a fresh seeded graph and compiled (``cfg.model``,
``cfg.train``), and trained as ``cfg.train`` says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from src.common.builders import build
from src.common.tf_runtime import reset
from src.data import Dataset
from src.models.canonical import output_kind
from src.models.training import (
    EpochCallback,
    Resume,
    SnapshotCallback,
    TrainingResult,
    compile_model,
    train,
)
from src.models.zoo import Pretrained, check_model_config

if TYPE_CHECKING:
    pass


def build_model(cfg: DictConfig, input_shape: Sequence[int], num_classes: int):
    """The compiled model of ``cfg.model`` in a fresh seeded graph (see :func:`build_network`)."""
    return build_network(cfg, input_shape, num_classes)[0]


def build_network(
    cfg: DictConfig, input_shape: Sequence[int], num_classes: int
) -> tuple[Any, Pretrained | None]:
    """A fresh graph, seeded, with the model of ``cfg.model`` (Hydra's ``instantiate`` of its
    ``_target_``) for the data's input shape and class count, compiled; and, for a model
    trained elsewhere (``model=keras_file``, ``model=run``), where it came from. Bad
    architectures fail as UserError."""
    reset(cfg.seed)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    check_model_config(spec)
    built = build(
        "model",
        spec,
        "a valid network",
        input_shape=tuple(input_shape),
        num_classes=int(num_classes),
    )
    pretrained = built if isinstance(built, Pretrained) else None
    model = built.model if pretrained else built
    compile_model(
        model,
        cfg.train.optimizer,
        cfg.train.learning_rate,
        from_logits=output_kind(model) == "logits",
    )
    return model, pretrained


def train_model(
    cfg: DictConfig,
    data: Dataset,
    model,
    on_epoch_end: EpochCallback | None = None,
    resume: Resume | None = None,
    on_snapshot: SnapshotCallback | None = None,
    on_step: Callable[[], None] | None = None,
) -> TrainingResult:
    return train(
        model,
        data.train_images,
        data.train_labels,
        data.test_images,
        data.test_labels,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        validate_each_epoch=cfg.train.validate_each_epoch,
        on_epoch_end=on_epoch_end,
        resume=resume,
        on_snapshot=on_snapshot,
        on_step=on_step,
    )

"""One run: config -> data -> model -> train -> explain -> figures -> MLflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src import tracking
from src.config import UserError, validate
from src.data import Dataset, load_dataset
from src.explain import Explanation, create_analyzer, explain, select_images
from src.figures import heatmap_figure, training_figure
from src.model import build_cnn
from src.tf_runtime import innvestigate, reset
from src.training import EpochCallback, TrainingResult, compile_model, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    model: object  # the trained Keras model (with its softmax)
    training: TrainingResult
    indices: np.ndarray  # which test images were explained
    predictions: np.ndarray  # the model's classes for them
    explanation: Explanation


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.analyzer.name} · seed {cfg.seed} · {cfg.train.epochs} ep"


def load_data(cfg: DictConfig) -> Dataset:
    return load_dataset(
        cfg.dataset.name,
        path=cfg.dataset.path,
        cache_dir=cfg.dataset.cache_dir,
        train_size=cfg.dataset.train_size,
        test_size=cfg.dataset.test_size,
    )


def build_model(cfg: DictConfig):
    """A fresh graph, seeded, with the compiled model; bad architectures fail as UserError."""
    reset(cfg.seed)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    spec.pop("name")
    try:
        model = build_cnn(**spec)
    except ValueError as error:
        reason = " ".join(str(error).split())[:300]
        raise UserError(f"the model config does not give a valid network: {reason}") from error
    compile_model(model, cfg.train.optimizer, cfg.train.learning_rate)
    return model


def check_analyzer(cfg: DictConfig, model) -> None:
    """Create the analyzer once on the untrained model, so bad params fail before training."""
    create_analyzer(
        innvestigate().model_wo_softmax(model),
        cfg.analyzer.method,
        OmegaConf.to_container(cfg.analyzer.params, resolve=True),
        cfg.analyzer.neuron_selection,
    )


def train_and_explain(
    cfg: DictConfig, data: Dataset, model, on_epoch_end: EpochCallback | None = None
) -> Outcome:
    """Train ``model`` on ``data`` and explain the fixed test images; no tracking here."""
    training = train(
        model,
        data.train_images,
        data.train_labels,
        data.test_images,
        data.test_labels,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        validate_each_epoch=cfg.train.validate_each_epoch,
        on_epoch_end=on_epoch_end,
    )
    indices = select_images(data.test_labels, cfg.explain.n_images)
    images, labels = data.test_images[indices], data.test_labels[indices]
    predictions = model.predict(images, batch_size=cfg.explain.batch_size, verbose=0).argmax(axis=1)
    by_label = cfg.analyzer.neuron_selection == "true_label"
    analyzer = create_analyzer(
        innvestigate().model_wo_softmax(model),
        cfg.analyzer.method,
        OmegaConf.to_container(cfg.analyzer.params, resolve=True),
        cfg.analyzer.neuron_selection,
    )
    explanation = explain(
        analyzer,
        images,
        labels if by_label else predictions,
        cfg.analyzer.neuron_selection,
        cfg.explain.batch_size,
    )
    return Outcome(model, training, indices, predictions, explanation)


def run_experiment(cfg: DictConfig) -> float:
    """Run and track one experiment; returns the test accuracy."""
    validate(cfg)
    store = tracking.resolve_store(cfg.tracking.dir, cfg.tracking.uri)
    experiment_id = tracking.prepare(store, cfg.tracking.experiment_name)
    data = load_data(cfg)
    log.info(
        "data: %s (%d train / %d test images)",
        data.source,
        len(data.train_images),
        len(data.test_images),
    )
    model = build_model(cfg)
    check_analyzer(cfg, model)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = tracking.run_tags(cfg.analyzer.name, cfg.dataset.name, cfg.seed, cfg.train.epochs)
    tags.update({"data_source": data.source, "data_sha256": data.checksum})
    with tracking.tracked_run(experiment_id, run_name(cfg), tags) as run_id:
        tracking.log_config(resolved)
        outcome = train_and_explain(cfg, data, model, on_epoch_end=tracking.log_epoch)
        log_outcome(cfg, data, outcome)
    log.info(
        "%s: test accuracy %.4f · run %s · experiment %r · browse: %s",
        run_name(cfg),
        outcome.training.test_accuracy,
        run_id,
        cfg.tracking.experiment_name,
        store.ui_command,
    )
    return outcome.training.test_accuracy


def log_outcome(cfg: DictConfig, data: Dataset, outcome: Outcome) -> None:
    explanation = outcome.explanation
    images = data.test_images[outcome.indices]
    labels = data.test_labels[outcome.indices]
    tracking.log_metrics(
        {
            "test_loss": outcome.training.test_loss,
            "test_accuracy": outcome.training.test_accuracy,
            "train_time_s": outcome.training.train_time_s,
            "analyzer_build_time_s": explanation.build_time_s,
            "analysis_time_s": explanation.analysis_time_s,
            "analysis_images_per_s": explanation.images_per_second,
        }
    )
    tracking.log_figure(training_figure(outcome.training.history), "figures/training.png")
    tracking.log_figure(
        heatmap_figure(
            images,
            explanation.heatmaps,
            labels,
            outcome.predictions,
            list(cfg.dataset.class_names),
            title=f"{run_name(cfg)} on {cfg.dataset.name}",
            display=cfg.analyzer.display,
        ),
        f"figures/heatmaps_{cfg.analyzer.name}.png",
    )
    tracking.log_arrays(
        "heatmaps.npz",
        indices=outcome.indices,
        images=images,
        labels=labels,
        predictions=outcome.predictions,
        explained_classes=explanation.explained_classes,
        heatmaps=explanation.heatmaps,
    )
    tracking.log_keras_model(outcome.model, images[:2])

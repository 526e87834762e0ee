"""What one run logs of its model and its explanation: the test's numbers and the times, the
training's figure, the heatmaps as figures, as an MLflow image (the chart view's side-by-side)
and as ``heatmaps.npz`` (which the sweep's comparison reads back)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.common import names
from src.data import Dataset
from src.explain.configured import Explained
from src.models.training import TrainingResult
from src.report.figures import figure_png, heatmap_figure, heatmap_strip, training_figure
from src.scores.registry import ModelOnly
from src.tracking import records


@dataclass(frozen=True)
class Shown:
    """How a run's heatmaps are shown."""

    title: str  # "<run name> on <dataset>"
    analyzer: str  # the analyzer's name (in the figure's file name)
    display: str  # the analyzer's colour scheme (conf/analyzer/*.yaml)
    images: int  # how many images a figure draws, whatever explain.n_images (report.grid_images)
    epochs: int  # the model's training length: the heatmaps' step in MLflow's chart view


def log_outcome(
    show: Shown,
    data: Dataset,
    training: TrainingResult,
    explained: Explained,
    kept: ModelOnly | None = None,
) -> None:
    """What every run logs: the model's test and the explanation's times, the training's
    figure, the heatmaps (figures, MLflow image, ``heatmaps.npz``)."""
    explanation = explained.explanation
    records.log_metrics(
        {
            "test_loss": training.test_loss,
            "test_accuracy": training.test_accuracy,
            "train_time_s": training.train_time_s,
            "analyzer_build_time_s": explanation.build_time_s,
            "analysis_time_s": explanation.analysis_time_s,
            "analysis_images_per_s": explanation.images_per_second,
        }
    )
    if training.history:  # none for a model trained elsewhere
        # The model's figure, the same for every analyzer: drawn once per model (~0.4 s).
        def drawn() -> np.ndarray:
            png = figure_png(training_figure(training.history), dpi="figure")
            return np.frombuffer(png, dtype=np.uint8)

        png = kept("figure training.png", drawn) if kept else drawn()
        records.log_png(png.tobytes(), "figures/training.png")
    # A model trained elsewhere has no training length: its heatmaps are at step 0.
    log_heatmaps(show, data, explained, step=show.epochs if training.history else 0)


def log_heatmaps(show: Shown, data: Dataset, explained: Explained, step: int) -> None:
    explanation = explained.explanation
    images = data.test_images[explained.indices]
    labels = data.test_labels[explained.indices]
    # Where the planted marker is (experiment=shortcut): outlined on the heatmaps, and kept.
    masks = None if data.test_masks is None else data.test_masks[explained.indices]
    extra = {} if masks is None else {"masks": masks}
    figure = heatmap_figure(
        images,
        explanation.heatmaps,
        labels,
        explained.predictions,
        list(data.class_names),
        title=show.title,
        display=show.display,
        masks=masks,
        explained=explanation.explained_classes,
        # What a person looks at is bounded, whatever explain.n_images (heatmaps.npz: all).
        max_images=show.images,
    )
    analyzer = names.mlflow_name(show.analyzer, kind="file")  # a name: any text
    records.log_figure(figure, f"figures/heatmaps_{analyzer}.png")
    # The heatmaps as an MLflow image at step = epochs trained, so the chart view puts the
    # runs' heatmaps side by side (and slides over training lengths).
    strip = heatmap_strip(images, explanation.heatmaps, show.display, max_images=show.images)
    records.log_image("heatmaps", strip, step=step)
    records.log_arrays(
        "heatmaps.npz",
        indices=explained.indices,
        images=images,
        labels=labels,
        predictions=explained.predictions,
        explained_classes=explanation.explained_classes,
        heatmaps=explanation.heatmaps,
        class_names=np.array(data.class_names),
        **extra,
    )

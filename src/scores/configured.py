"""The scores of a run's config (``cfg.evaluate``): the explanation-quality scores of its
model and analyzer, the work that depends on the model alone kept in the model cache, and,
for a planted shortcut, how much the model relies on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

from src.data import Dataset
from src.explain.configured import analysis_batch, analyzer_for
from src.explain.heatmaps import (
    Explainer,
)
from src.models.cache import ModelCache
from src.scores.registry import ModelOnly

if TYPE_CHECKING:
    from src.scores import Evaluation


log = logging.getLogger(__name__)


def evaluation_enabled(cfg: DictConfig) -> bool:
    return any(cfg.evaluate.scores.values())


def evaluate_model(cfg: DictConfig, data: Dataset, model, cache_key: str = "") -> Evaluation:
    """Explanation-quality scores on the first ``evaluate.n_images`` test images; with the
    model's cache entry (``cache_key``), work that depends on the model alone is kept there
    for the other analyzers' runs."""
    from src.scores import evaluate  # with Quantus and scipy: imported only when scoring

    count = min(cfg.evaluate.n_images, len(data.test_images))
    # Selection by index: the randomised model must explain the classes the trained one did.
    explainer = Explainer(analyzer_for(cfg, model, "true_label"), "true_label")
    batch_size = analysis_batch(cfg, cfg.evaluate.batch_size)

    def explain_classes(images: np.ndarray, classes: np.ndarray, description: str) -> np.ndarray:
        return explainer.explain(images, classes, batch_size, description).heatmaps

    return evaluate(
        cfg.evaluate,
        model,
        data.test_images[:count],
        data.test_labels[:count],
        explain_classes,
        by_label=cfg.analyzer.neuron_selection == "true_label",
        method=cfg.analyzer.method,
        seed=cfg.seed,
        masks=None if data.test_masks is None else data.test_masks[:count],
        model_only=model_only(cfg, cache_key, say=True),
    )


def model_only(cfg: DictConfig, cache_key: str, say: bool = False) -> ModelOnly | None:
    """Work that depends on the model alone, kept with its snapshot in the model cache for
    the runs of the other analyzers (None: no cache entry, or ``train.reuse=false``). With
    ``say``, a line when it came from the cache."""
    if not cache_key or not cfg.train.reuse:
        return None
    cache, epochs = ModelCache(cfg.train.cache_dir), int(cfg.train.epochs)

    def kept(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value, cached = cache.model_only(cache_key, epochs, name, compute)
        if cached and say:
            log.info("%s: from the model cache (computed once per model)", name.split(":")[0])
        return value

    return kept


def shortcut_reliance(
    data: Dataset, model, test_accuracy: float, batch_size: int
) -> dict[str, float]:
    """How much the model relies on the planted marker: its accuracy on the test images with
    the marker of their class (the test set as trained and tested: ``test_accuracy``),
    without any marker, and with the marker of another class; and how often it then answers
    the marker's class instead of the image's."""
    shortcut, clean, labels = data.shortcut, data.clean_test_images, data.test_labels
    other = shortcut.moved(labels)
    moved, _ = shortcut.draw(clean, other)

    def predicted(images: np.ndarray) -> np.ndarray:
        return model.predict(images, batch_size=batch_size, verbose=0).argmax(axis=1)

    on_moved = predicted(moved)
    return {
        "shortcut_accuracy_marked": float(test_accuracy),
        "shortcut_accuracy_clean": float(np.mean(predicted(clean) == labels)),
        "shortcut_accuracy_moved": float(np.mean(on_moved == labels)),
        "shortcut_follows_marker": float(np.mean(on_moved == other)),
    }

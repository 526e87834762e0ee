"""The scores of a run's config (``cfg.evaluate``): the explanation-quality scores of its
model and analyzer, the work that depends on the model alone kept in the model cache, and,
for a planted shortcut, how much the model relies on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.common.tf_runtime import intra_op_threads
from src.data import Dataset
from src.explain.configured import explainer_for
from src.models.cache import ModelCache, fingerprint
from src.models.configured import build_network, train_model
from src.models.training import TrainingResult, test_only, weights_image
from src.scores import roar
from src.scores.registry import ROAR_TIES, ModelOnly, generator

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
    explainer, batch_size = explainer_for(cfg, model, cfg.evaluate.batch_size, "true_label")

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


def retraining(cfg: DictConfig) -> bool:
    """Whether the run removes pixels and retrains (``roar.fraction`` > 0, experiment=roar)."""
    return float(cfg.get("roar", {}).get("fraction", 0)) > 0


def retrained(cfg: DictConfig, data: Dataset, model, cache_key: str, run_id: str) -> dict:
    """Remove-and-retrain and keep-and-retrain at ``roar.fraction`` percent
    (:mod:`src.scores.roar`): the training and test images ordered by this run's analyzer on
    ``model`` (kept with the model's cache entry for the run's other fractions), degraded, and
    a fresh model trained on each with the run's seed and settings, or taken from the model
    cache if a run trained it on the same degraded data. Returns ``roar_accuracy``,
    ``kar_accuracy``, their trainings' seconds and the order's (``roar_order_time_s``: the
    maps of every image, or reading them from the cache). ``model`` is not usable afterwards: each
    fresh model is built in a fresh graph."""
    fraction = float(cfg.roar.fraction)
    started = time.perf_counter()
    order = _pixel_order(cfg, data, model, cache_key)
    results: dict[str, float] = {"roar_order_time_s": time.perf_counter() - started}
    count = len(data.train_images)
    fill = roar.channel_means(data.train_images)
    cache = ModelCache(cfg.train.cache_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for mode in roar.MODES:
        images = [
            roar.degraded(original, roar.removed(part, fraction, mode), fill)
            for original, part in (
                (data.train_images, order[:count]),
                (data.test_images, order[count:]),
            )
        ]
        degraded = replace(
            data,
            train_images=images[0],
            test_images=images[1],
            checksum=roar.digest(data.train_labels, data.test_labels, *images),
        )
        key = f"{fingerprint(resolved, degraded.checksum, intra_op_threads())}-retrained"
        log.info("%s: %g%% of the pixels removed, a fresh model trained", mode.upper(), fraction)
        training = _retrain(cfg, degraded, cache, key, run_id)
        results[f"{mode}_accuracy"] = training.test_accuracy
        results[f"{mode}_train_time_s"] = training.train_time_s
        results[f"{mode}_learned"] = float(learned(training, data.num_classes))
        if not results[f"{mode}_learned"]:
            log.warning(
                "warning: the model retrained on the %s data did not learn (its training loss "
                "stayed at ln %d, a guess): its accuracy says what %d epochs found, not what the "
                "pixels left hold; more epochs (train.epochs) may let it learn",
                mode.upper(),
                data.num_classes,
                int(cfg.train.epochs),
            )
    return results


def learned(training: TrainingResult, classes: int) -> bool:
    """Whether a training got anywhere: its last training loss below 95% of ln(classes), the
    cross-entropy of a uniform guess (a fresh model starts there; one whose inputs are mostly
    one value can stay there, and its accuracy is then chance whatever the pixels hold)."""
    losses = training.history.get("train_loss") or []
    return not losses or losses[-1] < 0.95 * math.log(classes)


def _retrain(
    cfg: DictConfig, data: Dataset, cache: ModelCache, key: str, run_id: str
) -> TrainingResult:
    """A fresh model of the run's config trained on ``data``, or its cached weights tested on
    ``data``'s test images (its training time then 0)."""
    epochs = int(cfg.train.epochs)
    fresh, _ = build_network(cfg, data.input_shape, data.num_classes)
    with cache.claim(key, holder=f"run {run_id}", work="train the retrained model this run needs"):
        cached = cache.load(key, epochs) if cfg.train.reuse else None
        if cached is not None:
            try:
                fresh.load_weights(str(cached.weights))
            except Exception as error:  # noqa: BLE001 - h5py/Keras raise many kinds
                log.warning("warning: cached model %s cannot be loaded (%s)", cached.weights, error)
            else:
                log.info(
                    "the retrained model from the model cache (trained by run %s)",
                    cached.trained_by_run,
                )
                tested = test_only(fresh, data.test_images, data.test_labels, cfg.train.batch_size)
                return replace(
                    cached.training,
                    test_loss=tested.test_loss,
                    test_accuracy=tested.test_accuracy,
                    train_time_s=0.0,
                )
        training = train_model(cfg, data, fresh)
        cache.store(key, epochs, weights_image(fresh), training, run_id)
        return training


def _pixel_order(cfg: DictConfig, data: Dataset, model, cache_key: str) -> np.ndarray:
    """Each training and test image's pixels, most relevant first by the run's analyzer
    (:func:`src.scores.roar.pixel_order`; ties broken by the seed's stream ``ROAR_TIES``),
    training images first. Kept with the model's cache entry: the jobs of the run's other
    fractions read it (one of them computes it, the others wait)."""
    images = np.concatenate([data.train_images, data.test_images])
    labels = np.concatenate([data.train_labels, data.test_labels])
    spec = {
        "analyzer": OmegaConf.to_container(cfg.analyzer, resolve=True),
        "images": [len(data.train_images), len(data.test_images)],
        "seed": int(cfg.seed),
    }
    name = f"roar order: {json.dumps(spec, sort_keys=True)}"

    def compute() -> np.ndarray:
        explainer, per_call = explainer_for(cfg, model, cfg.evaluate.batch_size)
        heatmaps = explainer.explain(images, labels, per_call, "explaining for ROAR").heatmaps
        ties = generator(int(cfg.seed), ROAR_TIES).random(
            heatmaps.shape[0:1] + (np.prod(heatmaps.shape[1:3]),)
        )
        return roar.pixel_order(heatmaps, ties)

    kept = model_only(cfg, cache_key, say=True)
    if kept is None:
        return compute()
    lock = f"{cache_key}.{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    with ModelCache(cfg.train.cache_dir).claim(lock, work="order the pixels this run removes"):
        return kept(name, compute)

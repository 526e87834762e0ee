"""Explanation quality: faithfulness (MoRF perturbation, AOPC), the model-parameter
randomisation sanity check, complexity (Gini) and conservation, on the first
``evaluate.n_images`` test images.

Libraries do the work where they fit iNNvestigate's graph-mode Keras model: the perturbation is
iNNvestigate's own ``innvestigate.tools.perturbate`` and the Gini index is Quantus's
``Sparseness``. Written here: AOPC and the conservation error (one-line numpy functions in
:mod:`src.metrics`; Quantus's ``Completeness`` compares with f(x) - f(0), not the logit that
relevance propagation conserves), and the randomisation test, because Quantus 0.6's ``MPRT``
for TensorFlow copies the model with ``keras.models.clone_model``, which re-initialises every
layer: each of its "cascading" steps compares against an entirely untrained network (its
curve is flat from the first step).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from src import metrics
from src.tf_runtime import innvestigate, tensorflow

log = logging.getLogger(__name__)

# (images, classes, what the progress bar says) -> heatmaps
Explain = Callable[[np.ndarray, np.ndarray, str], np.ndarray]


@dataclass
class Evaluation:
    scores: dict[str, float] = field(default_factory=dict)  # logged as eval_<name>
    perturbation_curve: np.ndarray | None = None  # accuracy after 0..steps perturbation steps
    random_curve: np.ndarray | None = None  # the same, regions in random order
    randomised_layers: list[str] = field(default_factory=list)  # top first
    randomisation_curve: np.ndarray | None = None  # mean Spearman per cascading step
    randomisation_examples: list[np.ndarray] = field(default_factory=list)  # heatmaps per step


def _quantus():
    tensorflow()  # Quantus imports TensorFlow: graph mode and quiet logs first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus


def evaluate(
    cfg: DictConfig,
    model,
    images: np.ndarray,
    labels: np.ndarray,
    explain: Explain,
    by_label: bool,
    method: str,
    seed: int,
) -> Evaluation:
    """Score the analyzer's heatmaps of ``images`` (``cfg`` is the ``evaluate`` config).

    ``explain(images, classes, description)`` gives the heatmaps of the given output neurons
    of ``model``: the true labels if ``by_label``, else the predicted classes; the randomised
    model is explained for the same classes.
    """
    logits = (
        innvestigate().model_wo_softmax(model).predict(images, batch_size=cfg.batch_size, verbose=0)
    )
    classes = labels if by_label else logits.argmax(axis=1)
    heatmaps = explain(images, classes, "scoring")
    result = Evaluation()

    if cfg.complexity.enabled:
        result.scores["gini"] = float(np.mean(gini(heatmaps)))
    if cfg.conservation.enabled and method.startswith(tuple(cfg.conservation.methods)):
        explained = logits[np.arange(len(images)), classes]
        result.scores["conservation_error"] = float(
            np.mean(metrics.conservation_error(heatmaps, explained))
        )
    if cfg.perturbation.enabled:
        _perturbation(cfg, model, images, labels, heatmaps, seed, result)
    if cfg.randomisation.enabled:
        _randomisation(cfg, model, images, classes, heatmaps, explain, seed, result)
    return result


def gini(heatmaps: np.ndarray) -> np.ndarray:
    """Gini index of |relevance| per image (Quantus's ``Sparseness``, Chalasani et al. 2020):
    0 = spread evenly over the pixels, -> 1 = all on one pixel; channels are summed."""
    maps = metrics.sum_channels(heatmaps)
    if np.all(maps == maps.flat[0]):  # Quantus refuses a batch of one value: even spread, 0
        return np.zeros(len(maps))
    sparseness = _quantus().Sparseness(abs=True, normalise=False, disable_warnings=True)
    scores = sparseness(
        model=None,
        x_batch=maps[:, None],  # only the shape is used
        y_batch=np.zeros(len(maps), dtype=int),
        a_batch=maps[:, None],
        channel_first=True,
    )
    return np.nan_to_num(np.asarray(scores, dtype=np.float64))  # an all-zero map: 0


def _perturbation(cfg, model, images, labels, heatmaps, seed, result: Evaluation) -> None:
    """MoRF: the accuracy as the most relevant regions are perturbed, one more per step."""
    log.info("perturbation: %d steps on %d images", cfg.perturbation.steps, len(images))
    result.perturbation_curve = perturbation_curve(cfg, model, images, labels, heatmaps)
    # The baseline: the same perturbation, regions in an order that ignores the heatmap.
    noise = np.random.default_rng(seed).random(heatmaps.shape).astype(np.float32)
    result.random_curve = perturbation_curve(cfg, model, images, labels, noise)
    result.scores["aopc"] = metrics.aopc(result.perturbation_curve)
    result.scores["aopc_random"] = metrics.aopc(result.random_curve)
    result.scores["aopc_gain"] = result.scores["aopc"] - result.scores["aopc_random"]


def perturbation_curve(cfg, model, images, labels, heatmaps) -> np.ndarray:
    """Accuracy before and after each of ``steps`` MoRF steps (iNNvestigate's perturbation)."""
    from innvestigate.tools.perturbate import Perturbation

    perturbation = Perturbation(
        cfg.perturbation.function,
        region_shape=tuple(cfg.perturbation.region_shape),
        in_place=False,
        value_range=(0.0, 1.0),
    )
    analysis = _given_analysis()(
        model, images, labels, heatmaps, perturbation, cfg.perturbation.steps, cfg.batch_size
    )
    scores = analysis.compute_perturbation_analysis()  # [[loss, accuracy], ...]
    return np.array([accuracy for _, accuracy in scores], dtype=np.float64)


@functools.cache
def _given_analysis() -> type:
    """The subclass below, made on first use: importing iNNvestigate imports TensorFlow."""
    from innvestigate.tools.perturbate import PerturbationAnalysis
    from innvestigate.utils.sequence import BatchSequence

    class GivenAnalysis(PerturbationAnalysis):
        """iNNvestigate's PerturbationAnalysis, handed the heatmaps instead of an analyzer.

        Its constructor would call ``analyzer.analyze()`` itself, without neuron selection;
        the heatmaps here are already computed, in bounded batches, for the explained class.
        The perturbation loop is the library's.
        """

        def __init__(self, model, images, labels, heatmaps, perturbation, steps, batch_size):
            super().__init__(
                analyzer=None,
                model=model,
                generator=BatchSequence([images, labels], batch_size=batch_size),
                perturbation=perturbation,
                steps=steps,
                regions_per_step=1,
                recompute_analysis=True,  # skips the constructor's own analysis
            )
            self.analysis_generator = BatchSequence(
                [images, labels, heatmaps], batch_size=batch_size
            )

    return GivenAnalysis


def weighted_layers(model) -> list:
    """The layers with weights, top (output) first: the cascading order."""
    return [layer for layer in reversed(model.layers) if layer.get_weights()]


def _reseeded(initializer, seed: int):
    """The same kind of initializer with another seed. Keras initializers are deterministic:
    called again, the layer's own would give back its initial weights, which a few epochs of
    training barely move; the test needs weights the model never had."""
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = int(seed)
    return type(initializer).from_config(config)


def _randomisation(
    cfg, model, images, classes, heatmaps, explain_index: Explain, seed, result
) -> None:
    """Cascading model-parameter randomisation (Adebayo et al. 2018): re-initialise the top
    layer with fresh random weights (its initializer's distribution, a new seed), then the
    next one too, ...; after each step explain the same classes again and correlate with the
    original heatmaps. The trained weights are restored afterwards."""
    layers = weighted_layers(model)
    log.info("randomisation: %d layers on %d images", len(layers), len(images))
    session = tensorflow().compat.v1.keras.backend.get_session()
    trained = [layer.get_weights() for layer in layers]
    correlations = []
    examples = [heatmaps[: cfg.randomisation.n_examples]]
    seeds = np.random.default_rng(seed).integers(2**31, size=len(layers))
    try:
        for step, (layer, layer_seed) in enumerate(zip(layers, seeds, strict=True), start=1):
            fresh = [
                _reseeded(layer.kernel_initializer, layer_seed)(
                    layer.kernel.shape, layer.kernel.dtype
                ),
                _reseeded(layer.bias_initializer, layer_seed)(layer.bias.shape, layer.bias.dtype),
            ]
            layer.set_weights(session.run(fresh))
            randomised = explain_index(images, classes, f"randomised {step}/{len(layers)}")
            correlations.append(float(np.nanmean(metrics.rank_correlation(heatmaps, randomised))))
            examples.append(randomised[: cfg.randomisation.n_examples])
    finally:
        for layer, weights in zip(layers, trained, strict=True):
            layer.set_weights(weights)
    result.randomised_layers = [layer.name for layer in layers]
    result.randomisation_curve = np.array(correlations)
    result.randomisation_examples = examples
    result.scores["randomisation_spearman"] = float(np.mean(correlations))
    result.scores["randomisation_spearman_full"] = correlations[-1]

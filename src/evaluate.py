"""Explanation quality on the first ``evaluate.n_images`` test images: faithfulness (MoRF
region perturbation, AOPC, against a random order), the model-parameter randomisation test
(MPRT) and eMPRT, the random-logit test, complexity (Gini) and conservation.

Every score is kept per image (``Evaluation.per_image``) so the verdict can test analyzers
against baselines image by image. Every random draw comes from a generator seeded by the run's
seed (never NumPy's global state, which training advances and a reused model does not).

Libraries do the work where they fit iNNvestigate's graph-mode Keras model: the perturbation of
regions is iNNvestigate's ``Perturbation``, the Gini index Quantus's ``Sparseness``, the
random-logit similarity Quantus's ``ssim`` on maps normalised by Quantus's
``normalise_by_max``. Written here, with the reason each time:

- the perturbation loop (iNNvestigate's ``PerturbationAnalysis`` reports only batch accuracy;
  the paired tests need each image's curve) and its Gaussian noise (iNNvestigate's draws from
  ``np.random``'s global state);
- the randomisation tests: Quantus 0.6's TensorFlow ``MPRT`` copies the model with
  ``keras.models.clone_model``, which re-initialises *every* layer, so its cascade compares
  against an untrained network from the first step; and its averages drop the images whose
  map went blank (Spearman is NaN there), the very failures the test exists to find. The
  similarity and eMPRT follow Quantus otherwise (:mod:`src.metrics`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from src import metrics
from src.tf_runtime import innvestigate, tensorflow

log = logging.getLogger(__name__)

# (images, classes, what the progress bar says) -> heatmaps
Explain = Callable[[np.ndarray, np.ndarray, str], np.ndarray]
# Share of images with |sum R| > 2 |logit| above which a run warns (alpha-beta rules).
BLOWUP_WARNING = 0.05
# Independent random streams of one run's scoring, each seeded by (seed, stream).
PERTURBATION_NOISE, RANDOM_ORDER, LAYER_SEEDS, OFF_CLASSES = 1, 2, 3, 4


def generator(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


@dataclass
class Evaluation:
    scores: dict[str, float] = field(default_factory=dict)  # logged as eval_<name>
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # score -> one per image
    perturbation_curve: np.ndarray | None = None  # accuracy after 0..steps perturbation steps
    random_curve: np.ndarray | None = None  # the same, regions in random order
    randomised_layers: list[str] = field(default_factory=list)  # top first
    randomisation_curve: np.ndarray | None = None  # mean similarity per cascading step
    blank_curve: np.ndarray | None = None  # share of blank maps per cascading step
    randomisation_examples: list[np.ndarray] = field(default_factory=list)  # heatmaps per step
    warnings: list[str] = field(default_factory=list)  # lines the run prints and tags


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
    result.scores["blank_fraction"] = float(np.mean(metrics.blank(heatmaps)))

    if cfg.complexity.enabled:
        _record(result, "gini", gini(heatmaps))
    if cfg.conservation.enabled and method.startswith(tuple(cfg.conservation.methods)):
        explained = logits[np.arange(len(images)), classes]
        _record(result, "conservation_error", metrics.conservation_error(heatmaps, explained))
        share = metrics.blowup_share(heatmaps, explained)
        result.scores["relevance_blowup_share"] = share
        if share > BLOWUP_WARNING:
            result.warnings.append(
                f"{share:.1%} of the scored images have |sum of relevance| > 2x the explained "
                f"logit: {method}'s relevance is not conserved (iNNvestigate's alpha-beta rules "
                "put the whole bias into both denominators; see the README's analyzer notes)"
            )
    if cfg.perturbation.enabled:
        _perturbation(cfg, model, images, labels, heatmaps, seed, result)
    if cfg.randomisation.enabled:
        _randomisation(cfg, model, images, classes, heatmaps, explain, seed, result)
    if cfg.random_logit.enabled:
        _random_logit(images, classes, logits.shape[1], heatmaps, explain, seed, result)
    return result


def _record(result: Evaluation, name: str, per_image: np.ndarray) -> None:
    """A score kept per image, and its mean as the run's metric."""
    result.per_image[name] = np.asarray(per_image, dtype=np.float64)
    result.scores[name] = float(np.mean(per_image))


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
    """MoRF: whether each image is still classified right as its most relevant regions are
    perturbed, one more per step; the same with the regions in a random order."""
    log.info("perturbation: %d steps on %d images", cfg.perturbation.steps, len(images))
    correct = perturbation_correct(cfg, model, images, labels, heatmaps, seed)
    # The baseline: the same perturbation, regions in an order that ignores the heatmap.
    order = generator(seed, RANDOM_ORDER).random(heatmaps.shape).astype(np.float32)
    correct_random = perturbation_correct(cfg, model, images, labels, order, seed)
    result.perturbation_curve = correct.mean(axis=1)
    result.random_curve = correct_random.mean(axis=1)
    _record(result, "aopc", metrics.aopc_per_image(correct))
    _record(result, "aopc_random", metrics.aopc_per_image(correct_random))
    result.scores["aopc_gain"] = result.scores["aopc"] - result.scores["aopc_random"]


def perturbation_correct(cfg, model, images, labels, heatmaps, seed: int) -> np.ndarray:
    """(steps + 1, N): is each image classified right before and after each MoRF step.

    iNNvestigate's ``Perturbation`` ranks and perturbs the regions; the loop is here because
    its ``PerturbationAnalysis`` only reports each batch's accuracy. Step k perturbs the k most
    relevant regions of the original image.
    """
    from innvestigate.tools.perturbate import Perturbation

    perturbation = Perturbation(
        perturbation_function(cfg.perturbation.function, generator(seed, PERTURBATION_NOISE)),
        region_shape=tuple(cfg.perturbation.region_shape),
        in_place=False,
        value_range=(0.0, 1.0),
    )
    correct = np.zeros((cfg.perturbation.steps + 1, len(images)), dtype=bool)
    for step in range(cfg.perturbation.steps + 1):
        perturbation.num_perturbed_regions = step
        for start in range(0, len(images), cfg.batch_size):
            batch = slice(start, start + cfg.batch_size)
            perturbed = perturbation.perturbate_on_batch(images[batch], heatmaps[batch])
            predicted = model.predict(perturbed, batch_size=cfg.batch_size, verbose=0)
            correct[step, batch] = predicted.argmax(axis=1) == labels[batch]
    return correct


def perturbation_function(name: str, noise: np.random.Generator) -> Callable | str:
    """iNNvestigate's perturbation functions by name, except ``gaussian``, which draws from
    ``noise`` instead of ``np.random``'s global state (same distribution: N(0, 0.3))."""
    if name == "gaussian":
        return lambda region: noise.normal(loc=0.0, scale=0.3, size=region.shape)
    return name


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


def cascade(model, seed: int) -> Iterator[str]:
    """Re-initialise the layers with weights top-down, one more per step, and yield each
    layer's name once it is randomised; the trained weights are restored at the end (also
    when the caller stops early or fails). Each layer gets fresh weights from its own
    initializer under a seed drawn from (``seed``, LAYER_SEEDS)."""
    layers = weighted_layers(model)
    session = tensorflow().compat.v1.keras.backend.get_session()
    trained = [layer.get_weights() for layer in layers]
    seeds = generator(seed, LAYER_SEEDS).integers(2**31, size=len(layers))
    try:
        for layer, layer_seed in zip(layers, seeds, strict=True):
            fresh = [
                _reseeded(layer.kernel_initializer, layer_seed)(
                    layer.kernel.shape, layer.kernel.dtype
                ),
                _reseeded(layer.bias_initializer, layer_seed)(layer.bias.shape, layer.bias.dtype),
            ]
            layer.set_weights(session.run(fresh))
            yield layer.name
    finally:
        for layer, weights in zip(layers, trained, strict=True):
            layer.set_weights(weights)


def _randomisation(
    cfg, model, images, classes, heatmaps, explain_index: Explain, seed, result
) -> None:
    """MPRT (Adebayo et al. 2018), cascading: re-initialise the top layer with fresh random
    weights (its initializer's distribution, a new seed), then the next one too, ...; after
    each step explain the same classes again and compare with the original maps per image
    (:func:`src.metrics.randomisation_similarity`: a map that went blank counts as changed).
    ``mprt`` is the mean over steps, ``mprt_full`` the last step (every layer randomised).

    eMPRT (Hedström et al. 2024) randomises bottom-up; with Quantus's default
    ``skip_layers=True`` only the fully randomised network counts, which is the same network
    as the cascade's last step (the same seed per layer), so it reuses that step's maps."""
    layers = weighted_layers(model)
    log.info("randomisation: %d layers on %d images", len(layers), len(images))
    similarities, blanks = [], []
    examples = [heatmaps[: cfg.randomisation.n_examples]]
    for step, _ in enumerate(cascade(model, seed), start=1):
        randomised = explain_index(images, classes, f"randomised {step}/{len(layers)}")
        similarities.append(metrics.randomisation_similarity(heatmaps, randomised))
        blanks.append(float(np.mean(metrics.blank(randomised))))
        examples.append(randomised[: cfg.randomisation.n_examples])
    per_step = np.array(similarities)  # (steps, N)
    result.randomised_layers = [layer.name for layer in layers]
    result.randomisation_curve = per_step.mean(axis=1)
    result.blank_curve = np.array(blanks)
    result.randomisation_examples = examples
    _record(result, "mprt", per_step.mean(axis=0))
    _record(result, "mprt_full", per_step[-1])
    result.scores["mprt_blank_fraction_full"] = blanks[-1]
    emprt = metrics.emprt(heatmaps, randomised, cfg.randomisation.emprt_bins)
    undefined = np.isnan(emprt)
    # The original map is constant: no rise in entropy is defined; counted, not hidden.
    result.scores["emprt_undefined_fraction"] = float(np.mean(undefined))
    if not undefined.all():
        result.per_image["emprt"] = emprt
        result.scores["emprt"] = float(np.mean(emprt[~undefined]))


def _random_logit(images, classes, n_classes, heatmaps, explain_index, seed, result) -> None:
    """Random-logit test (Sixt et al. 2020; Quantus's ``RandomLogit``): per image, the SSIM of
    the map of the explained class with the map of another class drawn at random, both
    normalised by their max |relevance| and flattened as Quantus does. Lower = the map
    depends on which class it explains."""
    others = metrics.off_classes(classes, n_classes, generator(seed, OFF_CLASSES))
    off = explain_index(images, others, "random logit")
    _record(result, "random_logit", random_logit_similarity(heatmaps, off))


def random_logit_similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Quantus's ``ssim`` of the flattened maps, each divided by its own max |relevance|, per
    image (Quantus's default divides by the max of the whole batch, so a score would depend
    on the other images in it); two identical constant maps (SSIM's 0 / 0) are identical: 1."""
    quantus = _quantus()
    a = metrics.per_image(first)
    b = metrics.per_image(second)
    similarity = np.empty(len(a))
    normalise = quantus.normalise_func.normalise_by_max  # a / max|a|; all-zero stays zero
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        x = normalise(x[None], normalise_axes=[1])[0]
        y = normalise(y[None], normalise_axes=[1])[0]
        if np.ptp(np.concatenate([x, y])) == 0:
            similarity[index] = 1.0
        else:
            similarity[index] = quantus.similarity_func.ssim(x, y)
    return similarity

"""Explanation quality on the first ``evaluate.n_images`` test images: every score of the
registry (:mod:`src.scoring`), defined here, one class each, in the order the verdict shows
them. ``evaluate.scores.<name>`` switches a score, ``evaluate.<name>`` configures it;
``python -m src.evaluate`` prints the README's table of them.

Every score is kept per image (``Evaluation.per_image``) so the verdict can test analyzers
against baselines image by image. Every random draw comes from a generator seeded by the run's
seed and the score's own stream (:func:`src.scoring.generator`), never NumPy's global state.

Libraries do the work where they fit iNNvestigate's graph-mode Keras model: the perturbation of
regions is iNNvestigate's ``Perturbation``; the Gini index and the robustness scores are
Quantus's (``Sparseness``, ``MaxSensitivity``, ``LocalLipschitzEstimate``, the last two with
the run's own explainer and seeded noise); the random-logit similarity is Quantus's ``ssim``.
Written here, with the reason each time:

- the perturbation loop (iNNvestigate's ``PerturbationAnalysis`` reports only batch accuracy;
  the paired tests need each image's curve) and its Gaussian noise (iNNvestigate's draws from
  ``np.random``'s global state);
- faithfulness correlation and ROAD (:mod:`src.metrics`): Quantus 0.6's draw their subsets
  and imputation noise from ``np.random``'s global state, ROAD solves one sparse system per
  image and percentage (seconds per analyzer) and indexes colour images' pixels wrongly; the
  arithmetic is Quantus's, and tests check it against Quantus's on the same draws;
- the randomisation tests: Quantus 0.6's TensorFlow ``MPRT`` copies the model with
  ``keras.models.clone_model``, which re-initialises *every* layer, so its cascade compares
  against an untrained network from the first step; and its averages drop the images whose
  map went blank (Spearman is NaN there), the very failures the test exists to find. The
  similarity and eMPRT follow Quantus otherwise (:mod:`src.metrics`);
- the localisation scores: Quantus's break ties by pixel index (:func:`localisation`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from omegaconf import DictConfig

from src import metrics
from src.canonical import explainable
from src.scoring import (
    IMPUTATION_NOISE,
    LAYER_SEEDS,
    LIPSCHITZ_NOISE,
    OFF_CLASSES,
    PERTURBATION_NOISE,
    RANDOM_ORDER,
    SENSITIVITY_NOISE,
    SUBSETS,
    Context,
    Curve,
    Evaluation,
    Explain,
    Metric,
    ModelOnly,
    Score,
    generator,
    markdown_table,
    register,
    registered,
    run_scores,
)
from src.tf_runtime import tensorflow

log = logging.getLogger(__name__)

# Share of images with |sum R| > 2 |logit| above which a run warns (alpha-beta rules).
BLOWUP_WARNING = 0.05


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
    masks: np.ndarray | None = None,
    model_only: ModelOnly | None = None,
    explain_anew: Explain | None = None,
) -> Evaluation:
    """Score the analyzer's heatmaps of ``images`` (``cfg`` is the ``evaluate`` config) with
    every score ``cfg.scores`` switches on.

    ``explain(images, classes, description)`` gives the heatmaps of the given output neurons
    of ``model``: the true labels if ``by_label``, else the predicted classes; the randomised
    model is explained for the same classes. ``masks`` (N, H, W) mark where the ground truth
    is (experiment=shortcut), for the localisation scores. ``model_only(name, compute)``
    keeps work that depends on the model alone for the other analyzers' runs.
    ``explain_anew`` explains with an explainer built on the model's current weights, for
    the randomisation cascade.
    """
    logit_model = explainable(model)
    logits = logit_model.predict(images, batch_size=cfg.batch_size, verbose=0)
    classes = labels if by_label else logits.argmax(axis=1)
    context = Context(
        cfg=cfg,
        model=model,
        images=images,
        labels=labels,
        classes=classes,
        logits=logits,
        heatmaps=explain(images, classes, "scoring"),
        explain=explain,
        method=method,
        seed=seed,
        masks=masks,
        model_only=model_only,
        explain_anew=explain_anew,
    )
    context.logit_model = logit_model
    return run_scores(SCORES, cfg.scores, cfg, context, log.info)


# ---------------------------------------------------------------------------------------------
# Faithfulness: does removing what the map calls relevant change the model's answer?


@register
class RegionPerturbation(Score):
    """MoRF and LeRF region perturbation, against a random order (Samek et al. 2017)."""

    name = "perturbation"
    needs = frozenset({"heatmaps", "model"})
    metrics = (
        Metric(
            "aopc",
            "**faithfulness**: regions (`region_shape`, 7×7) are replaced by Gaussian noise in "
            "order of decreasing mean relevance (MoRF), `steps` (15) steps, with iNNvestigate's "
            "`Perturbation`; the area over each image's correct/wrong curve",
            "higher",
            "Samek et al. 2017",
            "faithfulness (MoRF AOPC)",
            "AOPC",
            headline=True,
        ),
        Metric(
            "aopc_lerf",
            "the same regions in order of *increasing* relevance (LeRF, `lerf`: true): the "
            "least relevant regions should not matter",
            "lower",
            "Samek et al. 2017",
            "faithfulness (LeRF AOPC)",
            "LeRF",
        ),
        Metric(
            "abpc",
            "MoRF AOPC − LeRF AOPC per image, the area between the two curves: MoRF alone "
            "rewards maps that destroy any image fast",
            "higher",
            "Schulz et al. 2020",
            "faithfulness (MoRF − LeRF)",
            "ABPC",
        ),
        Metric("aopc_random", "MoRF's AOPC with the regions in a random order", "—"),
        Metric("aopc_gain", "`aopc` − `aopc_random`", "higher"),
    )
    curves = (
        Curve("perturbation_accuracy", "accuracy after k regions perturbed, MoRF"),
        Curve("perturbation_accuracy_lerf", "the same, LeRF"),
        Curve("perturbation_accuracy_random", "the same, random order"),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        heatmaps = context.heatmaps
        log.info("perturbation: %d steps on %d images", settings.steps, len(heatmaps))
        correct = perturbation_correct(context, settings, heatmaps)

        # The baseline: the same perturbation, regions in an order that ignores the heatmap. It
        # depends on the model, not the analyzer: computed once per model.
        def random_baseline() -> np.ndarray:
            order = generator(context.seed, RANDOM_ORDER).random(heatmaps.shape)
            return perturbation_correct(context, settings, order.astype(np.float32))

        correct_random = context.of_model(
            f"perturbation random order: seed {context.seed}, {len(heatmaps)} images, "
            f"steps {settings.steps}, regions {tuple(settings.region_shape)}, "
            f"function {settings.function}, batch {context.cfg.batch_size}",
            random_baseline,
        )
        result.curves["perturbation_accuracy"] = correct.mean(axis=1)
        result.curves["perturbation_accuracy_random"] = correct_random.mean(axis=1)
        morf = metrics.aopc_per_image(correct)
        result.record("aopc", morf)
        result.record("aopc_random", metrics.aopc_per_image(correct_random))
        if settings.lerf:
            # iNNvestigate ranks regions by decreasing mean relevance; negated, increasing.
            correct_lerf = perturbation_correct(context, settings, -heatmaps)
            result.curves["perturbation_accuracy_lerf"] = correct_lerf.mean(axis=1)
            lerf = metrics.aopc_per_image(correct_lerf)
            result.record("aopc_lerf", lerf)
            result.record("abpc", morf - lerf)
        result.scores["aopc_gain"] = result.scores["aopc"] - result.scores["aopc_random"]


def perturbation_correct(context: Context, settings: Any, heatmaps: np.ndarray) -> np.ndarray:
    """(steps + 1, N): is each image classified right before and after each MoRF step.

    iNNvestigate's ``Perturbation`` ranks and perturbs the regions; the loop is here because
    its ``PerturbationAnalysis`` only reports each batch's accuracy. Step k perturbs the k most
    relevant regions of the original image.
    """
    from innvestigate.tools.perturbate import Perturbation

    perturbation = Perturbation(
        perturbation_function(settings.function, generator(context.seed, PERTURBATION_NOISE)),
        region_shape=tuple(settings.region_shape),
        in_place=False,
        value_range=(0.0, 1.0),
    )
    images, labels = context.images, context.labels
    batch_size = context.cfg.batch_size
    correct = np.zeros((settings.steps + 1, len(images)), dtype=bool)
    for step in range(settings.steps + 1):
        perturbation.num_perturbed_regions = step
        perturbed = np.concatenate(
            [
                perturbation.perturbate_on_batch(
                    images[start : start + batch_size], heatmaps[start : start + batch_size]
                )
                for start in range(0, len(images), batch_size)
            ]
        )
        correct[step] = context.predict_classes(perturbed) == labels
    return correct


def perturbation_function(name: str, noise: np.random.Generator) -> Callable | str:
    """iNNvestigate's perturbation functions by name, except ``gaussian``, which draws from
    ``noise`` instead of ``np.random``'s global state (same distribution: N(0, 0.3))."""
    if name == "gaussian":
        return lambda region: noise.normal(loc=0.0, scale=0.3, size=region.shape)
    return name


@register
class FaithfulnessCorrelation(Score):
    name = "faithfulness_correlation"
    needs = frozenset({"heatmaps", "model"})
    metrics = (
        Metric(
            "faithfulness_correlation",
            "**faithfulness**: per image, `runs` (50) random subsets of `subset_size` (224) "
            "input values are set to the image's minimum; Pearson correlation between the "
            "relevance in each subset and the drop of the explained logit (a blank map: 0)",
            "higher",
            "Bhatt et al. 2020; Quantus `FaithfulnessCorrelation`",
            "faithfulness correlation",
            "FCorr",
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        features = int(np.prod(context.images.shape[1:]))
        size = min(settings.subset_size, features)
        log.info(
            "faithfulness correlation: %d subsets of %d values on %d images",
            settings.runs,
            size,
            len(context.images),
        )
        subsets = metrics.random_subsets(
            generator(context.seed, SUBSETS), settings.runs, len(context.images), features, size
        )
        result.record(
            "faithfulness_correlation",
            metrics.faithfulness_correlation(
                context.predict_logits, context.images, context.heatmaps, context.classes, subsets
            ),
        )


@register
class Road(Score):
    name = "road"
    needs = frozenset({"heatmaps", "model"})
    metrics = (
        Metric(
            "road",
            "**faithfulness without the shape leak**: the most relevant `percentages` (10…90%) "
            "of pixels are removed and filled in by noisy linear imputation (ROAD, MoRF); the "
            "area over each image's correct/wrong curve",
            "higher",
            "Rong et al. 2022; Quantus `ROAD`",
            "faithfulness (ROAD, MoRF)",
            "ROAD",
        ),
    )
    curves = (Curve("road_accuracy", "accuracy after each percentage removed (step 0: none)"),)

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        images = context.images
        percentages = list(settings.percentages)
        log.info("ROAD: %d percentages on %d images", len(percentages), len(images))
        noise = generator(context.seed, IMPUTATION_NOISE)
        correct = np.zeros((len(percentages) + 1, len(images)), dtype=bool)
        correct[0] = context.predict_classes(images) == context.labels
        for step, removed in enumerate(metrics.road_orders(context.heatmaps, percentages), 1):
            imputed = metrics.noisy_linear_imputation(images, removed, settings.noise, noise)
            correct[step] = context.predict_classes(imputed) == context.labels
        result.curves["road_accuracy"] = correct.mean(axis=1)
        result.record("road", metrics.aopc_per_image(correct))


# ---------------------------------------------------------------------------------------------
# Sanity checks: does the map depend on the model's weights and on the class it explains?


def weighted_layers(model) -> list:
    """The layers with weights, top (output) first: the cascading order."""
    return [layer for layer in reversed(model.layers) if layer.weights]


# A weight's initializer is the layer's ``<weight>_initializer``, but for these.
INITIALIZER_OF = {
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
}


def initializers(layer) -> list | str:
    """The initializer of each of the layer's weights (``kernel_initializer``,
    ``gamma_initializer``, ``moving_mean_initializer``, ...), or why there is none."""
    found = []
    for weight in layer.weights:
        name = weight.name.split("/")[-1].split(":")[0]
        initializer = getattr(layer, INITIALIZER_OF.get(name, f"{name}_initializer"), None)
        if initializer is None:
            return f"its weight {name!r} has no initializer"
        found.append(initializer)
    return found


def randomisable_layers(model) -> tuple[list, dict[str, str]]:
    """The layers the cascade re-initialises, top first, and those it skips with why."""
    layers, skipped = [], {}
    for layer in weighted_layers(model):
        found = initializers(layer)
        if isinstance(found, str):
            skipped[layer.name] = found
        else:
            layers.append(layer)
    return layers, skipped


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
    when the caller stops early or fails). Every weight of a layer (a BatchNorm's gamma,
    beta and moving statistics too) gets fresh values from its own initializer under a seed
    drawn from (``seed``, LAYER_SEEDS); layers without initializers are skipped
    (:func:`randomisable_layers`)."""
    layers, _ = randomisable_layers(model)
    session = tensorflow().compat.v1.keras.backend.get_session()
    trained = [layer.get_weights() for layer in layers]
    seeds = generator(seed, LAYER_SEEDS).integers(2**31, size=len(layers))
    try:
        for layer, layer_seed in zip(layers, seeds, strict=True):
            fresh = [
                _reseeded(initializer, layer_seed)(weight.shape, weight.dtype)
                for weight, initializer in zip(layer.weights, initializers(layer), strict=True)
            ]
            layer.set_weights(session.run(fresh))
            yield layer.name
    finally:
        for layer, weights in zip(layers, trained, strict=True):
            layer.set_weights(weights)


@register
class Randomisation(Score):
    """MPRT (Adebayo et al. 2018), cascading: re-initialise the top layer with fresh random
    weights (its initializer's distribution, a new seed), then the next one too, ...; after
    each step explain the same classes again and compare with the original maps per image
    (:func:`src.metrics.randomisation_similarity`: a map that went blank counts as changed).
    ``mprt`` is the mean over steps, ``mprt_full`` the last step (every layer randomised).

    eMPRT (Hedström et al. 2024) randomises bottom-up; with Quantus's default
    ``skip_layers=True`` only the fully randomised network counts, which is the same network
    as the cascade's last step (the same seed per layer), so it reuses that step's maps."""

    name = "randomisation"
    needs = frozenset({"heatmaps", "model", "explain"})
    metrics = (
        Metric(
            "mprt",
            "**sanity check**, cascading model-parameter randomisation: layers re-initialised "
            "top-down, one more per step; per image the Spearman correlation of \\|map\\| "
            "with the trained model's, averaged over steps (a map gone blank: 0)",
            "lower",
            "Adebayo et al. 2018; Quantus `MPRT`",
            "randomisation (MPRT, mean over layers)",
            "MPRT",
            headline=True,
        ),
        Metric("mprt_full", "the same once every layer is re-initialised", "lower"),
        Metric(
            "mprt_blank_fraction_full",
            "the share of maps that are constant once every layer is re-initialised",
            "—",
        ),
        Metric(
            "emprt",
            "**sanity check**, efficient MPRT: per image the relative rise of the map's "
            "discrete entropy (`emprt_bins`, 100 bins) from the trained to the fully "
            "randomised model",
            "higher",
            "Hedström et al. 2024; Quantus `EfficientMPRT`",
            "randomisation (eMPRT)",
            "eMPRT",
            headline=True,
        ),
        Metric(
            "emprt_undefined_fraction",
            "the share of images whose original map is constant (no entropy rise defined; "
            "left out of `eval_emprt`)",
            "—",
        ),
    )
    curves = (
        Curve("mprt_curve", "MPRT's mean similarity after k layers re-initialised", 1),
        Curve("mprt_blank_fraction", "the share of maps gone constant after k layers", 1),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        model, heatmaps = context.model, context.heatmaps
        layers, skipped = randomisable_layers(model)
        log.info("randomisation: %d layers on %d images", len(layers), len(context.images))
        if skipped:
            log.info(
                "randomisation: skipped %s",
                "; ".join(f"{name} ({why})" for name, why in skipped.items()),
            )
        similarities, blanks = [], []
        examples = [heatmaps[: settings.n_examples]]
        for step, _ in enumerate(cascade(model, context.seed), start=1):
            randomised = context.explain_current(
                context.images, context.classes, f"randomised {step}/{len(layers)}"
            )
            similarities.append(metrics.randomisation_similarity(heatmaps, randomised))
            blanks.append(float(np.mean(metrics.blank(randomised))))
            examples.append(randomised[: settings.n_examples])
        per_step = np.array(similarities)  # (steps, N)
        result.randomised_layers = [layer.name for layer in layers]
        result.curves["mprt_curve"] = per_step.mean(axis=1)
        result.curves["mprt_blank_fraction"] = np.array(blanks)
        result.randomisation_examples = examples
        result.randomisation_classes = context.classes[: settings.n_examples]
        result.record("mprt", per_step.mean(axis=0))
        result.record("mprt_full", per_step[-1])
        result.scores["mprt_blank_fraction_full"] = blanks[-1]
        emprt = metrics.emprt(heatmaps, randomised, settings.emprt_bins)
        # The original map is constant: no rise in entropy is defined; counted, not hidden.
        result.scores["emprt_undefined_fraction"] = float(np.mean(np.isnan(emprt)))
        if not np.isnan(emprt).all():
            result.record("emprt", emprt)


@register
class RandomLogit(Score):
    """Random-logit test (Sixt et al. 2020; Quantus's ``RandomLogit``): per image, the SSIM of
    the map of the explained class with the map of another class drawn at random, both
    normalised by their max |relevance| and flattened as Quantus does. Lower = the map
    depends on which class it explains."""

    name = "random_logit"
    needs = frozenset({"heatmaps", "explain"})
    metrics = (
        Metric(
            "random_logit",
            "**class sensitivity**: per image the SSIM of the map of the explained class with "
            "the map of another class drawn at random",
            "lower",
            "Sixt et al. 2020; Quantus `RandomLogit`",
            "random logit (SSIM)",
            "rlogit",
            headline=True,
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        n_classes = context.logits.shape[1]
        others = metrics.off_classes(
            context.classes, n_classes, generator(context.seed, OFF_CLASSES)
        )
        off = context.explain(context.images, others, "random logit")
        result.record("random_logit", random_logit_similarity(context.heatmaps, off))


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


# ---------------------------------------------------------------------------------------------
# Properties of the map itself.


@register
class Complexity(Score):
    name = "complexity"
    needs = frozenset({"heatmaps"})
    metrics = (
        Metric(
            "gini",
            "**complexity**: Gini index of \\|relevance\\| per image",
            "higher = sparser",
            "Chalasani et al. 2020; Quantus `Sparseness`",
            "complexity (Gini)",
            "Gini",
            headline=True,
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        result.record("gini", gini(context.heatmaps))


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


@register
class Conservation(Score):
    name = "conservation"
    needs = frozenset({"heatmaps", "model"})
    methods_key = "methods"  # relevance propagation only: analyzer.method's prefixes
    metrics = (
        Metric(
            "conservation_error",
            "Deep Taylor and LRP: \\|Σ relevance − explained logit\\| / \\|logit\\|",
            "lower",
        ),
        Metric(
            "relevance_blowup_share",
            "Deep Taylor and LRP: the share of images whose \\|Σ relevance\\| is more than 2× "
            "the explained logit; above 5% the run prints a warning",
            "lower",
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        explained = context.logits[np.arange(len(context.images)), context.classes]
        heatmaps = context.heatmaps
        result.record("conservation_error", metrics.conservation_error(heatmaps, explained))
        share = metrics.blowup_share(heatmaps, explained)
        result.scores["relevance_blowup_share"] = share
        if share > BLOWUP_WARNING:
            result.warnings.append(
                f"{share:.1%} of the scored images have |sum of relevance| > 2x the explained "
                f"logit: {context.method}'s relevance is not conserved (iNNvestigate's "
                "alpha-beta rules put the whole bias into both denominators; see the README's "
                "analyzer notes)"
            )


@register
class BlankMaps(Score):
    name = "blank_maps"
    needs = frozenset({"heatmaps"})
    metrics = (
        Metric(
            "blank_fraction",
            "the share of the analyzer's maps that are constant (all zero, typically) on the "
            "trained model: they rank no pixel above another",
            "—",
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        result.scores["blank_fraction"] = float(np.mean(metrics.blank(context.heatmaps)))


# ---------------------------------------------------------------------------------------------
# Robustness: does the map stay put when the input barely moves?


@register
class Robustness(Score):
    """Quantus's ``MaxSensitivity`` and ``LocalLipschitzEstimate`` on the first
    ``robustness.n_images`` scored images, the perturbed inputs explained by the run's own
    explainer (so SmoothGrad's noise, Integrated Gradients' path and the LRP rules apply as
    in the run) and perturbed by seeded noise (Quantus's own draws from ``np.random``)."""

    name = "robustness"
    needs = frozenset({"heatmaps", "model", "explain"})
    default = False
    metrics = (
        Metric(
            "max_sensitivity",
            "**robustness**: per image the largest ‖map(x + δ) − map(x)‖ / ‖map(x)‖ over "
            "`samples` (20) draws of uniform noise δ in ±`radius` (0.2)",
            "lower",
            "Yeh et al. 2019; Quantus `MaxSensitivity`",
            "robustness (max sensitivity)",
            "MaxSens",
        ),
        Metric(
            "local_lipschitz",
            "**robustness**: per image the largest ‖map(x + δ) − map(x)‖ / ‖δ‖ over `samples` "
            "draws of Gaussian δ (σ `lipschitz_std`, 0.1), maps normalised by their max",
            "lower",
            "Alvarez-Melis & Jaakkola 2018; Quantus `LocalLipschitzEstimate`",
            "robustness (local Lipschitz)",
            "Lipschitz",
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        quantus = _quantus()
        count = min(settings.n_images, len(context.images))
        images, classes = context.images[:count], context.classes[:count]
        heatmaps = context.heatmaps[:count]
        log.info("robustness: %d noisy copies of %d images", settings.samples, count)

        def explain_func(model, inputs, targets, **_):
            channels_first = inputs.shape[1:] != images.shape[1:]
            inputs = np.moveaxis(inputs, 1, -1) if channels_first else inputs
            maps = context.explain(np.ascontiguousarray(inputs, np.float32), targets, "robustness")
            return np.moveaxis(maps, -1, 1) if channels_first else maps

        if metrics.blank(heatmaps).all():  # Quantus refuses a batch of constant maps
            for name in ("max_sensitivity", "local_lipschitz"):
                result.record(name, np.full(count, np.nan))
            return
        common = dict(nr_samples=settings.samples, disable_warnings=True)
        sensitivity = quantus.MaxSensitivity(
            lower_bound=settings.radius,
            perturb_func=seeded_noise(generator(context.seed, SENSITIVITY_NOISE), "uniform"),
            **common,
        )
        lipschitz = quantus.LocalLipschitzEstimate(
            normalise_func=normalise_each_by_max,
            perturb_std=settings.lipschitz_std,
            perturb_func=seeded_noise(generator(context.seed, LIPSCHITZ_NOISE), "normal"),
            **common,
        )
        for name, metric in (("max_sensitivity", sensitivity), ("local_lipschitz", lipschitz)):
            try:
                values = metric(
                    model=context.model,
                    x_batch=images,
                    y_batch=classes,
                    a_batch=heatmaps,
                    explain_func=explain_func,
                    channel_first=False,
                    batch_size=count,
                )
            except AssertionError as error:  # Quantus refuses maps it cannot rank
                result.warnings.append(f"{name} not scored: Quantus says {error}")
                values = np.full(count, np.nan)
            # A blank map has no size to be sensitive relative to: undefined (NaN), left out.
            values = np.asarray(values, dtype=np.float64)
            values[~np.isfinite(values)] = np.nan
            result.record(name, values)


def normalise_each_by_max(a: np.ndarray, **_) -> np.ndarray:
    """Each map divided by its own largest |value| (all-zero maps stay zero). Quantus's
    ``normalise_by_max`` divides a whole batch by the batch's largest value, so an image's
    score would depend on the images scored with it."""
    peak = np.abs(a).reshape(len(a), -1).max(axis=1).reshape(-1, *[1] * (a.ndim - 1))
    return np.divide(a, peak, out=np.zeros(a.shape, dtype=np.float64), where=peak > 0)


def seeded_noise(noise: np.random.Generator, kind: str) -> Callable:
    """A Quantus ``perturb_func`` adding uniform (±``lower_bound``) or Gaussian (σ
    ``perturb_std``) noise from ``noise`` to every value: Quantus's ``uniform_noise`` and
    ``gaussian_noise`` draw from ``np.random``'s global state."""

    def perturb(arr: np.ndarray, indices=None, indexed_axes=None, **settings) -> np.ndarray:
        if kind == "uniform":
            bound = settings.get("lower_bound", 0.02)
            delta = noise.uniform(-bound, bound, size=arr.shape)
        else:
            delta = noise.normal(
                settings.get("perturb_mean", 0.0), settings["perturb_std"], arr.shape
            )
        return (arr + delta).astype(arr.dtype)

    return perturb


# ---------------------------------------------------------------------------------------------
# Ground truth: does the map point at what the model is known to look at?


@register
class Localisation(Score):
    """Localisation against the planted marker's mask (experiment=shortcut), on |relevance|
    summed over channels (:func:`localisation`)."""

    name = "localisation"
    needs = frozenset({"heatmaps", "masks"})
    default = False
    metrics = (
        Metric(
            "relevance_mass_accuracy",
            "**ground truth**: the share of \\|relevance\\| inside the planted marker",
            "higher",
            "Arras et al. 2022; Quantus `RelevanceMassAccuracy`",
            "localisation (relevance mass)",
            "Mass",
        ),
        Metric(
            "relevance_rank_accuracy",
            "**ground truth**: of the k most relevant pixels (k = the marker's size), the "
            "share inside the marker",
            "higher",
            "Arras et al. 2022; Quantus `RelevanceRankAccuracy`",
            "localisation (relevance rank)",
            "Rank",
            headline=True,
        ),
        Metric(
            "pointing_game",
            "**ground truth**: 1 if the most relevant pixel is inside the marker, else 0",
            "higher",
            "Zhang et al. 2018; Quantus `PointingGame`",
            "localisation (pointing game)",
            "Point",
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        for name, values in localisation(context.heatmaps, context.masks).items():
            result.record(name, values)


def localisation(heatmaps: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Relevance mass accuracy, relevance rank accuracy and the pointing game per image, of
    |relevance| (channels summed) of ``heatmaps`` (N, H, W[, C]) against ``masks`` (N, H, W).

    As Quantus's (``abs=True``; a test checks they agree on maps without ties), except for
    ties, which Quantus breaks by pixel index: its rank accuracy fills the top k with the
    first of many equal (zero) pixels and its pointing game scores a hit if any of several
    equal maxima is inside, so a map with many zeros gets credit for a marker near the top
    left. Here tied pixels share the places they compete for: the expected score when ties are
    broken at random. A blank map localises nothing: 0."""
    maps = np.abs(metrics.per_image(heatmaps))
    truth = np.asarray(masks, dtype=bool).reshape(len(maps), -1)
    size = truth.sum(axis=1)
    totals = maps.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = np.where(totals > 0, (maps * truth).sum(axis=1) / totals, 0.0)
    rank = np.zeros(len(maps))
    pointing = np.zeros(len(maps))
    for index, (values, inside, k) in enumerate(zip(maps, truth, size, strict=True)):
        rank[index] = _expected_hits(values, inside, k) / k
        pointing[index] = _expected_hits(values, inside, 1)
    blank = metrics.blank(heatmaps)
    scores = {"relevance_mass_accuracy": mass, "relevance_rank_accuracy": rank}
    scores["pointing_game"] = pointing
    for values in scores.values():
        values[blank] = 0.0
    return scores


def _expected_hits(values: np.ndarray, inside: np.ndarray, k: int) -> float:
    """How many of the ``k`` largest ``values`` lie ``inside``, on average over the ways of
    breaking ties at the k-th value."""
    threshold = np.sort(values)[-k]
    above, tied = values > threshold, values == threshold
    places = k - above.sum()
    return float((above & inside).sum() + places * (tied & inside).sum() / tied.sum())


# Every score above, by name, in the order the verdict and the README show them.
SCORES = registered()


if __name__ == "__main__":
    print(markdown_table(SCORES))

"""The model randomisation tests (MPRT's cascade and eMPRT): does the map change as the
model's weights are randomised layer by layer? The cascade is written here (Quantus 0.6's
TensorFlow ``MPRT`` re-initialises every layer at once).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from src.common.tf_runtime import tensorflow
from src.scores import metrics
from src.scores.registry import (
    LAYER_SEEDS,
    Better,
    Context,
    Curve,
    Evaluation,
    Metric,
    Score,
    generator,
    register,
)

log = logging.getLogger(__name__)


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


def cascade(model, seed: int, draw: int = 0) -> Iterator[str]:
    """Re-initialise the layers with weights top-down, one more per step, and yield each
    layer's name once it is randomised; the trained weights are restored at the end (also
    when the caller stops early or fails). Every weight of a layer (a BatchNorm's gamma,
    beta and moving statistics too) gets fresh values from its own initializer under a seed
    drawn from (``seed``, LAYER_SEEDS): the ``draw``-th of independent re-initialisations;
    layers without initializers are skipped (:func:`randomisable_layers`)."""
    layers, _ = randomisable_layers(model)
    session = tensorflow().compat.v1.keras.backend.get_session()
    trained = [layer.get_weights() for layer in layers]
    # Draw k takes the k-th block of the stream: draw 0's seeds are those of a single draw.
    stream = generator(seed, LAYER_SEEDS).integers(2**31, size=(draw + 1) * len(layers))
    seeds = stream[draw * len(layers) :]
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
    (:func:`src.scores.metrics.randomisation_similarity`: a map that went blank counts as changed).
    ``mprt`` is the mean over steps, ``mprt_full`` the last step (every layer randomised).
    One re-initialisation is one draw of random weights, and the score moves with it (Deep
    Taylor's MPRT by ±0.1 on the seed CNN): every score is the mean over
    ``evaluate.randomisation.draws`` independent cascades, and the spread is logged.

    eMPRT (Hedström et al. 2024) randomises bottom-up; with Quantus's default
    ``skip_layers=True`` only the fully randomised network counts, which is the same network
    as the cascade's last step (the same seed per layer), so it reuses that step's maps."""

    name = "randomisation"
    controls = frozenset({"blank_like"})
    noise_passes = True  # fresh noise is unlike the trained model's map: MPRT 0
    needs = frozenset({"heatmaps", "model", "explain"})
    metrics = (
        Metric(
            "mprt",
            "**sanity check**, cascading model-parameter randomisation: layers re-initialised "
            "top-down, one more per step; per image the Spearman correlation of \\|map\\| "
            "with the trained model's, averaged over steps (a map gone blank: 0)",
            Better.LOWER,
            "Adebayo et al. 2018; Quantus `MPRT`",
            "randomisation (MPRT, mean over layers)",
            "MPRT",
            headline=True,
            blank_passes=True,
            bounds=(-1.0, 1.0),
        ),
        Metric("mprt_full", "the same once every layer is re-initialised", Better.LOWER),
        Metric(
            "mprt_draw_sd",
            "how much `eval_mprt` moves between independent re-initialisations: the standard "
            "deviation of the draws' means (`evaluate.randomisation.draws`; the scores are "
            "their mean)",
            Better.NEITHER,
        ),
        Metric(
            "mprt_blank_fraction_full",
            "the share of maps that are constant once every layer is re-initialised",
            Better.NEITHER,
        ),
        Metric(
            "emprt",
            "**sanity check**, efficient MPRT: per image the relative rise of the map's "
            "discrete entropy (`emprt_bins`, 100 bins) from the trained to the fully "
            "randomised model",
            Better.HIGHER,
            "Hedström et al. 2024; Quantus `EfficientMPRT`",
            "randomisation (eMPRT)",
            "eMPRT",
            headline=True,
        ),
        Metric(
            "emprt_undefined_fraction",
            "the share of images whose original map is constant (no entropy rise defined; "
            "left out of `eval_emprt`)",
            Better.NEITHER,
        ),
        Metric(
            "emprt_draw_sd",
            "the same spread for `eval_emprt`",
            Better.NEITHER,
        ),
    )
    curves = (
        Curve("mprt_curve", "MPRT's mean similarity after k layers re-initialised", 1),
        Curve("mprt_blank_fraction", "the share of maps gone constant after k layers", 1),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        model, heatmaps = context.model, context.heatmaps
        layers, skipped = randomisable_layers(model)
        draws = int(settings.draws)
        log.info(
            "randomisation: %d layers on %d images, %d draw(s)",
            len(layers),
            len(context.images),
            draws,
        )
        if skipped:
            log.info(
                "randomisation: skipped %s",
                "; ".join(f"{name} ({why})" for name, why in skipped.items()),
            )
        similarities, blanks, emprts = [], [], []  # per draw
        for draw in range(draws):
            similarity, blank, randomised, examples = self._draw(context, settings, draw, draws)
            similarities.append(similarity)
            blanks.append(blank)
            emprts.append(metrics.emprt(heatmaps, randomised, settings.emprt_bins))
            if draw == 0:  # the figure shows the first draw
                result.randomisation_examples = [heatmaps[: settings.n_examples], *examples]
        per_step = np.mean(similarities, axis=0)  # (steps, N): the mean over draws
        result.randomised_layers = [layer.name for layer in layers]
        result.curves["mprt_curve"] = per_step.mean(axis=1)
        result.curves["mprt_blank_fraction"] = np.mean(blanks, axis=0)
        result.randomisation_classes = context.classes[: settings.n_examples]
        result.record("mprt", per_step.mean(axis=0))
        result.record("mprt_full", per_step[-1])
        result.scores["mprt_draw_sd"] = _spread([s.mean() for s in similarities])
        result.scores["mprt_blank_fraction_full"] = float(np.mean(blanks, axis=0)[-1])
        # The original map is constant: no rise in entropy is defined; counted, not hidden
        # (the same images in every draw: it depends on the trained model's maps only).
        emprt = np.mean(emprts, axis=0)
        result.scores["emprt_undefined_fraction"] = float(np.mean(np.isnan(emprt)))
        if not np.isnan(emprt).all():
            result.record("emprt", emprt)
            result.scores["emprt_draw_sd"] = _spread([np.nanmean(e) for e in emprts])

    @staticmethod
    def _draw(context: Context, settings: Any, draw: int, draws: int):
        """One cascade: per step the similarity of each image's map to its trained map
        (steps, N) and the share of blank maps; the fully randomised model's maps; the
        first maps of each step for the figure."""
        similarities, blanks, examples = [], [], []
        steps = len(randomisable_layers(context.model)[0])
        randomised = context.heatmaps
        of_draws = f", draw {draw + 1}/{draws}" if draws > 1 else ""
        for step, _ in enumerate(cascade(context.model, context.seed, draw), start=1):
            what = f"randomised {step}/{steps}{of_draws}"
            randomised = context.explain(context.images, context.classes, what)
            similarities.append(metrics.randomisation_similarity(context.heatmaps, randomised))
            blanks.append(float(np.mean(metrics.blank(randomised))))
            examples.append(randomised[: settings.n_examples])
        return np.array(similarities), np.array(blanks), randomised, examples


def _spread(values: list[float]) -> float:
    """The sample standard deviation of the draws' means (NaN from one draw: no spread)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")

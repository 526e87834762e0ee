"""Faithfulness scores: the perturbation of regions (iNNvestigate's ``Perturbation``, the loop
and its noise written here) and faithfulness correlation (:mod:`src.scores.metrics`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from src.scores import metrics
from src.scores.registry import (
    PERTURBATION_NOISE,
    RANDOM_ORDER,
    SUBSETS,
    TIE_BREAK,
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
# Faithfulness: does removing what the map calls relevant change the model's answer?


@register
class RegionPerturbation(Score):
    """MoRF and LeRF region perturbation, against a random order (Samek et al. 2017)."""

    name = "perturbation"
    controls = frozenset({"inverted", "blurred"})
    needs = frozenset({"heatmaps", "model"})
    metrics = (
        Metric(
            "aopc",
            "**faithfulness**: regions (`region_shape`, 7×7) are replaced by Gaussian noise in "
            "order of decreasing mean relevance (MoRF), `steps` (15) steps, with iNNvestigate's "
            "`Perturbation`; the area over each image's correct/wrong curve",
            Better.HIGHER,
            "Samek et al. 2017",
            "faithfulness (MoRF AOPC)",
            "AOPC",
            headline=True,
            bounds=(0.0, 1.0),
        ),
        Metric(
            "aopc_lerf",
            "the same regions in order of *increasing* relevance (LeRF, `lerf`: true): the "
            "least relevant regions should not matter",
            Better.LOWER,
            "Samek et al. 2017",
            "faithfulness (LeRF AOPC)",
            "LeRF",
            bounds=(0.0, 1.0),
        ),
        Metric(
            "abpc",
            "MoRF AOPC − LeRF AOPC per image, the area between the two curves: MoRF alone "
            "rewards maps that destroy any image fast",
            Better.HIGHER,
            "Schulz et al. 2020",
            "faithfulness (MoRF − LeRF)",
            "ABPC",
            bounds=(-1.0, 1.0),
        ),
        Metric("aopc_random", "MoRF's AOPC with the regions in a random order", Better.NEITHER),
        Metric("aopc_gain", "`aopc` − `aopc_random`", Better.HIGHER),
    )
    curves = (
        Curve("perturbation_accuracy", "accuracy after k regions perturbed, MoRF"),
        Curve("perturbation_accuracy_lerf", "the same, LeRF"),
        Curve(
            "perturbation_accuracy_random",
            "the same, random order",
            baseline_of="perturbation_accuracy",
            label="random order",
        ),
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
    relevant regions of the original image. Regions of equal mean relevance are ranked by
    uniform random keys, the same at every step (:func:`src.scores.metrics.ranked`), not in
    the order NumPy's quicksort leaves them.
    """
    noise = generator(context.seed, PERTURBATION_NOISE)
    perturbation = _perturbation_class()(
        perturbation_function(settings.function, noise),
        region_shape=tuple(settings.region_shape),
        in_place=False,
        value_range=(0.0, 1.0),
    )
    if settings.function == "gaussian":
        perturbation.gaussian_noise = noise
    images, labels = context.images, context.labels
    rows, columns = (
        -(-size // region)
        for size, region in zip(images.shape[1:3], settings.region_shape, strict=True)
    )
    ties = generator(context.seed, TIE_BREAK).random((len(images), 1, rows, columns))
    batch_size = context.cfg.batch_size
    correct = np.zeros((settings.steps + 1, len(images)), dtype=bool)
    for step in range(settings.steps + 1):
        perturbation.num_perturbed_regions = step
        batches = []
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            # iNNvestigate calls it on the aggregated regions (n, 1, rows, columns): the rank of
            # each region, 0 the most relevant.
            perturbation._compute_region_ordering = _region_ranks(ties[batch])
            batches.append(perturbation.perturbate_on_batch(images[batch], heatmaps[batch]))
        correct[step] = context.predict_classes(np.concatenate(batches)) == labels
    return correct


@functools.cache
def _perturbation_class() -> type:
    """iNNvestigate's ``Perturbation``, its Gaussian regions drawn in one call per batch.

    iNNvestigate perturbs region by region in a Python loop, one draw of N(0, 0.3) per region
    and channel (a quarter of a million calls per 1,000 images and pass: half the score's time,
    make bench). A generator's draws of (k, C, h, w) at once are the k x C draws of (h, w) one
    after another, so here the removed regions (in iNNvestigate's order: image, region row,
    region column) get the same values from one call (a test checks equality to the bit). The
    other perturbation functions keep iNNvestigate's loop."""
    from innvestigate.tools.perturbate import Perturbation

    class BatchedPerturbation(Perturbation):
        gaussian_noise: np.random.Generator | None = None

        def _perturbate_regions(self, x, perturbation_mask_regions):
            if self.gaussian_noise is None:
                return super()._perturbate_regions(x, perturbation_mask_regions)
            xp = self._reshape_to_regions(x)  # (n, channels, rows, h, columns, w), a view
            samples, _, rows, columns = np.nonzero(perturbation_mask_regions)
            draws = self.gaussian_noise.normal(
                loc=0.0, scale=0.3, size=(len(samples), x.shape[1], *self.region_shape)
            )
            xp[samples, :, rows, :, columns, :] = draws
            if self.value_range is not None:
                np.clip(xp, self.value_range[0], self.value_range[1], xp)
            return self._reshape_region_pixels(xp, x.shape)

    return BatchedPerturbation


def _region_ranks(ties: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def ranks(regions: np.ndarray) -> np.ndarray:
        flat = regions.reshape(*regions.shape[:2], -1)
        order = metrics.ranked(flat, ties.reshape(flat.shape))
        return order.argsort(axis=-1).reshape(regions.shape)

    return ranks


def perturbation_function(name: str, noise: np.random.Generator) -> Callable | str:
    """iNNvestigate's perturbation functions by name, except ``gaussian``, which draws from
    ``noise`` instead of ``np.random``'s global state (same distribution: N(0, 0.3))."""
    if name == "gaussian":
        return lambda region: noise.normal(loc=0.0, scale=0.3, size=region.shape)
    return name


@register
class FaithfulnessCorrelation(Score):
    name = "faithfulness_correlation"
    controls = frozenset({"inverted", "blurred"})
    needs = frozenset({"heatmaps", "model"})
    metrics = (
        Metric(
            "faithfulness_correlation",
            "**faithfulness**: per image, `runs` (50) random subsets of `subset_size` (224) "
            "input values are set to the image's minimum; Pearson correlation between the "
            "relevance in each subset and the drop of the explained logit (a blank map: 0)",
            Better.HIGHER,
            "Bhatt et al. 2020; Quantus `FaithfulnessCorrelation`",
            "faithfulness correlation",
            "FCorr",
            bounds=(-1.0, 1.0),
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

"""ROAD, remove and debias (:mod:`src.scores.metrics`): the model's accuracy as the most (or
least) relevant pixels are imputed away.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from src.scores import metrics
from src.scores.registry import (
    IMPUTATION_NOISE,
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


@register
class Road(Score):
    name = "road"
    controls = frozenset({"inverted", "blurred"})
    needs = frozenset({"heatmaps", "model"})
    metrics = (
        Metric(
            "road",
            "**faithfulness without the shape leak**: the most relevant `percentages` (10…90%) "
            "of pixels are removed and filled in by noisy linear imputation (ROAD, MoRF); the "
            "area over each image's correct/wrong curve",
            Better.HIGHER,
            "Rong et al. 2022; Quantus `ROAD`",
            "faithfulness (ROAD, MoRF)",
            "ROAD",
            bounds=(0.0, 1.0),
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
        ties = generator(context.seed, TIE_BREAK).random(metrics.per_image(images).shape)
        orders = metrics.road_orders(context.heatmaps, percentages, ties)
        for step, removed in enumerate(orders, 1):
            imputed = metrics.noisy_linear_imputation(images, removed, settings.noise, noise)
            correct[step] = context.predict_classes(imputed) == context.labels
        result.curves["road_accuracy"] = correct.mean(axis=1)
        result.record("road", metrics.aopc_per_image(correct))

"""The random logit test: does the map of the explained class differ from that of another,
random class (Quantus's ``ssim``)?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from src.scores import metrics
from src.scores.libraries import _quantus
from src.scores.registry import (
    OFF_CLASSES,
    Better,
    Context,
    Evaluation,
    Metric,
    Score,
    generator,
    register,
)


@register
class RandomLogit(Score):
    """Random-logit test (Sixt et al. 2020; Quantus's ``RandomLogit``): per image, the SSIM of
    the map of the explained class with the map of another class drawn at random, both
    normalised by their max |relevance| and flattened as Quantus does. Lower = the map
    depends on which class it explains."""

    name = "random_logit"
    noise_passes = True  # fresh noise is unlike any other map, whatever the class
    needs = frozenset({"heatmaps", "explain"})
    metrics = (
        Metric(
            "random_logit",
            "**class sensitivity**: per image the SSIM of the map of the explained class with "
            "the map of another class drawn at random",
            Better.LOWER,
            "Sixt et al. 2020; Quantus `RandomLogit`",
            "random logit (SSIM)",
            "rlogit",
            headline=True,
            bounds=(-1.0, 1.0),
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

"""Properties of the map itself: its complexity (the Gini index, Quantus's ``Sparseness``),
its conservation of the logit, and blank maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from src.scores import metrics
from src.scores.registry import (
    Better,
    Context,
    Evaluation,
    Metric,
    Score,
    register,
)

# Share of images with |sum R| > 2 |logit| above which a run warns (alpha-beta rules).
BLOWUP_WARNING = 0.05


# ---------------------------------------------------------------------------------------------
# Properties of the map itself.


@register
class Complexity(Score):
    name = "complexity"
    evidence = False  # a property: a sparse map can be as unfaithful as any
    needs = frozenset({"heatmaps"})
    metrics = (
        Metric(
            "gini",
            "**complexity**: Gini index of \\|relevance\\| per image (higher: sparser)",
            Better.HIGHER,
            "Chalasani et al. 2020; Quantus `Sparseness`",
            "complexity (Gini)",
            "Gini",
            headline=True,
            bounds=(0.0, 1.0),
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        result.record("gini", gini(context.heatmaps))


def gini(heatmaps: np.ndarray) -> np.ndarray:
    """Gini index of |relevance| per image (Quantus's ``Sparseness``, Chalasani et al. 2020):
    0 = spread evenly over the pixels, -> 1 = all on one pixel; channels are summed.

    Quantus's formula, its operations in its order (a test checks equality to the bit), without
    its checks of the batch, which cost more than the score (one Python set of every value) and
    refuse a batch of constant or all-negative maps."""
    maps = np.abs(metrics.sum_channels(heatmaps)).reshape(len(heatmaps), -1)
    if np.all(maps == maps.flat[0]):  # one value throughout: spread evenly, 0
        return np.zeros(len(maps))
    maps = np.sort(maps + 1e-7, axis=-1)
    n = maps.shape[-1]
    weights = 2 * np.arange(1, n + 1) - n - 1
    scores = (weights * maps).sum(axis=-1) / (n * maps.sum(axis=-1))
    return np.nan_to_num(np.asarray(scores, dtype=np.float64))


@register
class Conservation(Score):
    name = "conservation"
    needs = frozenset({"heatmaps", "model"})
    methods_key = "methods"  # relevance propagation only: analyzer.method's prefixes
    metrics = (
        Metric(
            "conservation_error",
            "Deep Taylor and LRP: \\|Σ relevance − explained logit\\| / \\|logit\\|",
            Better.LOWER,
        ),
        Metric(
            "relevance_blowup_share",
            "Deep Taylor and LRP: the share of images whose \\|Σ relevance\\| is more than 2× "
            "the explained logit; above 5% the run prints a warning",
            Better.LOWER,
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
            Better.NEITHER,
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        result.scores["blank_fraction"] = float(np.mean(metrics.blank(context.heatmaps)))

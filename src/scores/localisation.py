"""Localisation: does the map point at what the model is known to look at (the planted
shortcut's masks)? Ties are broken by expected hits, not by pixel index (:func:`localisation`).
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
            Better.HIGHER,
            "Arras et al. 2022; Quantus `RelevanceMassAccuracy`",
            "localisation (relevance mass)",
            "Mass",
            bounds=(0.0, 1.0),
        ),
        Metric(
            "relevance_rank_accuracy",
            "**ground truth**: of the k most relevant pixels (k = the marker's size), the "
            "share inside the marker",
            Better.HIGHER,
            "Arras et al. 2022; Quantus `RelevanceRankAccuracy`",
            "localisation (relevance rank)",
            "Rank",
            headline=True,
            bounds=(0.0, 1.0),
        ),
        Metric(
            "pointing_game",
            "**ground truth**: 1 if the most relevant pixel is inside the marker, else 0",
            Better.HIGHER,
            "Zhang et al. 2018; Quantus `PointingGame`",
            "localisation (pointing game)",
            "Point",
            bounds=(0.0, 1.0),
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        for name, values in localisation(context.heatmaps, context.masks).items():
            result.record(name, values)


@register
class EarthMovers(Score):
    """The earth mover's score against the ground-truth mask (:func:`emd_scores`): its own
    switch, since it costs a linear program per image (about 5 ms on 28x28 images, 30x the
    other localisation scores together); experiment=shortcut and experiment=xai_tris switch it
    on."""

    name = "emd"
    needs = frozenset({"heatmaps", "masks"})
    default = False
    metrics = (
        Metric(
            "emd_score",
            "**ground truth**: 1 - the earth mover's distance between \\|relevance\\| and the "
            "mask, each scaled to sum 1, over the largest distance between two pixels (the "
            "cost of moving relevance onto the mask, in pixels; XAI-TRIS's)",
            Better.HIGHER,
            "Clark et al. 2024 (XAI-TRIS); POT's `emd2`",
            "localisation (earth mover's distance)",
            "EMD",
            bounds=(0.0, 1.0),
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        maps = np.abs(metrics.per_image(context.heatmaps))
        truth = np.asarray(context.masks, dtype=bool).reshape(len(maps), -1)
        scores = emd_scores(maps, truth, context.heatmaps.shape[1:3])
        scores[metrics.blank(context.heatmaps)] = 0.0  # a blank map localises nothing
        result.record("emd_score", scores)


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


def _ot():
    """POT, without the backends it would otherwise import (TensorFlow's NumPy API among
    them, in the middle of a graph-mode run): it is handed NumPy arrays only."""
    import os

    for backend in ("TENSORFLOW", "PYTORCH", "JAX", "CUPY"):
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{backend}", "1")
    import ot

    return ot


def emd_scores(maps: np.ndarray, truth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per image, 1 - EMD / the largest distance between two pixels, where EMD is the earth
    mover's distance (Euclidean distance between pixel centres, POT's exact network simplex)
    between ``maps`` (``(N, H*W)`` non-negative) and ``truth`` (``(N, H*W)`` masks), each scaled
    to sum 1: 1 when all relevance lies on the mask, 0 only when all of it is as far from the
    mask as two pixels can be. XAI-TRIS divides by edge x √2 instead (11.3 on 8x8, where the
    farthest pixels are 9.9 apart): the same order of maps, another scale. The mask's side of
    the transport is its pixels only (the mask is zero elsewhere), so a 28x28 image with a
    16-pixel mask solves a 784 x 16 problem. A blank map or an empty mask: 0."""
    ot = _ot()
    rows, columns = np.indices(shape)
    pixels = np.stack([rows.ravel(), columns.ravel()], axis=1).astype(np.float64)
    farthest = float(np.hypot(shape[0] - 1, shape[1] - 1)) or 1.0
    scores = np.zeros(len(maps))
    for index, (values, inside) in enumerate(zip(maps, truth, strict=True)):
        total = values.sum()
        if total <= 0 or not inside.any():
            continue
        targets = pixels[inside]
        cost = np.hypot(*(pixels[:, None, :] - targets[None, :, :]).transpose(2, 0, 1))
        weights = np.full(len(targets), 1.0 / len(targets))
        moved = ot.emd2(values / total, weights, cost, numItermax=1_000_000)
        scores[index] = 1.0 - float(moved) / farthest
    return scores


def _expected_hits(values: np.ndarray, inside: np.ndarray, k: int) -> float:
    """How many of the ``k`` largest ``values`` lie ``inside``, on average over the ways of
    breaking ties at the k-th value."""
    threshold = np.sort(values)[-k]
    above, tied = values > threshold, values == threshold
    places = k - above.sum()
    return float((above & inside).sum() + places * (tied & inside).sum() / tied.sum())

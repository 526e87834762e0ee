"""Explanation-quality numerics on plain arrays (no TensorFlow): tested on tiny inputs.

Heatmaps are ``(N, H, W[, C])``; channels are summed before any per-image statistic.
"""

from __future__ import annotations

import numpy as np


def sum_channels(heatmaps: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` -> ``(N, H, W)``; ``(N, H, W)`` as it is."""
    return heatmaps.sum(axis=-1) if heatmaps.ndim == 4 else heatmaps


def per_image(heatmaps: np.ndarray) -> np.ndarray:
    """``(N, H, W[, C])`` -> ``(N, H*W)`` float64, channels summed."""
    maps = sum_channels(heatmaps)
    return maps.reshape(len(maps), -1).astype(np.float64)


def blank(heatmaps: np.ndarray) -> np.ndarray:
    """Per image: True where the map is constant (all zero, typically): no pixel ranks above
    another, so it explains nothing."""
    maps = per_image(heatmaps)
    return np.ptp(maps, axis=1) == 0


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of |relevance| between two heatmaps of each image.

    Returns N correlations; an image whose map is constant in either set gives NaN (Spearman
    is undefined there): callers say what that means, see :func:`randomisation_similarity`.
    """
    # Imported here: scipy.stats takes 0.2 s to import, and runs without scores never need it.
    from scipy.stats import spearmanr

    a, b = np.abs(per_image(first)), np.abs(per_image(second))
    correlations = np.full(len(a), np.nan)
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            correlations[index] = spearmanr(x, y).statistic
    return correlations


def randomisation_similarity(original: np.ndarray, randomised: np.ndarray) -> np.ndarray:
    """Per image, how much of the original map survives randomisation (MPRT's similarity):
    Spearman correlation of |relevance| (Quantus's MPRT: ``abs=True``, normalised by the max,
    which leaves ranks unchanged).

    Where a map is constant Spearman is undefined; Quantus (and ``nanmean``) then drop the
    image, which hides exactly the maps that randomisation wiped out. Here such an image is
    never dropped: if one map is constant and the other is not, nothing of the original
    ranking survived (0); if both are constant, the normalised maps are identical (1) or not
    (0, e.g. zero vs. a constant > 0).
    """
    similarity = rank_correlation(original, randomised)
    a, b = np.abs(per_image(original)), np.abs(per_image(randomised))
    flat_a, flat_b = np.ptp(a, axis=1) == 0, np.ptp(b, axis=1) == 0
    similarity[flat_a != flat_b] = 0.0
    both = flat_a & flat_b
    same = (a.max(axis=1) > 0) == (b.max(axis=1) > 0)  # constant maps normalise to all 1 or all 0
    similarity[both] = np.where(same[both], 1.0, 0.0)
    return similarity


def discrete_entropy(heatmaps: np.ndarray, n_bins: int = 100) -> np.ndarray:
    """Per image, the entropy (nats) of the histogram of its relevance values in ``n_bins``
    equal bins between its min and max: Quantus's ``discrete_entropy``, the complexity that
    eMPRT compares (written here so this module stays free of Quantus's TensorFlow import; a
    test checks it against Quantus's). A constant map has entropy 0."""
    from scipy.stats import entropy

    maps = per_image(heatmaps)
    return np.array([entropy(np.histogram(row, bins=n_bins)[0]) for row in maps])


def emprt(original: np.ndarray, randomised: np.ndarray, n_bins: int = 100) -> np.ndarray:
    """eMPRT (Hedström et al. 2024; Quantus's ``EfficientMPRT``): per image, the relative rise
    of the explanation's discrete entropy from the trained to the fully randomised model,
    ``(H(randomised) - H(original)) / H(original)``. Higher = randomisation turned the map
    into noise, as it should. NaN where the original map is constant (H = 0: no rise is
    defined); callers count those."""
    before = discrete_entropy(original, n_bins)
    after = discrete_entropy(randomised, n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, (after - before) / np.where(before > 0, before, 1), np.nan)


def off_classes(classes: np.ndarray, n_classes: int, generator: np.random.Generator) -> np.ndarray:
    """For each class, another class drawn uniformly from the other ``n_classes - 1``."""
    shift = generator.integers(1, n_classes, size=len(classes))
    return (np.asarray(classes) + shift) % n_classes


def relevance_ratio(heatmaps: np.ndarray, explained_logits: np.ndarray) -> np.ndarray:
    """Per image ``sum(R) / f(x)``: 1 where relevance is conserved."""
    totals = per_image(heatmaps).sum(axis=1)
    logits = np.asarray(explained_logits, dtype=np.float64)
    return totals / np.where(np.abs(logits) > 1e-12, logits, 1e-12)


def blowup_share(heatmaps: np.ndarray, explained_logits: np.ndarray, factor: float = 2) -> float:
    """The share of images whose relevance sum is more than ``factor`` times the explained
    logit in size, ``|sum(R)| > factor * |f(x)|`` (iNNvestigate's alpha-beta rules, whose
    negative denominators can approach 0, blow up like this)."""
    return float(np.mean(np.abs(relevance_ratio(heatmaps, explained_logits)) > factor))


def aopc_per_image(correct: np.ndarray) -> np.ndarray:
    """``correct`` is (steps + 1, N): whether each image is still classified right before and
    after each step. Per image ``correct[0] - mean_k correct[k]``; their mean is :func:`aopc`
    of the accuracy curve ``correct.mean(axis=1)``."""
    correct = np.asarray(correct, dtype=np.float64)
    return correct[0] - correct.mean(axis=0)


def aopc(curve: np.ndarray) -> float:
    """Area over the perturbation curve: ``curve[0] - mean(curve)``.

    ``curve`` is the model's score (here accuracy) before perturbation and after each of the
    L steps (L + 1 values), so this is ``1/(L+1) * sum_k (curve[0] - curve[k])`` (Samek et
    al. 2017), as in iNNvestigate's MNIST perturbation example. Higher = the explanation found
    the regions the model needs.
    """
    curve = np.asarray(curve, dtype=np.float64)
    return float(curve[0] - curve.mean())


def conservation_error(heatmaps: np.ndarray, explained_logits: np.ndarray) -> np.ndarray:
    """Per image ``|sum(R) - f(x)| / |f(x)|``: how far the relevance's total is from the
    explained output logit f(x), which relevance propagation should conserve."""
    totals = per_image(heatmaps).sum(axis=1)
    logits = np.asarray(explained_logits, dtype=np.float64)
    return np.abs(totals - logits) / np.maximum(np.abs(logits), 1e-12)

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


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman correlation of |relevance| between two heatmaps of each image.

    Returns N correlations; an image whose map is constant in either set gives NaN.
    """
    # Imported here: scipy.stats takes 0.2 s to import, and runs without scores never need it.
    from scipy.stats import spearmanr

    a, b = np.abs(per_image(first)), np.abs(per_image(second))
    correlations = np.full(len(a), np.nan)
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            correlations[index] = spearmanr(x, y).statistic
    return correlations


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

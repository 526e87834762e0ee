"""Remove-and-retrain (ROAR, Hooker et al., NeurIPS 2019) and keep-and-retrain (KAR): the arrays.

Every other faithfulness score removes pixels from a *trained* model's input, which leaves the
model out of distribution. ROAR removes each image's most relevant pixels (by the analyzer's
map of that image, channels summed) from the training *and* the test images, trains a fresh
model on what is left, with the same seed and settings, and measures its accuracy on the
equally degraded test images: an explanation whose top pixels carry the class information
costs the retrained model more accuracy than a random ranking's. KAR removes the least relevant
pixels instead: a good explanation keeps the accuracy up.

A removed pixel takes the per-channel mean of the training images (Hooker et al.'s choice:
no value outside the data's range, no new edge the model could key on but the mask's own).
Ties in a map (the zeros of a gradient on a flat background) are broken at random
(:func:`src.scores.metrics.ranked`), never by position.

Here: the pixel order, the removal, the degraded arrays and the areas; the job that explains the
training images and retrains is :func:`src.scores.configured.retrained`; the sweep's table
:mod:`src.report.roar`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from src.scores import metrics

MODES = ("roar", "kar")  # remove the most relevant pixels; keep them (remove the least relevant)


def pixel_order(heatmaps: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Per image, its pixels' flat indices from the most relevant to the least (channels
    summed), ties in the order of ``ties`` (uniform keys, ``(N, H*W)``); as the smallest
    unsigned integer type that holds them (a training set's order is kept in the model cache)."""
    order = metrics.ranked(metrics.per_image(heatmaps), ties)
    kind = np.uint16 if order.shape[1] <= np.iinfo(np.uint16).max + 1 else np.uint32
    return order.astype(kind)


def removed(order: np.ndarray, fraction: float, mode: str) -> np.ndarray:
    """``(N, H*W)`` booleans, True where a pixel is removed: the first ``int(H*W * fraction /
    100)`` of each image's order (``roar``) or the last as many (``kar``: the most relevant
    kept). The count is ROAD's (:func:`src.scores.metrics.road_orders`)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; the modes: {', '.join(MODES)}")
    pixels = order.shape[1]
    count = int(pixels * fraction / 100)
    chosen = order[:, :count] if mode == "roar" else order[:, pixels - count :]
    mask = np.zeros(order.shape, dtype=bool)
    np.put_along_axis(mask, chosen.astype(np.int64), True, axis=1)
    return mask


def channel_means(images: np.ndarray) -> np.ndarray:
    """Each channel's mean over images, rows and columns: the value a removed pixel takes."""
    return images.reshape(-1, images.shape[-1]).mean(axis=0, dtype=np.float64)


def degraded(images: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``images`` ``(N, H, W, C)`` with every channel of the pixels ``mask`` marks (``(N,
    H*W)``) set to ``fill`` (one value per channel); a new array, ``images`` untouched."""
    out = np.array(images, dtype=np.float32, copy=True)
    flat = out.reshape(len(out), -1, out.shape[-1])  # a view: writes reach ``out``
    flat[mask] = np.asarray(fill, dtype=np.float32)
    return out


def digest(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' shapes, types and bytes: what a retrained model's fingerprint holds
    for the degraded data it was trained and tested on."""
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype.str}{array.shape}".encode())
        sha.update(array.data)
    return sha.hexdigest()


def area(fractions: Sequence[float], accuracies: Sequence[float]) -> float:
    """The trapezoid area under accuracy over the removed share (``fractions`` in percent, read
    as 0..1), so a curve over 0..90% that never leaves 1 has area 0.9."""
    from scipy.integrate import trapezoid

    order = np.argsort(fractions)
    shares = np.asarray(fractions, dtype=np.float64)[order] / 100
    return float(trapezoid(np.asarray(accuracies, dtype=np.float64)[order], shares))


def gain(
    fractions: Sequence[float], accuracies: Sequence[float], random: Sequence[float], mode: str
) -> float:
    """How much better than the random ranking of the same seed an analyzer's curve is, as an
    area (higher is better in both modes): ROAR, the accuracy the random ranking keeps above
    the analyzer's (its top pixels mattered more); KAR, the accuracy the analyzer keeps above
    the random ranking's (the pixels it kept mattered more)."""
    difference = area(fractions, random) - area(fractions, accuracies)
    return difference if mode == "roar" else -difference

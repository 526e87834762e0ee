"""Explanation-quality numerics on plain arrays (no TensorFlow): tested on tiny inputs.

Heatmaps are ``(N, H, W[, C])``; channels are summed before any per-image statistic.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    Spearman's rho is Pearson's r of the ranks (ties averaged), as ``scipy.stats.spearmanr``
    computes it; done here for all images at once (a loop over ``spearmanr`` took 0.4 s per
    thousand images), and a test checks it against ``spearmanr``.
    """
    # Imported here: scipy.stats takes 0.2 s to import, and runs without scores never need it.
    from scipy.stats import rankdata

    a, b = np.abs(per_image(first)), np.abs(per_image(second))
    defined = (np.ptp(a, axis=1) > 0) & (np.ptp(b, axis=1) > 0)
    correlations = np.full(len(a), np.nan)
    if defined.any():
        correlations[defined] = pearson(rankdata(a[defined], axis=1), rankdata(b[defined], axis=1))
    return correlations


def pearson(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of ``first`` with the same row of ``second`` (NaN where a row
    is constant)."""
    x = first - first.mean(axis=1, keepdims=True)
    y = second - second.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


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
    test checks it against Quantus's). A constant map has entropy 0.

    The histograms of all images at once, binned exactly as ``np.histogram`` bins (a loop
    over it took 0.3 s per thousand images)."""
    from scipy.stats import entropy

    maps = per_image(heatmaps)
    low, high = maps.min(axis=1), maps.max(axis=1)
    flat = low == high  # np.histogram widens a zero range to +-0.5
    low, high = np.where(flat, low - 0.5, low), np.where(flat, high + 0.5, high)
    edges = np.linspace(low, high, n_bins + 1, axis=1)
    index = (((maps - low[:, None]) / (high - low)[:, None]) * n_bins).astype(np.intp)
    index[index == n_bins] -= 1
    rows = np.arange(len(maps))[:, None]
    index[maps < edges[rows, index]] -= 1
    index[(maps >= edges[rows, index + 1]) & (index != n_bins - 1)] += 1
    counts = np.zeros((len(maps), n_bins))
    np.add.at(counts, (np.broadcast_to(rows, index.shape), index), 1)
    return entropy(counts, axis=1)


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


def random_subsets(
    generator: np.random.Generator, runs: int, n_images: int, n_features: int, size: int
) -> Iterator[np.ndarray]:
    """``runs`` times, ``size`` distinct feature indices drawn uniformly, as Quantus's
    ``np.random.choice(n, size, replace=False)`` draws them (``(n_images, size)``, the same
    subset for every image of a run: each image's runs are still independent uniform draws,
    which is all its correlation depends on; drawing one per image took 2 s per analyzer)."""
    for _ in range(runs):
        subset = generator.permutation(n_features)[:size]
        yield np.broadcast_to(subset, (n_images, size))


def faithfulness_correlation(
    predict_logits, images: np.ndarray, heatmaps: np.ndarray, classes: np.ndarray, subsets
) -> np.ndarray:
    """Faithfulness correlation (Bhatt et al. 2020), as Quantus 0.6's
    ``FaithfulnessCorrelation`` computes it with its defaults (the ``"black"`` baseline, the
    image's minimum; logits; Pearson): for each subset of input values (``subsets``: one
    ``(N, size)`` index array per run, into each image's flattened values), set them to the
    image's minimum and note the drop of the explained logit; per image, the Pearson
    correlation of the relevance summed over each subset with those drops. A map or a model
    for which it is undefined (no spread: a blank map) scores 0: no evidence of faithfulness.
    """
    n = len(images)
    rows = np.arange(n)[:, None]
    flat = images.reshape(n, -1)
    relevance = np.broadcast_to(heatmaps, images.shape).reshape(n, -1).astype(np.float64)
    baseline = flat.min(axis=1, keepdims=True)
    explained = predict_logits(images)[np.arange(n), classes].astype(np.float64)
    drops, sums = [], []
    for subset in subsets:
        perturbed = flat.copy()
        perturbed[rows, subset] = baseline
        logits = predict_logits(perturbed.reshape(images.shape))[np.arange(n), classes]
        drops.append(explained - logits)
        sums.append(relevance[rows, subset].sum(axis=1))
    correlation = pearson(np.array(sums).T, np.array(drops).T)
    return np.nan_to_num(correlation, nan=0.0)


def ranked(values: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Per row, the indices from the highest value to the lowest; equal values in the order
    of ``ties`` (uniform random keys: every order of a tie equally likely). Every ranking-based
    score breaks ties this way, so its value is an unbiased estimate of its expectation over
    random tie-breaking; breaking them by position (a stable sort, or Quantus's quicksort)
    favours the pixels that come first, which moved ROAD by 0.04 on maps with many zeros."""
    return np.lexsort((ties, -values), axis=-1)


def road_orders(heatmaps: np.ndarray, percentages, ties: np.ndarray) -> Iterator[np.ndarray]:
    """For each percentage p, each image's ``int(H*W * p / 100)`` most relevant pixels
    (channels summed), as flat indices ``(N, k)``: the pixels ROAD removes (MoRF); ties
    broken by ``ties`` (``(N, H*W)`` uniform keys, :func:`ranked`)."""
    maps = per_image(heatmaps)
    order = ranked(maps, ties)
    for percentage in percentages:
        yield order[:, : int(maps.shape[1] * percentage / 100)]


# The 8 neighbours of a pixel and their weights in noisy linear imputation (Rong et al. 2022).
NEIGHBOURS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)


IMPUTATION_CHUNK = 200  # images imputed at once


def noisy_linear_imputation(
    images: np.ndarray, removed: np.ndarray, noise: float, generator: np.random.Generator
) -> np.ndarray:
    """ROAD's imputation (Rong et al. 2022; Quantus's ``noisy_linear_imputation``): each
    removed pixel becomes the weighted mean of its 8 neighbours (1/6 direct, 1/12 diagonal,
    out-of-image neighbours left out), removed neighbours themselves unknowns of the same
    linear system, then N(0, ``noise``²) is added. ``images`` (N, H, W[, C]), ``removed``
    (N, k) flat pixel indices per image, fewer than all; every channel of a removed pixel is
    imputed.

    Quantus builds each image's system as a sparse matrix and solves it with SuperLU (about
    1 ms per image and percentage: seconds per analyzer). The system is symmetric, and
    negated it is positive definite (a weighted graph Laplacian held by the known pixels);
    with the unknowns in raster order it is banded, about one image row wide, so LAPACK's
    banded Cholesky solves it (``scipy.linalg.solveh_banded``), the same numbers in a fraction
    of the time (tests compare with Quantus's)."""
    n, k = removed.shape
    if k == 0:
        return images.copy()
    if n > IMPUTATION_CHUNK:  # the band storage is band x n x k floats: bounded per chunk
        return np.concatenate(
            [
                noisy_linear_imputation(
                    images[start : start + IMPUTATION_CHUNK],
                    removed[start : start + IMPUTATION_CHUNK],
                    noise,
                    generator,
                )
                for start in range(0, n, IMPUTATION_CHUNK)
            ]
        )
    height, width = images.shape[1:3]
    values = images.reshape(n, height * width, -1).astype(np.float64)
    removed = np.sort(removed, axis=1)  # raster order: a narrow band
    unknown = np.full((n, height * width), -1)
    image_index = np.repeat(np.arange(n), k)
    pixels = removed.reshape(-1)
    unknown[image_index, pixels] = np.tile(np.arange(k), n)
    diagonal, right, couplings = _imputation_system(
        values, unknown, image_index, pixels, (height, width), k
    )
    solution = _solve_imputation(diagonal, right, couplings, n, k)
    solution = solution + noise * generator.standard_normal(solution.shape)
    filled = values.copy()
    filled[image_index, pixels] = solution
    return filled.reshape(images.shape).astype(images.dtype)


def _imputation_system(
    values: np.ndarray,
    unknown: np.ndarray,
    image_index: np.ndarray,
    pixels: np.ndarray,
    size: tuple[int, int],
    k: int,
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]]:
    """The linear system of :func:`noisy_linear_imputation`, negated, ``M x = r``: M's diagonal
    is the weight of the in-image neighbours, -w couples two unknown neighbours, r holds the
    weighted known neighbours. ``unknown`` (N, H*W) numbers each image's removed pixels (the
    unknowns, -1 elsewhere); ``image_index`` and ``pixels`` are the removed pixels, image by
    image. Returns the diagonal, r, and the couplings as (image, equation, variable, weight)
    with variable > equation (M is symmetric: its upper half is all the solver reads)."""
    height, width = size
    n = len(values)
    row, column = pixels // width, pixels % width
    diagonal = np.zeros(n * k)
    right = np.zeros((n * k, values.shape[2]))
    couplings = []  # (image, equation, variable, weight) with variable > equation
    for (dy, dx), weight in NEIGHBOURS:
        r, c = row + dy, column + dx
        inside = np.flatnonzero((r >= 0) & (r < height) & (c >= 0) & (c < width))
        neighbour = (r * width + c)[inside]
        images_of = image_index[inside]
        variable = unknown[images_of, neighbour]
        diagonal[inside] += weight
        known = variable < 0
        right[inside[known]] += weight * values[images_of[known], neighbour[known]]
        equation = inside[~known] % k
        upper = variable[~known] > equation
        couplings.append(
            (images_of[~known][upper], equation[upper], variable[~known][upper], weight)
        )
    return diagonal, right, couplings


def _solve_imputation(
    diagonal: np.ndarray,
    right: np.ndarray,
    couplings: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]],
    n: int,
    k: int,
) -> np.ndarray:
    """The unknowns (N*k, C) of the ``n`` images' systems from :func:`_imputation_system`,
    solved as one block-diagonal banded matrix: one LAPACK call per chunk
    (``scipy.linalg.solveh_banded``, banded Cholesky; the band is as wide as the farthest
    coupling, about one image row)."""
    from scipy.linalg import solveh_banded

    band = max([int((v - e).max()) for _, e, v, _ in couplings if len(e)], default=0)
    storage = np.zeros((band + 1, n * k))
    storage[band] = diagonal
    for image, equation, variable, weight in couplings:
        storage[band + equation - variable, image * k + variable] = -weight
    return solveh_banded(storage, right, check_finite=False).reshape(n * k, -1)

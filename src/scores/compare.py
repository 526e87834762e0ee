"""Pure numerics for comparing analyzers across a sweep (no TensorFlow, no MLflow)."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from src.scores.metrics import rank_correlation


def seed_stability(heatmaps_by_seed: dict[int, np.ndarray]) -> tuple[float, float]:
    """Mean and std, over seed pairs, of the mean per-image rank correlation between seeds.

    How much an explanation depends on the training seed: 1 = the same ranking of pixels
    whatever the seed. Needs at least two seeds; otherwise (nan, nan). Two seeds make one
    pair: no spread over pairs to report (std nan, not 0).
    """
    pair_means = [
        np.nanmean(rank_correlation(heatmaps_by_seed[a], heatmaps_by_seed[b]))
        for a, b in combinations(sorted(heatmaps_by_seed), 2)
    ]
    if not pair_means:
        return float("nan"), float("nan")
    spread = float(np.std(pair_means)) if len(pair_means) > 1 else float("nan")
    return float(np.mean(pair_means)), spread


def mean_std_text(mean: float, std: float, digits: int = 3) -> str:
    """``0.812 ± 0.004``; ``0.812`` when there is no spread to report (one seed)."""
    if np.isnan(mean):
        return "–"
    if np.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"

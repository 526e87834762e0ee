"""How far a sweep's comparison can be trusted, from the per-image scores of its runs: intervals
that stay inside a score's range, analyzers tested against each other, how the criteria agree,
how stable the ranking is, and how much more data would separate the top two.

- **Intervals**: a percentile bootstrap of the mean over images × seeds, two-level: seeds drawn
  with replacement, then images within each drawn seed (with one seed, images only: the interval
  then says nothing of another training). Means of resampled scores stay inside the score's
  range, which a t interval over two seeds did not (it put LeRF at -0.14).
- **Pairwise tests**: every pair of analyzers per criterion and training length, paired by test
  image and seed, two-sided Wilcoxon signed-rank tests (scipy), p-values adjusted by Holm's
  step-down method over the pairs of that criterion. The top analyzer is *best* only if it
  beats every other one; otherwise the analyzers it does not beat are *tied best* with it.
- **Agreement of criteria**: Kendall's τ (scipy) between the rankings of the analyzers by two
  criteria (each in its better direction).
- **Stability**: the share of bootstrap resamples (seeds, then images, paired across the
  analyzers) in which each analyzer ranks top.
- **Power**: the image × seed pairs a paired test would need to separate the top two at the
  chosen level with 80% power, from their paired differences' standardised mean (the normal
  approximation divided by the Wilcoxon test's asymptotic relative efficiency, 3/π).

Pure NumPy and SciPy on arrays: no MLflow, no TensorFlow.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 1000
# The bootstrap's random numbers: the same for every cell (reproducible, order-free).
BOOTSTRAP_SEED = 20231
TIE = 1e-12  # per-image score differences smaller than this are ties

# (analyzer label) -> its per-image scores, one array per seed, aligned by seed and image.
Aligned = Mapping[str, Sequence[np.ndarray]]


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): the k-th smallest of m p-values times
    (m - k + 1), made non-decreasing, capped at 1. Written here: SciPy adjusts for the false
    discovery rate (``false_discovery_control``) but has no family-wise Holm, and statsmodels
    is not a dependency."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    factors = len(p) - np.arange(len(p))
    adjusted = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    result = np.empty_like(p)
    result[order] = adjusted
    return result


def _generator() -> np.random.Generator:
    return np.random.default_rng(BOOTSTRAP_SEED)


def _resampled_means(per_seed: Sequence[np.ndarray], generator: np.random.Generator) -> np.ndarray:
    """(RESAMPLES,) means of a two-level bootstrap: seeds with replacement, then images within
    each drawn seed; NaN (undefined) images left out of each seed's mean."""
    kept = [values[~np.isnan(values)] for values in per_seed]
    kept = [values for values in kept if len(values)]
    if not kept:
        return np.full(RESAMPLES, np.nan)
    image_means = np.array(
        [
            values[generator.integers(len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
            for values in kept
        ]
    )  # (seeds, RESAMPLES)
    seeds = generator.integers(len(kept), size=(RESAMPLES, len(kept)))
    return image_means[seeds, np.arange(RESAMPLES)[:, None]].mean(axis=1)


def bootstrap_interval(per_seed: Sequence[np.ndarray], level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean over seeds of each seed's mean over images
    (the module docstring); (nan, nan) without a defined value."""
    means = _resampled_means(per_seed, _generator())
    if np.isnan(means).all():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_differences(first: Sequence[np.ndarray], second: Sequence[np.ndarray]) -> np.ndarray:
    """first - second, image by image and seed by seed, the undefined pairs left out."""
    difference = np.concatenate([a - b for a, b in zip(first, second, strict=True)])
    return difference[~np.isnan(difference)]


def wilcoxon_two_sided(difference: np.ndarray) -> float:
    """The two-sided Wilcoxon signed-rank p-value of paired differences; 1 if none differ."""
    from scipy.stats import wilcoxon

    difference = np.where(np.abs(difference) < TIE, 0.0, difference)
    if not np.any(difference != 0):
        return 1.0
    return float(wilcoxon(difference).pvalue)


@dataclass(frozen=True)
class Ranking:
    """The analyzers of one criterion and training length against each other."""

    order: list[str]  # best first, by mean
    means: dict[str, float]
    adjusted: dict[tuple[str, str], float]  # (a, b), a before b in order -> Holm-adjusted p
    tied_best: list[str]  # the top one and every one it does not beat; [] if < 2 analyzers
    top_difference: np.ndarray  # the top one minus the second, pair by pair (empty if < 2)

    @property
    def pairs(self) -> int:
        """Image × seed pairs of the top two."""
        return len(self.top_difference)

    @property
    def best(self) -> str | None:
        """The analyzer that beats every other one, if there is one."""
        return self.tied_best[0] if len(self.tied_best) == 1 else None


def rank(aligned: Aligned, higher_is_better: bool, alpha: float = ALPHA) -> Ranking:
    """Order the analyzers of ``aligned`` by mean and test every pair (module docstring)."""
    sign = 1.0 if higher_is_better else -1.0
    means = {
        label: float(np.nanmean(np.concatenate(list(per_seed))))
        for label, per_seed in aligned.items()
    }
    order = sorted(means, key=lambda label: (-sign * means[label], label))
    pairs = list(itertools.combinations(order, 2))
    differences = {(a, b): paired_differences(aligned[a], aligned[b]) for a, b in pairs}
    p_values = [wilcoxon_two_sided(differences[pair]) for pair in pairs]
    adjusted = dict(zip(pairs, holm(p_values), strict=True))
    tied: list[str] = []
    if len(order) > 1:
        top = order[0]
        tied = [top, *(label for label in order[1:] if adjusted[top, label] >= alpha)]
    top_two = differences[order[0], order[1]] if len(order) > 1 else np.empty(0)
    return Ranking(order, means, adjusted, tied, top_two)


def top_shares(aligned: Aligned, higher_is_better: bool) -> dict[str, float]:
    """Per analyzer, the share of paired bootstrap resamples in which its mean ranks top."""
    labels = list(aligned)
    if len(labels) < 2:
        return {label: 1.0 for label in labels}
    seeds = len(next(iter(aligned.values())))
    generator = _generator()
    sign = 1.0 if higher_is_better else -1.0
    totals = np.zeros((RESAMPLES, len(labels)))
    drawn_seeds = generator.integers(seeds, size=(RESAMPLES, seeds))
    for seed in range(seeds):
        count = len(aligned[labels[0]][seed])
        images = generator.integers(count, size=(RESAMPLES, count))
        weight = (drawn_seeds == seed).sum(axis=1)  # how often this seed was drawn
        for index, label in enumerate(labels):
            values = np.nan_to_num(aligned[label][seed], nan=0.0)
            totals[:, index] += weight * values[images].mean(axis=1)
    winners = np.argmax(sign * totals, axis=1)
    return {label: float(np.mean(winners == index)) for index, label in enumerate(labels)}


def pairs_needed(difference: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> float:
    """Paired observations a two-sided Wilcoxon test needs to find ``difference``'s mean at
    ``alpha`` with ``power``: ((z(1 - alpha/2) + z(power)) / d)² / (3/π), d its mean over its
    standard deviation; inf where the mean is 0, nan with fewer than 2 differences."""
    from scipy.stats import norm

    if len(difference) < 2:
        return float("nan")
    spread = float(np.std(difference, ddof=1))
    effect = abs(float(np.mean(difference))) / spread if spread > 0 else math.inf
    if effect == 0:
        return math.inf
    needed = ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / effect) ** 2 / (3 / math.pi)
    return float(math.ceil(needed))


def kendall_matrix(means: Mapping[str, Mapping[str, float]]) -> dict[tuple[str, str], float]:
    """Kendall's τ between every two criteria's rankings of the analyzers (``means``:
    criterion -> analyzer -> its mean, signed so that higher is better); nan where fewer than
    two analyzers have both, or one criterion ties them all."""
    from scipy.stats import kendalltau

    matrix = {}
    for first, second in itertools.product(means, repeat=2):
        shared = sorted(set(means[first]) & set(means[second]))
        a = [means[first][label] for label in shared]
        b = [means[second][label] for label in shared]
        tau = kendalltau(a, b).statistic if len(shared) > 1 else float("nan")
        matrix[first, second] = float(tau)
    return matrix

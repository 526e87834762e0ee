"""The meta-evaluation of each criterion on this model (``evaluate=meta``): MetaQuantus's
meta-consistency (Hedström et al., "The Meta-Evaluation Problem in Explainable AI", TMLR 2023),
from the per-image scores the sweep's runs kept under perturbation (:mod:`src.scores.meta`).

For a perturbation space (input or model), with q the criterion's per-image scores of the
unperturbed setting and q̂ those under perturbation k, over the images that count in the test
(prediction kept for a minor perturbation, changed for a disruptive one):

- **IAC_NR** (intra-consistency, noise resilience): the mean over analyzers and perturbations of
  the p-value of the two-sided Wilcoxon signed-rank test of q against q̂ (zero differences
  split, ``zsplit``): a criterion that a minor perturbation does not move gets p near 1.
- **IAC_AR** (adversarial reactivity): the mean of 1 − p under disruptive perturbations.
- **IEC_NR** (inter-consistency): the share of (analyzer, image) pairs whose rank among the
  analyzers is the same under a minor perturbation as without (tied scores share their mean
  rank).
- **IEC_AR**: the share of (analyzer, image) pairs a disruptive perturbation makes worse, in
  the criterion's better direction.
- **MC**: the mean of the four; the criterion's MC is the mean of its input and model MC
  (MetaQuantus's MC-bar). 1 is a perfectly reliable criterion; one whose scores are noise gets
  (3 × 0.5 + 1/L) / 4 in expectation with L analyzers (p-values uniform, a rank kept with
  chance 1/L, worse with chance 1/2).

The interval is a 95% percentile bootstrap of the MC over the perturbation draws (seed ×
perturbation k, each draw's four values averaged over the analyzers). A criterion whose MC is
below :data:`THRESHOLD` is marked unreliable on this model.

Where this departs from MetaQuantus 0.5's code, with why: (1) IEC_AR counts a perturbation that
makes the score *worse* in the criterion's direction; MetaQuantus's code passes the direction
as a string ("higher"/"lower"), always true in its ``if score_direction:``, so it counts a
*rise* of every criterion, a lower-is-better one's worsening but a higher-is-better one's
improvement. (2) A test with no image that counts (no prediction changed) gives NaN and is
left out of the means; MetaQuantus's code catches the failing test and takes p = 0, which
makes such a test perfectly reactive. (3) Pairs where a score is undefined (NaN) are left out.

Pure NumPy and SciPy on arrays: no MLflow, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from src.report.judgement import RESAMPLES, TIE

# Below this MC a criterion is unreliable on this model. Stated, not taken from the paper (which
# ranks criteria and sets no bar): a criterion whose scores are noise gets at most 0.5 (two
# analyzers), a perfectly reliable one 1; 0.6 asks for a clear part of the way.
THRESHOLD = 0.6
MEASURES = ("iac_nr", "iac_ar", "iec_nr", "iec_ar")
SPACES = ("input", "model")
META_BOOTSTRAP_SEED = 20232


def iac(q: np.ndarray, q_hat: np.ndarray, kept: np.ndarray, minor: bool) -> float:
    """One intra-consistency value: the two-sided Wilcoxon signed-rank p-value of ``q`` against
    ``q_hat`` over the images ``kept`` (zero differences split), or 1 − p for a disruptive
    perturbation; NaN where no image is left."""
    from scipy.stats import wilcoxon

    q, q_hat = np.asarray(q, float), np.asarray(q_hat, float)
    use = np.asarray(kept, bool) & ~np.isnan(q) & ~np.isnan(q_hat)
    if not use.any():
        return float("nan")
    difference = (q - q_hat)[use]
    # Rounding is no difference (a score recomputed on the same maps can move by 1e-16).
    difference[np.abs(difference) < TIE] = 0.0
    p = float(wilcoxon(difference, zero_method="zsplit", alternative="two-sided").pvalue)
    return p if minor else 1.0 - p


def _defined(q_star: np.ndarray, q_hat: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The images counted and scored by every analyzer in both settings."""
    return np.asarray(kept, bool) & ~np.isnan(q_star).any(axis=0) & ~np.isnan(q_hat).any(axis=0)


def iec_resilience(q_star: np.ndarray, q_hat: np.ndarray, kept: np.ndarray) -> float:
    """The share of (analyzer, image) pairs whose rank among the analyzers (rows of the
    (L, N) arrays) is unchanged by the perturbation, over the images ``kept``."""
    from scipy.stats import rankdata

    q_star, q_hat = np.asarray(q_star, float), np.asarray(q_hat, float)
    use = _defined(q_star, q_hat, kept)
    if not use.any():
        return float("nan")
    before = rankdata(_rounded(q_star[:, use]), axis=0, method="average")
    after = rankdata(_rounded(q_hat[:, use]), axis=0, method="average")
    return float(np.mean(before == after))


def iec_adversary(
    q_star: np.ndarray, q_hat: np.ndarray, kept: np.ndarray, higher_is_better: bool
) -> float:
    """The share of (analyzer, image) pairs the perturbation makes strictly worse, over the
    images ``kept``."""
    q_star, q_hat = np.asarray(q_star, float), np.asarray(q_hat, float)
    use = _defined(q_star, q_hat, kept)
    if not use.any():
        return float("nan")
    change = (q_hat - q_star)[:, use]
    change[np.abs(change) < TIE] = 0.0
    worse = change < 0 if higher_is_better else change > 0
    return float(np.mean(worse))


def _rounded(values: np.ndarray) -> np.ndarray:
    """Scores equal up to rounding made equal, so that they tie in a ranking."""
    return np.round(values / TIE) * TIE


@dataclass(frozen=True)
class Draw:
    """One perturbation draw of a test, for every analyzer: the unperturbed and perturbed
    per-image scores (L, N) and which images count."""

    q_star: np.ndarray
    q_hat: np.ndarray
    kept: np.ndarray


@dataclass
class MetaScore:
    """A criterion's meta-consistency on this model."""

    measures: dict[str, dict[str, float]]  # space -> IAC_NR, IAC_AR, IEC_NR, IEC_AR
    mc_by_space: dict[str, float]
    mc: float
    low: float  # the 95% bootstrap interval of mc over the draws
    high: float
    analyzers: int  # L
    draws: int  # seeds x perturbations per test
    counted: dict[str, float] = field(default_factory=dict)  # test -> mean share of images

    @property
    def reliable(self) -> bool:
        return self.mc >= THRESHOLD

    @property
    def noise_level(self) -> float:
        """What a criterion whose scores are noise would get in expectation here."""
        return (1.5 + 1.0 / self.analyzers) / 4.0


def draw_measures(resilience: Draw, adversary: Draw, higher_is_better: bool) -> dict[str, float]:
    """The four measures of one draw of a space's two tests, IAC averaged over the analyzers."""
    return {
        "iac_nr": float(np.nanmean(_each(resilience, lambda s, h, k: iac(s, h, k, minor=True)))),
        "iac_ar": float(np.nanmean(_each(adversary, lambda s, h, k: iac(s, h, k, minor=False)))),
        "iec_nr": iec_resilience(resilience.q_star, resilience.q_hat, resilience.kept),
        "iec_ar": iec_adversary(
            adversary.q_star, adversary.q_hat, adversary.kept, higher_is_better
        ),
    }


def _each(draw: Draw, measure) -> np.ndarray:
    """``measure`` of each analyzer's row (its mean's all-NaN warning is silenced by the caller)."""
    return np.array(
        [measure(star, hat, draw.kept) for star, hat in zip(draw.q_star, draw.q_hat, strict=True)]
    )


def meta_consistency(
    draws: dict[str, Sequence[tuple[Draw, Draw]]], higher_is_better: bool
) -> MetaScore:
    """The criterion's meta-consistency from ``draws``: per space, its (resilience, adversary)
    draws, paired in order (seed by seed, perturbation by perturbation)."""
    import warnings

    per_draw: dict[str, list[dict[str, float]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a mean of an all-NaN test is NaN
        for space, pairs in draws.items():
            per_draw[space] = [draw_measures(r, a, higher_is_better) for r, a in pairs]
        measures = {
            space: {m: float(np.nanmean([d[m] for d in rows])) for m in MEASURES}
            for space, rows in per_draw.items()
        }
        mc_by_space = {
            space: float(np.nanmean(list(values.values()))) for space, values in measures.items()
        }
        # Per draw: the mean of its spaces' MC (each the mean of its four measures).
        count = min(len(rows) for rows in per_draw.values())
        mc_draws = np.array(
            [
                np.nanmean([np.nanmean([per_draw[s][i][m] for m in MEASURES]) for s in per_draw])
                for i in range(count)
            ]
        )
    mc = float(np.nanmean(list(mc_by_space.values())))
    low, high = _interval(mc_draws)
    first = next(iter(draws.values()))[0][0]
    return MetaScore(
        measures=measures,
        mc_by_space=mc_by_space,
        mc=mc,
        low=low,
        high=high,
        analyzers=len(first.q_star),
        draws=count,
        counted={
            f"{space}_{kind}": float(np.mean([np.mean(pair[i].kept) for pair in pairs]))
            for space, pairs in draws.items()
            for i, kind in enumerate(("resilience", "adversary"))
        },
    )


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    generator = np.random.default_rng(META_BOOTSTRAP_SEED)
    means = values[generator.integers(len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)

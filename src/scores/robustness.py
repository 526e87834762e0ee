"""Robustness: does the map stay put when the input barely moves? (Quantus's ``MaxSensitivity``
and ``LocalLipschitzEstimate`` as they compute them, with the run's own explainer and seeded
noise.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from src.explain.analyzers import POSITIONAL_NOISE
from src.scores import metrics
from src.scores.libraries import _quantus
from src.scores.registry import (
    LIPSCHITZ_NOISE,
    SENSITIVITY_NOISE,
    Better,
    Context,
    Evaluation,
    Explain,
    Metric,
    Score,
    generator,
    register,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Robustness: does the map stay put when the input barely moves?


@register
class Robustness(Score):
    """Quantus's ``MaxSensitivity`` and ``LocalLipschitzEstimate`` on the first
    ``robustness.n_images`` scored images, the perturbed inputs explained by the run's own
    explainer (so SmoothGrad's noise, Integrated Gradients' path and the LRP rules apply as
    in the run) and perturbed by seeded noise (Quantus's own draws from ``np.random``)."""

    name = "robustness"
    evidence = False  # a property: a constant map is perfectly robust
    needs = frozenset({"heatmaps", "explain"})
    default = False
    metrics = (
        Metric(
            "max_sensitivity",
            "**robustness**: per image the largest ‖map(x + δ) − map(x)‖ / ‖map(x)‖ over "
            "`samples` (20) draws of uniform noise δ in ±`radius` (0.2)",
            Better.LOWER,
            "Yeh et al. 2019; Quantus `MaxSensitivity`",
            "robustness (max sensitivity)",
            "MaxSens",
        ),
        Metric(
            "local_lipschitz",
            "**robustness**: per image the largest ‖map(x + δ) − map(x)‖ / ‖δ‖ over `samples` "
            "draws of Gaussian δ (σ `lipschitz_std`, 0.1), maps normalised by their max",
            Better.LOWER,
            "Alvarez-Melis & Jaakkola 2018; Quantus `LocalLipschitzEstimate`",
            "robustness (local Lipschitz)",
            "Lipschitz",
        ),
    )

    def compute(self, context: Context, settings: Any, result: Evaluation) -> None:
        count = min(settings.n_images, len(context.images))
        images, classes = context.images[:count], context.classes[:count]
        heatmaps = context.heatmaps[:count]
        log.info("robustness: %d noisy copies of %d images", settings.samples, count)
        # SmoothGrad's noise depends on an image's place in a call: one sample per call.
        together = context.method not in POSITIONAL_NOISE
        if metrics.blank(heatmaps).all():  # no map has a size to be sensitive relative to
            for name in ("max_sensitivity", "local_lipschitz"):
                result.record(name, np.full(count, np.nan))
            return
        sensitivity = max_sensitivity(
            images,
            classes,
            heatmaps,
            context.explain,
            settings.samples,
            uniform_noise(generator(context.seed, SENSITIVITY_NOISE), settings.radius),
            together,
        )
        lipschitz = local_lipschitz(
            images,
            classes,
            heatmaps,
            context.explain,
            settings.samples,
            normal_noise(generator(context.seed, LIPSCHITZ_NOISE), settings.lipschitz_std),
            together,
        )
        for name, values in (("max_sensitivity", sensitivity), ("local_lipschitz", lipschitz)):
            # A blank map has no size to be sensitive relative to: undefined (NaN), left out.
            values = np.asarray(values, dtype=np.float64)
            values[~np.isfinite(values)] = np.nan
            result.record(name, values)


# Quantus 0.6's MaxSensitivity and LocalLipschitzEstimate, computed here as they compute them
# (the same draws, the same functions from quantus.functions, the same floats: a test checks
# equality to the bit) without their per-call checks, which took a third of the time and
# more than the explanations of the cheap analyzers (make bench, section 14).
Perturb = Callable[[np.ndarray], np.ndarray]


# Noisy copies explained in one call, up to this many bytes of input: the 20 copies of 100
# images took 40 calls of 100 images, most of robustness's time (issue 30, make bench).
CALL_BYTES = 64 * 2**20


def perturbed_maps(
    images: np.ndarray,
    classes: np.ndarray,
    explain: Explain,
    samples: int,
    perturb: Perturb,
    together: bool = True,
):
    """Per sample: the images and their noisy copies as Quantus holds them (channels first,
    one row per image) and the copies' maps (one row per image). The copies are drawn sample
    after sample, as Quantus draws them; ``together``, several samples' copies are explained in
    one call of ``explain`` (up to ``CALL_BYTES``), else one sample per call, as Quantus calls
    it: for an analyzer whose maps depend on an image's place in a call (SmoothGrad's noise),
    which would otherwise get other maps."""
    channels_first = np.moveaxis(images, -1, -3)  # Quantus's make_channel_first
    rows = channels_first.reshape(len(images), -1)
    per_call = max(1, CALL_BYTES // max(1, 4 * rows.size)) if together else 1
    for first in range(0, samples, per_call):
        noisy = [perturb(rows) for _ in range(min(per_call, samples - first))]
        inputs = np.moveaxis(np.concatenate(noisy).reshape(-1, *channels_first.shape[1:]), -3, -1)
        maps = explain(
            np.ascontiguousarray(inputs, np.float32), np.tile(classes, len(noisy)), "robustness"
        )
        for index, copies in enumerate(noisy):
            yield (
                rows,
                copies,
                maps[index * len(images) : (index + 1) * len(images)].reshape(len(images), -1),
            )


def max_sensitivity(
    images, classes, heatmaps, explain, samples: int, perturb: Perturb, together: bool = True
):
    """Per image the largest ‖map(x + δ) − map(x)‖ / ‖map(x)‖ over ``samples`` draws
    (Quantus's ``MaxSensitivity``: ``difference``, ``fro_norm``, ``nanmax``)."""
    quantus = _quantus()
    fro_norm = quantus.functions.norm_func.fro_norm
    difference = quantus.functions.similarity_func.difference
    original = heatmaps.reshape(len(heatmaps), -1)
    ratios = np.full((len(images), samples), np.nan)
    steps = perturbed_maps(images, classes, explain, samples, perturb, together)
    for step, (_, _, maps) in enumerate(steps):
        ratios[:, step] = fro_norm(a=difference(a=original, b=maps)) / fro_norm(a=original)
    return np.nanmax(ratios, axis=1)


def local_lipschitz(
    images, classes, heatmaps, explain, samples: int, perturb: Perturb, together: bool = True
):
    """Per image the largest ‖m(x + δ) − m(x)‖ / ‖δ‖ over ``samples`` draws, maps normalised
    by their own max (Quantus's ``LocalLipschitzEstimate``: ``lipschitz_constant`` with
    ``distance_euclidean`` above and below, ``nanmax``)."""
    quantus = _quantus()
    similarity = quantus.functions.similarity_func
    original = normalise_each_by_max(heatmaps).reshape(len(heatmaps), -1)
    ratios = np.full((len(images), samples), np.nan)
    steps = perturbed_maps(images, classes, explain, samples, perturb, together)
    for step, (rows, noisy, maps) in enumerate(steps):
        ratios[:, step] = similarity.lipschitz_constant(
            a=original,
            b=normalise_each_by_max(maps),
            c=rows,
            d=noisy,
            norm_numerator=similarity.distance_euclidean,
            norm_denominator=similarity.distance_euclidean,
        )
    return np.nanmax(ratios, axis=1)


def normalise_each_by_max(a: np.ndarray, **_) -> np.ndarray:
    """Each map divided by its own largest |value| (all-zero maps stay zero). Quantus's
    ``normalise_by_max`` divides a whole batch by the batch's largest value, so an image's
    score would depend on the images scored with it."""
    peak = np.abs(a).reshape(len(a), -1).max(axis=1).reshape(-1, *[1] * (a.ndim - 1))
    return np.divide(a, peak, out=np.zeros(a.shape, dtype=np.float64), where=peak > 0)


def uniform_noise(noise: np.random.Generator, bound: float) -> Perturb:
    """Rows plus uniform noise in ±``bound`` from ``noise`` (Quantus's ``uniform_noise``
    draws from ``np.random``'s global state)."""
    return lambda rows: (rows + noise.uniform(-bound, bound, size=rows.shape)).astype(rows.dtype)


def normal_noise(noise: np.random.Generator, std: float) -> Perturb:
    """Rows plus N(0, ``std``²) noise from ``noise`` (Quantus's ``gaussian_noise`` draws from
    ``np.random``'s global state)."""
    return lambda rows: (rows + noise.normal(0.0, std, rows.shape)).astype(rows.dtype)

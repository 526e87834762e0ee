"""Robustness: does the map stay put when the input barely moves? (Quantus's ``MaxSensitivity``
and ``LocalLipschitzEstimate``, with the run's own explainer and seeded noise.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from src.scores import metrics
from src.scores.libraries import _quantus
from src.scores.registry import (
    LIPSCHITZ_NOISE,
    SENSITIVITY_NOISE,
    Better,
    Context,
    Evaluation,
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
    needs = frozenset({"heatmaps", "model", "explain"})
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
        quantus = _quantus()
        count = min(settings.n_images, len(context.images))
        images, classes = context.images[:count], context.classes[:count]
        heatmaps = context.heatmaps[:count]
        log.info("robustness: %d noisy copies of %d images", settings.samples, count)

        def explain_func(model, inputs, targets, **_):
            channels_first = inputs.shape[1:] != images.shape[1:]
            inputs = np.moveaxis(inputs, 1, -1) if channels_first else inputs
            maps = context.explain(np.ascontiguousarray(inputs, np.float32), targets, "robustness")
            return np.moveaxis(maps, -1, 1) if channels_first else maps

        if metrics.blank(heatmaps).all():  # Quantus refuses a batch of constant maps
            for name in ("max_sensitivity", "local_lipschitz"):
                result.record(name, np.full(count, np.nan))
            return
        common = dict(nr_samples=settings.samples, disable_warnings=True)
        sensitivity = quantus.MaxSensitivity(
            lower_bound=settings.radius,
            perturb_func=seeded_noise(generator(context.seed, SENSITIVITY_NOISE), "uniform"),
            **common,
        )
        lipschitz = quantus.LocalLipschitzEstimate(
            normalise_func=normalise_each_by_max,
            perturb_std=settings.lipschitz_std,
            perturb_func=seeded_noise(generator(context.seed, LIPSCHITZ_NOISE), "normal"),
            **common,
        )
        for name, metric in (("max_sensitivity", sensitivity), ("local_lipschitz", lipschitz)):
            try:
                values = metric(
                    model=context.model,
                    x_batch=images,
                    y_batch=classes,
                    a_batch=heatmaps,
                    explain_func=explain_func,
                    channel_first=False,
                    batch_size=count,
                )
            except AssertionError as error:  # Quantus refuses maps it cannot rank
                result.warnings.append(f"{name} not scored: Quantus says {error}")
                values = np.full(count, np.nan)
            # A blank map has no size to be sensitive relative to: undefined (NaN), left out.
            values = np.asarray(values, dtype=np.float64)
            values[~np.isfinite(values)] = np.nan
            result.record(name, values)


def normalise_each_by_max(a: np.ndarray, **_) -> np.ndarray:
    """Each map divided by its own largest |value| (all-zero maps stay zero). Quantus's
    ``normalise_by_max`` divides a whole batch by the batch's largest value, so an image's
    score would depend on the images scored with it."""
    peak = np.abs(a).reshape(len(a), -1).max(axis=1).reshape(-1, *[1] * (a.ndim - 1))
    return np.divide(a, peak, out=np.zeros(a.shape, dtype=np.float64), where=peak > 0)


def seeded_noise(noise: np.random.Generator, kind: str) -> Callable:
    """A Quantus ``perturb_func`` adding uniform (±``lower_bound``) or Gaussian (σ
    ``perturb_std``) noise from ``noise`` to every value: Quantus's ``uniform_noise`` and
    ``gaussian_noise`` draw from ``np.random``'s global state."""

    def perturb(arr: np.ndarray, indices=None, indexed_axes=None, **settings) -> np.ndarray:
        if kind == "uniform":
            bound = settings.get("lower_bound", 0.02)
            delta = noise.uniform(-bound, bound, size=arr.shape)
        else:
            delta = noise.normal(
                settings.get("perturb_mean", 0.0), settings["perturb_std"], arr.shape
            )
        return (arr + delta).astype(arr.dtype)

    return perturb

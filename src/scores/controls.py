"""Controls: maps made from the run's own maps that a criterion must not be fooled by. Each is
scored by the scores that declare it (``Score.controls``), with the run's model and images, and
the verdict reads them against the analyzer they came from and the baselines
(:mod:`src.report.verdict`): a criterion a control passes is uninformative on this model.

- ``inverted``: the map negated. It puts the least relevant pixels first: a faithfulness
  criterion that scores it at or above maps that beat every baseline, or on which it beats
  every baseline itself, does not read the map's order.
- ``blurred``: the map Gaussian-blurred (σ = ``evaluate.controls.blur_sigma`` pixels, scipy),
  less precise than the map. Removal-based criteria can reward it (Song et al., "On pitfalls
  of RemOve-And-Retrain"): one that scores it significantly better than the map itself
  rewards blur (only *better* counts: a blurred faithful map may be as faithful).
- ``blank_like``: the trained model's maps as they are, and constant maps once any layer is
  re-initialised: what an explainer gives whose maps collapse under randomisation. Binder et
  al. (CVPR 2023) show that such maps pass top-down randomisation checks; read as
  ``inverted`` is.

The rules are applied by :func:`src.report.verdict._controls`.
Nothing here explains anew: the controls transform the maps the run already made, and
``blank_like`` replaces the randomised model's maps by constants. Their per-image scores are
kept as ``control.<control>.<metric>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from src.scores.registry import (
    Context,
    Evaluation,
    Explain,
    Score,
    criterion_values,
    run_scores,
)

PREFIX = "control"
RANDOMISED = "randomised"  # how the randomisation cascade's explain calls start (randomisation.py)


def blurred(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """Each image's map Gaussian-blurred over rows and columns, not across images or channels."""
    from scipy import ndimage

    return ndimage.gaussian_filter(heatmaps, sigma=(0, sigma, sigma, 0), mode="nearest").astype(
        heatmaps.dtype
    )


def _blank_when_randomised(explain: Explain) -> Explain:
    """``explain``, but constant (zero) maps, the images' shape, for the randomised model:
    nothing is explained for them."""

    def explain_blank_like(images: np.ndarray, classes: np.ndarray, what: str) -> np.ndarray:
        if what.startswith(RANDOMISED):
            return np.zeros(images.shape, dtype=np.float32)
        return explain(images, classes, what)

    return explain_blank_like


def controlled(context: Context, name: str, settings: Any) -> Context:
    """The run's context with the control ``name``'s maps in place of the analyzer's."""
    if name == "inverted":
        changes: dict[str, Any] = {"heatmaps": -context.heatmaps}
    elif name == "blurred":
        changes = {"heatmaps": blurred(context.heatmaps, float(settings.blur_sigma))}
    elif name == "blank_like":
        changes = {"explain": _blank_when_randomised(context.explain)}
    else:
        raise ValueError(f"no control {name!r}; the controls: {', '.join(CONTROLS)}")
    return context.replaced(**changes)


CONTROLS = ("inverted", "blurred", "blank_like")


def key(control: str, metric: str) -> str:
    return f"{PREFIX}.{control}.{metric}"


def score_controls(
    registry: dict[str, Score],
    enabled: Any,
    cfg: Any,
    context: Context,
    result: Evaluation,
    log: Callable[[str], None],
) -> None:
    """Score each control of ``cfg.controls.names`` with the enabled scores that declare it,
    and keep their criteria's per-image scores in ``result`` (``control.<name>.<metric>``)."""
    for name in cfg.controls.names:
        scores = {
            score_name: score
            for score_name, score in registry.items()
            if name in score.controls and enabled.get(score_name)
        }
        if not scores:
            continue
        log(f"control {name}: {', '.join(scores)}")
        evaluation = run_scores(scores, enabled, cfg, controlled(context, name, cfg.controls), log)
        for metric, values in criterion_values(scores, evaluation).items():
            result.per_image[key(name, metric)] = values
        result.seconds[f"control_{name}"] = sum(evaluation.seconds.values())

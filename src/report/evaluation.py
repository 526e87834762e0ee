"""What a run shows of its evaluation: the scores as metrics and curves, per image for the
verdict, the perturbation and randomisation figures; and the headline scores of its summary
line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from src.report.charts import perturbation_figure, randomisation_figure
from src.scores.registry import curves
from src.tracking import records

if TYPE_CHECKING:
    from src.scores import Evaluation


log = logging.getLogger(__name__)


def headline_scores(scores: dict[str, float]) -> str:
    """`` · AOPC 0.412 · MPRT 0.731 …``: the scores the registry marks as headline, of those
    the run computed."""
    from src.scores import SCORES

    return "".join(
        f" · {metric.short} {scores[metric.name]:.3f}"
        for score in SCORES.values()
        for metric in score.metrics
        if metric.headline and metric.name in scores
    )


def log_evaluation(
    evaluation: Evaluation, title: str, display: str, class_names: Sequence[str]
) -> None:
    from src.scores import SCORES

    records.log_metrics({f"eval_{name}": value for name, value in evaluation.scores.items()})
    records.log_metrics(
        {f"score_time_{name}_s": seconds for name, seconds in evaluation.seconds.items()}
    )
    # Per image, for the verdict's paired tests: image i is test image i.
    records.log_arrays("scores.npz", **evaluation.per_image)
    for line in evaluation.warnings:
        log.warning("warning: %s", line)
    first_steps = {curve.name: curve.first_step for curve in curves(SCORES)}
    for name, values in evaluation.curves.items():
        records.log_curve(f"eval_{name}", values, first_step=first_steps.get(name, 0))
    if evaluation.perturbation_curve is not None:
        records.log_figure(
            perturbation_figure(
                evaluation.perturbation_curve,
                evaluation.random_curve,
                title,
                evaluation.lerf_curve,
            ),
            "figures/perturbation.png",
        )
    if evaluation.randomisation_curve is not None:
        records.log_figure(
            randomisation_figure(
                evaluation.randomised_layers,
                evaluation.randomisation_curve,
                evaluation.randomisation_examples,
                title,
                display,
                evaluation.blank_curve,
                row_labels=[
                    f"test image {index}\nexplains {class_names[int(explained)]}"
                    for index, explained in enumerate(evaluation.randomisation_classes)
                ],
            ),
            "figures/randomisation.png",
        )

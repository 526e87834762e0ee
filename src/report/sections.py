"""The parts of the comparison page: the table's columns, the heatmap grid, one section per
criterion with its intervals and curves, and the provenance of the runs.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.common.redact import redact
from src.explain import analyzers
from src.report.figures import figure_png
from src.report.html import (
    Image,
    arrow,
    image,
    inline_markdown,
)
from src.report.queries import EVALUATION_PREFIX, STABILITY, Job
from src.report.verdict import (
    Verdict,
)
from src.scores import SCORES
from src.scores.registry import Metric, panels

# Whether higher is better for the table's other measures; None: read alongside.
MEASURE_BETTER = {
    "test_accuracy": True,
    "test_loss": False,
    "analysis_time_s": False,
    "analysis_images_per_s": True,
    STABILITY: True,
}


def table_columns(table: pd.DataFrame) -> tuple[list[str], list[str], dict[str, bool | None]]:
    """The table's metrics split into explanation-quality scores (``eval_*``, registry order)
    and the rest (accuracy, stability, cost), and each one's better direction; a metric no row
    has a value of (stability across seeds, with one seed) is left out, not shown empty."""
    metrics = [
        c.removesuffix("_mean")
        for c in table.columns
        if c.endswith("_mean") and table[c].notna().any()
    ]
    scores = [m for m in metrics if m.startswith(EVALUATION_PREFIX)]
    others = [m for m in metrics if not m.startswith(EVALUATION_PREFIX)]
    better: dict[str, bool | None] = dict(MEASURE_BETTER)
    for score in SCORES.values():
        for metric in score.metrics:
            better[f"{EVALUATION_PREFIX}{metric.name}"] = metric.higher_is_better
    return scores, others, better


def descriptions() -> dict[str, str]:
    """What each registered metric measures."""
    return {m.name: m.what for score in SCORES.values() for m in score.metrics}


def heatmap_grid(
    jobs: list[Job], verdict: Verdict | None, epochs: int, seed: int, grid_images: int
):
    """The heatmaps of every analyzer row for ``seed`` and ``epochs``, side by side on the first
    ``grid_images`` explained images, with the row's scores (mean over seeds) beside it.
    Drawing is bounded by ``grid_images``, whatever ``explain.n_images`` was."""
    from src.report.grid import GridRow, comparison_grid

    shown = sorted(
        (job for job in jobs if job.epochs == epochs and job.seed == seed),
        key=lambda job: (is_baseline(job), job.analyzer),
    )
    reference = shown[0].arrays
    count = min(grid_images, len(reference["images"]))
    class_names = [str(name) for name in reference.get("class_names", [])] or ast.literal_eval(
        shown[0].run.data.params.get("dataset.class_names", "None") or "None"
    )
    labels = reference["labels"][:count]
    class_names = class_names or [str(k) for k in range(int(reference["labels"].max()) + 1)]

    def scores(job: Job) -> list[str]:
        if verdict is None:
            return []
        lines = []
        for criterion in verdict.criteria:
            cell = verdict.cells.get((job.analyzer, epochs, criterion.score))
            if cell is not None:
                lines.append(f"{criterion.short:<6} {cell.mean:6.3f}{' *' if cell.best else ''}")
        return lines

    rows = [
        GridRow(
            label=job.analyzer + (" (baseline)" if is_baseline(job) else ""),
            heatmaps=job.arrays["heatmaps"][:count],
            predictions=job.arrays["predictions"][:count],
            explained=job.arrays.get("explained_classes", job.arrays["predictions"])[:count],
            display=job.display,
            scores=scores(job),
        )
        for job in shown
    ]
    masks = reference.get("masks")
    return comparison_grid(
        reference["images"][:count],
        labels,
        rows[0].predictions,
        rows,
        class_names,
        title=f"{shown[0].run.data.tags.get('dataset', '')} · seed {seed} · {epochs} epochs",
        masks=None if masks is None else masks[:count],
    )


def is_baseline(job: Job) -> bool:
    return analyzers.is_baseline(job.run.data.params.get("analyzer.method", ""))


def criterion_sections(
    verdict: Verdict,
    table: pd.DataFrame,
    per_step: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    longest: int,
) -> list[dict]:
    """Per score of the registry that the verdict judges: its criteria (what each measures),
    each criterion's rows with their 95% intervals, the score's curves, and (several training
    lengths) the criteria against epochs."""
    from src.report.charts import metrics_vs_epochs, quality_curves

    judged = {c.score for c in verdict.criteria}
    sections = []
    for score in SCORES.values():
        metrics = [m for m in score.metrics if m.criterion and m.name in judged]
        if not metrics:
            continue
        images = [_interval_image(verdict, metric) for metric in metrics]
        drawn = panels(score.curves, EVALUATION_PREFIX)
        if any(per_step.get(panel.metric) for panel in drawn):
            figure = quality_curves(
                per_step, drawn, title=f"{longest} epochs, mean ± std over seeds"
            )
            images.append(image(figure_png(figure), f"{score.name.replace('_', ' ')}: curves"))
        if table["epochs"].nunique() > 1:
            columns = [
                f"{EVALUATION_PREFIX}{m.name}"
                for m in metrics
                if f"{EVALUATION_PREFIX}{m.name}_mean" in table
            ]
            if columns:
                figure = metrics_vs_epochs(table, columns)
                images.append(image(figure_png(figure), "against training length"))
        sections.append(
            {
                "title": score.name.replace("_", " ").capitalize(),
                "criteria": [
                    {
                        "short": m.short,
                        "arrow": arrow(bool(m.higher_is_better)),
                        "what": inline_markdown(m.what),
                    }
                    for m in metrics
                ],
                "images": images,
            }
        )
    return sections


def _interval_image(verdict: Verdict, metric: Metric) -> Image:
    """One criterion's figure of :func:`criterion_sections`: each row's mean and 95% bootstrap
    interval (``metric``: the registry's :class:`src.scores.registry.Metric`), the baselines
    and the best row marked; rows the criterion has no cell for are left out."""
    from src.report.charts import score_intervals

    rows = [
        (
            verdict.name(label, epochs),
            cell.mean,
            cell.low,
            cell.high,
            label in verdict.baselines,
            cell.best,
        )
        for label, epochs in verdict.rows
        if (cell := verdict.cells.get((label, epochs, metric.name))) is not None
    ]
    figure = score_intervals(
        rows, f"{metric.short}: {metric.criterion}", bool(metric.higher_is_better), metric.bounds
    )
    return image(figure_png(figure), f"{metric.short}: mean and 95% bootstrap interval")


def provenance(
    client: MlflowClient, parent: Run, jobs: list[Job], store_uri: str
) -> list[tuple[str, str]]:
    """Where the comparison comes from: the sweep, the store, the code, the data, the
    libraries (each value once, or each distinct value if the jobs differ)."""

    def values(tag: str) -> str:
        found = sorted({job.run.data.tags.get(tag, "") for job in jobs} - {""})
        return ", ".join(found) or "unknown"

    items = [
        ("sweep", parent.info.run_name or ""),
        ("overrides", redact(parent.data.params.get("sweep.overrides", ""))),
        ("parent run", parent.info.run_id),
        ("sweep id", parent.data.tags.get("sweep_id", "")),
        ("tracking store", redact(store_uri) or "(not recorded)"),
    ]
    if jobs:
        items += [
            ("git commit", values("git_commit")),
            ("uncommitted changes", values("git_dirty")),
            ("dataset", values("dataset")),
            ("data source", values("data_source")),
            ("data sha256", values("data_sha256")),
        ]
        tags = jobs[0].run.data.tags
        items += [
            (key.removeprefix("version."), values(key))
            for key in sorted(tags)
            if key.startswith("version.")
        ]
    return items

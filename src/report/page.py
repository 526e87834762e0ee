"""The comparison of a sweep, built from the tracking store alone.

``python -m src.report`` rebuilds it for the latest sweep (or ``parent=RUN_ID``), writes it to
``reports/<parent run id>/`` and logs it on the sweep's parent run under ``comparison/``:

- ``report.html``: the whole answer on one self-contained page (:mod:`src.report.html`): the
  verdict, per score its intervals and curves, the heatmaps side by side, accuracy and cost,
  provenance;
- ``grid.png``: inputs, then one row of heatmaps per analyzer (first seed, longest training)
  with its scores, on the first ``report.grid_images`` explained images;
- ``table.csv`` / ``table.html``: per analyzer x epochs, mean and std over seeds of the runs'
  metrics, and the heatmaps' stability across seeds (mean Spearman correlation); an
  "analyzer" is its name plus any other setting the sweep varied (``lrp_epsilon ε=0.01``);
- ``metrics_vs_epochs.png``: those against epochs, one line per analyzer (bars for one
  training length);
- ``quality_curves.png``: per analyzer (longest training), the scores' per-step curves;
- ``answer.md`` / ``answer.json``: which analyzer(s) to trust on this model, on which criteria,
  what was set aside and what limits the answer (:mod:`src.report.answer`); printed first;
- ``verdict.md``: per criterion, each analyzer's mean and 95% bootstrap interval, whether it
  beats each baseline the sweep ran (a paired test over images), best or tied best against
  the other analyzers, how the criteria agree (:mod:`src.report.verdict`); also logged on the
  parent as metrics ``<score>/<row>`` and ``<score>_std/<row>``, and printed;
- ``missing.txt``: the jobs of the sweep that did not finish, if any.

The parent also gets its jobs' dataset inputs, so its row in the UI names the data. The runs
are read by :mod:`src.report.queries`, the page's parts made by :mod:`src.report.sections`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.common.redact import redact
from src.report import roar
from src.report.answer import Answer, answer
from src.report.figures import figure_png
from src.report.html import (
    image,
    measures_table,
    render_report,
    table_page,
    verdict_view,
)
from src.report.queries import (
    CURVES,
    EVALUATION_PREFIX,
    PANELS,
    STABILITY,
    Job,
    children,
    collect,
    comparison_table,
    expected_jobs,
    job_config,
    mean_curves,
    missing_jobs,
)
from src.report.sections import (
    criterion_sections,
    descriptions,
    heatmap_grid,
    is_baseline,
    provenance,
    table_columns,
)
from src.report.verdict import RunScores, Verdict, build_verdict
from src.report.verdict_text import markdown, parent_metrics
from src.scores import SCORES
from src.scores.registry import criteria

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    table: pd.DataFrame | None  # None if no job finished
    runs: list[Run]  # the sweep's child runs, finished or not
    missing: list[str]  # the jobs without a finished run, with their status
    verdict: Verdict | None = None  # None if no finished job was scored
    answer: Answer | None = None  # read off the verdict
    retraining: roar.RoarVerdict | None = None  # experiment=roar: the retrained models' table


def build_report(
    client: MlflowClient, parent: Run, folder: Path, grid_images: int = 10, store_uri: str = ""
) -> Report:
    """Write the comparison of the sweep whose parent run is ``parent`` into ``folder``; the
    heatmap grid draws the first ``grid_images`` explained images."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = children(client, parent)
    retrained = [run for run in runs if roar.retraining(run)]
    jobs = collect(client, [run for run in runs if run not in retrained])
    missing = missing_jobs(expected_jobs(client, parent), runs)
    (folder / "missing.txt").write_text(redact("".join(f"{line}\n" for line in missing)))
    title = parent.info.run_name or parent.info.run_id
    page = _empty_page(title, missing, provenance(client, parent, jobs, store_uri), runs)
    if not jobs:
        log.warning("no job of sweep %s finished: nothing to compare", parent.info.run_id)
        write_page(folder / "report.html", render_report(**page))
        return Report(None, runs, missing)

    table = comparison_table(jobs)
    table.to_csv(folder / "table.csv", index=False)
    scores, others, better = table_columns(table)
    write_page(folder / "table.html", table_page(title, table, scores, others, better, missing))

    verdict = sweep_verdict(jobs)
    said = None
    if verdict is not None:
        (folder / "verdict.md").write_text(redact(markdown(verdict, title)), encoding="utf-8")
        said = answer(verdict)
        (folder / "answer.md").write_text(redact(said.markdown(title)), encoding="utf-8")
        (folder / "answer.json").write_text(redact(said.to_json()), encoding="utf-8")
        page["answer"] = said.lines()

    longest = max(job.epochs for job in jobs)
    first_seed = min(job.seed for job in jobs if job.epochs == longest)
    retraining = retrained_verdict(retrained, jobs, longest)
    if retraining is not None:
        (folder / "roar.md").write_text(redact(roar.markdown(retraining, title)), encoding="utf-8")
        page["roar"] = {
            "lines": roar.tables(retraining),
            "caption": roar.caption(retraining),
            "findings": retraining.findings,
            "agreement": roar.agreement_lines(retraining),
        }
    page["subtitle"] = _subtitle(jobs, missing, table)
    page["grid"] = _grid_image(folder, jobs, verdict, longest, first_seed, grid_images)
    per_step = _charts(client, folder, table, jobs, longest)
    if verdict is not None:
        page["verdict"] = verdict_view(verdict, descriptions())
        page["sections"] = criterion_sections(verdict, table, per_step, longest)
    page["measures"] = measures_table(table, others, better)
    page["measure_images"] = _measure_images(table, others)
    first = min(jobs, key=lambda job: job.run.info.run_name or "").run
    page["config"], page["config_run"] = job_config(client, first), first.info.run_name
    write_page(folder / "report.html", render_report(**page))
    return Report(table, runs, missing, verdict, said, retraining)


def _empty_page(
    title: str, missing: list[str], provenance: list[tuple[str, str]], runs: list[Run]
) -> dict:
    """The page's keys (see ``src/report/templates/report.html.j2``), before the comparison
    fills them: what a sweep without a finished job shows."""
    return {
        "title": title,
        "subtitle": "",
        "answer": [],
        "missing": missing,
        "verdict": None,
        "sections": [],
        "grid": None,
        "measures": "",
        "measure_images": [],
        "provenance": provenance,
        "runs": [
            {"name": run.info.run_name, "id": run.info.run_id, "status": run.info.status}
            for run in sorted(runs, key=lambda run: run.info.run_name or "")
        ],
        "config": "",
        "config_run": "",
        "roar": None,
    }


def _subtitle(jobs: list[Job], missing: list[str], table: pd.DataFrame) -> str:
    dataset = ", ".join(sorted({job.run.data.tags.get("dataset", "") for job in jobs}))
    return (
        f"{dataset} · {len(jobs)} of {len(jobs) + len(missing)} jobs finished · "
        f"{table['analyzer'].nunique()} analyzer rows · seeds "
        f"{', '.join(str(seed) for seed in sorted({job.seed for job in jobs}))} · "
        f"{', '.join(str(e) for e in sorted({job.epochs for job in jobs}))} epochs"
    )


def _grid_image(
    folder: Path,
    jobs: list[Job],
    verdict: Verdict | None,
    longest: int,
    first_seed: int,
    grid_images: int,
) -> str:
    """The heatmap grid, written to ``grid.png``, as the page shows it."""
    grid = heatmap_grid(jobs, verdict, longest, first_seed, grid_images)
    grid_png = figure_png(grid)
    (folder / "grid.png").write_bytes(grid_png)
    return image(
        grid_png,
        f"heatmaps of every analyzer, seed {first_seed}, {longest} epochs",
        "Each row one analyzer on the same test images (the first of each class), every map on "
        "one colour scale: red for the explained class, blue against it; beside each row its "
        f"scores at {longest} epochs (mean over seeds, * best). Seed {first_seed}, "
        f"{longest} epochs; the first {min(grid_images, len(jobs[0].arrays['images']))} of the "
        "explained images.",
    )


def _charts(
    client: MlflowClient, folder: Path, table: pd.DataFrame, jobs: list[Job], longest: int
) -> dict:
    """``metrics_vs_epochs.png`` and ``quality_curves.png``; the scores' per-step curves at
    the longest training (mean and std over seeds), by metric."""
    from src.report.charts import metrics_vs_epochs, quality_curves
    from src.report.figures import save_figure

    metrics = [
        m
        for m in ("test_accuracy", "analysis_time_s", STABILITY)
        if f"{m}_mean" in table and table[f"{m}_mean"].notna().any()
    ]
    judged = {f"{EVALUATION_PREFIX}{m.name}" for m in criteria(SCORES)}
    metrics += [
        c.removesuffix("_mean")
        for c in table.columns
        if c.endswith("_mean") and c.removesuffix("_mean") in judged
    ]
    save_figure(metrics_vs_epochs(table, metrics), folder / "metrics_vs_epochs.png")
    at_longest = [job for job in jobs if job.epochs == longest]
    per_step = {key: mean_curves(client, at_longest, key) for key in CURVES}
    if any(per_step.values()):
        figure = quality_curves(per_step, PANELS, title=f"{longest} epochs, mean ± std over seeds")
        save_figure(figure, folder / "quality_curves.png")
    return per_step


def _measure_images(table: pd.DataFrame, others: list[str]) -> list:
    """Accuracy, explanation time and stability against epochs, if the table has them."""
    from src.report.charts import metrics_vs_epochs

    accuracy_and_cost = [m for m in others if m in ("test_accuracy", "analysis_time_s", STABILITY)]
    if not accuracy_and_cost:
        return []
    return [
        image(
            figure_png(metrics_vs_epochs(table, accuracy_and_cost)),
            "test accuracy, explanation time and stability across seeds, per analyzer",
        )
    ]


def write_page(path: Path, text: str) -> None:
    """A page of the comparison; a URI's password masked, whatever older runs recorded."""
    path.write_text(redact(text), encoding="utf-8")


def retrained_verdict(runs: list[Run], jobs: list[Job], epochs: int) -> roar.RoarVerdict | None:
    """The remove-and-retrain table of a sweep's retraining ``runs`` (experiment=roar), its
    curves starting at the trained models' accuracy and its proxies read off the ordinary
    ``jobs`` of ``epochs`` epochs; None without such runs."""
    if not runs:
        return None
    trained = [job for job in jobs if job.epochs == epochs]
    base = {
        job.seed: job.run.data.metrics["test_accuracy"]
        for job in trained
        if "test_accuracy" in job.run.data.metrics
    }
    proxies: dict[str, dict[str, float]] = {}
    for job in trained:
        name = job.run.data.params.get("analyzer.name", job.analyzer)
        for metric, _ in roar.PROXIES:
            if metric in job.run.data.metrics:
                proxies.setdefault(name, {}).setdefault(metric, []).append(
                    job.run.data.metrics[metric]
                )
    means = {
        name: {m: float(np.mean(v)) for m, v in values.items()} for name, values in proxies.items()
    }
    return roar.roar_verdict(roar.points(runs, base), means)


def sweep_verdict(jobs: list[Job]) -> Verdict | None:
    scored = [
        RunScores(
            row=job.analyzer,
            baseline=is_baseline(job),
            seed=job.seed,
            epochs=job.epochs,
            means={
                key.removeprefix(EVALUATION_PREFIX): value
                for key, value in job.run.data.metrics.items()
                if key.startswith(EVALUATION_PREFIX)
            },
            per_image=job.scores,
            method=job.run.data.params.get("analyzer.method", ""),
        )
        for job in jobs
        if job.scores
    ]
    verdict = build_verdict(scored) if scored else None
    return verdict if verdict is not None and verdict.criteria else None


def log_verdict(client: MlflowClient, parent_run_id: str, verdict: Verdict) -> None:
    """The verdict's means and stds as the parent's metrics, so MLflow charts compare rows."""
    _log_metrics(client, parent_run_id, parent_metrics(verdict))


def _log_metrics(
    client: MlflowClient,
    parent_run_id: str,
    values: dict[str, float],
    steps: list[tuple[str, float, int]] = (),
) -> None:
    """``values`` at step 0 and ``steps`` (key, value, step) on the parent, in batches."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [*((key, value, 0) for key, value in values.items()), *steps]
    metrics = [Metric(key, value, now, step) for key, value, step in points if np.isfinite(value)]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(parent_run_id, metrics=metrics[start : start + 1000])


def log_report(client: MlflowClient, parent_run_id: str, folder: Path, report: Report) -> None:
    client.log_artifacts(parent_run_id, str(folder), "comparison")
    if report.verdict is not None:
        log_verdict(client, parent_run_id, report.verdict)
    if report.retraining is not None:
        retraining = report.retraining
        _log_metrics(
            client, parent_run_id, roar.parent_metrics(retraining), roar.parent_curves(retraining)
        )
    log_parent_datasets(client, parent_run_id, report.runs)


def log_parent_datasets(client: MlflowClient, parent_run_id: str, runs: list[Run]) -> None:
    """The datasets of the sweep's jobs, once each, on the parent: its row in the runs table
    then shows what it compared on, like its children's."""
    inputs = {}
    for run in runs:
        for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
            dataset = dataset_input.dataset
            inputs.setdefault((dataset.name, dataset.digest), dataset_input)
    if inputs:
        client.log_inputs(parent_run_id, datasets=list(inputs.values()))

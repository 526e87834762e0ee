"""The comparison of a sweep, built from the tracking store alone.

``python -m src.report`` rebuilds it for the latest sweep (or ``parent=RUN_ID``), writes it to
``reports/<parent run id>/`` and logs it on the sweep's parent run under ``comparison/``:

- ``report.html``: the whole answer on one self-contained page (:mod:`src.report_html`): the
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
- ``verdict.md``: per criterion, each analyzer's mean and 95% interval over seeds, whether it
  beats each baseline the sweep ran (a paired test over images), the best marked
  (:mod:`src.verdict`); also logged on the parent as metrics ``<score>/<row>`` and
  ``<score>_std/<row>``, and printed;
- ``missing.txt``: the jobs of the sweep that did not finish, if any.

The parent also gets its jobs' dataset inputs, so its row in the UI names the data.
"""

from __future__ import annotations

import ast
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from src import analyzers, names
from src.cli import register_resolvers
from src.compare import mean_std_text, seed_stability
from src.evaluate import SCORES
from src.figures import figure_png
from src.redact import redact
from src.report_html import (
    arrow,
    image,
    inline_markdown,
    measures_table,
    render_report,
    table_page,
    verdict_view,
)
from src.scoring import criteria, curves
from src.verdict import (
    RunScores,
    Verdict,
    build_verdict,
    markdown,
    parent_metrics,
    terminal_table,
)

log = logging.getLogger(__name__)

METRICS = (
    "test_accuracy",
    "test_loss",
    "analysis_time_s",
    "analysis_images_per_s",
    # experiment=shortcut: how much the model relies on the planted marker
    "shortcut_accuracy_clean",
    "shortcut_accuracy_moved",
    "shortcut_follows_marker",
)
EVALUATION_PREFIX = "eval_"  # explanation-quality scores, compared when runs log them
STABILITY = "stability_spearman"
# Per-step metrics of the runs, drawn as one line per analyzer in quality_curves.png.
CURVES = tuple(f"{EVALUATION_PREFIX}{curve.name}" for curve in curves(SCORES))
# Their panels: (metric, what a step is, first step); the random order joins MoRF's panel.
PANELS = tuple(
    (f"{EVALUATION_PREFIX}{curve.name}", curve.what, curve.first_step)
    for curve in curves(SCORES)
    if curve.name != "perturbation_accuracy_random"
)


def score_order(column: str) -> int:
    """Columns in the registry's order of scores (unknown ones last)."""
    names = [m.name for score in SCORES.values() for m in score.metrics]
    name = column.removeprefix(EVALUATION_PREFIX)
    return names.index(name) if name in names else len(names)


JOBS_ARTIFACT = "sweep_jobs.json"


@dataclass(frozen=True)
class Job:
    """A finished child run and its explanations."""

    run: Run
    analyzer: str
    display: str
    seed: int
    epochs: int
    arrays: dict[str, np.ndarray]  # heatmaps.npz
    scores: dict[str, np.ndarray]  # scores.npz: each score per image (empty if not scored)


def children(client: MlflowClient, parent: Run) -> list[Run]:
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=10_000,
    )


def latest_parent(client: MlflowClient, experiment_name: str | None) -> Run:
    """The latest sweep's parent run in ``experiment_name``; None: in any experiment."""
    from mlflow.entities import ViewType

    if experiment_name is None:
        experiments = [e.experiment_id for e in client.search_experiments(ViewType.ACTIVE_ONLY)]
    else:
        experiment = client.get_experiment_by_name(experiment_name)
        experiments = [] if experiment is None else [experiment.experiment_id]
    runs = (
        client.search_runs(
            experiments,
            filter_string="tags.sweep_role = 'parent'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiments
        else []
    )
    if not runs:
        from src.errors import UserError

        where = "the store" if experiment_name is None else f"experiment {experiment_name!r}"
        raise UserError(f"no sweep found in {where}; run one with -m first")
    return runs[0]


def expected_jobs(client: MlflowClient, parent: Run) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(parent.info.run_id, JOBS_ARTIFACT, folder)
        except Exception:  # noqa: BLE001 - a sweep logged without its job list
            return []
        return json.loads(Path(path).read_text())


def collect(client: MlflowClient, runs: list[Run]) -> list[Job]:
    jobs = []
    finished = [run for run in runs if run.info.status == "FINISHED"]
    with tempfile.TemporaryDirectory() as folder:
        for run in finished:
            path = client.download_artifacts(
                run.info.run_id, "heatmaps.npz", f"{folder}/{run.info.run_id}"
            )
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            params = run.data.params
            scores = {}
            if any(key.startswith(EVALUATION_PREFIX) for key in run.data.metrics):
                path = client.download_artifacts(
                    run.info.run_id, "scores.npz", f"{folder}/{run.info.run_id}"
                )
                with np.load(path, allow_pickle=False) as npz:
                    scores = {key: npz[key] for key in npz.files}
            jobs.append(
                Job(
                    run=run,
                    analyzer=analyzer_label(params, finished),
                    display=params.get("analyzer.display", "signed"),
                    seed=int(params["seed"]),
                    epochs=int(params["train.epochs"]),
                    arrays=arrays,
                    scores=scores,
                )
            )
    return jobs


def analyzer_label(params: dict[str, str], runs: list[Run]) -> str:
    """The analyzer's name, plus whatever else the sweep varied (``lrp_epsilon ε=0.01``), as
    the runs' names show it (:mod:`src.names`), so runs of different settings are never pooled
    like seeds. An ``analyzer.*`` param counts as varied only among runs of the same
    analyzer."""
    name = params["analyzer.name"]
    same_analyzer = [run for run in runs if run.data.params.get("analyzer.name") == name]
    keys = sorted(set().union(*(run.data.params for run in runs)))
    values = {
        key: {
            run.data.params.get(key)
            for run in (same_analyzer if key.startswith("analyzer.") else runs)
        }
        for key in keys
    }
    varied = [
        key
        for key in keys
        if names.is_setting(key) and not _follows_the_seed(key, runs) and len(values[key]) > 1
    ]
    return " ".join(
        [name, *(names.setting_text(key, params.get(key), values[key]) for key in varied)]
    )


def _follows_the_seed(key: str, runs: list[Run]) -> bool:
    """A param set to ``${seed}`` (a baseline's or SmoothGrad's noise seed) varies with the
    seed: it is the seed, not a setting of its own."""
    having = [run.data.params for run in runs if key in run.data.params]
    return bool(having) and all(params[key] == params.get("seed") for params in having)


def comparison_table(jobs: list[Job]) -> pd.DataFrame:
    """One row per analyzer x epochs: mean and std over seeds, and seed stability."""
    records = []
    for job in jobs:
        metrics = {
            key: value
            for key, value in job.run.data.metrics.items()
            if key in METRICS or (key.startswith(EVALUATION_PREFIX) and key not in CURVES)
        }
        records.append(
            {"analyzer": job.analyzer, "epochs": job.epochs, "seed": job.seed, **metrics}
        )
    frame = pd.DataFrame.from_records(records)
    metric_columns = [c for c in frame.columns if c not in ("analyzer", "epochs", "seed")]
    metric_columns.sort(
        key=lambda c: (
            c.startswith(EVALUATION_PREFIX),
            score_order(c),
            METRICS.index(c) if c in METRICS else 0,
        )
    )
    grouped = frame.groupby(["analyzer", "epochs"], sort=True)
    table = grouped[metric_columns].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table.insert(0, "n_seeds", grouped["seed"].nunique())
    stability = {
        key: seed_stability({job.seed: job.arrays["heatmaps"] for job in group})
        for key, group in _groups(jobs).items()
    }
    table[f"{STABILITY}_mean"] = [stability[key][0] for key in table.index]
    table[f"{STABILITY}_std"] = [stability[key][1] for key in table.index]
    return table.reset_index()


def _groups(jobs: list[Job]) -> dict[tuple[str, int], list[Job]]:
    groups: dict[tuple[str, int], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.analyzer, job.epochs), []).append(job)
    return groups


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """``metric_mean`` / ``metric_std`` column pairs as one ``mean ± std`` text column."""
    shown = table[["analyzer", "epochs", "n_seeds"]].copy()
    for column in table.columns:
        if column.endswith("_mean"):
            metric = column.removesuffix("_mean")
            shown[metric] = [
                mean_std_text(mean, std)
                for mean, std in zip(table[column], table[f"{metric}_std"], strict=True)
            ]
    return shown


@dataclass(frozen=True)
class Report:
    table: pd.DataFrame | None  # None if no job finished
    runs: list[Run]  # the sweep's child runs, finished or not
    missing: list[str]  # the jobs without a finished run, with their status
    verdict: Verdict | None = None  # None if no finished job was scored


def build_report(
    client: MlflowClient, parent: Run, folder: Path, grid_images: int = 10, store_uri: str = ""
) -> Report:
    """Write the comparison of the sweep whose parent run is ``parent`` into ``folder``; the
    heatmap grid draws the first ``grid_images`` explained images."""
    from src.figures import metrics_vs_epochs, quality_curves, save_figure

    folder.mkdir(parents=True, exist_ok=True)
    runs = children(client, parent)
    jobs = collect(client, runs)
    missing = missing_jobs(expected_jobs(client, parent), runs)
    (folder / "missing.txt").write_text(redact("".join(f"{line}\n" for line in missing)))
    title = parent.info.run_name or parent.info.run_id
    page = {
        "title": title,
        "subtitle": "",
        "missing": missing,
        "verdict": None,
        "sections": [],
        "grid": None,
        "measures": "",
        "measure_images": [],
        "provenance": provenance(client, parent, jobs, store_uri),
        "runs": [
            {"name": run.info.run_name, "id": run.info.run_id, "status": run.info.status}
            for run in sorted(runs, key=lambda run: run.info.run_name or "")
        ],
        "config": "",
        "config_run": "",
    }
    if not jobs:
        log.warning("no job of sweep %s finished: nothing to compare", parent.info.run_id)
        write_page(folder / "report.html", render_report(**page))
        return Report(None, runs, missing)

    table = comparison_table(jobs)
    table.to_csv(folder / "table.csv", index=False)
    scores, others, better = table_columns(table)
    write_page(folder / "table.html", table_page(title, table, scores, others, better, missing))

    verdict = sweep_verdict(jobs)
    if verdict is not None:
        (folder / "verdict.md").write_text(redact(markdown(verdict, title)), encoding="utf-8")

    longest = max(job.epochs for job in jobs)
    first_seed = min(job.seed for job in jobs if job.epochs == longest)
    dataset = ", ".join(sorted({job.run.data.tags.get("dataset", "") for job in jobs}))
    page["subtitle"] = (
        f"{dataset} · {len(jobs)} of {len(jobs) + len(missing)} jobs finished · "
        f"{table['analyzer'].nunique()} analyzer rows · seeds "
        f"{', '.join(str(seed) for seed in sorted({job.seed for job in jobs}))} · "
        f"{', '.join(str(e) for e in sorted({job.epochs for job in jobs}))} epochs"
    )
    grid = heatmap_grid(jobs, verdict, longest, first_seed, grid_images)
    grid_png = figure_png(grid)
    (folder / "grid.png").write_bytes(grid_png)
    page["grid"] = image(
        grid_png,
        f"heatmaps of every analyzer, seed {first_seed}, {longest} epochs",
        "Each row one analyzer on the same test images (the first of each class), every map on "
        "one colour scale: red for the explained class, blue against it; beside each row its "
        f"scores at {longest} epochs (mean over seeds, * best). Seed {first_seed}, "
        f"{longest} epochs; the first {min(grid_images, len(jobs[0].arrays['images']))} of the "
        "explained images.",
    )
    metrics = [m for m in ("test_accuracy", "analysis_time_s", STABILITY) if f"{m}_mean" in table]
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

    if verdict is not None:
        page["verdict"] = verdict_view(verdict, descriptions())
        page["sections"] = criterion_sections(verdict, table, per_step, longest)
    page["measures"] = measures_table(table, others, better)
    accuracy_and_cost = [m for m in others if m in ("test_accuracy", "analysis_time_s", STABILITY)]
    if accuracy_and_cost:
        page["measure_images"] = [
            image(
                figure_png(metrics_vs_epochs(table, accuracy_and_cost)),
                "test accuracy, explanation time and stability across seeds, per analyzer",
            )
        ]
    first = min(jobs, key=lambda job: job.run.info.run_name or "").run
    page["config"], page["config_run"] = job_config(client, first), first.info.run_name
    write_page(folder / "report.html", render_report(**page))
    return Report(table, runs, missing, verdict)


def write_page(path: Path, text: str) -> None:
    """A page of the comparison; a URI's password masked, whatever older runs recorded."""
    path.write_text(redact(text), encoding="utf-8")


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
    and the rest (accuracy, stability, cost), and each one's better direction."""
    metrics = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
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
    from src.figures import GridRow, comparison_grid

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
    from src.figures import metrics_vs_epochs, quality_curves, score_intervals

    judged = {c.score for c in verdict.criteria}
    sections = []
    for score in SCORES.values():
        metrics = [m for m in score.metrics if m.criterion and m.name in judged]
        if not metrics:
            continue
        images = []
        for metric in metrics:
            rows = [
                (
                    verdict.name(label, epochs),
                    cell.mean,
                    cell.half_width,
                    label in verdict.baselines,
                    cell.best,
                )
                for label, epochs in verdict.rows
                if (cell := verdict.cells.get((label, epochs, metric.name))) is not None
            ]
            figure = score_intervals(
                rows, f"{metric.short}: {metric.criterion}", bool(metric.higher_is_better)
            )
            images.append(
                image(figure_png(figure), f"{metric.short}: mean and 95% interval over seeds")
            )
        panels = [
            (f"{EVALUATION_PREFIX}{curve.name}", curve.what, curve.first_step)
            for curve in score.curves
            if curve.name != "perturbation_accuracy_random"
        ]
        if any(per_step.get(panel[0]) for panel in panels):
            figure = quality_curves(
                per_step, panels, title=f"{longest} epochs, mean ± std over seeds"
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


def job_config(client: MlflowClient, run: Run) -> str:
    """A run's resolved config (its ``config.yaml``), or "" if it has none."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            text = Path(
                client.download_artifacts(run.info.run_id, "config.yaml", folder)
            ).read_text()
            return redact(text)  # an older run's config may hold a URI's password
        except Exception:  # noqa: BLE001 - a run logged without it
            return ""


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
        )
        for job in jobs
        if job.scores
    ]
    verdict = build_verdict(scored) if scored else None
    return verdict if verdict is not None and verdict.criteria else None


def log_verdict(client: MlflowClient, parent_run_id: str, verdict: Verdict) -> None:
    """The verdict's means and stds as the parent's metrics, so MLflow charts compare rows."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, 0)
        for key, value in parent_metrics(verdict).items()
        if np.isfinite(value)
    ]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(parent_run_id, metrics=metrics[start : start + 1000])


def mean_curves(
    client: MlflowClient, jobs: list[Job], key: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per analyzer, the mean and std over seeds of a per-step metric (empty if not logged)."""
    by_analyzer: dict[str, list[np.ndarray]] = {}
    for job in sorted(jobs, key=lambda job: job.analyzer):
        history = client.get_metric_history(job.run.info.run_id, key)
        if history:
            values = np.array([m.value for m in sorted(history, key=lambda m: m.step)])
            by_analyzer.setdefault(job.analyzer, []).append(values)
    return {
        analyzer: (np.mean(curves, axis=0), np.std(curves, axis=0))
        for analyzer, curves in by_analyzer.items()
        if len({len(curve) for curve in curves}) == 1
    }


def missing_jobs(expected: list[str], runs: list[Run]) -> list[str]:
    """The expected jobs without a FINISHED run, with the status of their run if there is one
    and why it ended so (its ``error`` or ``end_reason`` tag)."""
    status_by_job = {}
    for run in runs:
        job = run.data.tags.get("job_overrides", "")
        # A finished run of a job wins over a failed earlier attempt of it.
        if status_by_job.get(job, "").split(":")[0] != "FINISHED":
            tags = run.data.tags if run.info.status != "FINISHED" else {}
            why = tags.get("error") or tags.get("end_reason")
            status_by_job[job] = f"{run.info.status}: {why}" if why else run.info.status
    return [
        f"{job} ({status_by_job.get(job, 'no run')})"
        for job in expected
        if status_by_job.get(job) != "FINISHED"
    ]


def log_report(client: MlflowClient, parent_run_id: str, folder: Path, report: Report) -> None:
    client.log_artifacts(parent_run_id, str(folder), "comparison")
    if report.verdict is not None:
        log_verdict(client, parent_run_id, report.verdict)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def hydra_main(cfg: DictConfig) -> None:
    from src.errors import UserError
    from src.tracking import prepare, resolve_store

    try:
        store = resolve_store(cfg.tracking.dir, cfg.tracking.uri)
        prepare(store, cfg.tracking.experiment_name)
        client = MlflowClient(store.tracking_uri)
        if cfg.parent:
            try:
                parent = client.get_run(cfg.parent)
            except Exception as error:  # noqa: BLE001 - MLflow's "not found"
                raise UserError(f"no run {cfg.parent!r} in {redact(store.tracking_uri)}") from error
        else:
            parent = latest_parent(client, cfg.tracking.experiment_name)
        folder = Path(cfg.output_dir) / parent.info.run_id
        report = build_report(
            client, parent, folder, cfg.report.grid_images, store_uri=store.tracking_uri
        )
        log_report(client, parent.info.run_id, folder, report)
    except UserError as error:
        log.error("error: %s", error)
        raise SystemExit(2) from None
    if report.table is not None:
        print(readable(report.table).to_string(index=False))
    if report.verdict is not None:
        print(f"\n{terminal_table(report.verdict)}")
    log.info(
        "comparison of sweep %s written to %s and logged on its parent run",
        parent.info.run_id,
        folder / "report.html",
    )


def main() -> None:
    register_resolvers()
    hydra_main()


if __name__ == "__main__":
    main()

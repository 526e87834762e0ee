"""The comparison of a sweep, built from the tracking store alone.

``python -m src.report`` rebuilds it for the latest sweep (or ``parent=RUN_ID``), writes it to
``reports/<parent run id>/`` and logs it on the sweep's parent run under ``comparison/``:

- ``grid.png``: inputs, then one row of heatmaps per analyzer (first seed, longest training);
- ``table.csv`` / ``table.html``: per analyzer x epochs, mean and std over seeds of the runs'
  metrics, and the heatmaps' stability across seeds (mean Spearman correlation); an
  "analyzer" is its name plus any other setting the sweep varied;
- ``metrics_vs_epochs.png``: those against epochs, one line per analyzer, seed spread shaded;
- ``quality_curves.png``: per analyzer (longest training), the accuracy as the most relevant
  regions are perturbed, against the random order, and the randomisation test's curve;
- ``verdict.md``: per criterion, each analyzer's mean and 95% interval over seeds, whether it
  beats each baseline the sweep ran (a paired test over images), the best marked
  (:mod:`src.verdict`); also logged on the parent as metrics ``<row>/<score>`` and
  ``<row>/<score>_std``, and printed;
- ``missing.txt``: the jobs of the sweep that did not finish, if any.
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

from src.cli import register_resolvers
from src.compare import mean_std_text, seed_stability
from src.evaluate import SCORES
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


def latest_parent(client: MlflowClient, experiment_name: str) -> Run:
    experiment = client.get_experiment_by_name(experiment_name)
    runs = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.sweep_role = 'parent'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not runs:
        from src.errors import UserError

        raise UserError(f"no sweep found in experiment {experiment_name!r}; run one with -m first")
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


# Params that do not change what a run computes, or that a row already shows.
NOT_A_SETTING = ("seed", "train.epochs", "analyzer.name", "threads", "train.reuse")
NOT_A_SETTING_PREFIXES = ("tracking.", "paths.", "train.cache_dir")


def analyzer_label(params: dict[str, str], runs: list[Run]) -> str:
    """The analyzer's name, plus whatever else the sweep varied (``lrp_epsilon (analyzer.params
    .epsilon=0.01)``), so runs of different settings are never pooled like seeds. An
    ``analyzer.*`` param counts as varied only among runs of the same analyzer."""
    name = params["analyzer.name"]
    same_analyzer = [run for run in runs if run.data.params.get("analyzer.name") == name]
    keys = sorted(set().union(*(run.data.params for run in runs)))
    varied = [
        key
        for key in keys
        if key not in NOT_A_SETTING
        and not key.startswith(NOT_A_SETTING_PREFIXES)
        and not _follows_the_seed(key, runs)
        and len(
            {
                run.data.params.get(key)
                for run in (same_analyzer if key.startswith("analyzer.") else runs)
            }
        )
        > 1
    ]
    setting = ", ".join(f"{key}={params.get(key)}" for key in varied)
    return f"{name} ({setting})" if setting else name


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


def build_report(client: MlflowClient, parent: Run, folder: Path) -> Report:
    """Write the comparison of the sweep whose parent run is ``parent`` into ``folder``."""
    from src.figures import comparison_grid, metrics_vs_epochs, quality_curves, save_figure

    folder.mkdir(parents=True, exist_ok=True)
    runs = children(client, parent)
    jobs = collect(client, runs)
    missing = missing_jobs(expected_jobs(client, parent), runs)
    (folder / "missing.txt").write_text("".join(f"{line}\n" for line in missing))
    if not jobs:
        log.warning("no job of sweep %s finished: nothing to compare", parent.info.run_id)
        return Report(None, runs, missing)

    table = comparison_table(jobs)
    table.to_csv(folder / "table.csv", index=False)
    note = f"<p>{len(missing)} job(s) did not finish: {'; '.join(missing)}</p>" if missing else ""
    (folder / "table.html").write_text(
        f"<h3>{parent.info.run_name}</h3>{note}" + readable(table).to_html(index=False)
    )

    verdict = sweep_verdict(jobs)
    if verdict is not None:
        (folder / "verdict.md").write_text(markdown(verdict, parent.info.run_name or ""))

    longest = max(job.epochs for job in jobs)
    first_seed = min(job.seed for job in jobs if job.epochs == longest)
    shown = sorted(
        (job for job in jobs if job.epochs == longest and job.seed == first_seed),
        key=lambda job: job.analyzer,
    )
    reference = shown[0].arrays
    class_names = [str(name) for name in reference.get("class_names", [])] or ast.literal_eval(
        shown[0].run.data.params.get("dataset.class_names", "None")
    )
    figure = comparison_grid(
        reference["images"],
        reference["labels"],
        [(job.analyzer, job.arrays["heatmaps"], job.display) for job in shown],
        class_names or [str(k) for k in range(int(reference["labels"].max()) + 1)],
        title=f"{shown[0].run.data.tags.get('dataset', '')} · seed {first_seed} · {longest} epochs",
        masks=reference.get("masks"),
    )
    save_figure(figure, folder / "grid.png")
    metrics = [m for m in ("test_accuracy", "analysis_time_s", STABILITY) if f"{m}_mean" in table]
    judged = {f"{EVALUATION_PREFIX}{m.name}" for m in criteria(SCORES)}
    metrics += [
        c.removesuffix("_mean")
        for c in table.columns
        if c.endswith("_mean") and c.removesuffix("_mean") in judged
    ]
    figure = metrics_vs_epochs(table, metrics)
    save_figure(figure, folder / "metrics_vs_epochs.png")
    at_longest = [job for job in jobs if job.epochs == longest]
    per_step = {key: mean_curves(client, at_longest, key) for key in CURVES}
    if any(per_step.values()):
        figure = quality_curves(per_step, PANELS, title=f"{longest} epochs, mean ± std over seeds")
        save_figure(figure, folder / "quality_curves.png")
    return Report(table, runs, missing, verdict)


def sweep_verdict(jobs: list[Job]) -> Verdict | None:
    scored = [
        RunScores(
            row=job.analyzer,
            baseline=job.run.data.params.get("analyzer.method", "").startswith("baseline."),
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
    """The expected jobs without a FINISHED run, with the status of their run if there is one."""
    status_by_job = {}
    for run in runs:
        job = run.data.tags.get("job_overrides", "")
        # A finished run of a job wins over a failed earlier attempt of it.
        if status_by_job.get(job) != "FINISHED":
            status_by_job[job] = run.info.status
    return [
        f"{job} ({status_by_job.get(job, 'no run')})"
        for job in expected
        if status_by_job.get(job) != "FINISHED"
    ]


def log_report(client: MlflowClient, parent_run_id: str, folder: Path, report: Report) -> None:
    client.log_artifacts(parent_run_id, str(folder), "comparison")
    if report.verdict is not None:
        log_verdict(client, parent_run_id, report.verdict)


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
                raise UserError(f"no run {cfg.parent!r} in {store.tracking_uri}") from error
        else:
            parent = latest_parent(client, cfg.tracking.experiment_name)
        folder = Path(cfg.output_dir) / parent.info.run_id
        report = build_report(client, parent, folder)
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
        folder,
    )


def main() -> None:
    register_resolvers()
    hydra_main()


if __name__ == "__main__":
    main()

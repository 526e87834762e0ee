"""The runs of a sweep, read from the tracking store: its parent and children, what each job
logged (:class:`Job`), the jobs that did not finish, and the comparison table of them.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.common import names
from src.common.redact import redact
from src.scores import SCORES
from src.scores.compare import mean_std_text, seed_stability
from src.scores.registry import curves, panels

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
# Their panels (a baseline, such as the random order, drawn in its curve's panel).
PANELS = panels(curves(SCORES), EVALUATION_PREFIX)


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
        from src.common.errors import UserError

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
    the runs' names show it (:mod:`src.common.names`), so runs of different settings are never
    pooled like seeds. An ``analyzer.*`` param counts as varied only among runs of the same
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

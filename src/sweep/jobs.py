"""The jobs of a sweep: its overrides expanded into jobs, the experiment they join, their
inputs checked before the parent run exists, their labels, and the record of those that ended
(``jobs_done.jsonl`` in the sweep's folder).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from src.common import keys
from src.common.errors import UserError, one_line
from src.common.redact import redact
from src.config.cli import sweep_jobs

JOBS_DONE = "jobs_done.jsonl"  # in the sweep's folder: one line per ended job, with its outcome
SLURM_LAUNCHER = "hydra_plugins.xai_lab.launcher.SlurmLauncher"
# Launchers that pickle each job's config and overrides into files (submitit's .submitit/).
FILE_LAUNCHERS = (SLURM_LAUNCHER, "hydra_plugins.xai_lab.launcher.LocalLauncher")


def expand_sweep(overrides: list[str]) -> list[str]:
    """The jobs a sweep over ``overrides`` runs, each as its sorted overrides joined by spaces."""
    return [" ".join(job) for job in sweep_jobs(overrides)]


def sweep_name_overrides(overrides: list[str]) -> list[str]:
    """The overrides that say what a sweep compares: records (where it writes, ``tracking.*``,
    ``paths.*``, ``hydra.*``, the report's and the cache's switches; :mod:`src.common.keys`)
    would only crowd the parent run's name in the UI."""
    return [
        override
        for override in overrides
        if keys.role(keys.override_key(override)) is not keys.Role.RECORDS
    ]


def sweep_experiment(config: DictConfig, swept: list[str]) -> str:
    """The experiment of a sweep's parent run, which its jobs join: the config's, except that a
    sweep over datasets goes to ``xai-lab`` instead of its first dataset's experiment (unless
    the experiment was named: Hydra composes this config without the swept values)."""
    from src.tracking.lifecycle import SHARED_EXPERIMENT

    name = str(config.tracking.experiment_name)
    over_datasets = any(key == "dataset" or key.startswith("dataset.name") for key in swept)
    if over_datasets and name == f"{SHARED_EXPERIMENT}-{config.dataset.name}":
        return SHARED_EXPERIMENT
    return name


# What a job's inputs are checked by: a job that differs from a checked one only in these
# keys needs no check of its own (its data, model and analyzer are the same).
NOT_CHECKED_APART = ("seed", "train.epochs", "tracking", "paths", "report", "threads", "hydra")


def check_no_secret_in_job_files(config: DictConfig) -> None:
    """Refuse a password in ``tracking.uri`` for a launcher that stores each job's config in
    files (submitit's pickles under the sweep folder's ``.submitit/``, which a job needs whole
    and nothing can redact): MLflow's environment variables carry it instead."""
    launcher = OmegaConf.select(config, "hydra.launcher._target_")
    uri = str(OmegaConf.select(config, "tracking.uri") or "")
    if launcher in FILE_LAUNCHERS and redact(uri) != uri:
        raise UserError(
            f"tracking.uri {redact(uri)} holds a password, which this launcher would store in "
            "its job files (.submitit/ in the sweep's folder): give the URI without it and "
            "the credentials as MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )


def check_jobs(config: DictConfig, jobs: list[list[str]], swept: list[str]) -> list[str]:
    """Every job's inputs checked as its run would check them before it exists (the data,
    the model built for it, the analyzer on that model: :func:`src.experiment.checked_inputs`),
    once for each distinct combination; one line per distinct problem, naming the jobs it
    concerns by their ``swept`` settings (all of them, or the first three and how many
    more)."""
    from hydra.core.global_hydra import GlobalHydra

    from src.common.tf_runtime import configure_threads
    from src.experiment import checked_inputs

    configure_threads(config.threads, OmegaConf.select(config, "hydra.launcher.n_jobs"))
    loader = GlobalHydra.instance().config_loader()
    checked: dict[str, str] = {}  # a combination's key -> its problem ("" if none)
    problems: dict[str, list[str]] = {}
    for overrides in jobs:
        job = loader.load_sweep_config(config, overrides)
        with open_dict(job):
            del job["hydra"]  # what the run gets: Hydra's task config has none
        resolved = OmegaConf.to_container(job, resolve=True)
        resolved["train"].pop("epochs", None)
        key = json.dumps(
            {k: v for k, v in resolved.items() if k not in NOT_CHECKED_APART},
            sort_keys=True,
            default=str,
        )
        if key not in checked:
            try:
                checked_inputs(job, say=False)
                checked[key] = ""
            except Exception as error:  # noqa: BLE001 - any failure is that job's, in one line
                checked[key] = one_line(error)
        if checked[key]:
            problems.setdefault(checked[key], []).append(job_label(" ".join(overrides), swept))
    return [f"{problem} ({_jobs_named(named, len(jobs))})" for problem, named in problems.items()]


def _jobs_named(named: list[str], total: int) -> str:
    if len(named) == total:
        return f"every job of the sweep ({total})" if total > 1 else "the sweep's job"
    shown = "; ".join(named[:3])
    more = f"; and {len(named) - 3} more" if len(named) > 3 else ""
    return f"{len(named)} of {total} jobs: {shown}{more}"


def job_label(job: str, swept: list[str]) -> str:
    """A job (its overrides, joined by spaces) by the settings its sweep varies only:
    ``+model.crash=first``, not every path the command line gave."""
    named = [item for item in job.split(" ") if keys.override_key(item) in swept]
    return " ".join(named) if named else job


def job_and_status(line: str) -> tuple[str, str]:
    """``seed=1 (FAILED: … (…))``, a line of the report's missing jobs, split into the job and
    what its parentheses hold: the last group, matched, since a reason has parentheses too."""
    depth = 0
    for index in range(len(line) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(line[index], 0)
        if depth == 0 and line[index] == "(":
            return line[:index].rstrip(), line[index + 1 : -1]
    return line, ""


def jobs_done(folder: Path) -> list[dict[str, Any]]:
    """The records of the sweep's jobs that have ended (one JSON line each, in ``folder``); a
    line a killed job left half written is skipped."""
    path = folder / JOBS_DONE
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return [record for record in records if isinstance(record, dict) and "job" in record]

"""One parent MLflow run per multirun: Hydra's ``on_multirun_start`` callback opens it, the
entry point (src/train.py) closes it.

``on_multirun_start`` opens the parent run and tells the jobs its id (an environment variable,
inherited by joblib and submitit workers); each job's run becomes its child. The parent has one
closer, :func:`finish_sweeps`, which the entry point calls on its way out whatever happened (the
sweep ended, a job crashed, an interrupt): the parent gets the comparison and ends FINISHED if
every job finished, KILLED if the sweep or a job was interrupted, FAILED otherwise; never
RUNNING. (Hydra's ``on_multirun_end`` is not used: Hydra skips it when a job raises or the sweep
is interrupted.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from src.common import names, signals
from src.common.errors import Terminated, UserError, one_line
from src.common.outcome import JobOutcome
from src.common.redact import redact
from src.config.cli import new_sweep_id, sweep_jobs, swept_keys

log = logging.getLogger(__name__)
SWEEP_JOBS_ENV = "XAI_LAB_SWEEP_JOBS"  # how many jobs the sweep has
JOBS_DONE = "jobs_done.jsonl"  # in the sweep's folder: one line per ended job, with its outcome
SLURM_LAUNCHER = "hydra_plugins.xai_lab.launcher.SlurmLauncher"
# Launchers that pickle each job's config and overrides into files (submitit's .submitit/).
FILE_LAUNCHERS = (SLURM_LAUNCHER, "hydra_plugins.xai_lab.launcher.LocalLauncher")
_trackers: list[SweepTracker] = []  # the sweeps started in this process
# Where multiprocessing's and joblib's resource trackers live (see on_multirun_start).
RESOURCE_TRACKERS = ("multiprocessing", "joblib.externals.loky.backend")


def expand_sweep(overrides: list[str]) -> list[str]:
    """The jobs a sweep over ``overrides`` runs, each as its sorted overrides joined by spaces."""
    return [" ".join(job) for job in sweep_jobs(overrides)]


def sweep_name_overrides(overrides: list[str]) -> list[str]:
    """The overrides that say what a sweep compares: where it writes (``tracking.*``,
    ``paths.*``, ``hydra.*``) would only crowd the parent run's name in the UI."""
    where = ("tracking.", "paths.", "hydra.", "+hydra.")
    return [override for override in overrides if not override.startswith(where)]


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


class SweepTracker(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.sweep_id = ""
        self.store: Any = None
        self.output_dir: str | None = None
        self.sweep_dir = "."  # Hydra's folder of the sweep
        self.grid_images = 10
        self.ui: tuple[str, int] = ("127.0.0.1", 5000)  # where `make ui` serves the store
        self.status: str | None = None  # the parent's final status, once ended
        self.children: Counter[str] = Counter()  # its runs' statuses, once ended
        self.interrupted = False  # whether a signal stopped the sweep or its closing

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:

        from src.tracking import set_up
        from src.tracking.faults import store_fault
        from src.tracking.store import prepare, resolve_store

        set_up()  # MLflow's settings, for this process and the jobs' workers
        # Before anything reads hydra.sweep.dir, which ends in the sweep's id.
        self.sweep_id = new_sweep_id()
        overrides = list(OmegaConf.to_container(config.hydra.overrides.task))
        jobs = expand_sweep(overrides)
        swept = swept_keys(overrides)
        experiment = sweep_experiment(config, swept)
        try:
            check_no_secret_in_job_files(config)
            if OmegaConf.select(config, "hydra.launcher._target_") == SLURM_LAUNCHER:
                from src.sweep.launcher import check_request

                check_request(config.hydra.launcher)  # before the parent run exists
            self.store = resolve_store(config.tracking.dir, config.tracking.uri)
            problems = check_jobs(config, sweep_jobs(overrides), swept)
            if problems:
                for problem in problems:
                    log.error("error: %s", problem)
                raise SystemExit(2)
            experiment_id = prepare(self.store, experiment)
        except UserError as error:
            log.error("error: %s", error)
            raise SystemExit(2) from None
        try:
            self._open(config, overrides, jobs, swept, experiment, experiment_id)
        except Exception as error:
            reason = store_fault(error)
            if reason is None:
                raise
            log.error("error: the tracking store failed: %s", reason)
            raise SystemExit(1) from None

    def _open(
        self,
        config: DictConfig,
        overrides: list[str],
        jobs: list[str],
        swept: list[str],
        experiment: str,
        experiment_id: str,
    ) -> None:
        """Open the parent run and tell the jobs about it (environment variables)."""
        from mlflow.tracking import MlflowClient

        from src.tracking.lifecycle import (
            EXPERIMENT_ENV,
            PARENT_RUN_ENV,
            SWEEP_ID_ENV,
            SWEPT_KEYS_ENV,
            process_tags,
        )
        from src.tracking.repair import repair

        sweep_id = self.sweep_id
        client = MlflowClient(self.store.tracking_uri)
        # Runs an earlier sweep left RUNNING when its process was killed (SIGKILL cannot be
        # caught) are marked KILLED before this sweep starts, so no comparison waits on them.
        repair(client)
        # Not cut by a signal between creating the parent and registering it to be ended.
        with signals.deferred():
            parent = client.create_run(
                experiment_id,
                run_name=names.mlflow_name(
                    redact(f"sweep · {' '.join(sweep_name_overrides(overrides))}"), kind="label"
                ),
                tags={
                    "sweep_role": "parent",
                    "sweep_id": sweep_id,
                    "sweep_dir": redact(str(config.hydra.sweep.dir)),
                    "jobs_expected": str(len(jobs)),
                    **process_tags(),
                },
            )
            self.parent_run_id = parent.info.run_id
            self.output_dir = str(config.paths.report_dir)
            self.sweep_dir = str(config.hydra.sweep.dir)
            self.grid_images = int(config.report.grid_images)
            self.ui = (config.tracking.ui_host, config.tracking.ui_port)
            _trackers.append(self)
        # A URI's password masked (src/common/redact.py), in the jobs as their runs' job_overrides
        # tags have them, which the comparison matches them by.
        shown = redact(" ".join(overrides))[:6000]
        client.log_param(self.parent_run_id, "sweep.overrides", shown)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sweep_jobs.json"
            path.write_text(json.dumps([redact(job) for job in jobs], indent=1))
            client.log_artifact(self.parent_run_id, str(path))
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        os.environ[SWEEP_ID_ENV] = sweep_id
        os.environ[EXPERIMENT_ENV] = experiment
        os.environ[SWEPT_KEYS_ENV] = json.dumps(swept)
        os.environ[SWEEP_JOBS_ENV] = str(len(jobs))
        # Workers that an interrupt or a crash stops leave semaphores, which the resource
        # trackers (multiprocessing's, loky's) clean up, each with a warning printed after the
        # sweep's last line. The trackers' processes take their warning filters from here.
        quiet = [f"ignore::UserWarning:{module}.resource_tracker" for module in RESOURCE_TRACKERS]
        os.environ["PYTHONWARNINGS"] = ",".join(
            filter(None, [os.environ.get("PYTHONWARNINGS"), *quiet])
        )
        log.info("sweep %s: %d jobs, parent run %s", sweep_id, len(jobs), self.parent_run_id)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """After each job of a sweep, one line: how many of its jobs are done, in any worker.

        The jobs run in this process or in workers (joblib, submitit) that share the sweep's
        folder, so they count in a file there, under a lock.
        """
        total = os.environ.get(SWEEP_JOBS_ENV)
        if total is None:  # a single run
            return
        value = job_return._return_value
        if job_return.status != JobStatus.COMPLETED:  # an exception escaped the job
            value = JobOutcome("FAILED", reason=one_line(value))
        ok = isinstance(value, JobOutcome) and value.finished
        job = redact(" ".join(sorted(job_return.overrides or [])))
        record = {"num": int(config.hydra.job.num), "job": job, "ok": ok}
        if not ok:
            said = value.summary() if isinstance(value, JobOutcome) else "FAILED"
            record["outcome"] = redact(said)
        folder = Path(config.hydra.sweep.dir)
        with FileLock(folder / ".jobs_done.lock"):
            with (folder / JOBS_DONE).open("a") as file:
                file.write(json.dumps(record) + "\n")
            done = jobs_done(folder)
        failed = sum(1 for line in done if not line["ok"])
        swept = json.loads(os.environ.get(_swept_env(), "[]"))
        why = "" if ok else f" · job {job_label(job, swept) or record['num']}: {record['outcome']}"
        log.info(
            "sweep: %d/%s jobs done%s%s",
            len(done),
            total,
            f", {failed} failed" if failed else "",
            why,
        )

    def finish(self, interrupted: bool = False) -> str | None:
        """Build and log the comparison, then end the parent run (once); returns its status:
        FINISHED if every job finished, else KILLED if the sweep or a job was interrupted,
        else FAILED; RUNNING (said in one line) if the store cannot take it. An interrupt
        meanwhile cuts the comparison short and ends the parent KILLED."""
        if self.status is not None or self.parent_run_id is None:
            return self.status
        from src.tracking.faults import store_fault

        self.interrupted = interrupted
        self.status = "KILLED" if interrupted else "FAILED"
        try:
            self._compare()
        except (KeyboardInterrupt, Terminated):
            self.interrupted, self.status = True, "KILLED"
            log.error("interrupted: the sweep's comparison was not finished")
        except Exception as error:
            reason = store_fault(error)
            if reason is None:
                raise
            log.error("error: the tracking store failed (%s): no comparison was made", reason)
        finally:
            self._end()
        return self.status

    def _end(self) -> None:
        from src.tracking.lifecycle import end_run

        try:
            ended = end_run(self.parent_run_id, self.status, self.store.tracking_uri)
        except (KeyboardInterrupt, Terminated):
            self.interrupted, ended = True, False
        if not ended:
            log.error(
                "error: the sweep's parent run %s could not be marked %s and is left RUNNING; "
                "`make repair` (with the same tracking.dir or tracking.uri) marks it KILLED once "
                "the store works again",
                self.parent_run_id,
                self.status,
            )
            self.status = "RUNNING"

    def _compare(self) -> None:
        """Mark KILLED the jobs' runs whose process is gone, build and log the comparison, and
        set the parent's status from its runs'."""
        from mlflow.tracking import MlflowClient

        from src.report.page import build_report, log_report
        from src.report.verdict import terminal_table
        from src.tracking.repair import repair

        client = MlflowClient(self.store.tracking_uri)
        parent = client.get_run(self.parent_run_id)
        # A job whose worker was killed (joblib kills every worker when one dies) cannot end
        # its own run.
        repaired = repair(client, f"tags.mlflow.parentRunId = '{self.parent_run_id}'")
        if repaired.killed and not self.interrupted:
            log.warning(
                "a worker process died (killed by the system: out of memory?); its job and "
                "any running beside it are KILLED. Run the same sweep again to finish them: "
                "the models already trained are reused"
            )
        folder = Path(self.output_dir) / self.parent_run_id
        report = build_report(
            client, parent, folder, self.grid_images, store_uri=self.store.tracking_uri
        )
        log_report(client, self.parent_run_id, folder, report)
        missing = report.missing
        expected = int(parent.data.tags["jobs_expected"])
        client.log_metric(self.parent_run_id, "jobs_finished", expected - len(missing))
        client.log_metric(self.parent_run_id, "jobs_not_finished", len(missing))
        self.children = Counter(run.info.status for run in report.runs)
        if not missing:
            self.status = "FINISHED"
        elif self.interrupted or self.children["KILLED"]:
            self.status = "KILLED"
        if report.verdict is not None:
            log.info("verdict (%s):\n%s", folder / "verdict.md", terminal_table(report.verdict))
        summary = f"{expected - len(missing)} of {expected} jobs finished"
        log.info(
            "sweep %s · parent run %s · comparison: %s · browse: %s",
            summary,
            self.parent_run_id,
            folder / "report.html",
            self.store.run_link(parent.info.experiment_id, self.parent_run_id, *self.ui),
        )
        # Why each job did not finish: its run's, or, for a job that failed before its run
        # existed, what the job itself said when it ended.
        said = {line["job"]: line.get("outcome", "") for line in jobs_done(Path(self.sweep_dir))}
        swept = json.loads(os.environ.get(_swept_env(), "[]"))
        for line in missing:
            job, status = job_and_status(line)
            if status == "no run" and said.get(job):
                status = f"no run: {said[job]}"
            log.warning("did not finish: %s (%s)", job_label(job, swept), status)

    def outcome(self) -> str:
        """The parent's status and its runs', in words: ``KILLED; its runs: 1 FINISHED, 2
        KILLED``."""
        runs = ", ".join(f"{count} {status}" for status, count in sorted(self.children.items()))
        return f"{self.status}; its runs: {runs or 'none'}"


def _swept_env() -> str:
    # with MLflow: imported only once a sweep runs
    from src.tracking.lifecycle import SWEPT_KEYS_ENV

    return SWEPT_KEYS_ENV


def job_label(job: str, swept: list[str]) -> str:
    """A job (its overrides, joined by spaces) by the settings its sweep varies only:
    ``+model.crash=first``, not every path the command line gave."""
    named = [item for item in job.split(" ") if item.split("=", 1)[0].lstrip("+~") in swept]
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


def finish_sweeps(interrupted: bool = False) -> list[SweepTracker]:
    """End every sweep this process started that is still open (the one closer of parent
    runs); the sweeps, with their statuses."""
    for tracker in _trackers:
        tracker.finish(interrupted)
    return list(_trackers)

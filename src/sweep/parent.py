"""One parent MLflow run per multirun: Hydra's ``on_multirun_start`` callback opens it, the
entry point (src/train.py) closes it.

``on_multirun_start`` opens the parent run and tells the jobs about it (the sweep's context,
src/common/sweep_context.py); each job's run becomes its child. The parent has one closer,
:func:`finish_sweeps`, which the entry point calls on its way out whatever happened (the sweep
ended, a job crashed, an interrupt): the parent gets the comparison and ends FINISHED if every
job finished, KILLED if the sweep or a job was interrupted, FAILED otherwise; never RUNNING.
(Hydra's ``on_multirun_end`` is not used: Hydra skips it when a job raises or the sweep is
interrupted.)

The sweep's jobs (its overrides expanded, checked, labelled, and the record of those that
ended) are :mod:`src.sweep.jobs`'s.
"""

from __future__ import annotations

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
from omegaconf import DictConfig, OmegaConf

from src.common import heap, internals, names, signals, sweep_context
from src.common.errors import Terminated, UserError, one_line
from src.common.outcome import JobOutcome
from src.common.redact import redact
from src.config.cli import new_sweep_id, sweep_jobs, swept_keys
from src.sweep.jobs import (
    JOBS_DONE,
    SLURM_LAUNCHER,
    check_jobs,
    check_no_secret_in_job_files,
    expand_sweep,
    job_and_status,
    job_label,
    jobs_done,
    sweep_experiment,
    sweep_name_overrides,
)

log = logging.getLogger(__name__)


_trackers: list[SweepTracker] = []  # the sweeps started in this process
# Where multiprocessing's and joblib's resource trackers live (see on_multirun_start).
RESOURCE_TRACKERS = ("multiprocessing", "joblib.externals.loky.backend")


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
        self.context: sweep_context.SweepContext | None = None  # what its jobs learn of it

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from src.tracking import set_up
        from src.tracking.faults import store_fault
        from src.tracking.store import prepare, resolve_store

        set_up()  # MLflow's settings, for this process and the jobs' workers
        # The collector on again, libraries frozen: jobs in workers never reach the entry
        # point's own call (src/common/heap.py).
        heap.freeze_imports()
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
        """Open the parent run and tell the jobs about it (the sweep's context)."""
        from mlflow.tracking import MlflowClient

        from src.tracking.lifecycle import process_tags
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
        self.context = sweep_context.SweepContext(
            self.parent_run_id, sweep_id, experiment, tuple(swept), len(jobs)
        )
        sweep_context.begin(self.context)
        _quiet_resource_trackers()
        log.info("sweep %s: %d jobs, parent run %s", sweep_id, len(jobs), self.parent_run_id)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """After each job of a sweep, one line: how many of its jobs are done, in any worker.

        The jobs run in this process or in workers (joblib, submitit) that share the sweep's
        folder, so they count in a file there, under a lock.
        """
        context = sweep_context.current()
        if context is None:  # a single run
            return
        value = internals.job_return_value(job_return)
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
        swept = list(context.swept_keys)
        why = "" if ok else f" · job {job_label(job, swept) or record['num']}: {record['outcome']}"
        log.info(
            "sweep: %d/%d jobs done%s%s",
            len(done),
            context.jobs,
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
        from src.report.verdict_text import judgement_text, terminal_table
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
        if report.answer is not None:
            log.info("answer (%s):\n%s", folder / "answer.md", report.answer.text())
        if report.verdict is not None:
            log.info(
                "verdict (%s):\n%s%s",
                folder / "verdict.md",
                terminal_table(report.verdict),
                judgement_text(report.verdict),
            )
        if report.retraining is not None:
            from src.report.roar import text

            log.info("remove-and-retrain (%s):\n%s", folder / "roar.md", text(report.retraining))
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
        swept = list(self.context.swept_keys) if self.context else []
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


def _quiet_resource_trackers() -> None:
    """Workers that an interrupt or a crash stops leave semaphores, which the resource trackers
    (multiprocessing's, loky's) clean up, each with a warning printed after the sweep's last
    line. The trackers' processes take their warning filters from the environment."""
    quiet = [f"ignore::UserWarning:{module}.resource_tracker" for module in RESOURCE_TRACKERS]
    os.environ["PYTHONWARNINGS"] = ",".join(
        filter(None, [os.environ.get("PYTHONWARNINGS"), *quiet])
    )


def finish_sweeps(interrupted: bool = False) -> list[SweepTracker]:
    """End every sweep this process started that is still open (the one closer of parent
    runs); the sweeps, with their statuses. A run this process makes afterwards is a single
    run again."""
    try:
        for tracker in _trackers:
            tracker.finish(interrupted)
    finally:
        sweep_context.end()
    return list(_trackers)

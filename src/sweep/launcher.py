"""Sweeps on SLURM (and submitit's local executor): every job waited for, Ctrl-C cancels them,
progress on the user's terminal.

Hydra's submitit launcher submits the jobs as one array, then reads their results in order: the
first job that did not finish (``scancel``, a time limit) raises out of the sweep with
submitit's traceback while the others still run, an interrupt leaves every job queued or
running, and the terminal hears nothing until the end. This launcher submits the same job
function, and:

- checks before anything is submitted that one task's request fits a node of the partition
  (``sinfo``), else says so in one line (:func:`check_request`, from the sweep's start);
- submits first one job per model (the jobs that train it), then the others as a second array
  that SLURM starts once those have ended (``--dependency=afterany``): a job that reuses a
  model never holds an allocation while it waits for another job's training (the local
  executor, which has no dependencies, submits them when the first wave has ended);
- waits for every job, printing each change of state (PENDING with SLURM's reason, RUNNING,
  its end) and ``sweep: k/N jobs done``;
- on Ctrl-C or SIGTERM cancels every job not yet ended (``scancel``), waits for them to end
  (their runs end KILLED), says what it did, and lets the interrupt go on to end the parent;
- hands Hydra a :class:`~src.common.outcome.JobOutcome` for every job, also those that ended without
  returning (cancelled, out of time, crashed), instead of raising the first one's error.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from src.common import internals, keys, signals, sweep_context
from src.common.errors import Terminated, UserError, one_line
from src.common.outcome import JobOutcome

log = logging.getLogger(__name__)
EPOCHS_KEY = "train.epochs"

POLL_S = 2.0
# After scancel, SLURM sends SIGTERM and, KillWait (30 s by default) later, SIGKILL.
CANCEL_WAIT_S = 60.0


def model_group(overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides that decide a job's training (:mod:`src.common.keys`): jobs with the same
    share it, whatever they explain and however many of its epochs they take (a shorter model is
    a snapshot of it)."""
    return tuple(
        sorted(
            override
            for override in overrides
            if keys.role(keys.override_key(override)) in keys.DECIDE_TRAINING
        )
    )


def _epochs(overrides: Sequence[str]) -> int:
    """The job's ``train.epochs`` override as a number (0 if it has none or not a number)."""
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == EPOCHS_KEY and value.isdigit():
            return int(value)
    return 0


def waves(job_overrides: Sequence[Sequence[str]]) -> tuple[list[int], list[int]]:
    """The jobs to submit first (per training, the job that takes the most epochs of it: its
    snapshots are the other jobs' models) and those to submit after."""
    longest: dict[tuple[str, ...], int] = {}
    for index, overrides in enumerate(job_overrides):
        group = model_group(overrides)
        if group not in longest or _epochs(overrides) > _epochs(job_overrides[longest[group]]):
            longest[group] = index
    first = sorted(longest.values())
    return first, sorted(set(range(len(job_overrides))) - set(first))


def job_labels(job_overrides: Sequence[Sequence[str]], first_index: int) -> list[str]:
    """``#3 (analyzer=gradient seed=1)``: each job's number and the overrides that set it
    apart from the sweep's other jobs."""
    values: dict[str, set[str]] = {}
    for overrides in job_overrides:
        for override in overrides:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    labels = []
    for index, overrides in enumerate(job_overrides):
        own = [o for o in filter_overrides(overrides) if len(values[o.partition("=")[0]]) > 1]
        labels.append(f"#{first_index + index}" + (f" ({' '.join(own)})" if own else ""))
    return labels


def check_request(launcher: Mapping[str, Any]) -> None:
    """Raise UserError if one task of ``launcher`` (Hydra's launcher config) cannot fit any node
    of its partition, as ``sinfo`` reports the nodes; such jobs would wait forever."""
    if shutil.which("sinfo") is None:
        raise UserError(
            "hydra/launcher=slurm: sinfo is not on PATH, so this is not a SLURM submit host "
            "(run the sweep where sbatch works, or use hydra/launcher=local)"
        )
    partition = launcher.get("partition")
    command = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%m"]
    if partition:
        command += ["--partition", str(partition)]
    try:
        listed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        detail = (getattr(error, "stderr", "") or str(error)).strip().splitlines()
        raise UserError(
            f"hydra/launcher=slurm: sinfo failed ({detail[-1] if detail else error}): is "
            "slurmctld up, and SLURM_CONF right?"
        ) from None
    nodes = [line.split("|") for line in listed.stdout.splitlines() if line.count("|") == 3]
    if not partition:
        nodes = [node for node in nodes if node[1].endswith("*")]  # the default partition
    if not nodes:
        where = f"partition {partition}" if partition else "the default partition"
        raise UserError(f"hydra/launcher=slurm: sinfo lists no node in {where}")
    cpus = int(launcher.get("cpus_per_task") or 1) * int(launcher.get("tasks_per_node") or 1)
    mem_mb = float(launcher.get("mem_gb") or 0) * 1024
    if any(int(node[2]) >= cpus and int(node[3]) >= mem_mb for node in nodes):
        return
    most_cpus = max(int(node[2]) for node in nodes)
    most_mb = max(int(node[3]) for node in nodes)
    raise UserError(
        f"hydra/launcher=slurm: a job asks for {cpus} CPUs and {mem_mb / 1024:g} GB, but the "
        f"largest node of partition {nodes[0][1].rstrip('*')} has {most_cpus} CPUs and "
        f"{most_mb / 1024:.1f} GB (sinfo): set hydra.launcher.cpus_per_task and "
        "hydra.launcher.mem_gb within that, or choose hydra.launcher.partition"
    )


def pending_reasons(job_ids: Sequence[str]) -> dict[str, str]:
    """SLURM's reason each pending job waits (``squeue``): Resources, Priority, Dependency…"""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    listed = _squeue("--format=%i|%r", job_ids)
    return dict(line.split("|", 1) for line in listed.stdout.splitlines() if "|" in line)


def in_queue(jobs: Mapping[int, Any]) -> list[str]:
    """The jobs ``squeue`` still lists (pending, running or completing)."""
    if not jobs or shutil.which("squeue") is None:
        return []
    return _squeue("--format=%i", [job.job_id for job in jobs.values()]).stdout.split()


def _squeue(format: str, job_ids: Sequence[str]) -> subprocess.CompletedProcess:
    """``squeue`` on ``job_ids``, one line per array task (``--array``); empty output when it
    fails or hangs: progress lines are not worth stopping the sweep for."""
    command = ["squeue", "--noheader", "--array", format, "--jobs", ",".join(job_ids)]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        return subprocess.CompletedProcess(command, 1, "", "")


class Waiting:
    """Mixed into Hydra's submitit launchers by hydra_plugins/xai_lab/launcher.py (Hydra takes
    launchers only from the ``hydra_plugins`` package)."""

    _EXECUTOR: str
    params: dict[str, Any]
    config: Any

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """The job, in the worker: stop signals (SIGTERM from scancel, SLURM's time-limit
        warning) end its run KILLED from its first moment, instead of submitit's handlers, which
        ignore SIGTERM and turn the warning into a requeue error."""
        sweep_context.set_worker(self._EXECUTOR)
        signals.install()
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> list[JobReturn]:
        import submitit

        executor = self._executor(submitit)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        arguments = [
            internals.submitit_job_arguments(overrides, initial_job_idx + index)
            for index, overrides in enumerate(job_overrides)
        ]
        labels = job_labels(job_overrides, initial_job_idx)
        first, later = waves(job_overrides)
        jobs: dict[int, Any] = {}
        watch = _Progress(labels, len(job_overrides))

        def submit(indices: list[int], after: str = "") -> None:
            # Not cut by a signal between submitting jobs and knowing them (to cancel them).
            with signals.deferred():
                submitted = executor.map_array(
                    self, *zip(*[arguments[i] for i in indices], strict=True)
                )
                jobs.update(zip(indices, submitted, strict=True))
            log.info(
                "sweep: submitted %d %s job(s): %s%s",
                len(indices),
                self._EXECUTOR,
                _ids(submitted),
                f", to start when {after} have ended (they reuse their models)" if after else "",
            )

        try:
            submit(first)
            if later and self._EXECUTOR == "slurm":
                arrays = sorted({job.job_id.split("_")[0] for job in jobs.values()})
                executor.update_parameters(
                    slurm_additional_parameters={
                        **dict(self.params.get("additional_parameters") or {}),
                        "dependency": "afterany:" + ":".join(arrays),
                    }
                )
                submit(later, after=", ".join(arrays))
                later = []
            watch.until_done(jobs)
            if later:  # the local executor knows no dependencies: now they can start
                submit(later)
                watch.until_done(jobs)
        except (KeyboardInterrupt, Terminated):
            self._cancel(jobs, watch)
            raise
        except Exception as error:  # sbatch refused a wave, the scheduler went away…
            log.error("error: the sweep's jobs could not be run: %s", one_line(error))
            self._cancel(jobs, watch, why="error")
            raise SystemExit(1) from None  # the parent is then ended, FAILED (src/train.py)
        return [
            self._returned(jobs[index], labels[index], job_overrides[index])
            for index in range(len(job_overrides))
        ]

    def _executor(self, submitit: Any) -> Any:
        """submitit's executor with the launcher's parameters (as Hydra's launcher sets it)."""
        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                key if key in shared else f"{self._EXECUTOR}_{key}": value
                for key, value in params.items()
            }
        )
        return executor

    def _cancel(self, jobs: Mapping[int, Any], watch: _Progress, why: str = "interrupted") -> None:
        """Cancel every job not yet ended and wait (bounded) for them to end; another signal
        meanwhile stops the waiting, not the cancelling."""
        running = {index: job for index, job in jobs.items() if not job.done()}
        if not running:
            return
        log.warning(
            "%s: cancelling %d job(s) of the sweep that had not ended: %s",
            why,
            len(running),
            _ids(running.values()),
        )
        with signals.deferred():
            for job in running.values():
                job.cancel(check=False)
        deadline = time.monotonic() + CANCEL_WAIT_S
        try:
            watch.until_done(running, deadline)
        except (KeyboardInterrupt, Terminated):
            log.warning("%s: no longer waiting for the cancelled jobs to end", why)
        left = [job.job_id for job in running.values() if not job.done(force_check=True)]
        if self._EXECUTOR == "slurm":
            # SLURM lists a job as COMPLETING while it cleans up after it: wait for that too.
            while time.monotonic() < deadline and in_queue(running):
                time.sleep(1)
            left += [job_id for job_id in in_queue(running) if job_id not in left]
        if left:
            log.error(
                "%s: %d job(s) still not ended after scancel: %s",
                why,
                len(left),
                ", ".join(left),
            )
        else:
            log.warning("%s: the %d job(s) cancelled have ended", why, len(running))

    def _returned(self, job: Any, label: str, overrides: Sequence[str]) -> JobReturn:
        """The job's JobReturn, with a JobOutcome as its value whatever became of it."""
        uncompleted = internals.uncompleted_job_error()
        try:
            if not job.paths.result_pickle.exists():  # results() would wait 15 s for it
                raise uncompleted(job.job_id)
            returned = job.results()[0]
        except uncompleted:
            state = job.state
            status = "KILLED" if state.startswith(("CANCELLED", "TIMEOUT")) else "FAILED"
            outcome = JobOutcome(
                status, reason=f"{self._EXECUTOR} job {job.job_id} {state.lower()}"
            )
            return internals.completed_job_return(overrides, outcome)
        if returned.status == JobStatus.FAILED:  # an exception in the job: a bug, in its log
            error = internals.job_return_value(returned)
            log.error(
                "job %s failed: %s: %s (traceback: %s)",
                label,
                type(error).__name__,
                error,
                job.paths.stderr,
            )
            returned.status = JobStatus.COMPLETED
            returned.return_value = JobOutcome("FAILED", reason=f"{type(error).__name__}: {error}")
        return returned


class _Progress:
    """One line per change of a job's state, and ``sweep: k/N jobs done``."""

    def __init__(self, labels: Sequence[str], total: int) -> None:
        self.labels, self.total = labels, total
        self.states: dict[int, str] = {}
        self.ended: set[int] = set()

    def until_done(self, jobs: Mapping[int, Any], deadline: float | None = None) -> None:
        while True:
            waiting = {index: job for index, job in jobs.items() if index not in self.ended}
            pending = [job.job_id for job in waiting.values() if job.state == "PENDING"]
            reasons = pending_reasons(pending)
            ending = _still_ending(waiting)
            for index, job in waiting.items():
                ended = job.done() and job.job_id not in ending
                state = job.state if not ended else _end_state(job)
                if state == "PENDING" and reasons.get(job.job_id, "None") != "None":
                    state = f"PENDING ({reasons[job.job_id]})"
                # UNKNOWN: just submitted, not yet in sacct's records
                if state != self.states.get(index) and state != "UNKNOWN":
                    self.states[index] = state
                    if not ended:
                        log.info("sweep: job %s %s: %s", self.labels[index], job.job_id, state)
                if ended:
                    self.ended.add(index)
                    log.info(
                        "sweep: %d/%d jobs done · %s %s: %s",
                        len(self.ended),
                        self.total,
                        self.labels[index],
                        job.job_id,
                        state,
                    )
            if all(index in self.ended for index in jobs):
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(POLL_S)


def _still_ending(jobs: Mapping[int, Any]) -> set[str]:
    """The jobs the scheduler counts as ended that have not yet said how: ``scancel`` or a time
    limit makes a job CANCELLED or TIMEOUT at once, while its process is still ending its run
    and writing its result, which it does before it leaves ``squeue`` (COMPLETING)."""
    unsaid = {
        index: job
        for index, job in jobs.items()
        if not job.paths.result_pickle.exists() and job.done()
    }
    return set(in_queue(unsaid)) if unsaid else set()


def _end_state(job: Any) -> str:
    """How a job that is done ended: its JobOutcome's status if it returned one, else the
    scheduler's state."""
    if job.paths.result_pickle.exists():
        try:
            returned = job.results()[0]
            value = internals.job_return_value(returned)
            if isinstance(value, JobOutcome):
                return value.summary()
            return "failed (see its log)" if returned.status == JobStatus.FAILED else "done"
        except Exception:  # noqa: BLE001 - an error result: the scheduler's state says more
            pass
    return job.state


def _ids(jobs: Any) -> str:
    return ", ".join(job.job_id for job in jobs)

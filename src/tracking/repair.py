"""Runs left RUNNING by a process that is gone (SIGKILL, a crashed worker, a lost machine).

A run records the process that made it (tags ``process.host``, ``process.pid``,
``process.started``, see :func:`src.tracking.lifecycle.process_tags`). A RUNNING run whose
process no longer exists on this host, or whose pid now belongs to a later process, can never
end by itself: ``python -m src.repair`` (``make repair``) marks it KILLED. A run made on another
host in a SLURM job (tag ``process.slurm_job_id``) is asked about to the scheduler: once
``sacct`` says the job has ended, its run is marked KILLED too. Other runs of other hosts, and
runs without those tags (made by other tools), are left alone: their process cannot be checked
from here. Every sweep does this for its store when it starts, and for its own jobs when it
ends."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import psutil
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from src.tracking.lifecycle import HOST, PID, SLURM_JOB, STARTED, process_started

log = logging.getLogger(__name__)


@dataclass
class Repair:
    killed: list[str] = field(default_factory=list)  # runs marked KILLED
    alive: list[str] = field(default_factory=list)  # RUNNING, and their process is
    unchecked: list[str] = field(default_factory=list)  # another host's, or without tags

    def summary(self) -> str:
        return (
            f"{len(self.killed)} run(s) left RUNNING by a process that is gone marked KILLED; "
            f"{len(self.alive)} still running; {len(self.unchecked)} not checkable here "
            "(another host, not in a SLURM job sacct knows; or no process tags)"
        )


def process_gone(tags: dict[str, str]) -> bool | None:
    """Whether the process that made a run is gone; None when it cannot be told from here."""
    if tags.get(HOST) != socket.gethostname() or PID not in tags or STARTED not in tags:
        return None
    try:
        process = psutil.Process(int(tags[PID]))
        # A pid is reused sooner or later: the same pid with another start time is another
        # process. A zombie has ended and only waits for its parent to read its exit code.
        return (
            abs(process.create_time() - process_started(tags[STARTED])) > 0.01
            or process.status() == psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return True


# sacct's states of a job that has not ended (the rest: COMPLETED, FAILED, CANCELLED, TIMEOUT,
# OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE).
SLURM_ACTIVE = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "RESIZING",
    "SUSPENDED",
    "COMPLETING",
    "CONFIGURING",
}


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """What ``sacct`` says of each SLURM job (``CANCELLED``, ``RUNNING``…); {} where sacct is
    not on PATH or fails (then those runs stay unchecked)."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    # JobIDRaw: a job array's task by its own id, as SLURM_JOB_ID gives it (JobID would
    # print it as <array id>_<task>).
    command = ["sacct", "--noheader", "--allocations", "--parsable2", "--format=JobIDRaw,State"]
    try:
        listed = subprocess.run(
            [*command, "--jobs", ",".join(sorted(set(job_ids)))],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        log.warning("sacct failed (%s): runs of other hosts are not checked", error)
        return {}
    states = {}
    for line in listed.stdout.splitlines():
        job, _, state = line.partition("|")
        if state:
            states[job] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return states


def running_runs(client: MlflowClient, filter_string: str = "") -> Iterator[Run]:
    """Every RUNNING run in the store (all experiments), page by page."""
    experiments = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
    if not experiments:
        return
    query = " and ".join(part for part in ("attributes.status = 'RUNNING'", filter_string) if part)
    token = None
    while True:
        page = client.search_runs(
            experiments, query, run_view_type=ViewType.ALL, max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def _elsewhere_in_slurm(tags: dict[str, str]) -> bool:
    return SLURM_JOB in tags and tags.get(HOST) != socket.gethostname()


def repair(client: MlflowClient, filter_string: str = "", dry_run: bool = False) -> Repair:
    """Mark KILLED the RUNNING runs (matching ``filter_string``) whose process is gone."""
    result = Repair()
    runs = list(running_runs(client, filter_string))
    elsewhere = [run.data.tags[SLURM_JOB] for run in runs if _elsewhere_in_slurm(run.data.tags)]
    scheduler = slurm_states(elsewhere)
    for run in runs:
        run_id, tags = run.info.run_id, run.data.tags
        gone = process_gone(tags)
        why = f"process {tags.get(PID)} on {tags.get(HOST)} had ended without ending the run"
        if gone is None and tags.get(SLURM_JOB) in scheduler:
            state = scheduler[tags[SLURM_JOB]]
            gone = state not in SLURM_ACTIVE
            why = f"SLURM job {tags[SLURM_JOB]} on {tags.get(HOST)} had ended ({state}, sacct)"
        if gone is None:
            result.unchecked.append(run_id)
            continue
        if not gone:
            result.alive.append(run_id)
            continue
        result.killed.append(run_id)
        log.warning(
            "run %s (%s) was left RUNNING: %s: %s",
            run_id,
            run.info.run_name,
            why,
            "would mark it KILLED" if dry_run else "marked KILLED",
        )
        if not dry_run:
            client.set_tag(
                run_id, "repair.note", f"marked KILLED on {datetime.now():%Y-%m-%d %H:%M:%S}: {why}"
            )
            client.set_terminated(run_id, "KILLED")
    return result

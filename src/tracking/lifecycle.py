"""A run's life cycle: started with a record of the process that makes it, ended with its
status even when a signal stops it or the store fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone

import mlflow
import psutil
from mlflow.tracking import MlflowClient

from src.common import internals, signals
from src.common.errors import StoreFault, Terminated, TimeLimit, one_line
from src.common.redact import redact
from src.tracking.faults import _writing, store_fault

log = logging.getLogger(__name__)
# How a run records the process that makes it (src.repair reads them).
HOST, PID, STARTED = "process.host", "process.pid", "process.started"
# A run made in a SLURM job records the job's id too: src.repair asks sacct about it.
SLURM_JOB = "process.slurm_job_id"
# The experiment of a sweep over several datasets (one dataset's runs go to xai-lab-<dataset>).
SHARED_EXPERIMENT = "xai-lab"


# Ending a run is tried again, a second apart, for this long when the store fails (seconds).
END_RETRY_S = 10.0
# How long a run stopped by a signal waits for its KILLED status to be written (seconds).
KILLED_END_S = 8.0


def end_run(run_id: str, status: str, tracking_uri: str | None = None) -> bool:
    """Set a run's end status, retried for a few seconds when the store fails (a lock held a
    moment too long, a server restarting); whether it was written."""
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + END_RETRY_S
    while True:
        try:
            with signals.deferred():
                client.set_terminated(run_id, status)
            return True
        except Exception as error:  # noqa: BLE001 - classified below
            if store_fault(error) is None:
                raise
            log.debug("ending run %s failed: %s", run_id, error)
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


@contextlib.contextmanager
def tracked_run(
    experiment_id: str, run_name: str, tags: Mapping[str, str], parent_run_id: str | None = None
) -> Iterator[str]:
    """An active MLflow run (a child of ``parent_run_id`` if given) that ends FINISHED, FAILED
    on an exception, or KILLED on Ctrl-C / SIGTERM / a SLURM time limit. If the store cannot
    take the end status even after retries, :class:`StoreFault` says the run is left RUNNING
    and how ``make repair`` ends it. Yields the run id."""
    previous = signals.install()
    status = "FAILED"
    run_id = None
    fault = "the tracking store failed"
    try:
        with _writing():  # a run created but not yet ours to end would stay RUNNING
            run_id = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=redact(run_name),
                tags={key: redact(value) for key, value in {**tags, **process_tags()}.items()},
                parent_run_id=parent_run_id,
            ).info.run_id
        yield run_id
        signals.checkpoint()  # a stop no step raised again is not a run FINISHED
        status = "FINISHED"
    except TimeLimit as limit:
        status = "KILLED"
        signals.delivered()
        with contextlib.suppress(Exception), signals.deferred():
            mlflow.set_tag("end_reason", f"time limit: {limit}")
        raise
    except (KeyboardInterrupt, Terminated):
        status = "KILLED"
        signals.delivered()
        raise
    except StoreFault as error:
        fault = str(error)
        raise
    except Exception as error:
        # Why it failed, on the run: the sweep's summary and the UI show it beside FAILED.
        with contextlib.suppress(Exception), signals.deferred():
            mlflow.set_tag("error", redact(one_line(error)))
        raise
    finally:
        try:
            try:
                ended = run_id is None or _end_active_run(run_id, status)
            except (KeyboardInterrupt, Terminated):  # a second signal while it was being ended
                ended, status, fault = False, "KILLED", "a second signal stopped the run's end"
            if not ended:
                raise StoreFault(
                    f"{fault}, and run {run_id} could not be marked {status}: it is left "
                    "RUNNING there; `make repair` (with the same tracking.dir or "
                    "tracking.uri) marks it KILLED once the store works again",
                    130 if status == "KILLED" else 1,
                )
        finally:
            signals.restore(previous)


def _end_active_run(run_id: str, status: str) -> bool:
    """End the active run with ``status``, retried when the store fails; whether it was.

    A run stopped by a signal must end within SLURM's grace (30 s between SIGTERM and SIGKILL)
    even when another process holds the store's lock: each SQLite write may wait 20 s for it
    (MLflow's busy timeout), and the write the signal came in may have waited as long. So a
    KILLED run's status is written by a thread given ``KILLED_END_S``; if it has not written
    it by then the run is reported left RUNNING. (Abandoned, the thread's write is rolled back
    as the process exits: SQLite commits whole transactions or none.)"""
    if status == "KILLED":
        return _end_within(run_id, status, KILLED_END_S)
    try:
        with signals.deferred():
            mlflow.end_run(status=status)  # takes the run off MLflow's stack, then writes
        return True
    except Exception as error:  # noqa: BLE001 - classified below
        if store_fault(error) is None:
            raise
    return end_run(run_id, status)


def _end_within(run_id: str, status: str, seconds: float) -> bool:
    """Write the run's end status from a thread, waiting for it at most ``seconds``; then take
    the run off MLflow's stack of active runs without writing (``mlflow.end_run`` would write
    again, and MLflow's exit hook would end a run left on the stack FINISHED)."""
    ended: list[bool] = []
    client = MlflowClient()

    def write() -> None:
        try:
            client.set_terminated(run_id, status)
            ended.append(True)
        except Exception as error:  # noqa: BLE001 - reported below as "left RUNNING"
            log.debug("ending run %s failed: %s", run_id, error)

    writer = threading.Thread(target=write, name="end-run", daemon=True)
    writer.start()
    try:
        writer.join(seconds)
    finally:  # even if another signal cuts the wait: never leave it to MLflow's exit hook
        internals.forget_active_run(run_id)
    return bool(ended)


def process_tags() -> dict[str, str]:
    """The tags by which a run records the process that makes it; its start as a readable
    UTC time to the microsecond (``2026-11-30T12:45:51.120000+00:00``), which
    :func:`process_started` reads back."""
    process = psutil.Process()
    started = datetime.fromtimestamp(process.create_time(), tz=timezone.utc)
    tags = {
        HOST: socket.gethostname(),
        PID: str(process.pid),
        STARTED: started.isoformat(timespec="microseconds"),
    }
    if os.environ.get("SLURM_JOB_ID"):
        tags[SLURM_JOB] = os.environ["SLURM_JOB_ID"]
    return tags


def process_started(text: str) -> float:
    """A ``process.started`` tag as a Unix time: ISO 8601, or the bare number of older runs."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()

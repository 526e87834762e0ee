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
from collections.abc import Callable, Iterator, Mapping
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


class OpeningRun:
    """A run created in a thread of its own, so that the store's set-up runs beside the first
    training steps: importing MLflow's SQLAlchemy store, creating the run and logging what
    ``first`` logs (the config, the data files, the environment) hold the GIL for about a
    second, which TensorFlow's steps leave partly free (issue 30: the first training step that
    much sooner; on two busy cores the training pays some of it back, docs/performance.md).

    :meth:`started`, called at each training step, starts it at the first and raises a
    failure of it at the next; :meth:`wait` starts it if need be, waits for it, raises what its
    creation raised (an unusable store's ``UserError``, a ``StoreFault``) and makes the run the
    active run of the calling thread. Signals reach only the main thread: the thread's writes
    are never cut halfway."""

    def __init__(
        self,
        experiment_id: str | Callable[[], str],
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        first: Callable[[], None] | None = None,
    ) -> None:
        self._experiment_id, self._first = experiment_id, first
        self._run_name, self._tags, self._parent = run_name, dict(tags), parent_run_id
        self._thread = threading.Thread(target=self._open, name="open-run", daemon=True)
        self._started = self._active = False
        self._error: BaseException | None = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def started(self) -> None:
        """:meth:`start`, and raise at once what the creation raised if it has failed (a
        store found unusable stops the training at its next step, not at the epoch's end)."""
        self.start()
        if self._error is not None:  # set as the thread's last act
            raise self._error

    def _open(self) -> None:
        try:
            known = self._experiment_id
            self.experiment_id = known() if callable(known) else known
            tags = {**self._tags, **process_tags()}
            with _writing():  # a StoreFault, one line, not MLflow's traceback
                run = mlflow.start_run(  # this thread's active run (MLflow's stack is per thread)
                    experiment_id=self.experiment_id,
                    run_name=redact(self._run_name),
                    tags={key: redact(value) for key, value in tags.items()},
                    parent_run_id=self._parent,
                )
            self.run_id = run.info.run_id
            try:
                if self._first is not None:
                    self._first()
            finally:
                internals.forget_active_run(self.run_id)  # not ended: the waiting thread's now
        except BaseException as error:  # noqa: BLE001 - raised again in the thread that waits
            self._error = error

    def wait(self) -> str:
        """The run's id, once it is created; from then on the caller's active run."""
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self.run_id is not None
        if not self._active:
            with _writing():
                mlflow.start_run(run_id=self.run_id)
            self._active = True
        return self.run_id

    def settle(self, seconds: float | None = None) -> str | None:
        """After the work in the run stopped: the run created, if any, once its creation has
        ended (waiting at most ``seconds``; a run still being created then is reported left
        RUNNING). A run not started yet is created now: a run that failed or was stopped is
        recorded as one that did not finish, as it always was."""
        self.start()
        self._thread.join(seconds)
        return self.run_id

    @property
    def active(self) -> bool:
        return self._active


@contextlib.contextmanager
def tracked_run(
    experiment_id: str, run_name: str, tags: Mapping[str, str], parent_run_id: str | None = None
) -> Iterator[str]:
    """An active MLflow run (a child of ``parent_run_id`` if given) that ends FINISHED, FAILED
    on an exception, or KILLED on Ctrl-C / SIGTERM / a SLURM time limit. If the store cannot
    take the end status even after retries, :class:`StoreFault` says the run is left RUNNING
    and how ``make repair`` ends it. Yields the run id."""
    with opening_run(OpeningRun(experiment_id, run_name, tags, parent_run_id)) as run:
        yield run.wait()


@contextlib.contextmanager
def opening_run(run: OpeningRun) -> Iterator[OpeningRun]:
    """:func:`tracked_run` for a run created in the background: the block calls
    ``run.wait()`` before it logs to the run, and may ``run.start()`` it earlier."""
    previous = signals.install()
    status = "FAILED"
    end_tags: dict[str, str] = {}
    fault = "the tracking store failed"
    try:
        yield run
        run.wait()  # a block that never logged: the run still exists, and ends FINISHED
        signals.checkpoint()  # a stop no step raised again is not a run FINISHED
        status = "FINISHED"
    except TimeLimit as limit:
        status = "KILLED"
        signals.delivered()
        end_tags["end_reason"] = f"time limit: {limit}"
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
        end_tags["error"] = redact(one_line(error))
        raise
    finally:
        run_id = None
        try:
            try:
                # A stopped run's end must come within SLURM's grace: its creation is waited
                # for as long as its end would be.
                run_id = run.settle(KILLED_END_S if status == "KILLED" else None)
                ended = run_id is None or _end_run_of(run, run_id, status, end_tags)
            except (KeyboardInterrupt, Terminated):  # a second signal while it was being ended
                ended, status, fault = False, "KILLED", "a second signal stopped the run's end"
            if not ended:
                which = f"run {run_id}" if run_id else "the run being created"
                raise StoreFault(
                    f"{fault}, and {which} could not be marked {status}: it is left "
                    "RUNNING there; `make repair` (with the same tracking.dir or "
                    "tracking.uri) marks it KILLED once the store works again",
                    130 if status == "KILLED" else 1,
                )
        finally:
            signals.restore(previous)


def _end_run_of(run: OpeningRun, run_id: str, status: str, tags: Mapping[str, str]) -> bool:
    """End the run with ``status`` after setting ``tags`` (why it ended; best effort); whether
    the store took the status. The run may be the caller's active run or, stopped before the
    block first waited for it, only created."""
    if tags:
        with contextlib.suppress(Exception), signals.deferred():
            _set_tags(run_id, tags)
    if run.active or status == "KILLED":
        return _end_active_run(run_id, status)
    return end_run(run_id, status)


def _set_tags(run_id: str, tags: Mapping[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


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

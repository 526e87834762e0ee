"""Stop signals are raised at once, except within the project's store writes
(src/common/signals.py).

Real signals, sent by the process to itself.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import traceback

import mlflow
import pytest

from src.common import signals
from src.common.errors import Terminated, TimeLimit
from src.common.progress import progress_bar
from src.tracking.records import log_epoch
from src.tracking.store import prepare, resolve_store

STOPS = pytest.mark.parametrize(
    "signum, raised",
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)],
    ids=["ctrl-c", "sigterm"],
)


def frame_modules(error: BaseException) -> list[str]:
    return [frame.f_globals["__name__"] for frame, _ in traceback.walk_tb(error.__traceback__)]


@pytest.fixture(autouse=True)
def no_stop_left():
    yield
    signals.delivered()  # what a run does with the stop it caught; these tests catch their own


@pytest.fixture
def installed():
    # As a terminal's foreground process has them: a shell starts background jobs (`make test
    # &`) with SIGINT ignored, which install() rightly leaves ignored.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    handlers = {signum: signal.getsignal(signum) for signum in signals.stop_signals()}
    previous = signals.install()
    yield
    signals.restore(previous)
    assert {signum: signal.getsignal(signum) for signum in signals.stop_signals()} == handlers
    signal.signal(signal.SIGINT, inherited)


def busy(progress: list[str], label: str) -> None:
    for _ in range(10_000):  # the handler runs in here
        pass
    progress.append(label)


@STOPS
def test_a_signal_outside_a_store_write_is_raised_at_once(installed, signum, raised):
    progress = []
    with pytest.raises(raised):
        os.kill(os.getpid(), signum)
        busy(progress, "went on")
    assert progress == []


@STOPS
def test_a_signal_in_a_store_write_is_raised_as_the_write_ends(installed, signum, raised):
    progress = []
    with pytest.raises(raised):
        with signals.deferred():
            os.kill(os.getpid(), signum)
            busy(progress, "write done")
            with signals.deferred():  # nested: still the outermost block's end
                busy(progress, "inner write done")
            progress.append("outer write done")
        progress.append("caller went on")
    assert progress == ["write done", "inner write done", "outer write done"]


class SignalsInFinaliser:
    """An object whose finaliser gets the signal: Python raises the handler's exception in
    ``__del__``, reports it as "Exception ignored in" and goes on (as when the garbage collector
    runs one of TensorFlow's finalisers while a Ctrl-C comes)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)
        busy([], "finaliser")


@STOPS
def test_a_stop_a_finaliser_swallowed_is_raised_again_at_the_next_step(installed, signum, raised):
    progress = []
    SignalsInFinaliser(signum)  # dropped at once: its finaliser swallows the exception
    busy(progress, "went on")  # as Python itself does
    with signals.deferred():
        signals.checkpoint()  # not within a store write
        progress.append("write done")
    bar = progress_bar(10, "training", "batch")
    with pytest.raises(raised):
        bar.update(1)  # each step of long work is a checkpoint
    assert progress == ["went on", "write done"]
    with pytest.raises(raised):  # until it reaches the run
        signals.checkpoint()
    signals.delivered()
    signals.checkpoint()
    bar.update(1)
    bar.close()


def test_a_second_signal_is_raised_at_once(installed):
    progress = []
    with pytest.raises(Terminated), signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        busy(progress, "first")
        os.kill(os.getpid(), signal.SIGTERM)
        busy(progress, "second")
    assert progress == ["first"]


def test_in_a_slurm_job_the_time_limit_warning_stops_the_run(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4321")
    previous = signals.install()
    try:
        with pytest.raises(TimeLimit, match="SLURM job 4321 reached its time limit"):
            os.kill(os.getpid(), signal.SIGUSR2)
            busy([], "went on")
    finally:
        signals.restore(previous)
    assert signal.getsignal(signal.SIGUSR2) == previous[signal.SIGUSR2]


def test_outside_slurm_sigusr2_is_not_taken(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert signal.SIGUSR2 not in signals.install()
    signals.restore({})


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        installed = signals.install()
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        signals.restore(installed)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_waiting_when_handlers_are_restored_goes_to_the_handler_before():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        inner = signals.install()
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            signals.restore(inner)  # in the block: the signal still waits for its end
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_never_stop_a_store_write_halfway(tmp_path, installed, caplog):
    """SIGTERM at random moments of a loop of the project's metric writes: each is raised
    outside SQLAlchemy and sqlite3, nothing is logged about closing cursors, every write the
    loop made is stored whole, and the store works on."""
    store = resolve_store(str(tmp_path / "store"))
    experiment_id = prepare(store, "lab")
    run_id = mlflow.start_run(experiment_id=experiment_id).info.run_id
    chances = random.Random(0)
    stops = []
    written = 0
    try:
        for _ in range(30):
            delay = chances.uniform(0, 0.03)
            with caplog.at_level(logging.WARNING), pytest.raises(Terminated) as stopped:
                timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
                timer.start()
                while True:
                    log_epoch(written + 1, {"loss": 1.0})
                    written += 1
            timer.join()
            stops.append(frame_modules(stopped.value))
    finally:
        mlflow.end_run("KILLED")
    inside = [m for m in stops if any(n.startswith(("sqlalchemy", "sqlite3", "mlflow")) for n in m)]
    assert inside == []
    assert not [record for record in caplog.records if record.name.startswith("sqlalchemy")]
    history = mlflow.MlflowClient(store.tracking_uri).get_metric_history(run_id, "loss")
    # Each write a signal came in was finished (stored) before the signal was raised.
    assert written <= len(history) <= written + 30, (len(history), written)
    assert mlflow.get_run(run_id).info.status == "KILLED"

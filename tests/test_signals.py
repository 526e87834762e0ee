"""Signals in the main thread wait for a tracking-store call to return (src/signals.py).

Real signals, sent by the process to itself. A fake "store call" is a function compiled with
the module name of SQLAlchemy, so the handler sees it as the store's code.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
import time
import traceback

import pytest
from mlflow.tracking import MlflowClient

from src import signals, tracking
from src.errors import Terminated

STORE_CALL = """
def store_call(progress, signums):
    for signum in signums:
        os.kill(os.getpid(), signum)
    total = 0
    for step in range(10_000):  # the handler would run in here
        total += step
    progress.append("store call done")
    return total
"""
STOPS = pytest.mark.parametrize(
    "signum, raised",
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)],
    ids=["ctrl-c", "sigterm"],
)


def store_call():
    namespace = {"__name__": "sqlalchemy.engine.fake", "os": os}
    exec(compile(STORE_CALL, "<fake sqlalchemy>", "exec"), namespace)
    return namespace["store_call"]


def frame_modules(error: BaseException) -> list[str]:
    return [frame.f_globals["__name__"] for frame, _ in traceback.walk_tb(error.__traceback__)]


@pytest.fixture
def installed():
    handlers = {signum: signal.getsignal(signum) for signum in signals.STOP_SIGNALS}
    previous = signals.install()
    yield
    signals.restore(previous)
    assert {signum: signal.getsignal(signum) for signum in signals.STOP_SIGNALS} == handlers
    assert sys.gettrace() is None


@STOPS
def test_a_signal_outside_the_store_is_raised_at_once(installed, signum, raised):
    progress = []
    with pytest.raises(raised):
        os.kill(os.getpid(), signum)
        for _ in range(10_000):
            pass
        progress.append("went on")
    assert progress == []


@STOPS
def test_a_signal_in_a_store_call_is_raised_as_it_returns(installed, signum, raised):
    progress = []
    with pytest.raises(raised) as stopped:
        store_call()(progress, [signum])
        progress.append("caller went on")
    assert progress == ["store call done"]
    assert "sqlalchemy.engine.fake" not in frame_modules(stopped.value)[1:]
    assert sys.gettrace() is None


def test_a_second_signal_is_raised_at_once(installed):
    progress = []
    with pytest.raises(Terminated) as stopped:
        store_call()(progress, [signal.SIGTERM, signal.SIGTERM])
    assert progress == []
    assert "sqlalchemy.engine.fake" in frame_modules(stopped.value)
    assert sys.gettrace() is None


def test_a_held_signal_is_raised_when_the_block_ends(installed):
    progress = []
    with pytest.raises(Terminated):
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            progress.append("block done")
        progress.append("after the block")
    assert progress == ["block done"]


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        installed = signals.install()
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        signals.restore(installed)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_waiting_at_restore_goes_to_the_handler_before(installed):
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        inner = signals.install()
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            signals.restore(inner)  # in the block: the signal is still waiting
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_never_stop_the_sqlite_store_halfway(tmp_path, installed, caplog):
    """SIGTERM at random moments of a loop of MLflow writes: each is raised outside SQLAlchemy
    and sqlite3, nothing is logged about closing cursors, and the store works on."""
    store = tracking.resolve_store(str(tmp_path / "store"))
    client = MlflowClient(store.tracking_uri)
    run_id = client.create_run(tracking.prepare(store, "lab")).info.run_id
    chances = random.Random(0)
    stops = []
    for attempt in range(30):
        delay = chances.uniform(0, 0.03)
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with caplog.at_level(logging.WARNING), pytest.raises(Terminated) as stopped:
            for step in range(1_000_000):
                client.log_metric(run_id, "loss", 1.0, step=attempt * 1_000_000 + step)
        stops.append(frame_modules(stopped.value))
    inside = [
        modules
        for modules in stops
        if any(m.startswith(("sqlalchemy", "sqlite3")) for m in modules)
    ]
    assert inside == []
    assert not [record for record in caplog.records if record.name.startswith("sqlalchemy")]
    client.set_terminated(run_id, "KILLED")
    assert client.get_run(run_id).info.status == "KILLED"

"""Ctrl-C (SIGINT) and SIGTERM in each phase of a run and of a sweep: the runs end KILLED, the
process exits promptly with one clear line. The real CLI in a subprocess, the store read back.

Signals in training come from outside once an epoch is logged. For analysis and logging, the
process is started with one function wrapped so that, after its first call returns, the
process sends itself the signal (a real signal, through the real handlers), in the middle of
that phase: fault injection at a known point, instead of a race against a timer.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

import pytest
from support import (
    SMALL,
    SMALL_UNSCORED,
    Stopped,
    all_runs,
    client_for,
    command_line,
    signal_when,
    sweep_runs,
)

pytestmark = pytest.mark.slow
SIGNALS = pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"]
)
# `python -c INJECT` runs src.train with one function wrapped; see the module docstring.
INJECT = """
import importlib, os, runpy
from src.common import tf_runtime
tf_runtime.innvestigate()  # as src.train would import it: graph mode first
module_name, path = {target!r}.split(":")
owner = importlib.import_module(module_name)
*owners, name = path.split(".")
for attribute in owners:
    owner = getattr(owner, attribute)
original = getattr(owner, name)
def wrapped(*args, **kwargs):
    result = original(*args, **kwargs)
    if {condition}:
        os.kill(os.getpid(), {signum})
    return result
setattr(owner, name, wrapped)
runpy.run_module("src.train", run_name="__main__", alter_sys=True)
"""
# Where each phase is interrupted, and on which calls of the function wrapped (an expression
# of its ``args``): after the first batch of the analysis, after the first figure is logged,
# and inside the store's first write of metrics (added to the session, not yet committed; the
# function also runs, with no metrics, for each batch of params).
PHASES = {
    "analysis": ("innvestigate.analyzer.network_base:AnalyzerNetworkBase.analyze", "True"),
    "logging": ("src.tracking.records:log_png", "True"),
    "store write": (
        "mlflow.store.tracking.sqlalchemy_store:SqlAlchemyStore._update_latest_metrics_if_necessary",
        "args[1]",
    ),
}


def interrupted_in(tmp_path, phase: str, signum: int, *args: str) -> Stopped:
    """Run the CLI with the signal injected in ``phase`` (see the module docstring)."""
    target, condition = PHASES[phase]
    return run_code(
        tmp_path, INJECT.format(target=target, condition=condition, signum=int(signum)), *args
    )


def run_code(tmp_path, code: str, *args: str) -> Stopped:
    """``python -c code <args>`` (code that runs src.train), to its end."""
    started = time.monotonic()
    result = subprocess.run(
        command_line(tmp_path, ("-c", code), args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Stopped(result.returncode, result.stderr, time.monotonic() - started)


def assert_stopped_cleanly(stopped: Stopped, message: str) -> None:
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1].endswith(message), stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]


@SIGNALS
def test_a_signal_during_training_ends_the_run_killed(tmp_path, signum):
    stopped = signal_when(tmp_path, signum, *SMALL_UNSCORED, "train.epochs=500")
    assert_stopped_cleanly(stopped, "interrupted: the run was marked KILLED")
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert stopped.seconds < 60  # a batch and the run's end, not the 500 epochs (~150 s)


# `python -c SWALLOWED` runs src.train with the signal sent from a finaliser after the first
# epoch's metrics are logged: Python raises the handler's exception inside ``__del__``, reports
# it as "Exception ignored in" and goes on, as when the garbage collector runs one of
# TensorFlow's finalisers at the moment a Ctrl-C comes (a CI run once trained its 500 epochs
# to the end after one).
SWALLOWED = """
import os, runpy
from src.common import tf_runtime
tf_runtime.innvestigate()
from src.tracking import records
original = records.log_epoch
class Finaliser:
    def __del__(self):
        os.kill(os.getpid(), {signum})
        for _ in range(100_000):  # the handler runs in here, and its exception is lost
            pass
def log_epoch(epoch, metrics):
    original(epoch, metrics)
    if epoch == 1:
        Finaliser()
records.log_epoch = log_epoch
runpy.run_module("src.train", run_name="__main__", alter_sys=True)
"""


@SIGNALS
def test_a_signal_a_finaliser_swallowed_during_training_still_ends_the_run_killed(tmp_path, signum):
    stopped = run_code(
        tmp_path, SWALLOWED.format(signum=int(signum)), *SMALL_UNSCORED, "train.epochs=500"
    )
    assert "Exception ignored in" in stopped.stderr  # the first raise was lost...
    assert stopped.returncode == 130, stopped.stderr[-3000:]  # ...the next batch raised it again
    assert (
        stopped.stderr.strip().splitlines()[-1].endswith("interrupted: the run was marked KILLED")
    )
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    epochs = client_for(tmp_path).get_metric_history(run.info.run_id, "train_loss")
    assert 1 <= len(epochs) < 5  # stopped in the second epoch, not after the 500


def artifacts(tmp_path, run_id: str) -> set[str]:
    client = client_for(tmp_path)
    paths = {a.path for a in client.list_artifacts(run_id)}
    return paths | {a.path for a in client.list_artifacts(run_id, "figures")}


@SIGNALS
def test_a_signal_during_analysis_ends_the_run_killed(tmp_path, signum):
    stopped = interrupted_in(
        tmp_path, "analysis", signum, *SMALL_UNSCORED, "train.epochs=1", "explain.batch_size=2"
    )
    assert_stopped_cleanly(stopped, "interrupted: the run was marked KILLED")
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert "val_accuracy" in run.data.metrics  # trained...
    assert "analysis_time_s" not in run.data.metrics  # ...and stopped while explaining
    assert "heatmaps.npz" not in artifacts(tmp_path, run.info.run_id)


@SIGNALS
def test_a_signal_while_logging_ends_the_run_killed(tmp_path, signum):
    stopped = interrupted_in(tmp_path, "logging", signum, *SMALL_UNSCORED, "train.epochs=1")
    assert_stopped_cleanly(stopped, "interrupted: the run was marked KILLED")
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    logged = artifacts(tmp_path, run.info.run_id)
    assert "figures/training.png" in logged  # the first figure, then the signal
    assert "figures/heatmaps_deep_taylor.png" not in logged and "heatmaps.npz" not in logged


@SIGNALS
def test_a_signal_during_a_store_write_lets_the_write_finish(tmp_path, signum):
    """Raised where it came, the signal would roll the write back (and could leave the database
    locked for the write that marks the run KILLED); it waits for the write to return."""
    stopped = interrupted_in(tmp_path, "store write", signum, *SMALL_UNSCORED, "train.epochs=3")
    assert_stopped_cleanly(stopped, "interrupted: the run was marked KILLED")
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.metrics  # the first metric write, which the signal came in, is stored


def test_ctrl_c_once_the_log_says_a_run_scores_ends_it_killed_within_10_s(tmp_path):
    """Ctrl-C from outside, once the run's log shows its scored images explained (the scores
    themselves run next): the process ends within 10 s, with the run KILLED."""
    log = tmp_path / "stderr.txt"
    args = [*SMALL, "train.epochs=1", "evaluate.n_images=300"]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command_line(tmp_path, ("-m", "src.train"), args),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            # Ctrl-C as a terminal's foreground job gets it (a background job ignores it).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 180
        while not re.search(r"scoring: +100%", log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        stopped = Stopped(process.returncode, log.read_text(), time.monotonic() - sent)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert_stopped_cleanly(stopped, "interrupted: the run was marked KILLED")
    assert stopped.seconds < 10, stopped.seconds
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"
    assert "analysis_time_s" in run.data.metrics  # explained and drawn; then stopped scoring
    assert not [key for key in run.data.metrics if key.startswith("eval_")]


def test_an_interrupted_sweep_ends_its_parent_killed(tmp_path):
    stopped = signal_when(
        tmp_path, signal.SIGINT, "-m", *SMALL_UNSCORED, "train.epochs=500", "seed=0,1"
    )
    assert "interrupted: the run was marked KILLED" in stopped.stderr
    assert_stopped_cleanly(
        stopped, "interrupted: the sweep's parent run is KILLED; its runs: 1 KILLED"
    )
    (parent,), children = sweep_runs(tmp_path)
    assert parent.info.status == "KILLED", stopped.stderr[-3000:]
    assert [kid.info.status for kid in children[parent.info.run_id]] == ["KILLED"]


@pytest.mark.parametrize(
    "signum, group",
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c to every process", "sigterm to the sweep's process"],
)
def test_an_interrupted_parallel_sweep_leaves_no_run_running(tmp_path, signum, group):
    sweep = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *SMALL_UNSCORED,
        "seed=0,1,2",
    ]
    stopped = signal_when(tmp_path, signum, *sweep, "train.epochs=500", group=group)
    (parent,), children = sweep_runs(tmp_path)
    statuses = [kid.info.status for kid in children[parent.info.run_id]]
    assert_stopped_cleanly(
        stopped, f"interrupted: the sweep's parent run is KILLED; its runs: {len(statuses)} KILLED"
    )
    assert stopped.seconds < 60
    assert parent.info.status == "KILLED"
    assert statuses and set(statuses) == {"KILLED"}, statuses

"""The sweep's context: what its jobs learn of it, in the sweep's process and in a worker's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from src.common import signals, sweep_context
from src.common.paths import PROJECT_ROOT
from src.common.sweep_context import SweepContext

CONTEXT = SweepContext(
    parent_run_id="0123abcd",
    sweep_id="20261204-083212-1a2b3c",
    experiment="xai-lab-digits",
    swept_keys=("analyzer", "seed"),
    jobs=6,
)


@pytest.fixture(autouse=True)
def no_sweep(monkeypatch):
    """Each test starts outside any sweep and leaves none behind."""
    monkeypatch.setattr(sweep_context, "_current", None)
    monkeypatch.setattr(sweep_context, "_worker", None)
    monkeypatch.delenv(sweep_context.ENV, raising=False)
    yield
    sweep_context.end()


def test_a_single_run_has_no_sweep():
    assert sweep_context.current() is None


def test_a_job_in_the_sweeps_process_sees_the_sweep_it_began():
    sweep_context.begin(CONTEXT)
    assert sweep_context.current() == CONTEXT


def test_a_worker_process_sees_the_same_sweep_through_its_environment():
    sweep_context.begin(CONTEXT)
    read = "from src.common import sweep_context; print(sweep_context.current().to_json())"
    result = subprocess.run(
        [sys.executable, "-c", read],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),  # what a worker inherits
        capture_output=True,
        text=True,
        check=True,
    )
    assert SweepContext.from_json(result.stdout) == CONTEXT


def test_after_the_sweep_a_run_in_the_same_process_is_a_single_run_again():
    sweep_context.begin(CONTEXT)
    sweep_context.end()
    assert sweep_context.current() is None
    assert sweep_context.ENV not in os.environ


def test_only_a_launchers_worker_stops_on_the_time_limit_warning(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert signal.SIGUSR2 not in signals.stop_signals()
    sweep_context.set_worker("local")
    assert sweep_context.worker() == "local"
    assert signal.SIGUSR2 in signals.stop_signals()

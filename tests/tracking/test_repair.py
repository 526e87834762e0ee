"""Runs left RUNNING by a process that is gone are found and marked KILLED
(src/tracking/repair.py)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import psutil
import pytest
from mlflow.tracking import MlflowClient
from support import (
    SMALL_UNSCORED,
    all_runs,
    client_for,
    run_module,
    signal_when,
    sweep_runs,
    train_cli,
)

from src.tracking.lifecycle import HOST, PID, STARTED, process_started, process_tags
from src.tracking.repair import repair


def ended_process() -> dict[str, str]:
    """The process tags of a process that has run and exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    tags = {**process_tags(), PID: str(process.pid)}
    tags[STARTED] = repr(psutil.Process(process.pid).create_time())
    process.wait()
    return tags


@pytest.fixture
def client(tmp_path) -> MlflowClient:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    return client


def test_the_process_start_is_a_readable_time_that_reads_back_exactly():
    tags = process_tags()
    started = psutil.Process().create_time()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", tags[STARTED])
    assert process_started(tags[STARTED]) == pytest.approx(started, abs=1e-6)
    # Runs tagged before the readable time carry the bare number.
    assert process_started(repr(started)) == started


def test_only_runs_whose_process_is_gone_are_marked_killed(client):
    experiment = client.get_experiment_by_name("e").experiment_id
    alive = process_tags()
    cases = {
        "gone": ended_process(),
        "pid reused": {**alive, STARTED: repr(process_started(alive[STARTED]) - 60)},
        "alive": alive,
        "other host": {**ended_process(), HOST: "elsewhere"},
        "no tags": {},
    }
    runs = {
        name: client.create_run(experiment, tags=tags).info.run_id for name, tags in cases.items()
    }
    finished = client.create_run(experiment, tags=ended_process()).info.run_id
    client.set_terminated(finished, "FINISHED")

    preview = repair(client, dry_run=True)
    assert sorted(preview.killed) == sorted([runs["gone"], runs["pid reused"]])
    assert all(client.get_run(run).info.status == "RUNNING" for run in runs.values())

    result = repair(client)
    status = {name: client.get_run(run).info.status for name, run in runs.items()}
    assert status == {
        "gone": "KILLED",
        "pid reused": "KILLED",
        "alive": "RUNNING",
        "other host": "RUNNING",
        "no tags": "RUNNING",
    }
    assert result.alive == [runs["alive"]]
    assert sorted(result.unchecked) == sorted([runs["other host"], runs["no tags"]])
    gone = client.get_run(runs["gone"])
    assert gone.info.end_time is not None
    assert f"process {cases['gone'][PID]}" in gone.data.tags["repair.note"]
    assert client.get_run(finished).info.status == "FINISHED"
    assert repair(client).killed == []  # nothing left to do


def test_a_zombie_process_counts_as_gone(client):
    experiment = client.get_experiment_by_name("e").experiment_id
    process = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for: a zombie
    tags = {**process_tags(), PID: str(process.pid)}
    tags[STARTED] = repr(psutil.Process(process.pid).create_time())
    psutil.Process(process.pid).wait(timeout=30)
    run = client.create_run(experiment, tags=tags).info.run_id
    assert repair(client).killed == [run]
    process.wait()


@pytest.mark.slow
def test_repair_marks_a_run_whose_process_was_killed_with_sigkill(tmp_path):
    stopped = signal_when(
        tmp_path, signal.SIGKILL, "dataset=digits", "train.epochs=500", "evaluate=off"
    )
    assert stopped.returncode == -signal.SIGKILL
    (run,) = all_runs(tmp_path)
    assert run.info.status == "RUNNING"  # SIGKILL cannot be caught

    listed = run_module(tmp_path, "src.repair", "dry_run=true")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert f"run {run.info.run_id}" in listed.stderr and "would mark it KILLED" in listed.stderr
    assert client_for(tmp_path).get_run(run.info.run_id).info.status == "RUNNING"

    repaired = run_module(tmp_path, "src.repair")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert "1 run(s) left RUNNING by a process that is gone marked KILLED" in repaired.stderr
    assert client_for(tmp_path).get_run(run.info.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_a_sweep_marks_runs_a_killed_sweep_left_running_when_it_starts(tmp_path):
    sweep = ["-m", *SMALL_UNSCORED, "seed=0,1"]
    stopped = signal_when(tmp_path, signal.SIGKILL, *sweep, "train.epochs=500")
    assert stopped.returncode == -signal.SIGKILL
    (killed_parent,), children = sweep_runs(tmp_path)
    (killed_job,) = children[killed_parent.info.run_id]
    assert (killed_parent.info.status, killed_job.info.status) == ("RUNNING", "RUNNING")

    result = train_cli(tmp_path, *sweep, "train.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    client = client_for(tmp_path)
    for run in (killed_parent, killed_job):
        assert client.get_run(run.info.run_id).info.status == "KILLED"
    parents, children = sweep_runs(tmp_path)
    (new_parent,) = [p for p in parents if p.info.run_id != killed_parent.info.run_id]
    assert new_parent.info.status == "FINISHED"
    assert [kid.info.status for kid in children[new_parent.info.run_id]] == ["FINISHED"] * 2


def test_make_repair_runs_the_module_on_a_store_whose_path_has_spaces_and_uri_characters(
    tmp_path,
):
    from src.common.paths import PROJECT_ROOT
    from src.tracking.store import prepare, resolve_store

    folder = tmp_path / "my store?mode=ro%41"
    prepare(resolve_store(str(folder)), "lab")
    repaired = subprocess.run(
        ["make", "-o", ".venv/.installed", "repair", f"STORE={folder}", "ARGS=dry_run=true"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert f"repair of sqlite:///{tmp_path}/my store%3Fmode%3Dro%2541/mlflow.db" in repaired.stderr

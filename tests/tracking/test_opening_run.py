"""A run created in a background thread as the training starts (src/tracking/lifecycle.py
``OpeningRun``): created beside the caller, active in it once waited for, and ended with a true
status whenever the caller stops, before or after it waited."""

from __future__ import annotations

import threading
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from src.common.errors import StoreFault, TimeLimit, UserError
from src.tracking import records
from src.tracking.lifecycle import OpeningRun, opening_run
from src.tracking.store import prepare, resolve_store


@pytest.fixture
def store(tmp_path):
    store = resolve_store(str(tmp_path / "store"))
    mlflow.set_tracking_uri(store.tracking_uri)
    return store


def runs_of(store):
    client = MlflowClient(store.tracking_uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_the_run_is_created_beside_the_caller_and_becomes_its_active_run_once_waited_for(store):
    release, seen = threading.Event(), {}

    def slow_store() -> str:  # the store's set-up, held until the caller has gone on
        seen["set up in"] = threading.current_thread().name
        assert release.wait(10)
        return prepare(store, "lab")

    def first() -> None:  # the run's first records, in the thread, where the run is active
        seen["first in"] = threading.current_thread().name
        records.log_config({"seed": 3})

    opening = OpeningRun(slow_store, "background", {"analyzer": "gradient"}, first=first)
    with opening_run(opening) as run:
        run.start()
        # The caller goes on while the store is set up; nothing of the run is its yet.
        assert mlflow.active_run() is None and run.run_id is None
        release.set()
        run_id = run.wait()
        assert mlflow.active_run().info.run_id == run_id
        records.log_metrics({"accuracy": 0.5})
    assert seen == {"set up in": "open-run", "first in": "open-run"}
    (stored,) = runs_of(store)
    assert (stored.info.run_id, stored.info.status) == (run_id, "FINISHED")
    assert stored.info.run_name == "background" and stored.data.tags["analyzer"] == "gradient"
    assert stored.data.params == {"seed": "3"} and stored.data.metrics == {"accuracy": 0.5}
    assert "process.pid" in stored.data.tags
    assert mlflow.active_run() is None


def test_a_store_that_fails_in_the_background_raises_in_the_caller_and_makes_no_run(store):
    def unusable() -> str:
        raise UserError("cannot use the tracking store: broken")

    with (
        pytest.raises(UserError, match="broken"),
        opening_run(OpeningRun(unusable, "x", {})) as run,
    ):
        run.start()
        run.wait()
    assert runs_of(store) == []
    assert mlflow.active_run() is None


def test_a_store_that_fails_meanwhile_stops_the_caller_at_its_next_step(store):
    def unusable() -> str:
        raise UserError("cannot use the tracking store: broken")

    steps = 0
    opening = OpeningRun(unusable, "never", {})
    with pytest.raises(UserError, match="broken"), opening_run(opening) as run:
        while steps < 500:  # training steps, each telling the run it goes on
            run.started()
            steps += 1
            time.sleep(0.01)
    assert steps < 500  # stopped by a step, not by the end of the block
    assert runs_of(store) == []


@pytest.mark.parametrize("started", [True, False], ids=["training started", "before training"])
@pytest.mark.parametrize(
    "stop, status, tags",
    [
        (KeyboardInterrupt(), "KILLED", set()),
        (TimeLimit("SLURM job 7 reached its time limit"), "KILLED", {"end_reason"}),
        (RuntimeError("boom"), "FAILED", {"error"}),
    ],
    ids=["ctrl-c", "time limit", "crash"],
)
def test_a_run_stopped_before_the_caller_waited_for_it_still_ends_with_its_status(
    store, started, stop, status, tags
):
    """Stopped before its first epoch's end, the run (created then, if it was not yet) ends
    as it did when it was created first: KILLED or FAILED, with why."""
    experiment_id = prepare(store, "lab")
    opening = OpeningRun(experiment_id, "stopped", {})
    with pytest.raises(type(stop)), opening_run(opening) as run:
        if started:
            run.start()
        raise stop
    (stored,) = runs_of(store)
    assert stored.info.status == status
    assert tags <= set(stored.data.tags)
    if status == "FAILED":
        assert stored.data.tags["error"] == "RuntimeError: boom"
    if "end_reason" in tags:
        assert stored.data.tags["end_reason"] == "time limit: SLURM job 7 reached its time limit"
    assert mlflow.active_run() is None


def test_first_records_that_fail_end_the_created_run_failed_and_say_so(store):
    experiment_id = prepare(store, "lab")

    def full_disk() -> None:
        raise StoreFault("the tracking store failed: no space left on device")

    opening = OpeningRun(experiment_id, "disk", {}, first=full_disk)
    with pytest.raises(StoreFault, match="no space left"), opening_run(opening) as run:
        run.wait()
    (stored,) = runs_of(store)
    assert stored.info.status == "FAILED"
    assert mlflow.active_run() is None

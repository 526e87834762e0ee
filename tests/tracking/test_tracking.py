from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from support import free_port

from src.common.errors import Terminated, UserError
from src.common.paths import PROJECT_ROOT
from src.tracking.lifecycle import tracked_run
from src.tracking.records import log_config, log_dataset, log_epoch, log_image, run_tags
from src.tracking.store import prepare, resolve_store


def test_local_store_is_sqlite_with_artifacts_beside_it(tmp_path):
    store = resolve_store(str(tmp_path / "store"))
    assert store.tracking_uri == f"sqlite:///{tmp_path}/store/mlflow.db"
    assert store.artifact_root == (tmp_path / "store" / "artifacts").as_uri()
    assert store.run_link("3", "abc") == (
        f"make ui STORE={tmp_path / 'store'}, then "
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    project_store = resolve_store(str(PROJECT_ROOT / "mlruns"))
    assert project_store.run_link("3", "abc").startswith("make ui, then http://127.0.0.1:5000/")


def test_a_uri_replaces_the_local_store(tmp_path):
    store = resolve_store(str(tmp_path), uri="http://127.0.0.1:5001")
    assert (store.tracking_uri, store.artifact_root) == ("http://127.0.0.1:5001", None)
    assert store.run_link("3", "abc") == (
        "http://127.0.0.1:5001/#/experiments/3/runs/abc?workflowType=machine_learning"
    )


def test_prepare_creates_the_experiment_once_with_artifacts_in_the_store(tmp_path):
    store = resolve_store(str(tmp_path / "store"))
    experiment_id = prepare(store, "lab")
    assert prepare(store, "lab") == experiment_id
    experiment = MlflowClient(store.tracking_uri).get_experiment(experiment_id)
    assert experiment.artifact_location == store.artifact_root
    assert (tmp_path / "store" / "mlflow.db").is_file()


def test_a_store_that_cannot_be_created_is_a_user_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot create the tracking store folder"):
        prepare(resolve_store(str(blocker / "store")), "lab")


def test_an_unreachable_server_fails_fast_in_one_line(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        prepare(resolve_store(str(tmp_path), uri=uri), "lab")
    assert time.monotonic() - started < 30
    assert str(error.value).startswith(f"cannot use the tracking store {uri}")
    assert "\n" not in str(error.value)


@pytest.fixture
def experiment(tmp_path):
    store = resolve_store(str(tmp_path / "store"))
    return MlflowClient(store.tracking_uri), prepare(store, "lab")


def only_run(client, experiment_id):
    (run,) = client.search_runs([experiment_id])
    return run


def test_run_ends_finished(experiment):
    client, experiment_id = experiment
    with tracked_run(experiment_id, "ok", {"analyzer": "gradient"}) as run_id:
        log_epoch(1, {"val_accuracy": 0.5})
    run = only_run(client, experiment_id)
    assert (run.info.run_id, run.info.status, run.info.run_name) == (run_id, "FINISHED", "ok")
    assert run.data.tags["analyzer"] == "gradient"
    assert mlflow.active_run() is None


def raise_error():
    raise ValueError("boom")


def press_ctrl_c():
    raise KeyboardInterrupt


def get_sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler interrupts this


@pytest.mark.parametrize(
    "fault, status",
    [(raise_error, "FAILED"), (press_ctrl_c, "KILLED"), (get_sigterm, "KILLED")],
)
def test_run_never_stays_running(experiment, fault, status):
    client, experiment_id = experiment
    handler_before = signal.getsignal(signal.SIGTERM)
    expected = (ValueError, KeyboardInterrupt, Terminated)
    with pytest.raises(expected), tracked_run(experiment_id, "doomed", {}):
        fault()
    run = only_run(client, experiment_id)
    assert run.info.status == status
    assert signal.getsignal(signal.SIGTERM) is handler_before
    # Why a run FAILED is on it, in one line; a KILLED run was stopped, not broken.
    assert run.data.tags.get("error") == ("ValueError: boom" if status == "FAILED" else None)


def test_config_is_logged_as_dotted_params_and_yaml(experiment):
    client, experiment_id = experiment
    config = {
        "train": {"epochs": 5, "optimizer": "adam"},
        "model": {"dense_units": [64]},
        "seed": 0,
    }
    with tracked_run(experiment_id, "cfg", {}) as run_id:
        log_config(config)
    run = client.get_run(run_id)
    assert run.data.params == {
        "train.epochs": "5",
        "train.optimizer": "adam",
        "model.dense_units": "[64]",
        "seed": "0",
    }
    path = client.download_artifacts(run_id, "config.yaml")
    assert "epochs: 5" in Path(path).read_text()


def test_tags_carry_versions_from_package_metadata():
    tags = run_tags("gradient", "digits", 1, 3)
    assert tags["version.innvestigate"] == "2.1.2"  # not innvestigate.__version__, which says 2.0.1
    assert tags["version.tensorflow"].startswith("2.14")
    assert {"git_commit", "git_dirty", "analyzer", "dataset", "seed", "epochs"} <= set(tags)


def test_the_data_is_a_dataset_input_and_the_heatmaps_an_image_per_step(experiment, tmp_path):
    import numpy as np

    client, experiment_id = experiment
    images, labels = np.zeros((4, 8, 8, 1), np.float32), np.arange(4)
    sources = {
        "url": "https://example.org/mnist.npz",
        "path": str(tmp_path),
        "loader": "scikit-learn load_digits (resized to 28x28)",
    }
    found = {}
    for name, source in sources.items():
        with tracked_run(experiment_id, name, {}) as run_id:
            log_dataset(name, "ca3ab2a37f84", source, images, labels, "training")
            log_image("heatmaps", np.zeros((6, 6, 3), np.uint8), step=5)
        (entry,) = client.get_run(run_id).inputs.dataset_inputs
        found[name] = (entry.dataset.name, entry.dataset.digest, entry.dataset.source_type)
        artifacts = [a.path for a in client.list_artifacts(run_id, "images")]
        assert any(path.startswith("images/heatmaps+step+5+") for path in artifacts), artifacts
    assert found == {
        "url": ("url", "ca3ab2a37f84", "http"),
        "path": ("path", "ca3ab2a37f84", "local"),
        "loader": ("loader", "ca3ab2a37f84", "code"),
    }


def test_a_dataset_another_job_inserted_meanwhile_is_linked_not_a_failed_run(
    experiment, monkeypatch
):
    """Two jobs of a sweep logging the same data at once: MLflow's look-up and insert are not
    atomic, and the second insert breaks the unique key (a SLURM job failed so in CI). The
    dataset exists then: logging again links it. Any other error is the run's."""
    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException

    client, experiment_id = experiment
    real, calls = mlflow.log_input, []
    clash = (
        "BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: "
        "datasets.experiment_id, datasets.name, datasets.digest"
    )

    def log_input(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException(clash)
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", log_input)
    images, labels = np.zeros((4, 8, 8, 1), np.float32), np.arange(4)
    with tracked_run(experiment_id, "raced", {}) as run_id:
        log_dataset("digits", "ca3ab2a37f84", "scikit-learn", images, labels, "training")
    assert len(calls) == 2
    (entry,) = client.get_run(run_id).inputs.dataset_inputs
    assert entry.dataset.digest == "ca3ab2a37f84"

    def broken(*args, **kwargs):
        raise MlflowException("BAD_REQUEST: no such experiment")

    monkeypatch.setattr(mlflow, "log_input", broken)
    with (
        pytest.raises(MlflowException, match="no such experiment"),
        tracked_run(experiment_id, "broken", {}),
    ):
        log_dataset("digits", "ca3ab2a37f84", "scikit-learn", images, labels, "training")

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from src.model_cache import ModelCache, entry_key, fingerprint
from src.training import TrainingResult

DATASET = {
    "name": "digits",
    "train_size": 300,
    "test_size": None,
    "path": None,
    "class_names": ["0"],
}
MODEL = {"name": "cnn", "dense_units": [64]}
TRAIN = {"epochs": 1, "batch_size": 64, "reuse": True, "cache_dir": "/somewhere"}
TRAINING = TrainingResult(
    history={"train_loss": [1.0, 0.5]}, train_time_s=2.0, test_loss=0.4, test_accuracy=0.9
)


class WeightsFile:
    """Stands in for a Keras model: the cache only calls save_weights on it."""

    def __init__(self, content: str = "weights") -> None:
        self.content = content

    def save_weights(self, path: str) -> None:
        Path(path).write_text(self.content)


def test_fingerprint_depends_on_what_decides_the_weights_only():
    key = fingerprint(DATASET, "sha", MODEL, TRAIN, seed=0, threads=2)
    assert key == fingerprint(
        {**DATASET, "class_names": ["zero"]}, "sha", MODEL, TRAIN, seed=0, threads=2
    )
    assert key == fingerprint(
        DATASET, "sha", MODEL, {**TRAIN, "reuse": False, "cache_dir": "/x"}, seed=0, threads=2
    )
    assert key != fingerprint(DATASET, "sha", MODEL, TRAIN, seed=1, threads=2)
    assert key != fingerprint(DATASET, "other data", MODEL, TRAIN, seed=0, threads=2)
    assert key != fingerprint(
        {**DATASET, "train_size": 301}, "sha", MODEL, TRAIN, seed=0, threads=2
    )
    assert key != fingerprint(
        DATASET, "sha", {**MODEL, "dense_units": [32]}, TRAIN, seed=0, threads=2
    )
    assert key != fingerprint(DATASET, "sha", MODEL, {**TRAIN, "epochs": 2}, seed=0, threads=2)
    # TensorFlow's intra-op threads change the rounding, hence the weights.
    assert key != fingerprint(DATASET, "sha", MODEL, TRAIN, seed=0, threads=1)


def test_each_tracking_store_has_its_own_entry_of_a_model():
    # An entry names the run that trained the model, which only its own store has.
    local, server = "sqlite:////p/mlruns/mlflow.db", "http://127.0.0.1:5000"
    assert entry_key("abc", local) == entry_key("abc", local)
    assert entry_key("abc", local) != entry_key("abc", server)
    assert entry_key("abc", local).startswith("abc-")


def test_store_then_load_round_trips(tmp_path):
    cache = ModelCache(tmp_path)
    assert cache.load("k") is None
    with cache.claim("k"):
        cache.store("k", WeightsFile(), TRAINING, run_id="run1", model_uri="models:/m-1")
    cached = cache.load("k")
    assert cached.training == TRAINING
    assert (cached.trained_by_run, cached.model_uri) == ("run1", "models:/m-1")
    assert cached.weights.read_text() == "weights"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_an_unreadable_entry_is_a_miss_with_a_warning(tmp_path, caplog):
    cache = ModelCache(tmp_path)
    cache.store("k", WeightsFile(), TRAINING, run_id="run1", model_uri="m")
    (tmp_path / "k" / "meta.json").write_text("{ truncated")
    assert cache.load("k") is None
    assert "cannot be read" in caplog.text
    cache.store("k", WeightsFile("new"), TRAINING, run_id="run2", model_uri="m")  # replaces it
    assert cache.load("k").trained_by_run == "run2"


def test_missing_weights_is_a_miss(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", WeightsFile(), TRAINING, run_id="run1", model_uri="m")
    (tmp_path / "k" / "weights.h5").unlink()
    assert cache.load("k") is None


def _train_or_reuse(folder: str, log: str) -> None:
    cache = ModelCache(folder)
    with cache.claim("shared"):
        if cache.load("shared") is None:
            with open(log, "a") as stream:
                stream.write("trained\n")
            time.sleep(1.0)  # a slow training, during which the other process must wait
            cache.store("shared", WeightsFile(), TRAINING, run_id="r", model_uri="m")


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_jobs_train_a_model_once(tmp_path, workers):
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_train_or_reuse, args=(str(tmp_path / "cache"), str(log)))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert log.read_text() == "trained\n"
    assert (
        json.loads((tmp_path / "cache" / "shared" / "meta.json").read_text())["trained_by_run"]
        == "r"
    )

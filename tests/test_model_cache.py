from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from src.model_cache import ModelCache, entry_key, fingerprint, model_fingerprint
from src.training import TrainingResult, TrainingState

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
    # Not the epoch count: the first k epochs of a longer training are the k-epoch model.
    assert key == fingerprint(DATASET, "sha", MODEL, {**TRAIN, "epochs": 2}, seed=0, threads=2)
    assert model_fingerprint(key, 1) != model_fingerprint(key, 2)
    assert key != fingerprint(
        DATASET, "sha", MODEL, {**TRAIN, "learning_rate": 0.1}, seed=0, threads=2
    )
    # TensorFlow's intra-op threads change the rounding, hence the weights.
    assert key != fingerprint(DATASET, "sha", MODEL, TRAIN, seed=0, threads=1)


def test_each_tracking_store_has_its_own_entry_of_a_model():
    # An entry names the run that trained the model, which only its own store has.
    local, server = "sqlite:////p/mlruns/mlflow.db", "http://127.0.0.1:5000"
    assert entry_key("abc", local) == entry_key("abc", local)
    assert entry_key("abc", local) != entry_key("abc", server)
    assert entry_key("abc", local).startswith("abc-")


STATE = TrainingState(
    [np.array(7, dtype=np.int64), np.arange(6, dtype=np.float32).reshape(2, 3)],
    np.random.RandomState(5).get_state(),
)


def test_store_then_load_round_trips(tmp_path):
    cache = ModelCache(tmp_path)
    assert cache.load("k", 2) is None
    with cache.claim("k"):
        cache.store("k", 2, WeightsFile(), TRAINING, run_id="run1", model_uri="models:/m-1")
    cached = cache.load("k", 2)
    assert cached.training == TRAINING and cached.epochs == 2
    assert (cached.trained_by_run, cached.model_uri) == ("run1", "models:/m-1")
    assert cached.weights.read_text() == "weights"
    assert cache.load("k", 1) is None
    assert not list(tmp_path.glob("**/*.tmp"))


def test_a_snapshots_training_state_round_trips_exactly(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 1, WeightsFile(), TRAINING, run_id="run1", state=STATE)
    state = cache.load("k", 1).state()
    assert [w.tobytes() for w in state.optimizer_weights] == [
        w.tobytes() for w in STATE.optimizer_weights
    ]
    assert [w.dtype for w in state.optimizer_weights] == [np.int64, np.float32]
    restored = np.random.RandomState()
    restored.set_state(state.random_state)
    assert np.array_equal(restored.random(8), np.random.RandomState(5).random(8))
    # A snapshot stored without state (a model to reuse, not to continue) has none.
    cache.store("k", 2, WeightsFile(), TRAINING, run_id="run1")
    assert cache.load("k", 2).state() is None


def test_a_training_continues_from_the_longest_shorter_snapshot_with_state(tmp_path):
    cache = ModelCache(tmp_path)
    assert cache.longest_prefix("k", below=5) is None
    for epochs in (1, 3, 7):
        cache.store("k", epochs, WeightsFile(f"e{epochs}"), TRAINING, run_id="r", state=STATE)
    cache.store("k", 4, WeightsFile("e4"), TRAINING, run_id="r")  # no state: not continuable
    assert cache.longest_prefix("k", below=5).epochs == 3
    assert cache.longest_prefix("k", below=3).epochs == 1
    assert cache.longest_prefix("k", below=1) is None
    assert cache.longest_prefix("k", below=100).epochs == 7
    assert cache.longest_prefix("k", below=100).weights.read_text() == "e7"
    # An unreadable snapshot is skipped for the next shorter one.
    (cache.snapshot_folder("k", 3) / "meta.json").write_text("{ truncated")
    assert cache.longest_prefix("k", below=5).epochs == 1


def test_the_logged_model_of_a_snapshot_is_noted_in_place(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, WeightsFile(), TRAINING, run_id="run1", state=STATE)
    assert cache.load("k", 2).model_uri == ""
    cache.set_model_uri("k", 2, "models:/m-9")
    assert cache.load("k", 2).model_uri == "models:/m-9"
    assert cache.load("k", 2).state() is not None
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_work_of_the_model_alone_is_computed_once_and_read_back_bit_for_bit(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, WeightsFile(), TRAINING, run_id="run1")
    calls = []

    def compute():
        calls.append(1)
        return np.array([[True, False], [False, True]])

    first, cached_first = cache.model_only("k", 2, "baseline seed 0", compute)
    second, cached_second = cache.model_only("k", 2, "baseline seed 0", compute)
    assert (cached_first, cached_second, len(calls)) == (False, True, 1)
    assert second.dtype == first.dtype and second.tobytes() == first.tobytes()
    # Another name (another seed, say) or another snapshot is other work.
    cache.model_only("k", 2, "baseline seed 1", compute)
    cache.store("k", 3, WeightsFile(), TRAINING, run_id="run1")
    cache.model_only("k", 3, "baseline seed 0", compute)
    assert len(calls) == 3
    # No snapshot (the model could not be cached): computed every time, nothing written.
    cache.model_only("other", 2, "baseline seed 0", compute)
    cache.model_only("other", 2, "baseline seed 0", compute)
    assert len(calls) == 5 and not (tmp_path / "other").exists()
    # A damaged file is computed again (and replaced).
    kept = sorted((cache.snapshot_folder("k", 2) / "model_only").glob("*.npy"))
    assert len(kept) == 2  # seed 0 and seed 1
    for path in kept:
        path.write_bytes(b"not numpy")
    value, cached = cache.model_only("k", 2, "baseline seed 0", compute)
    assert not cached and value.tobytes() == first.tobytes() and len(calls) == 6


def test_an_unreadable_entry_is_a_miss_with_a_warning(tmp_path, caplog):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, WeightsFile(), TRAINING, run_id="run1", model_uri="m")
    (cache.snapshot_folder("k", 2) / "meta.json").write_text("{ truncated")
    assert cache.load("k", 2) is None
    assert "cannot be read" in caplog.text
    cache.store("k", 2, WeightsFile("new"), TRAINING, run_id="run2", model_uri="m")  # replaces it
    assert cache.load("k", 2).trained_by_run == "run2"


def test_missing_weights_is_a_miss(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, WeightsFile(), TRAINING, run_id="run1", model_uri="m")
    (cache.snapshot_folder("k", 2) / "weights.h5").unlink()
    assert cache.load("k", 2) is None


def _train_or_reuse(folder: str, log: str) -> None:
    cache = ModelCache(folder)
    with cache.claim("shared"):
        if cache.load("shared", 2) is None:
            with open(log, "a") as stream:
                stream.write("trained\n")
            time.sleep(1.0)  # a slow training, during which the other process must wait
            cache.store("shared", 2, WeightsFile(), TRAINING, run_id="r", model_uri="m")


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
        json.loads((tmp_path / "cache" / "shared" / "epoch-0002" / "meta.json").read_text())[
            "trained_by_run"
        ]
        == "r"
    )

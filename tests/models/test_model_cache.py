from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from support import client_for, composed, store_dir

from src.experiment import run_experiment
from src.models.cache import (
    ModelCache,
    accuracy_mismatch,
    entry_key,
    fingerprint,
    model_fingerprint,
)
from src.models.snapshots import Damaged, meta_sha256, verified, with_own_sum
from src.models.training import TrainingResult, TrainingState, weights_image

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


def config(seed: int = 0, **sections) -> dict:
    parts = {"dataset": DATASET, "model": MODEL, "train": TRAIN}
    return {
        "seed": seed,
        "threads": None,
        **{k: {**v, **sections.get(k, {})} for k, v in parts.items()},
    }


def test_fingerprint_depends_on_what_decides_the_weights_only():
    key = fingerprint(config(), "sha", threads=2)
    # The class names' count is the output layer's size: they are part of the training.
    assert key != fingerprint(config(dataset={"class_names": ["0", "1"]}), "sha", threads=2)
    assert key == fingerprint(config(dataset={"path": "/moved/there"}), "sha", threads=2)
    assert key == fingerprint(config(train={"reuse": False, "cache_dir": "/x"}), "sha", threads=2)
    assert key == fingerprint({**config(), "analyzer": {"name": "x"}}, "sha", threads=2)
    assert key != fingerprint(config(seed=1), "sha", threads=2)
    assert key != fingerprint(config(), "other data", threads=2)
    assert key != fingerprint(config(dataset={"train_size": 301}), "sha", threads=2)
    assert key != fingerprint(config(model={"dense_units": [32]}), "sha", threads=2)
    # Not the epoch count: the first k epochs of a longer training are the k-epoch model.
    assert key == fingerprint(config(train={"epochs": 2}), "sha", threads=2)
    assert model_fingerprint(key, 1) != model_fingerprint(key, 2)
    assert key != fingerprint(config(train={"learning_rate": 0.1}), "sha", threads=2)
    # TensorFlow's intra-op threads change the rounding, hence the weights; what `threads` asked
    # for counts only through them.
    assert key != fingerprint(config(), "sha", threads=1)
    assert key == fingerprint({**config(), "threads": 2}, "sha", threads=2)


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


def test_a_weights_image_loads_as_the_file_keras_writes(tmp_path):
    """The snapshot's weights, made in memory, load into a fresh model bit for bit, with the
    same layer names and order in the file as ``save_weights`` gives."""
    import h5py

    from src.common.tf_runtime import tensorflow

    tf = tensorflow()

    def model():
        return tf.keras.Sequential(
            [
                tf.keras.layers.Conv2D(3, 3, input_shape=(6, 6, 1)),
                tf.keras.layers.Flatten(),
                tf.keras.layers.Dense(4),
            ]
        )

    source = model()
    (tmp_path / "image.h5").write_bytes(weights_image(source))
    source.save_weights(str(tmp_path / "keras.h5"))
    loaded = model()
    loaded.load_weights(str(tmp_path / "image.h5"))
    assert [w.tobytes() for w in loaded.get_weights()] == [
        w.tobytes() for w in source.get_weights()
    ]
    with h5py.File(tmp_path / "image.h5") as image, h5py.File(tmp_path / "keras.h5") as keras:
        assert list(image.attrs["layer_names"]) == list(keras.attrs["layer_names"])
        names, keras_names = [], []
        image.visit(names.append)
        keras.visit(keras_names.append)
        assert names == keras_names and len(names) > 4


def test_store_then_load_round_trips(tmp_path):
    cache = ModelCache(tmp_path)
    assert cache.load("k", 2) is None
    with cache.claim("k"):
        cache.store("k", 2, b"weights", TRAINING, run_id="run1", model_uri="models:/m-1")
    cached = cache.load("k", 2)
    assert cached.training == TRAINING and cached.epochs == 2
    assert (cached.trained_by_run, cached.model_uri) == ("run1", "models:/m-1")
    assert cached.weights.read_text() == "weights"
    assert cache.load("k", 1) is None
    assert not list(tmp_path.glob("**/*.tmp"))


def test_a_snapshots_training_state_round_trips_exactly(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 1, b"weights", TRAINING, run_id="run1", state=STATE)
    state = cache.load("k", 1).state()
    assert [w.tobytes() for w in state.optimizer_weights] == [
        w.tobytes() for w in STATE.optimizer_weights
    ]
    assert [w.dtype for w in state.optimizer_weights] == [np.int64, np.float32]
    restored = np.random.RandomState()
    restored.set_state(state.random_state)
    assert np.array_equal(restored.random(8), np.random.RandomState(5).random(8))
    # A snapshot stored without state (a model to reuse, not to continue) has none.
    cache.store("k", 2, b"weights", TRAINING, run_id="run1")
    assert cache.load("k", 2).state() is None


def test_a_training_continues_from_the_longest_shorter_snapshot_with_state(tmp_path):
    cache = ModelCache(tmp_path)
    assert cache.longest_prefix("k", below=5) is None
    for epochs in (1, 3, 7):
        cache.store("k", epochs, f"e{epochs}".encode(), TRAINING, run_id="r", state=STATE)
    cache.store("k", 4, b"e4", TRAINING, run_id="r")  # no state: not continuable
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
    cache.store("k", 2, b"weights", TRAINING, run_id="run1", state=STATE)
    assert cache.load("k", 2).model_uri == ""
    cache.set_model_uri("k", 2, "models:/m-9")
    assert cache.load("k", 2).model_uri == "models:/m-9"
    assert cache.load("k", 2).state() is not None
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_work_of_the_model_alone_is_computed_once_and_read_back_bit_for_bit(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, b"weights", TRAINING, run_id="run1")
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
    cache.store("k", 3, b"weights", TRAINING, run_id="run1")
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
    cache.store("k", 2, b"weights", TRAINING, run_id="run1", model_uri="m")
    (cache.snapshot_folder("k", 2) / "meta.json").write_text("{ truncated")
    assert cache.load("k", 2) is None
    assert "cannot be read" in caplog.text
    cache.store("k", 2, b"new", TRAINING, run_id="run2", model_uri="m")  # replaces it
    assert cache.load("k", 2).trained_by_run == "run2"


def test_missing_weights_is_a_miss(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, b"weights", TRAINING, run_id="run1", model_uri="m")
    (cache.snapshot_folder("k", 2) / "weights.h5").unlink()
    assert cache.load("k", 2) is None


def test_a_snapshot_records_the_sha256_of_each_file_and_of_its_own_meta(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 1, b"abc", TRAINING, run_id="r", state=STATE)
    folder = cache.snapshot_folder("k", 1)
    meta = json.loads((folder / "meta.json").read_text())
    # sha256("abc"), the test vector of FIPS 180-2.
    assert meta["sha256"]["weights.h5"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert (
        meta["sha256"]["state.npz"]
        == hashlib.sha256((folder / "state.npz").read_bytes()).hexdigest()
    )
    # meta.json's own: its content as canonical JSON, without its own entry.
    content = {**meta, "sha256": {k: v for k, v in meta["sha256"].items() if k != "meta.json"}}
    assert (
        meta["sha256"]["meta.json"]
        == hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    )
    assert meta_sha256(meta) == meta["sha256"]["meta.json"]
    assert meta_sha256({"a": 1}) == hashlib.sha256(b'{"a": 1, "sha256": {}}').hexdigest()
    assert verified(folder, ("weights.h5", "state.npz")) == meta


def damage_inside(path: Path, size: int = 4096) -> None:
    """Random bytes over ``size`` bytes in the middle of the file, its length unchanged."""
    content = bytearray(path.read_bytes())
    middle = max(0, len(content) // 2 - size // 2)
    content[middle : middle + size] = np.random.default_rng(0).bytes(size)[: len(content)]
    path.write_bytes(bytes(content))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def rewrite_meta(path: Path, **training) -> None:
    """Change values of the recorded training, as an editor would (its sum left as it was)."""
    meta = json.loads(path.read_text())
    meta["training"].update(training)
    path.write_text(json.dumps(meta, indent=1))


def strip_sums(path: Path) -> None:
    """meta.json as snapshots were written before they recorded sums."""
    meta = json.loads(path.read_text())
    del meta["sha256"]
    path.write_text(json.dumps(meta, indent=1))


@pytest.mark.parametrize(
    ("name", "damage", "what"),
    [
        ("weights.h5", damage_inside, "is damaged (its SHA-256 differs"),
        ("weights.h5", Path.unlink, "is missing"),
        ("state.npz", truncate, "is damaged (its SHA-256 differs"),
        ("state.npz", Path.unlink, "is missing"),
        ("meta.json", lambda path: rewrite_meta(path, test_accuracy=0.99), "was changed after"),
        ("meta.json", truncate, "cannot be read (JSONDecodeError"),
        ("meta.json", Path.unlink, "is missing"),
        ("meta.json", strip_sums, "records no SHA-256 sums"),
    ],
)
def test_a_file_that_fails_its_check_is_named_and_the_snapshot_not_used(
    tmp_path, name, damage, what
):
    cache = ModelCache(tmp_path)
    cache.store("k", 1, b"x" * 10_000, TRAINING, run_id="r", state=STATE)
    folder = cache.snapshot_folder("k", 1)
    damage(folder / name)
    with pytest.raises(Damaged) as raised:
        verified(folder, ("weights.h5", "state.npz"))
    assert str(raised.value).startswith(f"{folder / name} {what}")


def test_a_reuse_checks_the_files_it_uses_a_continuation_its_state_too(tmp_path, caplog):
    cache = ModelCache(tmp_path)
    for epochs in (1, 2):
        cache.store("k", epochs, f"e{epochs}".encode(), TRAINING, run_id="r", state=STATE)
    truncate(cache.snapshot_folder("k", 2) / "state.npz")
    assert cache.load("k", 2).weights.read_text() == "e2"  # a reuse needs no training state
    assert not caplog.records
    # A continuation passes over it with one line naming the file, to the next good one.
    assert [prefix.epochs for prefix in cache.prefixes("k", below=3)] == [1]
    (warning,) = caplog.records
    assert str(cache.snapshot_folder("k", 2) / "state.npz") in warning.getMessage()
    # The training's new snapshot replaces the damaged one.
    cache.store("k", 2, b"new", TRAINING, run_id="r2", state=STATE)
    assert [prefix.epochs for prefix in cache.prefixes("k", below=3)] == [2, 1]
    assert not list(tmp_path.glob("**/*.tmp"))


def test_snapshots_without_sums_are_trained_again_with_one_line_for_the_entry(tmp_path, caplog):
    cache = ModelCache(tmp_path)
    for epochs in (1, 2, 3):
        cache.store("k", epochs, b"weights", TRAINING, run_id="r", state=STATE)
        strip_sums(cache.snapshot_folder("k", epochs) / "meta.json")
    assert cache.load("k", 3) is None
    assert cache.longest_prefix("k", below=3) is None
    (warning,) = caplog.records
    assert "written by an older version" in warning.getMessage()


def test_the_logged_model_is_noted_with_a_new_sum_but_a_changed_meta_is_not_blessed(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store("k", 2, b"weights", TRAINING, run_id="run1", state=STATE)
    cache.set_model_uri("k", 2, "models:/m-9")
    assert cache.load("k", 2, continuing=True).model_uri == "models:/m-9"
    rewrite_meta(cache.snapshot_folder("k", 2) / "meta.json", test_accuracy=0.5)
    cache.set_model_uri("k", 2, "models:/m-10")
    assert cache.load("k", 2) is None


def test_an_accuracy_differs_from_the_recorded_one_by_half_an_image_or_more():
    # 359 test images: 107/359 = 0.298050..., one image more 108/359 = 0.300835...
    assert accuracy_mismatch(107 / 359, 107 / 359, 359) == ""
    assert accuracy_mismatch(0.2980501353740692, 107 / 359, 359) == ""  # float32 rounding
    assert accuracy_mismatch(None, 0.5, 359) == ""  # a training that did not validate
    assert accuracy_mismatch(107 / 359, 108 / 359, 359) == (
        "recorded 0.2981 (107/359), measured 0.3008 (108/359)"
    )
    assert accuracy_mismatch(0.7883, 0.1, 10_000) == (
        "recorded 0.7883 (7883/10000), measured 0.1000 (1000/10000)"
    )
    assert accuracy_mismatch(float("nan"), 0.1, 10) == "recorded nan, measured 0.1000 (1/10)"


def _train_or_reuse(folder: str, log: str) -> None:
    cache = ModelCache(folder)
    with cache.claim("shared"):
        if cache.load("shared", 2) is None:
            with open(log, "a") as stream:
                stream.write("trained\n")
            time.sleep(1.0)  # a slow training, during which the other process must wait
            cache.store("shared", 2, b"weights", TRAINING, run_id="r", model_uri="m")


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


# --- Whole runs in this process: a damaged snapshot is trained again, a reused model's
# --- accuracy measured.

RUN = (
    "dataset=digits",
    "dataset.train_size=200",
    "explain.n_images=4",
    "evaluate=off",
    "analyzer=gradient",
    "seed=3",
)


@dataclass(frozen=True)
class Trained:
    folder: Path
    entry: Path  # the cache entry of the training, snapshots of epochs 1 to 3
    pristine: Path  # a copy of it as the training wrote it
    first_run: str  # the run that trained it
    accuracy: dict[int, float]  # test accuracy of the 2- and 3-epoch models
    trained_metrics: dict[str, float]  # the first run's

    def run(self, epochs: int):
        """Restore nothing; run once more with ``epochs``: the new run's record."""
        run_experiment(composed(self.folder, f"train.epochs={epochs}", *RUN))
        client = client_for(self.folder)
        experiments = [e.experiment_id for e in client.search_experiments()]
        return client.search_runs(experiments, order_by=["attributes.start_time DESC"])[0]

    def restore(self) -> None:
        shutil.rmtree(self.entry)
        shutil.copytree(self.pristine, self.entry)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[Trained]:
    """A store whose cache holds a 3-epoch training (its first run), and the accuracies of
    its 3- and 2-epoch models (a second run reused the latter)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    folder = tmp_path_factory.mktemp("snapshots")
    made = Trained(folder, folder, folder, "", {}, {})
    first = made.run(3)
    (entry,) = (store_dir(folder) / "model_cache").glob("*-*/")
    shutil.copytree(entry, folder / "pristine")
    second = made.run(2)
    assert second.data.tags["model_reused"] == "true"
    yield Trained(
        folder,
        entry,
        folder / "pristine",
        first.info.run_id,
        {epochs: run.data.metrics["test_accuracy"] for epochs, run in ((3, first), (2, second))},
        first.data.metrics,
    )
    mlflow.set_tracking_uri(uri)


def project_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("name", "damage", "what", "epochs"),
    [
        # The case: 4 KiB of random bytes inside; it was reused, heatmaps NaN.
        ("weights.h5", damage_inside, "is damaged", 2),
        ("weights.h5", Path.unlink, "is missing", 2),
        ("meta.json", lambda path: rewrite_meta(path, test_accuracy=0.99), "was changed", 2),
        # The case: every job that continued from it died of BadZipFile.
        ("state.npz", truncate, "is damaged", 3),
    ],
)
def test_a_damaged_snapshot_is_named_and_trained_again_from_the_longest_good_one(
    trained, caplog, name, damage, what, epochs
):
    trained.restore()
    if epochs == 3:  # the 3-epoch model is not there: the training continues from epoch 2
        shutil.rmtree(trained.entry / "epoch-0003")
    damage(trained.entry / "epoch-0002" / name)
    caplog.clear()
    run = trained.run(epochs)
    (warning,) = project_warnings(caplog)
    assert f"{trained.entry / 'epoch-0002' / name} {what}" in warning
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_reused"] == "false"
    assert run.data.tags["continued_from"] == f"epoch 1 of run {trained.first_run}"
    assert run.data.metrics["test_accuracy"] == trained.accuracy[epochs]
    assert "model_accuracy_mismatch" not in run.data.tags
    # Replaced by the new training's snapshot, which a next run reuses without a word.
    caplog.clear()
    cache = ModelCache(trained.entry.parent)
    assert cache.load(trained.entry.name, 2, continuing=True).trained_by_run == run.info.run_id
    assert not project_warnings(caplog)


def test_a_reused_models_accuracy_is_measured_and_a_difference_tagged(trained, caplog):
    """A sound snapshot (its sums right) whose recorded accuracy is not what the model gets
    here (as one written on another machine could be)."""
    trained.restore()
    meta = trained.entry / "epoch-0002" / "meta.json"
    rewrite_meta(meta, test_accuracy=0.99)
    meta.write_text(with_own_sum({**json.loads(meta.read_text())}))
    caplog.clear()
    run = trained.run(2)
    measured = trained.accuracy[2]
    mismatch = accuracy_mismatch(0.99, measured, 359)
    assert mismatch.startswith("recorded 0.9900 (355/359), measured ")
    (warning,) = project_warnings(caplog)
    assert f"{meta.parent} gets another test accuracy than when it was trained" in warning
    assert warning.endswith(mismatch)
    assert run.data.tags["model_reused"] == "true"
    assert run.data.tags["model_accuracy_mismatch"] == mismatch
    assert run.data.metrics["test_accuracy"] == measured  # measured, not copied


def test_a_reused_model_measures_the_test_scores_of_the_run_that_trained_it(trained):
    """Found: the training's test loss was its last epoch's validation, which Keras's fit
    sums otherwise than evaluate: a reused model's measured loss differed in the last bits."""
    trained.restore()
    run = trained.run(3)
    assert run.data.tags["model_reused"] == "true"
    for key in ("test_loss", "test_accuracy"):
        assert run.data.metrics[key].hex() == trained.trained_metrics[key].hex()

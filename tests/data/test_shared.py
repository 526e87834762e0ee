"""The run's data read once per process, started in a background thread (src/data/shared.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from src.data import DataError, shared


@pytest.fixture(autouse=True)
def nothing_loaded():
    """Each test starts with no data loaded or being loaded, and leaves none."""
    shared._loaded.clear()
    shared._started.clear()
    yield
    shared._loaded.clear()
    shared._started.clear()


@pytest.fixture
def spec(tmp_path):
    """An MNIST-layout npz of 20 + 10 images of two classes, as a resolved dataset config."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        y_train=np.arange(20) % 2,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10) % 2,
    )
    return {"_target_": "src.data.load_mnist", "name": "mnist", "path": str(path)}


def _loads_in(monkeypatch, fail_first: bool = False):
    """Record the thread of each load; a load in the background waits for ``release``."""
    real = shared.load_configured
    threads: list[str] = []
    release = threading.Event()

    def loading(spec):
        threads.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            assert release.wait(10)
        if fail_first and len(threads) == 1:
            raise DataError("the first read failed")
        return real(spec)

    monkeypatch.setattr(shared, "load_configured", loading)
    return threads, release


def _until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_data_is_read_beside_the_caller_and_handed_to_the_run_once(monkeypatch, spec):
    threads, release = _loads_in(monkeypatch)
    shared.start_loading(spec)
    _until(lambda: threads)
    # start_loading returned while the read waits in its own thread: the caller goes on.
    assert threads == ["data"]
    shared.start_loading(dict(spec))  # the same config again: nothing new is started
    release.set()
    data = shared.load_shared(spec)
    assert threads == ["data"]  # read once, in the background
    assert data.train_images.shape == (20, 28, 28, 1)
    assert float(data.train_images.max()) <= 1.0
    assert not data.train_images.flags.writeable and not data.test_labels.flags.writeable
    assert shared.load_shared(dict(reversed(spec.items()))) is data  # equal configs, one load
    shared.start_loading(spec)  # loaded already: nothing is started
    assert threads == ["data"] and not shared._started


def test_a_read_that_failed_in_the_background_is_done_again_and_raises_in_the_caller(
    monkeypatch, spec
):
    threads, release = _loads_in(monkeypatch, fail_first=True)
    release.set()
    shared.start_loading(spec)
    data = shared.load_shared(spec)  # the background read failed; the run's own one did not
    assert threads == ["data", "MainThread"]
    assert data.test_images.shape == (10, 28, 28, 1)


def test_a_bad_dataset_is_reported_by_the_run_not_lost_in_the_thread(tmp_path):
    spec = {"_target_": "src.data.load_mnist", "name": "mnist", "path": str(tmp_path / "none")}
    shared.start_loading(spec)
    with pytest.raises(DataError, match="none"):
        shared.load_shared(spec)
    assert not shared._loaded


def test_another_config_is_loaded_anew(spec, tmp_path):
    first = shared.load_shared(spec)
    second = shared.load_shared({**spec, "test_size": 4})
    assert len(first.test_images) == 10 and len(second.test_images) == 4
    assert list(shared._loaded) == [shared._key({**spec, "test_size": 4})]  # one kept

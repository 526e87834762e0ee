"""A dataset config's data, loaded once per process and started early in the background.

The arrays are made read-only, so no job of a sweep that shares the process can change what the
next one sees. :func:`start_loading` reads them in a thread while the entry point imports MLflow
and TensorFlow: the reading is NumPy's and zlib's work, which releases the GIL (the casting to
float32 alone is 1.5 s of page faults on Fashion-MNIST), so it runs beside those imports, which
hold it, on the other core: the first training step about 1.5 s sooner (issue 30).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from src.data.datasets import Dataset
from src.data.loaders import load_configured

_loaded: dict[str, Dataset] = {}  # at most one: the last spec loaded
_started: dict[str, _Loading] = {}  # at most one: the spec of the run being set up


class _Loading(threading.Thread):
    """One load in a daemon thread (a process that exits early, on a bad override, does not
    wait for a download it no longer needs)."""

    def __init__(self, key: str) -> None:
        super().__init__(name="data", daemon=True)
        self.key = key
        self.data: Dataset | None = None

    def run(self) -> None:
        # A failure leaves ``data`` None: the run loads again, and raises the error there.
        with contextlib.suppress(BaseException):
            self.data = load_configured(json.loads(self.key))


def _key(spec: Mapping[str, Any]) -> str:
    """The config as canonical JSON: hashable, equal for equal configs."""
    return json.dumps(dict(spec), sort_keys=True)


def start_loading(spec: Mapping[str, Any]) -> None:
    """Begin loading what ``spec`` (a resolved ``dataset`` config) describes, in the
    background; :func:`load_shared` with the same spec then waits for it."""
    key = _key(spec)
    if key in _loaded or key in _started:
        return
    _started.clear()
    _started[key] = loading = _Loading(key)
    loading.start()


def load_shared(spec: Mapping[str, Any]) -> Dataset:
    """The data ``spec`` describes: what :func:`start_loading` read, else read now. A load
    that failed in the background is done again here, so its error (a ``DataError``, a bad
    argument) is raised in the caller, where a run's inputs are checked."""
    key = _key(spec)
    if key not in _loaded:
        loading = _started.pop(key, None)
        if loading is not None:
            loading.join()
        data = loading.data if loading is not None else None
        if data is None:
            data = load_configured(json.loads(key))
        for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
            array.flags.writeable = False
        _loaded.clear()
        _loaded[key] = data
    return _loaded[key]

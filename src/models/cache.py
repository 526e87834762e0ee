"""Train once, explain many times: trained weights cached by what determines them.

A training is determined by the data, the model and training configs (all but the epoch
count), the seed, the TensorFlow version and its intra-op thread count, not by the analyzer.
Its entry ``<cache_dir>/<fingerprint>-<store>/`` holds one snapshot per epoch trained,
``epoch-0003/``: the weights (``weights.h5``), what continuing needs besides them (the
optimizer's state and NumPy's random state, which orders Keras's batches: ``state.npz``),
the training curve so far (``meta.json``), and work done on the model alone (``model_only/``:
a score's baseline, the training figure). A model of N epochs is snapshot N; a job that needs
N epochs where only a shorter training exists continues from its last snapshot.

Each snapshot proves itself: ``meta.json`` records the SHA-256 of every file beside it and of
its own content, and a reuse or a continuation checks them first. A snapshot that fails (a
changed, missing or unreadable file; or one written before snapshots had checksums) is passed
over with one warning naming the file, and the training runs again from the longest good
snapshot, whose new snapshots replace the bad ones.

Snapshots are written to a temporary folder and renamed into place, so a reader never sees
half of one (a temporary folder a killed process left is removed after an hour). A file lock
per training (``filelock``, which works across processes) makes a second job that needs it
wait for the first to train it, saying so.

A snapshot's files and their checks are :mod:`src.models.snapshots`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from src.common import keys
from src.common.errors import UserError
from src.models.snapshots import (
    KEPT,
    META,
    STATE,
    SUMS,
    WEIGHTS,
    Damaged,
    Unverifiable,
    _has_state,
    _why,
    _write_atomically,
    file_sha256,
    verified,
    with_own_sum,
)
from src.models.training import TrainingResult, TrainingState

log = logging.getLogger(__name__)


STALE_STAGING_S = 3600  # a staging folder this old was left by a killed process
WAIT_NOTE_S = 60  # how often a job waiting for another's training says it still waits


def fingerprint(config: Mapping[str, Any], data_checksum: str, threads: int) -> str:
    """A short hash of everything that decides a training's weights and curve epoch by epoch:
    the keys of the resolved ``config`` whose role is training (:mod:`src.common.keys`; a config
    group it does not know counts), the data's checksum, and ``threads``, TensorFlow's intra-op
    threads, which change the rounding. Not the epoch count: the first k epochs of a longer
    training are the k-epoch model."""
    spec = {
        "config": keys.training_part(config),
        "data_sha256": data_checksum,
        "intra_op_threads": threads,
        "tensorflow": metadata.version("tensorflow"),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def model_fingerprint(training_fingerprint: str, epochs: int) -> str:
    """The model after ``epochs`` epochs of a training (the runs' ``model_fingerprint`` tag)."""
    return f"{training_fingerprint}.e{epochs}"


def entry_key(training_fingerprint: str, tracking_uri: str) -> str:
    """The cache entry of a training for one tracking store.

    An entry links to the run that trained the model and to its logged copy, which only that
    store holds; a run in another store (a server instead of the local SQLite file, say)
    trains and logs its own copy rather than pointing at runs its store does not have.
    """
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:8]
    return f"{training_fingerprint}-{store}"


@dataclass(frozen=True)
class CachedModel:
    epochs: int
    weights: Path
    training: TrainingResult
    trained_by_run: str  # the MLflow run that trained it
    model_uri: str  # where a run logged this model ("" while none has)
    folder: Path

    def state(self) -> TrainingState | None:
        """The optimizer's and the data order's state, or None (with a warning) if it
        cannot be read."""
        try:
            with np.load(self.folder / STATE, allow_pickle=False) as saved:
                count = int(saved["optimizer_count"])
                return TrainingState(
                    [saved[f"optimizer_{index}"] for index in range(count)],
                    (
                        str(saved["random_kind"]),
                        saved["random_keys"],
                        int(saved["random_pos"]),
                        int(saved["random_has_gauss"]),
                        float(saved["random_cached_gaussian"]),
                    ),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning(
                "warning: cached model %s cannot be read (%s): not continued from",
                self.folder / STATE,
                _why(error),
            )
            return None


def state_image(state: TrainingState) -> bytes:
    """The bytes of ``state.npz``, made in memory: ``np.savez`` into a file on a disk that
    fills up leaves its ``ZipFile`` open, whose destructor fails again and prints a traceback
    past any handler; from memory, the one disk write is Python's and raises once."""
    kind, keys, pos, has_gauss, cached_gaussian = state.random_state
    image = io.BytesIO()
    np.savez(
        image,
        optimizer_count=len(state.optimizer_weights),
        random_kind=kind,
        random_keys=keys,
        random_pos=pos,
        random_has_gauss=has_gauss,
        random_cached_gaussian=cached_gaussian,
        **{f"optimizer_{i}": w for i, w in enumerate(state.optimizer_weights)},
    )
    return image.getvalue()


class ModelCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._told_unverifiable: set[str] = set()  # entries already warned about
        self._refused: str | None = None  # why the file system refused a snapshot, if it did

    def check(self) -> None:
        """Raise UserError (before any run exists) if the cache folder cannot be created or
        written; remove staging folders older than an hour (a killed process's)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"train.cache_dir={self.folder}: cannot create it ({error.strerror})"
            ) from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise UserError(f"train.cache_dir={self.folder}: not writable")
        now = time.time()
        for staging in (*self.folder.glob(".*.tmp"), *self.folder.glob("*/.*.tmp")):
            with contextlib.suppress(OSError):
                if now - staging.stat().st_mtime > STALE_STAGING_S:
                    shutil.rmtree(staging)
                    log.info("removed %s, left half-written by a killed process", staging)

    @contextlib.contextmanager
    def claim(
        self, key: str, holder: str = "", work: str = "train the model this run reuses"
    ) -> Iterator[None]:
        """Hold the entry ``key`` exclusively: others needing it wait until it is trained, and
        say whom they wait for (``holder``: the run that trains it) and for what (``work``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.folder / f"{key}.lock")
        note = self.folder / f"{key}.holder"
        try:
            lock.acquire(timeout=0)
        except Timeout:
            started = time.monotonic()
            while True:
                holder_now = ""
                with contextlib.suppress(OSError):
                    holder_now = note.read_text().strip()
                waited = (time.monotonic() - started) / 60
                log.info(
                    "waiting for %s to %s%s",
                    holder_now or "another job",
                    work,
                    f" ({waited:.0f} min so far)" if waited >= 1 else "",
                )
                try:
                    lock.acquire(timeout=WAIT_NOTE_S)
                    break
                except Timeout:
                    continue
        try:
            with contextlib.suppress(OSError):
                note.write_text(
                    f"{holder or 'a run'} (pid {os.getpid()} on {socket.gethostname()})\n"
                )
            yield
        finally:
            lock.release()

    def snapshot_folder(self, key: str, epochs: int) -> Path:
        return self.folder / key / f"epoch-{epochs:04d}"

    def load(self, key: str, epochs: int, continuing: bool = False) -> CachedModel | None:
        """Snapshot ``epochs`` of the entry, verified: None if there is none, or (with one
        warning naming the file) if a file it uses fails its check. A reuse uses the weights
        and ``meta.json``; a training ``continuing`` from it the training state too."""
        folder = self.snapshot_folder(key, epochs)
        if not folder.exists():
            return None
        try:
            meta = verified(folder, (WEIGHTS, STATE) if continuing else (WEIGHTS,))
            return CachedModel(
                epochs=epochs,
                weights=folder / WEIGHTS,
                training=TrainingResult(**meta["training"]),
                trained_by_run=meta["trained_by_run"],
                model_uri=meta["model_uri"],
                folder=folder,
            )
        except Unverifiable:
            if key not in self._told_unverifiable:  # one line for all of an entry's snapshots
                self._told_unverifiable.add(key)
                log.warning(
                    "warning: cached model %s: its snapshots were written by an older version, "
                    "without SHA-256 sums to check them by: training again (new snapshots replace "
                    "them)",
                    folder.parent,
                )
        except Damaged as damaged:
            log.warning("warning: cached model %s: training again", damaged)
        except (KeyError, TypeError) as error:  # checksums right, content not what we write
            log.warning(
                "warning: cached model %s cannot be read (%s): training again",
                folder / META,
                _why(error),
            )
        return None

    def prefixes(self, key: str, below: int) -> Iterator[CachedModel]:
        """The verified snapshots of fewer epochs than ``below`` that a training can continue
        from (written with their training state), the most epochs first; each one that fails
        its check is passed over with a warning."""
        trained = sorted(
            (
                int(path.name.removeprefix("epoch-"))
                for path in (self.folder / key).glob("epoch-*")
                if path.name.removeprefix("epoch-").isdigit()
            ),
            reverse=True,
        )
        for epochs in trained:
            if epochs < below and _has_state(self.snapshot_folder(key, epochs)):
                cached = self.load(key, epochs, continuing=True)
                if cached is not None:
                    yield cached

    def longest_prefix(self, key: str, below: int) -> CachedModel | None:
        """The first of :meth:`prefixes`, or None."""
        return next(self.prefixes(key, below), None)

    def store(
        self,
        key: str,
        epochs: int,
        weights: bytes,
        training: TrainingResult,
        run_id: str,
        model_uri: str = "",
        state: TrainingState | None = None,
    ) -> None:
        """Write snapshot ``epochs`` (``weights``: the HDF5 file's bytes, from
        :func:`src.models.training.weights_image`) atomically; call while holding :meth:`claim`. A
        cache that cannot take it (a full disk) costs only the reuse: one warning, no more
        snapshots through this object (a run's), and later runs train again."""
        if self._refused is not None:
            return
        entry = self.folder / key
        staging = entry / f".epoch-{epochs:04d}.{uuid.uuid4().hex}.tmp"
        try:
            staging.mkdir(parents=True)
            (staging / WEIGHTS).write_bytes(weights)
            if state is not None:
                (staging / STATE).write_bytes(state_image(state))
            meta = {
                "training": asdict(training),
                "trained_by_run": run_id,
                "model_uri": model_uri,
                SUMS: {
                    name: file_sha256(staging / name)
                    for name in (WEIGHTS, STATE)
                    if (staging / name).is_file()
                },
            }
            (staging / META).write_text(with_own_sum(meta))
            target = self.snapshot_folder(key, epochs)
            if target.exists():  # a damaged old snapshot, or a forced retraining
                shutil.rmtree(target)
            os.rename(staging, target)
        except OSError as error:
            self._refused = error.strerror or str(error)
            log.warning(
                "warning: the model could not be cached in %s (%s): this run writes no more "
                "snapshots, and later runs that need them train again",
                self.folder,
                self._refused,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                entry.rmdir()  # only if empty: a first snapshot that could not be written

    def set_model_uri(self, key: str, epochs: int, model_uri: str) -> None:
        """Record where a run logged snapshot ``epochs``'s model (runs reusing it link there)."""
        folder = self.snapshot_folder(key, epochs)
        try:
            meta = verified(folder, ())  # a changed meta.json is not blessed with a new sum
            meta["model_uri"] = model_uri
            _write_atomically(folder / META, with_own_sum(meta).encode())
        except Damaged as damaged:
            log.warning("could not note the logged model: cached model %s", damaged)
        except OSError as error:
            log.warning("could not note the logged model in %s (%s)", folder, _why(error))

    def model_only(
        self, key: str, epochs: int, name: str, compute: Callable[[], np.ndarray]
    ) -> tuple[np.ndarray, bool]:
        """``compute()``'s array, kept beside snapshot ``epochs`` in ``model_only/``:
        work that depends on the model alone, done once for every analyzer's job. Returns the
        array and whether it came from the cache. ``name`` must say everything the array
        depends on besides the model."""
        folder = self.snapshot_folder(key, epochs)
        path = folder / KEPT / f"{hashlib.sha256(name.encode()).hexdigest()[:20]}.npy"
        if path.is_file():
            try:
                return np.load(path, allow_pickle=False), True
            except (OSError, ValueError) as error:
                log.warning("kept work %s cannot be read (%s): computing it again", path, error)
        value = np.asarray(compute())
        if folder.is_dir():
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)
            try:
                path.parent.mkdir(exist_ok=True)
                _write_atomically(path, buffer.getvalue())
            except OSError as error:
                log.warning("could not keep %s in %s (%s)", name, folder, error)
        return value, False


def accuracy_mismatch(recorded: float | None, measured: float, test_images: int) -> str:
    """``""`` if a reused model's measured test accuracy is the one recorded when it was
    trained, up to rounding: accuracies are counts over ``test_images``, so anything under
    half an image is float32 rounding. Else what differs, ``recorded 0.7883 (283/359),
    measured 0.1003 (36/359)``. Nothing recorded (a training that did not validate): ``""``."""
    if recorded is None or abs(measured - recorded) < 0.5 / test_images:
        return ""

    def told(accuracy: float) -> str:
        right = (
            f" ({round(accuracy * test_images)}/{test_images})" if math.isfinite(accuracy) else ""
        )
        return f"{accuracy:.4f}{right}"

    return f"recorded {told(recorded)}, measured {told(measured)}"

"""Train once, explain many times: trained weights cached by what determines them.

A training is determined by the data, the model and training configs (all but the epoch
count), the seed, the TensorFlow version and its intra-op thread count, not by the analyzer.
Its entry ``<cache_dir>/<fingerprint>-<store>/`` holds one snapshot per epoch trained,
``epoch-0003/``: the weights (``weights.h5``), what continuing needs besides them (the
optimizer's state and NumPy's random state, which orders Keras's batches: ``state.npz``),
the training curve so far (``meta.json``), and work done on the model alone (``model_only/``:
a score's baseline, the training figure). A model of N epochs is snapshot N; a job that needs
N epochs where only a shorter training exists continues from its last snapshot.

Snapshots are written to a temporary folder and renamed into place, so a reader never sees
half of one (a temporary folder a killed process left is removed after an hour). A file lock
per training (``filelock``, which works across processes) makes a second job that needs it
wait for the first to train it, saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from src.errors import UserError
from src.training import TrainingResult, TrainingState

log = logging.getLogger(__name__)
WEIGHTS, STATE, META, KEPT = "weights.h5", "state.npz", "meta.json", "model_only"
STALE_STAGING_S = 3600  # a staging folder this old was left by a killed process
WAIT_NOTE_S = 60  # how often a job waiting for another's training says it still waits


def fingerprint(
    dataset: Mapping[str, Any],
    data_checksum: str,
    model: Mapping[str, Any],
    train: Mapping[str, Any],
    seed: int,
    threads: int,
) -> str:
    """A short hash of everything that decides a training's weights and curve epoch by epoch,
    ``threads`` (TensorFlow's intra-op threads) included: they change the rounding. Not the
    epoch count: the first k epochs of a longer training are the k-epoch model."""
    spec = {
        "dataset": {
            "name": dataset["name"],
            "sha256": data_checksum,
            "train_size": dataset["train_size"],
            "test_size": dataset["test_size"],  # the validation curve depends on it
        },
        "model": dict(model),
        "train": {
            key: value
            for key, value in train.items()
            if key not in ("reuse", "cache_dir", "epochs")
        },
        "seed": seed,
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
        """The optimizer's and the data order's state, or None if the snapshot has none."""
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
        except (OSError, ValueError, KeyError) as error:
            log.warning("snapshot %s has no usable training state (%s)", self.folder, error)
            return None


class ModelCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

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
    def claim(self, key: str, holder: str = "") -> Iterator[None]:
        """Hold the entry ``key`` exclusively: others needing it wait until it is trained, and
        say whom they wait for (``holder``: the run that trains it)."""
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
                    "waiting for %s to train the model this run reuses%s",
                    holder_now or "another job",
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

    def load(self, key: str, epochs: int) -> CachedModel | None:
        """Snapshot ``epochs`` of the entry, or None if there is none or it cannot be read
        (then with a warning)."""
        folder = self.snapshot_folder(key, epochs)
        if not folder.exists():
            return None
        try:
            meta = json.loads((folder / META).read_text())
            weights = folder / WEIGHTS
            if not weights.is_file():
                raise FileNotFoundError(weights)
            return CachedModel(
                epochs=epochs,
                weights=weights,
                training=TrainingResult(**meta["training"]),
                trained_by_run=meta["trained_by_run"],
                model_uri=meta["model_uri"],
                folder=folder,
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("cached model %s cannot be read (%s): training it again", folder, error)
            return None

    def longest_prefix(self, key: str, below: int) -> CachedModel | None:
        """The readable snapshot of the most epochs fewer than ``below`` that a training can
        continue from (it has its training state), or None."""
        trained = sorted(
            (
                int(path.name.removeprefix("epoch-"))
                for path in (self.folder / key).glob("epoch-*")
                if path.name.removeprefix("epoch-").isdigit()
            ),
            reverse=True,
        )
        for epochs in trained:
            if epochs < below and (self.snapshot_folder(key, epochs) / STATE).is_file():
                cached = self.load(key, epochs)
                if cached is not None:
                    return cached
        return None

    def store(
        self,
        key: str,
        epochs: int,
        model: Any,
        training: TrainingResult,
        run_id: str,
        model_uri: str = "",
        state: TrainingState | None = None,
    ) -> None:
        """Write snapshot ``epochs`` atomically; call while holding :meth:`claim`. A cache that
        cannot take it (a full disk) costs only the reuse: a warning, and later runs train
        again."""
        entry = self.folder / key
        staging = entry / f".epoch-{epochs:04d}.{uuid.uuid4().hex}.tmp"
        try:
            staging.mkdir(parents=True)
            model.save_weights(str(staging / WEIGHTS))
            if state is not None:
                kind, keys, pos, has_gauss, cached_gaussian = state.random_state
                np.savez(
                    staging / STATE,
                    optimizer_count=len(state.optimizer_weights),
                    random_kind=kind,
                    random_keys=keys,
                    random_pos=pos,
                    random_has_gauss=has_gauss,
                    random_cached_gaussian=cached_gaussian,
                    **{f"optimizer_{i}": w for i, w in enumerate(state.optimizer_weights)},
                )
            meta = {"training": asdict(training), "trained_by_run": run_id, "model_uri": model_uri}
            (staging / META).write_text(json.dumps(meta, indent=1))
            target = self.snapshot_folder(key, epochs)
            if target.exists():  # an unreadable old snapshot, or a forced retraining
                shutil.rmtree(target)
            os.rename(staging, target)
        except OSError as error:
            log.warning(
                "warning: the model could not be cached in %s (%s): later runs that need it "
                "train it again",
                self.folder,
                error.strerror or error,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                entry.rmdir()  # only if empty: a first snapshot that could not be written

    def set_model_uri(self, key: str, epochs: int, model_uri: str) -> None:
        """Record where a run logged snapshot ``epochs``'s model (runs reusing it link there)."""
        folder = self.snapshot_folder(key, epochs)
        try:
            meta = json.loads((folder / META).read_text())
            meta["model_uri"] = model_uri
            _write_atomically(folder / META, json.dumps(meta, indent=1).encode())
        except (OSError, ValueError) as error:
            log.warning("could not note the logged model in %s (%s)", folder, error)

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


def _write_atomically(path: Path, content: bytes) -> None:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        staging.write_bytes(content)
        os.replace(staging, path)
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()

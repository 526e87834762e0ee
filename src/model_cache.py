"""Train once, explain many times: trained weights cached by what determines them.

A trained model is determined by the data, the model and training configs, the seed, the
TensorFlow version and its intra-op thread count, not by the analyzer. Entries live in
``<cache_dir>/<fingerprint>-<store>/`` (``weights.h5`` and ``meta.json``), written to a
temporary folder and renamed into place, so a reader never sees half an entry (a temporary
folder a killed process left is removed after an hour). A file lock per entry (``filelock``,
which works across processes) makes a second job that needs the same model wait for the first
to train it, saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from src.errors import UserError
from src.training import TrainingResult

log = logging.getLogger(__name__)
WEIGHTS, META = "weights.h5", "meta.json"
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
    """A short hash of everything that decides the trained weights and their training curve,
    ``threads`` (TensorFlow's intra-op threads) included: they change the rounding."""
    spec = {
        "dataset": {
            "name": dataset["name"],
            "sha256": data_checksum,
            "train_size": dataset["train_size"],
            "test_size": dataset["test_size"],  # the validation curve depends on it
        },
        "model": dict(model),
        "train": {key: value for key, value in train.items() if key not in ("reuse", "cache_dir")},
        "seed": seed,
        "intra_op_threads": threads,
        "tensorflow": metadata.version("tensorflow"),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def entry_key(model_fingerprint: str, tracking_uri: str) -> str:
    """The cache entry of a model for one tracking store.

    An entry links to the run that trained the model and to its logged copy, which only that
    store holds; a run in another store (a server instead of the local SQLite file, say)
    trains and logs its own copy rather than pointing at runs its store does not have.
    """
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:8]
    return f"{model_fingerprint}-{store}"


@dataclass(frozen=True)
class CachedModel:
    weights: Path
    training: TrainingResult
    trained_by_run: str  # the MLflow run that trained it
    model_uri: str  # where that run logged the model


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
        for staging in self.folder.glob(".*.tmp"):
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

    def load(self, key: str) -> CachedModel | None:
        """The entry, or None if there is none or it cannot be read (then with a warning)."""
        entry = self.folder / key
        if not entry.exists():
            return None
        try:
            meta = json.loads((entry / META).read_text())
            weights = entry / WEIGHTS
            if not weights.is_file():
                raise FileNotFoundError(weights)
            return CachedModel(
                weights=weights,
                training=TrainingResult(**meta["training"]),
                trained_by_run=meta["trained_by_run"],
                model_uri=meta["model_uri"],
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("cached model %s cannot be read (%s): training it again", entry, error)
            return None

    def store(
        self, key: str, model: Any, training: TrainingResult, run_id: str, model_uri: str
    ) -> None:
        """Write the entry atomically; call while holding :meth:`claim`. A cache that cannot
        take it (a full disk) costs only the reuse: a warning, and later runs train again."""
        staging = self.folder / f".{key}.{uuid.uuid4().hex}.tmp"
        try:
            staging.mkdir(parents=True)
            model.save_weights(str(staging / WEIGHTS))
            meta = {"training": asdict(training), "trained_by_run": run_id, "model_uri": model_uri}
            (staging / META).write_text(json.dumps(meta, indent=1))
            entry = self.folder / key
            if entry.exists():  # an unreadable old entry, or a forced retraining
                shutil.rmtree(entry)
            os.rename(staging, entry)
        except OSError as error:
            log.warning(
                "warning: the model could not be cached in %s (%s): later runs that need it "
                "train it again",
                self.folder,
                error.strerror or error,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

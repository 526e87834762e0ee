"""What a run logs: its config as params, its tags, metrics and curves, figures, datasets,
the environment it ran in, and its model.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from src.common import names
from src.common.paths import PROJECT_ROOT
from src.common.redact import redact
from src.tracking.faults import store_write

# MLflow caps a param value at 6,000 characters; a longer one is cut, with a marker.
MAX_PARAM_LENGTH = 6000


PACKAGES = ("tensorflow", "innvestigate", "mlflow", "hydra-core", "numpy")


def run_tags(analyzer: str, dataset: str, seed: int, epochs: int) -> dict[str, str]:
    """Tags that identify what a run is and which code and libraries made it."""
    commit, dirty = _git_state()
    tags = {
        "analyzer": analyzer,
        "dataset": dataset,
        "seed": str(seed),
        "epochs": str(epochs),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    # Package metadata, not __version__: iNNvestigate 2.1.2 still reports "2.0.1" there.
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    tags["version.python"] = platform.python_version()
    return tags


@functools.lru_cache(maxsize=1)
def environment() -> str:
    """Python, the platform and every installed distribution as ``name==version``, sorted; the
    header lines are comments, so the rest reads as a pip requirements file."""
    distributions = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    header = [
        f"# python {platform.python_version()} ({platform.python_implementation()}): "
        + " ".join(sys.version.split()),
        f"# platform {platform.platform()} ({platform.machine()})",
    ]
    return "\n".join([*header, *sorted(distributions, key=str.lower)]) + "\n"


def log_environment() -> None:
    """The whole environment of the run, as ``environment.txt`` (listed before the store
    write: reading every package's metadata takes a moment)."""
    _log_text(environment(), "environment.txt")


@store_write
def _log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


@store_write
def log_data_files(files: Sequence[Any]) -> None:
    """The data files a run read (``path``, ``sha256``, ``bytes`` each), as ``data_files.json``:
    ``{path: {"sha256": ..., "bytes": ...}}``."""
    mlflow.log_dict(
        {file.path: {"sha256": file.sha256, "bytes": file.bytes} for file in files},
        "data_files.json",
    )


def _git_state() -> tuple[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", "unknown"
    return commit, str(bool(status.strip())).lower()


@store_write
def log_config(config: Mapping[str, Any]) -> None:
    """The resolved config: as dotted params (keys fit for MLflow: a key of the user's own
    config may be any text), and whole as ``config.yaml``; a URI's password masked in both
    (``tracking.uri=http://alice:***@host``)."""
    params: dict[str, str] = {}
    taken: set[str] = set()
    for key, value in flatten(config).items():
        text = redact(str(value))
        params[names.mlflow_name(key, taken)] = (
            text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
        )
    mlflow.log_params(params)
    mlflow.log_text(redact(yaml.safe_dump(dict(config), sort_keys=False)), "config.yaml")


@store_write
def log_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    """One epoch's metrics, with ``step`` = the 1-based epoch."""
    mlflow.log_metrics(dict(metrics), step=epoch)


@store_write
def log_reused_training(
    history: Mapping[str, list[float]],
    trained_by_run: str,
    model_uri: str,
    accuracy_mismatch: str = "",
) -> None:
    """For a run that reuses a trained model: its training curve, where the model came from,
    and (tag ``model_accuracy_mismatch``) how its measured test accuracy differs from the one
    recorded when it was trained, if it does."""
    _log_history(history)
    mlflow.set_tags(
        {"model_reused": "true", "trained_by_run": trained_by_run, "model_uri": model_uri}
    )
    if accuracy_mismatch:
        mlflow.set_tag("model_accuracy_mismatch", accuracy_mismatch)
    mlflow.set_tag(
        "mlflow.note.content",
        f"Reuses the model trained by run {trained_by_run} (same data, model, training and seed).",
    )


@store_write
def log_continued_training(
    history: Mapping[str, list[float]], epochs: int, trained_by_run: str
) -> None:
    """For a run that goes on from another's snapshot: the curve of the epochs it did not
    train (steps 1..``epochs``), and whose training it continues."""
    _log_history(history)
    mlflow.set_tag("continued_from", f"epoch {epochs} of run {trained_by_run}")


def _log_history(history: Mapping[str, list[float]]) -> None:
    """A training curve another run trained, epoch k at step k."""
    for key, values in history.items():
        log_curve(key, values, first_step=1)


@store_write
def log_curve(key: str, values: Sequence[float], first_step: int = 0) -> None:
    """One metric as a curve: ``values[i]`` at step ``first_step + i``."""
    client, run_id = MlflowClient(), mlflow.active_run().info.run_id
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(value), int(time.time() * 1000), first_step + step)
            for step, value in enumerate(values)
        ],
    )


@store_write
def set_tags(tags: Mapping[str, str]) -> None:
    mlflow.set_tags(dict(tags))


@store_write
def log_metrics(metrics: Mapping[str, float]) -> None:
    mlflow.log_metrics(dict(metrics))


def log_figure(figure: Any, artifact_file: str) -> None:
    """Log a matplotlib figure (see src/report/figures.py: no pyplot, nothing to close) as a PNG, as
    ``mlflow.log_figure`` saves it. Drawn here, before the store write: a signal waits for the
    upload only, never for the drawing (seconds for a large figure)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    log_png(buffer.getvalue(), artifact_file)


def log_png(png: bytes, artifact_file: str) -> None:
    """A figure already drawn (one kept with its model) as the artifact ``artifact_file``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(artifact_file).name
        path.write_bytes(png)
        parent = Path(artifact_file).parent.as_posix()
        log_artifact(path, None if parent == "." else parent)


@store_write
def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Upload a file as an artifact of the active run (into ``artifact_path``, a folder)."""
    mlflow.log_artifact(str(path), artifact_path)


@store_write
def log_image(key: str, image: np.ndarray, step: int) -> None:
    """An image under ``key`` at ``step``: MLflow's chart view shows every run's image of one
    key side by side, with a slider over steps."""
    mlflow.log_image(image, key=key, step=step, synchronous=True)


@store_write
def log_dataset(
    name: str,
    digest: str,
    source: str,
    features: np.ndarray,
    targets: np.ndarray,
    context: str,
) -> None:
    """The data a run used, as an MLflow dataset input (the runs table's Dataset column):
    ``name``, ``digest``, ``source`` (a URL, a path, or a description)."""
    import warnings

    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if source.startswith(("http://", "https://")):
        where: Any = HTTPDatasetSource(source)
    elif Path(source).expanduser().exists():
        where = source  # MLflow resolves a path to a local artifact source
    else:  # "scikit-learn load_digits ...", "downloaded by tf.keras.datasets.cifar10"
        where = CodeDatasetSource({"description": source})
    with warnings.catch_warnings():
        # A local path can be read as two kinds of source, MLflow warns; both are the same.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(
            features, source=where, targets=targets, name=name, digest=digest
        )
    for attempt in range(DATASET_ATTEMPTS):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except Exception as error:
            # Two jobs of a sweep logging the same data at once: MLflow looks the dataset up,
            # then inserts it, not atomically, so the second insert breaks the unique key. The
            # dataset exists then, and logging again links it.
            if attempt + 1 == DATASET_ATTEMPTS or not _created_meanwhile(error):
                raise


DATASET_ATTEMPTS = 3


def _created_meanwhile(error: Exception) -> bool:
    """Whether ``error`` is another process's insert of the same dataset (SQLite's and
    PostgreSQL's words for a broken unique key on MLflow's datasets table)."""
    said = str(error)
    return "datasets" in said and (
        "UNIQUE constraint failed" in said or "duplicate key value violates unique" in said
    )


def log_datasets(name: str, data: Any) -> None:
    """The data as an MLflow dataset input (the runs table's Dataset column): the dataset's
    name, as digest the first 12 hex digits of ``data_sha256`` (the SHA-256 of the arrays as
    loaded), where it came from. One input, the training split: MLflow keeps one per name and
    digest, and the digest covers both splits."""
    log_dataset(
        names.mlflow_name(name, kind="label", limit=names.MAX_DATASET_NAME),
        data.checksum[:12],
        data.source,
        data.train_images,
        data.train_labels,
        context="training",
    )


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def log_arrays(artifact_file: str, **arrays: np.ndarray) -> None:
    """Log arrays as one compressed ``.npz`` artifact (compressed before the store write: a
    signal waits for the upload only)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / artifact_file
        np.savez_compressed(path, **arrays)
        log_artifact(path)


def log_keras_model(model: Any, input_example: np.ndarray) -> str:
    """Log the model with MLflow's TensorFlow flavor; returns its URI, also tagged ``model_uri``.
    Its signature is computed (a prediction) before the store write."""
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    # Pinned requirements: MLflow would otherwise infer them by loading the model in a
    # subprocess, which costs a TensorFlow start-up per run.
    requirements = [
        f"{package}=={metadata.version(package)}" for package in ("tensorflow", "numpy", "protobuf")
    ]
    return _log_keras_model(model, input_example, signature, requirements)


@store_write
def _log_keras_model(
    model: Any, input_example: np.ndarray, signature: Any, requirements: list[str]
) -> str:
    import mlflow.tensorflow

    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        input_example=input_example,
        pip_requirements=requirements,
        # HDF5, not the SavedModel default: one file in ~0.05 s instead of ~0.6 s of tracing,
        # and mlflow.tensorflow.load_model() reads it back the same way.
        keras_model_kwargs={"save_format": "h5"},
    )
    mlflow.set_tags({"model_uri": info.model_uri, "model_reused": "false"})
    return info.model_uri

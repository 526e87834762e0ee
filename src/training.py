"""Training: compile the model and fit it, reporting each epoch as it ends."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.progress import progress_bar
from src.tf_runtime import tensorflow

EpochCallback = Callable[[int, dict[str, float]], None]
# Keras's log keys -> the metric names a run records.
METRIC_NAMES = {
    "loss": "train_loss",
    "accuracy": "train_accuracy",
    "val_loss": "val_loss",
    "val_accuracy": "val_accuracy",
}


@dataclass(frozen=True)
class TrainingResult:
    history: dict[str, list[float]]  # metric name -> one value per epoch
    train_time_s: float
    test_loss: float
    test_accuracy: float
    # Seconds from the process's start to the end of the first training step (None off Linux).
    time_to_first_step_s: float | None = None


def seconds_since_process_start() -> float | None:
    """Linux: the uptime now minus the uptime at which this process started; else None."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def compile_model(model, optimizer: str, learning_rate: float) -> None:
    """Categorical cross-entropy on integer labels (Keras's sparse form: the same loss)."""
    keras = tensorflow().keras
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(
    model,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    epochs: int,
    batch_size: int,
    validate_each_epoch: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainingResult:
    """Fit a compiled model; ``on_epoch_end(epoch, metrics)`` gets 1-based epochs."""
    keras = tensorflow().keras
    steps = int(np.ceil(len(train_images) / batch_size))
    bar = progress_bar(epochs * steps, "training", "batch")
    first_step: list[float | None] = []

    class _Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not first_step:
                first_step.append(seconds_since_process_start())
            bar.update(1)
            if logs and batch % 50 == 0:
                bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            metrics = {
                METRIC_NAMES[key]: float(value)
                for key, value in (logs or {}).items()
                if key in METRIC_NAMES
            }
            bar.set_description(f"training (epoch {epoch + 1}/{epochs})")
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, metrics)

    started = time.perf_counter()
    try:
        history = model.fit(
            train_images,
            train_labels,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=(test_images, test_labels) if validate_each_epoch else None,
            callbacks=[_Report()],
            verbose=0,
        ).history
    finally:
        bar.close()
    train_time_s = time.perf_counter() - started

    if validate_each_epoch:
        # The last epoch's validation already is the final test score: do not evaluate twice.
        test_loss, test_accuracy = history["val_loss"][-1], history["val_accuracy"][-1]
    else:
        test_loss, test_accuracy = model.evaluate(
            test_images, test_labels, batch_size=batch_size, verbose=0
        )
    return TrainingResult(
        history={
            METRIC_NAMES[key]: [float(v) for v in values]
            for key, values in history.items()
            if key in METRIC_NAMES
        },
        train_time_s=train_time_s,
        test_loss=float(test_loss),
        test_accuracy=float(test_accuracy),
        time_to_first_step_s=first_step[0] if first_step else None,
    )


def test_only(
    model, test_images: np.ndarray, test_labels: np.ndarray, batch_size: int
) -> TrainingResult:
    """The test loss and accuracy of a model trained elsewhere: no history, no training time."""
    test_loss, test_accuracy = model.evaluate(
        test_images, test_labels, batch_size=batch_size, verbose=0
    )
    return TrainingResult(
        history={}, train_time_s=0.0, test_loss=float(test_loss), test_accuracy=float(test_accuracy)
    )

"""Training: compile the model and fit it, reporting each epoch as it ends, and continue a
training from a snapshot of an earlier epoch exactly as if it had never stopped."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from src.common import internals
from src.common.progress import progress_bar
from src.common.tf_runtime import tensorflow

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
    # None in a snapshot of a training that does not validate each epoch: evaluate the model.
    test_loss: float | None
    test_accuracy: float | None
    # Seconds from the process's start to the end of the first training step (None off Linux).
    time_to_first_step_s: float | None = None


@dataclass(frozen=True)
class TrainingState:
    """What continuing a training needs besides its weights."""

    optimizer_weights: list[np.ndarray]  # the optimizer's get_weights(): iterations, slots
    random_state: tuple  # np.random.get_state(): Keras's fit shuffles the batches with it


@dataclass(frozen=True)
class Resume:
    """Where a training continues from: ``epochs`` done (the model holds their weights), the
    curve and time so far, and the state to go on with."""

    epochs: int
    training: TrainingResult
    state: TrainingState


# A snapshot after each epoch: (epochs done, the training so far, its state).
SnapshotCallback = Callable[[int, TrainingResult, TrainingState], None]


def weights_image(model) -> bytes:
    """The bytes of the HDF5 file ``model.save_weights(path)`` writes, made in memory. HDF5
    writing to a disk that fills up raised from h5py's destructors and then crashed the
    process (SIGSEGV) in this project's tests; from memory, the disk write is Python's, which
    fails with an ``OSError``."""
    image = io.BytesIO()
    with h5py.File(image, "w") as file:
        internals.save_weights_to_h5(file, model)
    return image.getvalue()


def training_state(model) -> TrainingState:
    return TrainingState(model.optimizer.get_weights(), np.random.get_state())


def _restore(model, state: TrainingState) -> None:
    """The optimizer's slots and step count, and the batch order's random state. Keras's
    legacy (graph-mode) optimizers create their slots on the first step: they are made first."""
    internals.create_optimizer_slots(model.optimizer, model.trainable_weights)
    model.optimizer.set_weights(state.optimizer_weights)
    np.random.set_state(state.random_state)


def seconds_since_process_start() -> float | None:
    """Linux: the uptime now minus the uptime at which this process started; else None."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return None
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def compile_model(model, optimizer: str, learning_rate: float, from_logits: bool = False) -> None:
    """Categorical cross-entropy on integer labels (Keras's sparse form: the same loss), of
    the model's probabilities, or of its logits when it ends in them (``from_logits``)."""
    keras = tensorflow().keras
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if from_logits
        else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _report_callback(
    keras: Any,
    bar: Any,
    epochs: int,
    history: dict[str, list[float]],
    first_step: list[float | None],
    on_epoch_end: EpochCallback | None,
    on_snapshot: SnapshotCallback | None,
    elapsed: Callable[[], float],
    on_step: Callable[[], None] | None = None,
):
    """The Keras callback through which :func:`train` hears of each batch and epoch: the
    progress bar, the first step's time, the history, and the caller's ``on_epoch_end`` and
    ``on_snapshot`` (``elapsed()``: the training's seconds so far)."""

    class Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not first_step:
                first_step.append(seconds_since_process_start())
            if on_step is not None:
                on_step()
            bar.update(1)
            if logs and batch % 50 == 0:
                bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            metrics = {
                METRIC_NAMES[key]: float(value)
                for key, value in (logs or {}).items()
                if key in METRIC_NAMES
            }
            for key, value in metrics.items():
                history.setdefault(key, []).append(value)
            bar.set_description(f"training (epoch {epoch + 1}/{epochs})")
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, metrics)
            if on_snapshot is not None:
                so_far = TrainingResult(
                    history={key: list(values) for key, values in history.items()},
                    train_time_s=elapsed(),
                    test_loss=metrics.get("val_loss"),
                    test_accuracy=metrics.get("val_accuracy"),
                )
                on_snapshot(epoch + 1, so_far, training_state(self.model))

    return Report()


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
    resume: Resume | None = None,
    on_snapshot: SnapshotCallback | None = None,
    on_step: Callable[[], None] | None = None,
) -> TrainingResult:
    """Fit a compiled model to ``epochs`` epochs; ``on_epoch_end(epoch, metrics)`` gets
    1-based epochs, ``on_snapshot`` the state after each, ``on_step()`` a call after each
    batch. With ``resume``, the model holds the weights of ``resume.epochs`` epochs and the
    training goes on from there, to the same weights, curve and scores as training ``epochs``
    from the start."""
    keras = tensorflow().keras
    done, history, time_before = _starting_point(resume)
    steps = int(np.ceil(len(train_images) / batch_size))
    bar = progress_bar((epochs - done) * steps, "training", "batch")
    first_step: list[float | None] = []
    if resume:
        _restore(model, resume.state)
    started = time.perf_counter()
    report = _report_callback(
        keras,
        bar,
        epochs,
        history,
        first_step,
        on_epoch_end,
        on_snapshot,
        elapsed=lambda: time_before + time.perf_counter() - started,
        on_step=on_step,
    )
    try:
        model.fit(
            train_images,
            train_labels,
            epochs=epochs,
            initial_epoch=done,
            batch_size=batch_size,
            validation_data=(test_images, test_labels) if validate_each_epoch else None,
            callbacks=[report],
            verbose=0,
        )
    finally:
        bar.close()
    train_time_s = time_before + time.perf_counter() - started
    return _tested(model, test_images, test_labels, batch_size, history, train_time_s, first_step)


def _starting_point(resume: Resume | None) -> tuple[int, dict[str, list[float]], float]:
    """Where :func:`train` starts: the epochs done, a copy of the curve so far (the training
    appends to it, the snapshot's stays as it was) and the seconds so far; nothing without
    ``resume``."""
    done = resume.epochs if resume else 0
    history: dict[str, list[float]] = {
        key: list(values) for key, values in (resume.training.history if resume else {}).items()
    }
    time_before = resume.training.train_time_s if resume else 0.0
    return done, history, time_before


def _tested(
    model,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    batch_size: int,
    history: dict[str, list[float]],
    train_time_s: float,
    first_step: list[float | None],
) -> TrainingResult:
    """The result of :func:`train`: its curve and time, and the trained model's test scores.
    Evaluated as a reused model is (test_only), not taken from the last epoch's validation:
    fit's validation sums the loss otherwise, and differs from it in the last bits."""
    tested = test_only(model, test_images, test_labels, batch_size)
    return TrainingResult(
        history=history,
        train_time_s=train_time_s,
        test_loss=tested.test_loss,
        test_accuracy=tested.test_accuracy,
        time_to_first_step_s=first_step[0] if first_step else None,
    )


def test_only(
    model, test_images: np.ndarray, test_labels: np.ndarray, batch_size: int
) -> TrainingResult:
    """The test loss and accuracy of a model as it is (trained elsewhere, or loaded): no
    history, no training time."""
    test_loss, test_accuracy = model.evaluate(
        test_images, test_labels, batch_size=batch_size, verbose=0
    )
    return TrainingResult(
        history={}, train_time_s=0.0, test_loss=float(test_loss), test_accuracy=float(test_accuracy)
    )

"""Model builders, named by ``_target_`` in ``conf/model/*.yaml`` and built with Hydra's
``instantiate``: a different architecture is a config change, a user's own builder a
``model._target_=package.module.function`` away.

A builder takes ``input_shape`` and ``num_classes`` (given by the pipeline, from the data)
plus the config's keys, and returns an uncompiled Keras model ending in a softmax.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.common.builders import check_arguments
from src.common.errors import UserError
from src.common.redact import redact
from src.common.tf_runtime import tensorflow
from src.models import files as model_files

# What one entry of ``conv_layers`` may say; anything else is refused, never ignored.
CONV_KEYS = {"filters", "kernel_size", "pool", "stride", "padding"}


def build_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    conv_layers: Sequence[Mapping[str, Any]],
    dense_units: Sequence[int],
    activation: str = "relu",
    batch_size: int | None = None,
    output: str = "softmax",
) -> Any:
    """Conv blocks (each optionally max-pooled) -> flatten -> dense layers -> softmax (or,
    with ``output="logits"``, the logits).

    Each conv block is ``{filters, kernel_size, pool (null = none), stride (1), padding
    ("valid")}``. With the defaults of ``conf/model/cnn.yaml`` this is the seed report's
    network: (28, 28, 1) -> conv 32@3x3 -> pool 2 -> conv 64@3x3 -> pool 2 -> conv 64@3x3 ->
    576 -> dense 64 -> dense 10 (softmax), 93,322 parameters. ``batch_size`` fixes the batch
    dimension (TensorFlow's FLOP profiler needs fully known shapes); None leaves it free.
    """
    layers = tensorflow().keras.layers
    stack: list[Any] = [layers.Input(shape=tuple(input_shape), batch_size=batch_size, name="image")]
    for index, conv in enumerate(conv_layers, start=1):
        unknown = sorted(set(conv) - CONV_KEYS)
        if unknown:
            raise ValueError(
                f"conv_layers[{index - 1}] has no key {', '.join(unknown)}; a conv block takes "
                f"{', '.join(sorted(CONV_KEYS))}"
            )
        stack.append(
            layers.Conv2D(
                conv["filters"],
                conv["kernel_size"],
                strides=conv.get("stride") or 1,
                padding=conv.get("padding") or "valid",
                activation=activation,
                name=f"conv{index}",
            )
        )
        if conv.get("pool"):
            stack.append(layers.MaxPooling2D(conv["pool"], name=f"pool{index}"))
    stack.append(layers.Flatten(name="flatten"))
    return tensorflow().keras.Sequential(
        stack + _dense_head(dense_units, num_classes, activation, output), name="cnn"
    )


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden_units: Sequence[int] = (128, 64),
    activation: str = "relu",
    batch_size: int | None = None,
    output: str = "softmax",
) -> Any:
    """Flatten -> dense layers -> softmax: the image as a vector, no notion of neighbours."""
    layers = tensorflow().keras.layers
    stack: list[Any] = [
        layers.Input(shape=tuple(input_shape), batch_size=batch_size, name="image"),
        layers.Flatten(name="flatten"),
    ]
    return tensorflow().keras.Sequential(
        stack + _dense_head(hidden_units, num_classes, activation, output), name="mlp"
    )


# What a builder's ``output`` may be, and the last layer's activation for it.
OUTPUTS = {"softmax": "softmax", "logits": "linear"}


def _output_layer(num_classes: int, output: str) -> Any:
    """The last layer ``output``: one unit per class, softmax or logits."""
    if output not in OUTPUTS:
        raise UserError(f"model.output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return tensorflow().keras.layers.Dense(num_classes, activation=OUTPUTS[output], name="output")


def _dense_head(
    units: Sequence[int], num_classes: int, activation: str, output: str = "softmax"
) -> list[Any]:
    """Dense layers ``dense1``, ``dense2``, ... of ``units``, then the ``output`` layer."""
    layers = tensorflow().keras.layers
    hidden = [
        layers.Dense(count, activation=activation, name=f"dense{index}")
        for index, count in enumerate(units, start=1)
    ]
    return [*hidden, _output_layer(num_classes, output)]


def build_lenet(
    input_shape: Sequence[int],
    num_classes: int,
    activation: str = "relu",
    batch_size: int | None = None,
    output: str = "softmax",
) -> Any:
    """LeNet-5 in its modern form (LeCun et al. 1998; as in Quantus's and Hedström et al.'s
    LeNet): conv 6@5x5 -> max-pool 2 -> conv 16@5x5 -> max-pool 2 -> dense 120 -> dense 84
    -> softmax. ReLU and max-pooling instead of the original's tanh and subsampling, so every
    iNNvestigate analyzer can explain it."""
    layers = tensorflow().keras.layers
    stack = [
        layers.Input(shape=tuple(input_shape), batch_size=batch_size, name="image"),
        layers.Conv2D(6, 5, activation=activation, name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(16, 5, activation=activation, name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(120, activation=activation, name="dense1"),
        layers.Dense(84, activation=activation, name="dense2"),
        _output_layer(num_classes, output),
    ]
    return tensorflow().keras.Sequential(stack, name="lenet")


def build_resnet(
    input_shape: Sequence[int],
    num_classes: int,
    stem_filters: int = 16,
    blocks: Sequence[Mapping[str, int]] = (
        {"filters": 16, "stride": 1},
        {"filters": 32, "stride": 2},
    ),
    batch_size: int | None = None,
    output: str = "logits",
) -> Any:
    """A small ResNet (He et al. 2016): pixels rescaled to [-1, 1], a conv-BatchNorm-ReLU
    stem, residual blocks of two 3x3 convolutions with BatchNorm whose input is added back
    (through a 1x1 convolution with BatchNorm where the shape changes), global average
    pooling, and by default logits."""
    keras = tensorflow().keras
    layers = keras.layers
    image = layers.Input(shape=tuple(input_shape), batch_size=batch_size, name="image")
    scaled = layers.Rescaling(2.0, offset=-1.0, name="rescale")(image)

    def conv_bn(x: Any, filters: int, size: int, stride: int, name: str) -> Any:
        x = layers.Conv2D(filters, size, strides=stride, padding="same", name=f"{name}_conv")(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    x = layers.ReLU(name="stem_relu")(conv_bn(scaled, stem_filters, 3, 1, "stem"))
    for index, block in enumerate(blocks, start=1):
        filters, stride = int(block["filters"]), int(block.get("stride", 1))
        name = f"block{index}"
        y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, 3, stride, f"{name}a"))
        y = conv_bn(y, filters, 3, 1, f"{name}b")
        if stride != 1 or x.shape[-1] != filters:
            x = conv_bn(x, filters, 1, stride, f"{name}_skip")
        x = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, _output_layer(num_classes, output)(x), name="resnet")


# Given by the pipeline from the data, never by the model config.
FROM_THE_DATA = ("input_shape", "num_classes")


def check_model_config(model: Mapping[str, Any]) -> None:
    """Every key of a model config must be an argument of its ``_target_`` builder, and the
    builder must take the input shape and class count (see :mod:`src.common.builders`)."""
    check_arguments("model", model, given=FROM_THE_DATA)


@dataclass(frozen=True)
class Pretrained:
    """A trained model from elsewhere: the pipeline explains it without training."""

    model: Any
    fingerprint: str  # what identifies its weights: the file's SHA-256, or the run's fingerprint
    source: str  # where it came from, for the run's tags
    converted_from: str = ""  # "Keras 3.x.y" when rebuilt from a Keras 3 file, else ""


def load_keras_file(
    input_shape: Sequence[int], num_classes: int, path: str, allow_code: bool = False
) -> Pretrained:
    """A trained Keras model from ``path``: an ``.h5`` or ``.keras`` file (saved by Keras 2 or
    Keras 3), or a SavedModel folder. Loaded without its optimizer. A file whose config holds
    code (a ``Lambda`` layer) is refused before Keras reads it, unless ``allow_code``; load
    only files you trust. Keras 3 files are rebuilt in the project's Keras
    (:mod:`src.models.files`)."""
    location = Path(path).expanduser()
    if not location.exists():
        raise UserError(f"model.path {str(location)!r} does not exist")
    file = model_files.read(location)
    code = model_files.code_layers(file.config)
    if code and not allow_code:
        raise UserError(
            f"model.path {str(location)!r} holds code that loading would run (Lambda layer "
            f"{', '.join(repr(name) for name in code)}); if you trust the file, add "
            "model.allow_code=true"
        )
    model = model_files.keras3_model(file) if file.from_keras3 else _load_keras2(file, allow_code)
    _check_fits(model, input_shape, num_classes, str(location))
    converted = f"Keras {file.keras_version}" if file.from_keras3 else ""
    return Pretrained(model, _sha256_of(location), str(location), converted)


def _load_keras2(file: model_files.ModelFile, allow_code: bool) -> Any:
    """A file saved by the project's own Keras (2.x), loaded by Keras itself."""
    location = file.path
    with tempfile.TemporaryDirectory() as folder:
        readable = (
            _as_hdf5(location, Path(folder), allow_code) if file.kind == "keras" else location
        )
        try:
            return tensorflow().keras.models.load_model(str(readable), compile=False)
        except Exception as error:  # noqa: BLE001 - h5py, zip and Keras raise many kinds
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise UserError(
                f"model.path {str(location)!r} is not a Keras model ({reason})"
            ) from error


def _as_hdf5(location: Path, folder: Path, allow_code: bool = False) -> Path:
    """A ``.keras`` file re-saved as HDF5 by Keras itself, in a subprocess in eager mode.

    Keras 2.14 restores a ``.keras`` file's weights with ``variable.assign``, which in the
    graph mode iNNvestigate needs only builds an op that never runs: the model would keep its
    initial weights (measured: a 92%-accurate model loads at 10%). Its HDF5 loader has no
    such problem, so the file is converted where eager mode works.
    """
    target = folder / "model.h5"
    code = (
        "import sys, tensorflow as tf; tf.keras.models.load_model(sys.argv[1], compile=False, "
        "safe_mode=sys.argv[3] != 'allow-code').save(sys.argv[2])"
    )
    converted = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(location),
            str(target),
            "allow-code" if allow_code else "safe",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if converted.returncode != 0:
        lines = [line for line in converted.stderr.splitlines() if line.strip()]
        reason = lines[-1][:200] if lines else f"exit code {converted.returncode}"
        raise UserError(f"model.path {str(location)!r} is not a Keras model ({reason})")
    return target


def load_run_model(input_shape: Sequence[int], num_classes: int, run_id: str) -> Pretrained:
    """The model a run of this tracking store logged (its tag ``model_uri``), by run id."""
    import mlflow
    import mlflow.tensorflow

    client = mlflow.tracking.MlflowClient()
    try:
        run = client.get_run(str(run_id))
    except Exception as error:  # noqa: BLE001 - MLflow's "not found" comes in several kinds
        store = redact(mlflow.get_tracking_uri())
        raise UserError(f"model.run_id {run_id!r} is not a run of the store {store}") from error
    uri = run.data.tags.get("model_uri")
    if not uri:
        raise UserError(f"run {run_id} logged no model (it has no model_uri tag)")
    model = mlflow.tensorflow.load_model(uri)
    _check_fits(model, input_shape, num_classes, f"run {run_id}")
    return Pretrained(model, run.data.tags.get("model_fingerprint", uri), f"runs:/{run_id}")


def _check_fits(model: Any, input_shape: Sequence[int], num_classes: int, source: str) -> None:
    takes = tuple(model.input_shape[1:])
    if takes != tuple(input_shape):
        raise UserError(
            f"the model of {source} takes images of shape {takes}, the data's are "
            f"{tuple(input_shape)}"
        )
    if model.output_shape[-1] != num_classes:
        raise UserError(
            f"the model of {source} has {model.output_shape[-1]} outputs, the data "
            f"{num_classes} classes"
        )


def _sha256_of(location: Path) -> str:
    """A file's SHA-256; a folder's over its files' relative paths and contents, sorted."""
    digest = hashlib.sha256()
    files = (
        sorted(p for p in location.rglob("*") if p.is_file()) if location.is_dir() else [location]
    )
    for file in files:
        if location.is_dir():
            digest.update(str(file.relative_to(location)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()

"""Model builders, named by ``_target_`` in ``conf/model/*.yaml`` and built with Hydra's
``instantiate``: a different architecture is a config change, a user's own builder a
``model._target_=package.module.function`` away.

A builder takes ``input_shape`` and ``num_classes`` (given by the pipeline, from the data)
plus the config's keys, and returns an uncompiled Keras model ending in a softmax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from src.builders import check_arguments
from src.tf_runtime import tensorflow

# What one entry of ``conv_layers`` may say; anything else is refused, never ignored.
CONV_KEYS = {"filters", "kernel_size", "pool", "stride", "padding"}


def build_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    conv_layers: Sequence[Mapping[str, Any]],
    dense_units: Sequence[int],
    activation: str = "relu",
    batch_size: int | None = None,
) -> Any:
    """Conv blocks (each optionally max-pooled) -> flatten -> dense layers -> softmax.

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
    for index, units in enumerate(dense_units, start=1):
        stack.append(layers.Dense(units, activation=activation, name=f"dense{index}"))
    stack.append(layers.Dense(num_classes, activation="softmax", name="output"))
    return tensorflow().keras.Sequential(stack, name="cnn")


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden_units: Sequence[int] = (128, 64),
    activation: str = "relu",
    batch_size: int | None = None,
) -> Any:
    """Flatten -> dense layers -> softmax: the image as a vector, no notion of neighbours."""
    layers = tensorflow().keras.layers
    stack: list[Any] = [
        layers.Input(shape=tuple(input_shape), batch_size=batch_size, name="image"),
        layers.Flatten(name="flatten"),
    ]
    for index, units in enumerate(hidden_units, start=1):
        stack.append(layers.Dense(units, activation=activation, name=f"dense{index}"))
    stack.append(layers.Dense(num_classes, activation="softmax", name="output"))
    return tensorflow().keras.Sequential(stack, name="mlp")


def build_lenet(
    input_shape: Sequence[int],
    num_classes: int,
    activation: str = "relu",
    batch_size: int | None = None,
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
        layers.Dense(num_classes, activation="softmax", name="output"),
    ]
    return tensorflow().keras.Sequential(stack, name="lenet")


# Given by the pipeline from the data, never by the model config.
FROM_THE_DATA = ("input_shape", "num_classes")


def check_model_config(model: Mapping[str, Any]) -> None:
    """Every key of a model config must be an argument of its ``_target_`` builder, and the
    builder must take the input shape and class count (see :mod:`src.builders`)."""
    check_arguments("model", model, given=FROM_THE_DATA)

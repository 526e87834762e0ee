"""The CNN, built from the `model` config: a different architecture is a config change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from src.tf_runtime import tensorflow


def build_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    conv_layers: Sequence[Mapping[str, Any]],
    dense_units: Sequence[int],
    activation: str = "relu",
    batch_size: int | None = None,
) -> Any:
    """Conv blocks (each optionally max-pooled) -> flatten -> dense layers -> softmax.

    With the defaults of ``conf/model/cnn.yaml`` this is the seed report's network:
    (28, 28, 1) -> conv 32@3x3 -> pool 2 -> conv 64@3x3 -> pool 2 -> conv 64@3x3 -> 576
    -> dense 64 -> dense 10 (softmax), 93,322 parameters. ``batch_size`` fixes the batch
    dimension (TensorFlow's FLOP profiler needs fully known shapes); None leaves it free.
    """
    layers = tensorflow().keras.layers
    stack: list[Any] = [layers.Input(shape=tuple(input_shape), batch_size=batch_size, name="image")]
    for index, conv in enumerate(conv_layers, start=1):
        stack.append(
            layers.Conv2D(
                conv["filters"], conv["kernel_size"], activation=activation, name=f"conv{index}"
            )
        )
        if conv.get("pool"):
            stack.append(layers.MaxPooling2D(conv["pool"], name=f"pool{index}"))
    stack.append(layers.Flatten(name="flatten"))
    for index, units in enumerate(dense_units, start=1):
        stack.append(layers.Dense(units, activation=activation, name=f"dense{index}"))
    stack.append(layers.Dense(num_classes, activation="softmax", name="output"))
    return tensorflow().keras.Sequential(stack, name="cnn")

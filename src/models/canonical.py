"""The model as the analyzers need it: its logits, BatchNorm folded, names of its own.

A user's model is explained as it is; the form the explainers are built on is this module's
business (as Zennit's canonizers are for PyTorch). :func:`explainable` copies a Keras model
into the current graph as a functional model that

- ends in the **logits**: a softmax or sigmoid on the output layer (its activation, or a
  ``Softmax``/``Activation`` layer at the end) is left out; a model that already ends in
  logits is taken as it is. iNNvestigate's ``model_wo_softmax`` does the first and raises
  "No output activation found." on the second;
- has every **BatchNormalization folded** into the convolution or dense layer right before it
  (when that layer is linear and feeds only the BatchNorm): ``W' = W s``,
  ``b' = (b - mu) s + beta`` with ``s = gamma / sqrt(var + eps)`` per output channel, so the
  LRP rules and Deep Taylor see the linear layers they were designed for;
- leaves out the layers that are the identity at inference (Dropout and its kin), and
  writes the layers iNNvestigate's LRP has no rule for as equal ones it has: a ``ReLU`` layer
  as ``Activation("relu")``, a scalar ``Rescaling`` as a 1x1 ``Conv2D``, and for LRP a
  depthwise convolution as a grouped ``Conv2D``;
- gives every layer a **name of its own**: iNNvestigate names the layers it copies with
  Keras's defaults (``dense``, ``dense_1``, ...), which collide with a model whose author
  never named its layers ("The name "dense" is used 2 times in the model").

The copy computes with the model's own variables (shared, or folded by TensorFlow ops from
them), so it follows later changes of the weights, as the randomisation cascade makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from src.common.errors import UserError
from src.common.tf_runtime import tensorflow

# Layers that are the identity at inference.
INFERENCE_IDENTITY = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "ActivityRegularization",
)
# Linear layers a following BatchNorm folds into (their kernels: KERNELS below).
FOLDS_INTO = ("Conv2D", "Conv1D", "Conv3D", "Dense", "DepthwiseConv2D", "SeparableConv2D")
# The input of a Sequential model, which its config does not name.
IMAGE = "<image>"
# Appended to every layer's name in the copy (made unique against the model's own names).
SUFFIX = "_xl"


@dataclass(frozen=True)
class Node:
    """One layer of the model and the layers whose outputs it takes, in the model's order."""

    layer: Any
    inputs: tuple[str, ...]  # names of the layers feeding it (InputLayers included)


def has_depthwise(model) -> bool:
    return any(type(layer).__name__ == "DepthwiseConv2D" for layer in model.layers)


def output_layer(model) -> Any:
    return model.get_layer(model.output_names[0])


def output_kind(model) -> str:
    """``softmax``, ``sigmoid`` or ``logits``: what the model's output layer ends in."""
    layer = output_layer(model)
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = layer.get_config().get("activation")
    return activation if activation in ("softmax", "sigmoid") else "logits"


def graph(model) -> tuple[str, list[Node], str]:
    """The model's input name, its layers in order with their inputs, and its output layer's
    name, read from its (public) config. A layer called more than once (shared weights), a
    model inside the model or several inputs/outputs are refused in one line."""
    config = model.get_config()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError("the model must take one image input and give one output")
    if "inbound_nodes" not in (config.get("layers") or [{}])[0]:  # Sequential
        names = [layer.name for layer in model.layers]
        nodes, previous = [], IMAGE
        for name in names:
            nodes.append(Node(model.get_layer(name), (previous,)))
            previous = name
        return IMAGE, _checked(nodes), names[-1]
    nodes = []
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        calls = entry["inbound_nodes"]
        if len(calls) != 1:
            raise UserError(
                f"layer {entry['name']!r} is called {len(calls)} times in the model (shared "
                "weights); the project explains models whose layers are each used once"
            )
        sources = calls[0]
        if isinstance(sources, dict):  # a newer config format
            raise UserError(f"layer {entry['name']!r}: a node format the project cannot read")
        for source in sources:
            if source[1] != 0:
                raise UserError(f"layer {source[0]!r} is used more than once in the model")
        nodes.append(Node(model.get_layer(entry["name"]), tuple(s[0] for s in sources)))
    return config["input_layers"][0][0], _checked(nodes), config["output_layers"][0][0]


def _checked(nodes: list[Node]) -> list[Node]:
    for node in nodes:
        if isinstance(node.layer, tensorflow().keras.Model):
            raise UserError(
                f"layer {node.layer.name!r} is a model inside the model; the project explains "
                "models of plain layers (build it with the inner model's layers inline)"
            )
    return nodes


def folds(nodes: list[Node]) -> dict[str, Any]:
    """BatchNorm layer name -> the linear layer before it that it folds into: a convolution
    or dense layer without activation whose only consumer is the BatchNorm."""
    consumers: dict[str, int] = {}
    for node in nodes:
        for source in node.inputs:
            consumers[source] = consumers.get(source, 0) + 1
    by_name = {node.layer.name: node for node in nodes}
    return {
        node.layer.name: by_name[node.inputs[0]].layer
        for node in nodes
        if type(node.layer).__name__ == "BatchNormalization"
        and len(node.inputs) == 1
        and node.inputs[0] in by_name
        and _foldable(by_name[node.inputs[0]].layer, node.layer)
        and consumers[node.inputs[0]] == 1
    }


def explainable(model, depthwise_as_conv: bool = False) -> Any:
    """The logits model the analyzers explain (see the module docstring), built in the
    current graph. Its layers share the model's variables (iNNvestigate's
    ``get_layer_from_config``); a linear layer a BatchNorm was folded into computes its
    weights from both layers' variables. ``depthwise_as_conv`` writes depthwise convolutions
    as grouped ``Conv2D`` (iNNvestigate's LRP refuses ``DepthwiseConv2D``; the other
    analyzers take it as it is)."""
    keras = tensorflow().keras
    input_name, nodes, output_name = graph(model)
    taken = {layer.name for layer in model.layers}
    image = keras.Input(shape=model.input_shape[1:], name=_unique("image", taken))
    tensors: dict[str, Any] = {input_name: image}
    folds_into = folds(nodes)
    folded_away = {linear.name for linear in folds_into.values()}
    for node in nodes:
        layer, kind = node.layer, type(node.layer).__name__
        sources = [tensors[name] for name in node.inputs]
        if kind in INFERENCE_IDENTITY or layer.name in folded_away:
            tensors[layer.name] = sources[0]  # a folded layer: its BatchNorm makes the copy
            continue
        last = layer.name == output_name
        if layer.name in folds_into:
            folded = _folded(folds_into[layer.name], layer, taken, depthwise_as_conv)
            tensors[layer.name] = folded(sources[0])
            continue
        if kind == "ReLU" and _plain_relu(layer):
            # iNNvestigate's LRP has no rule for a ReLU layer, only for Activation("relu").
            relu = keras.layers.Activation("relu", name=_unique(layer.name, taken))
            tensors[layer.name] = relu(sources[0])
            continue
        if kind == "Rescaling" and _scalar_rescaling(layer):
            tensors[layer.name] = _rescaling_as_conv(layer, taken)(sources[0])
            continue
        if kind == "DepthwiseConv2D" and depthwise_as_conv and not last:
            tensors[layer.name] = _grouped(layer, taken, layer.depthwise_kernel, _bias(layer))(
                sources[0]
            )
            continue
        strip = last and output_kind(model) != "logits"
        if strip and kind in ("Softmax", "Activation"):
            tensors[layer.name] = sources[0]
            continue
        overrides = {"activation": "linear"} if strip else {}
        copy = _copy(layer, taken, overrides=overrides)
        tensors[layer.name] = copy(sources if len(sources) > 1 else sources[0])
    return keras.Model(image, tensors[output_name], name=_unique(model.name, taken))


def _unique(name: str, taken: set[str]) -> str:
    candidate = f"{name}{SUFFIX}"
    index = 1
    while candidate in taken:
        candidate, index = f"{name}{SUFFIX}{index}", index + 1
    taken.add(candidate)
    return candidate


def _copy(layer, taken: set[str], overrides: dict | None = None) -> Any:
    """A new layer of the same kind and config (``overrides`` applied), named anew, sharing
    the layer's variables."""
    from innvestigate.backend.graph import get_layer_from_config

    config = {**layer.get_config(), **(overrides or {}), "name": _unique(layer.name, taken)}
    return get_layer_from_config(layer, config, reuse_symbolic_tensors=True)


def _plain_relu(layer) -> bool:
    config = layer.get_config()
    return (
        config.get("max_value") is None
        and not config.get("negative_slope")
        and not config.get("threshold")
    )


def _foldable(linear, norm) -> bool:
    config = linear.get_config()
    return (
        type(linear).__name__ in FOLDS_INTO
        and config.get("activation", "linear") == "linear"
        and norm.axis in ([-1], [len(norm.input_shape) - 1], -1)
    )


def _folded(linear, norm, taken: set[str], depthwise_as_conv: bool) -> Any:
    """A copy of the linear layer with the BatchNorm after it folded in. Its weights are
    tensors computed from both layers' variables, so the copy follows later changes of them
    (the randomisation cascade) as the shared layers do."""
    tf = tensorflow()
    channels = norm.input_shape[-1]
    gamma = norm.gamma if norm.gamma is not None else tf.ones(channels)
    beta = norm.beta if norm.beta is not None else tf.zeros(channels)
    scale = gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
    shift = beta - norm.moving_mean * scale
    kind, config = type(linear).__name__, linear.get_config()
    kernels = {name: getattr(linear, name) for name in KERNELS[kind]}
    folded = fold(kind, kernels, _bias(linear), scale, shift)
    if kind == "DepthwiseConv2D" and depthwise_as_conv:
        return _grouped(linear, taken, folded["depthwise_kernel"], folded["bias"])
    copy = type(linear).from_config(
        {**config, "name": _unique(linear.name, taken), "use_bias": True}
    )
    copy.build(linear.input_shape)
    return _with_weights(copy, folded)


def _bias(layer) -> Any:
    """The layer's bias, or zeros for a layer without one."""
    if layer.get_config().get("use_bias", True):
        return layer.bias
    return tensorflow().zeros(layer.output_shape[-1])


def _with_weights(layer, weights: dict[str, Any]) -> Any:
    """``layer`` (new, built by the caller) computing with ``weights``: tensors, not
    variables of its own (iNNvestigate's ``update_symbolic_weights``)."""
    from innvestigate.backend.graph import update_symbolic_weights

    update_symbolic_weights(layer, weights)
    return layer


def _grouped(depthwise, taken: set[str], kernel: Any, bias: Any) -> Any:
    """A depthwise convolution as the grouped ``Conv2D`` it equals (one group per input
    channel; output channel ``c * multiplier + m`` either way): iNNvestigate's LRP refuses
    ``DepthwiseConv2D`` (not in its list of convnet layers) and takes ``Conv2D``."""
    keras, tf = tensorflow().keras, tensorflow()
    config = depthwise.get_config()
    channels = int(depthwise.input_shape[-1])
    filters = channels * int(config["depth_multiplier"])
    conv = keras.layers.Conv2D(
        filters,
        config["kernel_size"],
        strides=config["strides"],
        padding=config["padding"],
        data_format=config["data_format"],
        dilation_rate=config["dilation_rate"],
        groups=channels,
        activation=config["activation"],
        name=_unique(depthwise.name, taken),
    )
    conv.build(depthwise.input_shape)
    shape = [*config["kernel_size"], 1, filters]
    return _with_weights(conv, {"kernel": tf.reshape(kernel, shape), "bias": bias})


def _scalar_rescaling(layer) -> bool:
    config = layer.get_config()
    return (
        len(layer.input_shape) == 4
        and np.ndim(config["scale"]) == 0
        and np.ndim(config["offset"]) == 0
    )


def _rescaling_as_conv(layer, taken: set[str]) -> Any:
    """``x * scale + offset`` as the 1x1 convolution it equals (kernel ``scale`` times the
    identity, bias ``offset``): LRP has no rule for ``Rescaling``."""
    keras, tf = tensorflow().keras, tensorflow()
    config = layer.get_config()
    channels = int(layer.input_shape[-1])
    conv = keras.layers.Conv2D(channels, 1, name=_unique(layer.name, taken))
    conv.build(layer.input_shape)
    identity = np.eye(channels, dtype=np.float32).reshape(1, 1, channels, channels)
    weights = {
        "kernel": tf.constant(identity * np.float32(config["scale"])),
        "bias": tf.constant(np.full(channels, config["offset"], np.float32)),
    }
    return _with_weights(conv, weights)


# The kernels of each linear layer a BatchNorm folds into; the last makes the output channels.
KERNELS = {
    "DepthwiseConv2D": ("depthwise_kernel",),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"),
}
for _kind in FOLDS_INTO:
    KERNELS.setdefault(_kind, ("kernel",))


def fold(kind: str, kernels: dict[str, Any], bias: Any, scale: Any, shift: Any) -> dict[str, Any]:
    """``y -> y * scale + shift`` per output channel, folded into a linear layer: the kernel
    that makes the output channels is scaled along them (a depthwise kernel
    ``(kh, kw, in, multiplier)`` makes channel ``c * multiplier + m``), and the bias becomes
    ``bias * scale + shift``. Arrays or tensors alike."""
    folded = dict(kernels)
    last = KERNELS[kind][-1]
    kernel = kernels[last]
    if kind == "DepthwiseConv2D":
        folded[last] = kernel * _reshape(scale, tuple(kernel.shape[2:]))
    else:
        folded[last] = kernel * scale
    folded["bias"] = bias * scale + shift
    return folded


def _reshape(values: Any, shape: tuple) -> Any:
    if isinstance(values, np.ndarray):
        return values.reshape(shape)
    return tensorflow().reshape(values, [int(n) for n in shape])

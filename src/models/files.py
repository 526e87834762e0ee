"""Keras model files as the project reads them: what wrote them and what their config holds,
read before Keras deserialises anything, and Keras 3 files rebuilt in the project's Keras.

iNNvestigate 2.1.2 pins the project to TensorFlow 2.14 (Keras 2), which cannot load what
today's Keras 3 saves (``batch_shape``, dtype policies, its weight layout). A Keras 3 file is
read here without Keras 3: its config (``config.json`` in a ``.keras`` zip, the
``model_config`` attribute of an ``.h5``) is translated layer by layer into the project's
Keras, the same network is built, and every weight is loaded from the file's own layout
(``layers/<name>/vars/<i>`` in ``model.weights.h5``; ``model_weights/<layer>/<weight>`` in
an ``.h5``). No library does this conversion, hence the code.

The config is also where code hides: a ``Lambda`` layer carries Python that Keras runs while
loading an ``.h5`` (its safe mode guards only ``.keras`` files). :func:`code_layers` finds
such layers in the config alone, so the project can refuse them before anything runs.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src.common.errors import UserError
from src.common.tf_runtime import tensorflow
from src.models.canonical import INFERENCE_IDENTITY

# Layers whose config holds code that deserialising runs.
CODE_LAYERS = frozenset({"Lambda"})
# The Keras 3 layers the project rebuilds; each is tested against Keras 3's own outputs.
SUPPORTED = (
    "Activation",
    "Add",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GaussianNoise",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "InputLayer",
    "LeakyReLU",
    "MaxPooling2D",
    "ReLU",
    "Rescaling",
    "Reshape",
    "SeparableConv2D",
    "Softmax",
    "SpatialDropout2D",
    "ZeroPadding2D",
)
# Keras 3 config keys that change nothing at inference when they hold this value.
INERT = {
    "optional": False,
    "synchronized": False,
    "renorm": False,
    "renorm_clipping": None,
    "quantization_config": None,
    "lora_rank": None,
    "lora_alpha": None,
    "input_axes": None,
    "output_axes": None,
}
# Keras 3 arguments that Keras 2 calls by another name.
RENAMED = {("LeakyReLU", "negative_slope"): "alpha"}
# Base-layer keywords every Keras 2 layer takes.
LAYER_KEYWORDS = {"name", "trainable", "dtype", "batch_input_shape", "input_shape", "batch_size"}


@dataclass(frozen=True)
class ModelFile:
    """What a model file holds, read without building anything."""

    path: Path
    kind: str  # "keras" (a zip), "h5", or "savedmodel" (a folder)
    keras_version: str  # "" where the file does not say
    config: dict | None  # the stored model config ({"class_name", "config"}); None: a folder

    @property
    def from_keras3(self) -> bool:
        return self.keras_version.split(".")[0] == "3"


def read(path: Path) -> ModelFile:
    """The file's kind, Keras version and model config; a file that is neither a Keras zip
    nor HDF5, or is damaged, is a UserError naming it."""
    if path.is_dir():
        return ModelFile(path, "savedmodel", "", None)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise UserError(f"model.path {str(path)!r} is a zip without a Keras config")
                config = json.loads(archive.read("config.json"))
                metadata = (
                    json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
                )
            return ModelFile(path, "keras", str(metadata.get("keras_version", "")), config)
        import h5py

        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as handle:
                stored = handle.attrs.get("model_config")
                version = handle.attrs.get("keras_version", "")
                if stored is None:
                    raise UserError(
                        f"model.path {str(path)!r} holds weights but no model config (save the "
                        "whole model, not only its weights)"
                    )
                config = json.loads(_text(stored))
            return ModelFile(path, "h5", _text(version), config)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, HDF5 and JSON fail in many ways
        raise UserError(
            f"model.path {str(path)!r} is damaged or not a Keras model file "
            f"({type(error).__name__}: {' '.join(str(error).split())[:150]})"
        ) from error
    raise UserError(
        f"model.path {str(path)!r} is damaged or not a Keras model file (neither a whole "
        ".keras zip nor HDF5 nor a SavedModel folder)"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def layer_configs(config: dict) -> Iterator[dict]:
    """Every layer entry of a stored model config, inner models' layers included."""
    for entry in config.get("config", {}).get("layers", []) or []:
        yield entry
        if isinstance(entry.get("config"), dict) and "layers" in entry["config"]:
            yield from layer_configs(entry)


def code_layers(config: dict | None) -> list[str]:
    """The names of the layers whose config holds code (``Lambda``)."""
    return [
        entry.get("config", {}).get("name") or entry.get("name", "?")
        for entry in (layer_configs(config) if config else [])
        if entry.get("class_name") in CODE_LAYERS
    ]


# ---------------------------------------------------------------------------------------------
# Keras 3 -> the project's Keras


def keras3_model(file: ModelFile) -> Any:
    """The Keras 3 model of ``file`` rebuilt in the project's Keras, with every weight."""
    model_config = file.config["config"]
    entries = list(model_config.get("layers", []))
    unsupported = sorted(
        {e.get("class_name", "?") for e in entries if e.get("class_name") not in SUPPORTED}
    )
    if unsupported:
        raise UserError(
            f"model.path {str(file.path)!r} (Keras {file.keras_version}) has layers the project "
            f"cannot rebuild: {', '.join(unsupported)}; supported: {', '.join(SUPPORTED)}"
        )
    layers = {entry["config"]["name"]: _layer(entry, file) for entry in entries}
    if file.config.get("class_name") == "Sequential":
        model = _sequential(model_config, entries, layers, file)
    else:
        model = _functional(model_config, entries, layers, file)
    try:
        weights = _keras_weights(file, entries) if file.kind == "keras" else _h5_weights(file)
    except Exception as error:  # noqa: BLE001 - zip (CRC), HDF5 and missing groups
        raise UserError(
            f"model.path {str(file.path)!r} is damaged: its weights cannot be read "
            f"({type(error).__name__}: {' '.join(str(error).split())[:150]})"
        ) from error
    assignments = []
    for entry in entries:
        name = entry["config"]["name"]
        layer = layers[name]
        stored = weights.get(name, [])
        expected = [tuple(w.shape) for w in layer.weights]
        if [tuple(w.shape) for w in stored] != expected:
            raise UserError(
                f"model.path {str(file.path)!r}: layer {name!r} holds weights of shapes "
                f"{[tuple(w.shape) for w in stored]}, its config needs {expected}"
            )
        assignments += zip(layer.weights, stored, strict=True)
    tensorflow().keras.backend.batch_set_value(assignments)  # one session call for all
    return model


def _layer(entry: dict, file: ModelFile) -> Any:
    """One Keras 3 layer entry as a layer of the project's Keras."""
    keras = tensorflow().keras
    kind, config = entry["class_name"], dict(entry["config"])
    cls = getattr(keras.layers, kind)
    accepted = set(inspect.signature(cls.__init__).parameters) | LAYER_KEYWORDS
    translated: dict[str, Any] = {}
    if kind == "InputLayer":
        shape = config.pop("batch_shape", None) or config.pop("batch_input_shape", None)
        translated["batch_input_shape"] = shape
    if config.get("renorm") is False:
        config.pop("renorm_momentum", None)
    if kind in INFERENCE_IDENTITY:
        config.pop("seed", None)  # their random draws happen only in training
    for key, value in config.items():
        if isinstance(value, dict) and key == "dtype":
            value = value.get("config", {}).get("name", "float32")
        elif isinstance(value, dict) and "class_name" in value:
            value = _object(key, value)
        if key in INERT and value == INERT[key]:
            continue
        key = RENAMED.get((kind, key), key)
        if key not in accepted:
            raise UserError(
                f"model.path {str(file.path)!r}: layer {config.get('name')!r} ({kind}) sets "
                f"{key}={value!r}, which the project's Keras cannot build"
            )
        translated[key] = value
    try:
        return cls.from_config(translated)
    except Exception as error:  # noqa: BLE001 - Keras refuses configs with many kinds
        raise UserError(
            f"model.path {str(file.path)!r}: layer {config.get('name')!r} ({kind}) cannot be "
            f"rebuilt: {' '.join(str(error).split())[:200]}"
        ) from error


def _object(key: str, value: dict) -> Any:
    """A serialised initializer (kept, with the arguments the project's Keras takes);
    regularizers and constraints act only in training and are left out."""
    if not key.endswith("_initializer"):
        return None
    keras = tensorflow().keras
    cls = getattr(keras.initializers, value["class_name"], None)
    if cls is None:
        return None  # the layer's default initializer: only the randomisation check uses it
    accepted = set(inspect.signature(cls.__init__).parameters)
    config = {k: v for k, v in (value.get("config") or {}).items() if k in accepted}
    return {"class_name": value["class_name"], "config": config}


def _sources(node: dict) -> list[tuple[str, int]]:
    """The (layer, node index) of each tensor a Keras 3 inbound node
    (``{"args": [tensor or [tensors]], "kwargs": {...}}``) passes."""
    found: list[tuple[str, int]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            found.append((history[0], history[1]))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(node.get("args", []))
    return found


def _entries(value: list) -> list:
    """``input_layers``/``output_layers``: one [name, node, tensor] or a list of them."""
    return [value] if value and isinstance(value[0], str) else value


def _functional(config: dict, entries: list[dict], layers: dict, file: ModelFile) -> Any:
    keras = tensorflow().keras
    tensors: dict[str, Any] = {}
    inputs = [entry[0] for entry in _entries(config["input_layers"])]
    outputs = [entry[0] for entry in _entries(config["output_layers"])]
    for entry in entries:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            tensors[name] = layers[name].output
            continue
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) != 1:
            raise UserError(
                f"model.path {str(file.path)!r}: layer {name!r} is called {len(nodes)} times "
                "(shared weights); the project explains models whose layers are used once"
            )
        sources = _sources(nodes[0])
        if any(index != 0 for _, index in sources):
            raise UserError(f"model.path {str(file.path)!r}: a layer is used more than once")
        arguments = [tensors[source] for source, _ in sources]
        tensors[name] = layers[name](arguments if len(arguments) > 1 else arguments[0])
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"model.path {str(file.path)!r}: the model must have one input, one output")
    return keras.Model(tensors[inputs[0]], tensors[outputs[0]], name=config.get("name"))


def _sequential(config: dict, entries: list[dict], layers: dict, file: ModelFile) -> Any:
    keras = tensorflow().keras
    stack = [layers[entry["config"]["name"]] for entry in entries]
    if not entries or entries[0]["class_name"] != "InputLayer":
        shape = config.get("build_input_shape") or (entries[0].get("build_config") or {}).get(
            "input_shape"
        )
        if not shape:
            raise UserError(f"model.path {str(file.path)!r}: the model does not say its input")
        stack.insert(0, keras.layers.InputLayer(batch_input_shape=shape))
    return keras.Sequential(stack, name=config.get("name"))


def snake_case(name: str) -> str:
    """Keras 3's name for an object in a weights file (``keras.src.utils.naming``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras_weights(file: ModelFile, entries: list[dict]) -> dict[str, list[np.ndarray]]:
    """A ``.keras`` file's weights by layer name. Keras 3 keeps them under
    ``layers/<key>/vars/<i>``, the key the layer's class in snake case, numbered per class in
    the model's layer order (``dense``, ``dense_1``, ...), whatever the layers are called."""
    import h5py

    with zipfile.ZipFile(file.path) as archive:
        stored = io.BytesIO(archive.read("model.weights.h5"))
    used: dict[str, int] = {}
    weights: dict[str, list[np.ndarray]] = {}
    with h5py.File(stored, "r") as handle:
        group = handle.get("layers") or {}
        for entry in entries:
            if entry["class_name"] == "InputLayer" and file.config["class_name"] == "Sequential":
                continue
            key = snake_case(entry["class_name"])
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            variables = group[key]["vars"] if key in group and "vars" in group[key] else {}
            weights[entry["config"]["name"]] = [
                np.asarray(variables[str(i)]) for i in range(len(variables))
            ]
    return weights


def _h5_weights(file: ModelFile) -> dict[str, list[np.ndarray]]:
    """An ``.h5`` file's weights by layer name, in each layer's ``weight_names`` order."""
    import h5py

    weights: dict[str, list[np.ndarray]] = {}
    with h5py.File(file.path, "r") as handle:
        root = handle.get("model_weights", handle)
        for name in root:
            group = root[name]
            names = [_text(n) for n in group.attrs.get("weight_names", [])]
            weights[name] = [np.asarray(group[n]) for n in names]
    return weights

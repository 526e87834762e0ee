"""Run under Keras 3 (``.venv-keras3``, made by ``make install-system-tests``), never by the
project: ``python keras3_files.py OUT_DIR``.

For every family of ``families.py``: the model built by Keras 3 with default layer names, its
BatchNorm statistics set to values far from their initial ones (so folding them is tested),
saved as ``<stem>.keras`` and ``<stem>.h5``, and ``<stem>.npz``: fixed inputs and the
output of every layer as Keras 3 itself computes them, keyed by layer name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from families import FAMILIES, INPUT_SHAPE, build, file_stem  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    inputs = np.random.default_rng(0).random((4, *INPUT_SHAPE)).astype("float32")
    for family in FAMILIES:
        keras.utils.set_random_seed(0)
        model = build(family, keras)
        rng = np.random.default_rng(1)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.set_weights(
                    [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()]
                )
        stem = file_stem(family)
        model.save(out / f"{stem}.keras")
        model.save(out / f"{stem}.h5")
        named = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        probe = keras.Model(model.inputs, [layer.output for layer in named])
        outputs = probe.predict(inputs, verbose=0)
        np.savez(
            out / f"{stem}.npz",
            inputs=inputs,
            **{layer.name: value for layer, value in zip(named, outputs, strict=True)},
        )
    odd_files(out / "odd")
    (out / "keras_version.json").write_text(json.dumps({"keras": keras.__version__}))


def odd_files(out: Path) -> None:
    """Files the project must refuse in one line: a layer it cannot rebuild, code in the
    config, a model for other images, a model with another number of classes."""
    out.mkdir(parents=True, exist_ok=True)
    layers = keras.layers

    def small(shape=INPUT_SHAPE, classes=10, middle=()):
        return keras.Sequential(
            [keras.Input(shape), *middle, layers.Flatten(), layers.Dense(classes)]
        )

    small(middle=[layers.Conv2DTranspose(2, 3)]).save(out / "conv_transpose.keras")
    with_code = small(middle=[layers.Lambda(lambda x: x * 2.0)])
    with_code.save(out / "lambda.keras")
    with_code.save(out / "lambda.h5")
    small(shape=(32, 32, 3)).save(out / "wrong_input.keras")
    small(classes=5).save(out / "five_classes.keras")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

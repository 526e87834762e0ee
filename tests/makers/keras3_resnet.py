"""Run under Keras 3 (``.venv-keras3``), never by the project: train the ResNet-style family
(BatchNorm, Add, global average pooling, logits) on Fashion-MNIST's IDX files and save it as
``OUT.keras`` and ``OUT.h5``, as a user of today's Keras would.

    .venv-keras3/bin/python tests/makers/keras3_resnet.py /usr/share/datasets/fashion-mnist OUT \\
        [epochs] [train images]
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from families import resnet  # noqa: E402


def idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def main(folder: Path, out: Path, epochs: int, count: int) -> None:
    images = idx(next(folder.glob("train-images-idx3-ubyte*")))[:count, ..., None] / 255.0
    labels = idx(next(folder.glob("train-labels-idx1-ubyte*")))[:count]
    test_images = idx(next(folder.glob("t10k-images-idx3-ubyte*")))[..., None] / 255.0
    test_labels = idx(next(folder.glob("t10k-labels-idx1-ubyte*")))
    keras.utils.set_random_seed(0)
    model = resnet(keras)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(images.astype("float32"), labels, batch_size=64, epochs=epochs, verbose=2)
    _, accuracy = model.evaluate(test_images.astype("float32"), test_labels, verbose=0)
    print(f"Keras {keras.__version__}: test accuracy {accuracy:.4f}")
    model.save(out.with_suffix(".keras"))
    model.save(out.with_suffix(".h5"))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(
        Path(arguments[0]),
        Path(arguments[1]),
        int(arguments[2]) if len(arguments) > 2 else 3,
        int(arguments[3]) if len(arguments) > 3 else 60000,
    )

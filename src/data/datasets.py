"""What the data stage hands on: a dataset's arrays and where they came from (:class:`Dataset`),
what a loader returns (:class:`Loaded`), and the names every part shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.common.errors import UserError

if TYPE_CHECKING:
    from src.data.shortcut import Shortcut


IMAGE_SIZE = 28  # the built-in datasets' images are 28x28
DIGIT_NAMES = tuple(str(digit) for digit in range(10))
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class DataError(UserError):
    """A dataset file is missing, unreadable or not what it claims to be."""


@dataclass(frozen=True)
class DataFile:
    """One file a dataset was read from."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Dataset:
    """Images are float32 ``(N, 28, 28, 1)`` in [0, 1]; labels int64 ``(N,)`` in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    checksum: str  # sha256 over the raw arrays as loaded, before any subsetting
    files: tuple[DataFile, ...] = ()  # the files the arrays were read from, with their sha256
    class_names: tuple[str, ...] = DIGIT_NAMES  # one per class; labels are 0..len - 1
    # With a planted shortcut (dataset.shortcut): the marker, where it is in each test image,
    # and the test images without it.
    shortcut: Shortcut | None = None
    test_masks: np.ndarray | None = None
    clean_test_images: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape, (height, width, channels): what a model takes."""
        return tuple(int(n) for n in self.train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Loaded:
    """What a loader returns: the four arrays as read (images ``(N, H, W)`` or ``(N, H, W, C)``
    of pixel bytes 0..255, integer labels), where they came from, and what the data says about
    itself. :func:`prepare` checks, scales and subsets it."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    files: tuple[Path, ...] = ()
    class_names: tuple[str, ...] | None = None  # None: the config's, else "0", "1", ...
    image_size: tuple[int, int] | None = None  # what the format requires (MNIST: 28x28)
    # Generated data: images already floats in [0, 1] (not bytes), and each test image's
    # ground-truth mask ``(N, H, W)`` (XAI-TRIS's tetrominoes).
    scaled: bool = False
    test_masks: np.ndarray | None = None


# The loaders whose images are always 28x28 (their size is known before they load).
BUILT_IN_28X28 = ("src.data.load_mnist", "src.data.load_fashion_mnist", "src.data.load_digits")
# The pipeline reads these keys of a dataset config itself; the others are its loader's.
READ_BY_PIPELINE = ("name", "train_size", "test_size", "class_names", "shortcut")

"""A planted shortcut (``experiment=shortcut``): a small bright square whose position encodes
the class, drawn into a share of the training images and into every test image, so we *know*
what a model that learned it looks at: the ground truth the localisation scores test maps
against (BlockMNIST, XAI-TRIS and CLEVR-XAI plant or know their ground truth the same way).

The markers sit on a ring along the image's border, one position per class, evenly spaced
(or at ``positions``). Which training images carry one is drawn from ``seed`` (the data's, not
the run's: every run and seed trains on the same images). Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.common.errors import UserError

MARGIN = 1  # pixels between a marker and the image's edge


@dataclass(frozen=True)
class Shortcut:
    size: int  # the square's side, pixels
    share: float  # of the training images that carry the marker of their class
    value: float  # the marker's intensity, every channel (images are in [0, 1])
    positions: tuple[tuple[int, int], ...]  # top-left corner per class
    seed: int

    def mask(self, image_shape: Sequence[int], classes: np.ndarray) -> np.ndarray:
        """(N, H, W) bool: where the marker of each class is."""
        masks = np.zeros((len(classes), *image_shape[:2]), dtype=bool)
        for index, label in enumerate(np.asarray(classes)):
            row, column = self.positions[int(label)]
            masks[index, row : row + self.size, column : column + self.size] = True
        return masks

    def draw(self, images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``images`` with the marker of ``classes[i]`` drawn into image i, and the
        markers' masks."""
        masks = self.mask(images.shape[1:], classes)
        marked = images.copy()
        marked[masks] = self.value
        return marked, masks

    def moved(self, labels: np.ndarray) -> np.ndarray:
        """For each label another class, drawn uniformly from the others (seeded): where the
        reliance test moves the marker to."""
        count = len(self.positions)
        shift = np.random.default_rng([self.seed, 1]).integers(1, count, size=len(labels))
        return (np.asarray(labels) + shift) % count


def border_positions(count: int, image_size: Sequence[int], size: int) -> list[tuple[int, int]]:
    """``count`` top-left corners for ``size``-pixel squares spread evenly, clockwise from the
    top-left corner, along a ring ``MARGIN`` pixels inside the image's border; UserError if
    they do not fit without overlapping."""
    height, width = (int(n) for n in image_size[:2])
    top, left = MARGIN, MARGIN
    bottom, right = height - MARGIN - size, width - MARGIN - size
    if bottom < top or right < left:
        raise UserError(
            f"dataset.shortcut.size {size} does not fit in the {height}x{width} images "
            f"(at most {min(height, width) - 2 * MARGIN})"
        )
    across, down = right - left, bottom - top
    perimeter = 2 * (across + down)
    if perimeter == 0 or perimeter / count < size:
        raise UserError(
            f"{count} markers of {size}x{size} pixels (one per class) do not fit apart along "
            f"the border of the {height}x{width} images: lower dataset.shortcut.size or set "
            "dataset.shortcut.positions"
        )
    corners = []
    for index in range(count):
        distance = round(index * perimeter / count)
        if distance < across:
            corners.append((top, left + distance))
        elif distance < across + down:
            corners.append((top + distance - across, right))
        elif distance < 2 * across + down:
            corners.append((bottom, right - (distance - across - down)))
        else:
            corners.append((bottom - (distance - 2 * across - down), left))
    return corners


def from_config(spec: Mapping[str, Any], image_size: Sequence[int], num_classes: int) -> Shortcut:
    """The ``dataset.shortcut`` config checked against the images and classes."""
    size = int(spec["size"])
    height, width = (int(n) for n in image_size[:2])
    if size > min(height, width):
        raise UserError(f"dataset.shortcut.size {size} is larger than the {height}x{width} images")
    positions = spec.get("positions")
    if positions is None:
        corners = border_positions(num_classes, image_size, size)
    else:
        corners = [tuple(int(n) for n in corner) for corner in positions]
        if len(corners) != num_classes:
            raise UserError(
                f"dataset.shortcut.positions has {len(corners)} positions; the data has "
                f"{num_classes} classes: give one [row, column] per class, or null"
            )
        for row, column in corners:
            if not (0 <= row <= height - size and 0 <= column <= width - size):
                raise UserError(
                    f"dataset.shortcut.positions: a {size}x{size} marker at [{row}, {column}] "
                    f"does not fit in the {height}x{width} images"
                )
    return Shortcut(
        size=size,
        share=float(spec["share"]),
        value=float(spec["value"]),
        positions=tuple(corners),
        seed=int(spec["seed"]),
    )


def plant(
    shortcut: Shortcut,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training images with the marker of their class in ``share`` of them (a seeded
    draw), the test images with it in every one, and the test images' masks."""
    chosen = np.random.default_rng([shortcut.seed, 0]).random(len(train_labels)) < shortcut.share
    train = train_images.copy()
    train[chosen] = shortcut.draw(train_images[chosen], train_labels[chosen])[0]
    test, masks = shortcut.draw(test_images, test_labels)
    return train, test, masks

"""Datasets: MNIST, Fashion-MNIST and scikit-learn's digits, as float32 images in [0, 1].

Loading order for MNIST and Fashion-MNIST: the explicit ``path`` -> Keras's download cache ->
(Fashion-MNIST) Debian's ``dataset-fashion-mnist`` copy -> download through Keras. Files are
either an ``.npz`` in Keras's layout (``x_train``, ``y_train``, ``x_test``, ``y_test``) or a
folder of the four IDX files, gzipped or not. The loaders are named by ``_target_`` in
``conf/dataset/*.yaml`` (``src.data.load_mnist``: :mod:`src.data` re-exports them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from src.common import internals
from src.common.errors import UserError
from src.data.datasets import (
    DIGIT_NAMES,
    FASHION_NAMES,
    IMAGE_SIZE,
    READ_BY_PIPELINE,
    DataError,
    Dataset,
    Loaded,
)
from src.data.readers import (
    Arrays,
    _load_digits,
    _load_from_first_source,
    _read_npz,
    files_read,
    prepare,
)


def load_configured(spec: Mapping[str, Any]) -> Dataset:
    """The dataset a ``dataset`` config describes: its ``_target_`` loader called with its
    arguments (Hydra's ``instantiate``), then checked, scaled and cut to its sizes."""
    from src.common.builders import build, check_arguments

    check_arguments("dataset", spec, read_by_pipeline=READ_BY_PIPELINE)
    arguments = {key: value for key, value in spec.items() if key not in READ_BY_PIPELINE}
    loaded = build("dataset", arguments, "a dataset")
    if not isinstance(loaded, Loaded):
        raise UserError(
            f"dataset._target_ {spec['_target_']} returned {type(loaded).__name__}, "
            "not a src.data.Loaded"
        )
    data = prepare(loaded, spec.get("train_size"), spec.get("test_size"), spec.get("class_names"))
    if spec.get("shortcut") is None:
        return data
    return with_shortcut(data, spec["shortcut"])


def with_shortcut(data: Dataset, spec: Mapping[str, Any]) -> Dataset:
    """``data`` with the marker of ``dataset.shortcut`` planted (:mod:`src.data.shortcut`)."""
    from src.data import shortcut

    planted = shortcut.from_config(spec, data.input_shape, data.num_classes)
    train, test, masks = shortcut.plant(
        planted, data.train_images, data.train_labels, data.test_images, data.test_labels
    )
    return replace(
        data,
        train_images=train,
        test_images=test,
        shortcut=planted,
        test_masks=masks,
        clean_test_images=data.test_images,
    )


def load_dataset(
    name: str,
    path: str | None = None,
    cache_dir: str | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """A built-in dataset by name (mnist, fashion_mnist, digits); keep the first
    ``train_size`` / ``test_size`` images."""
    loaded = load_digits() if name == "digits" else _load_keras_format(name, path, cache_dir)
    return prepare(loaded, train_size, test_size)


def load_mnist(path: str | None = None, cache_dir: str | None = None) -> Loaded:
    """MNIST: ``path`` (an ``mnist.npz`` or a folder of the four IDX files), else Keras's cache
    ``cache_dir``, else a download through Keras."""
    return _load_keras_format("mnist", path, cache_dir)


def load_fashion_mnist(path: str | None = None, cache_dir: str | None = None) -> Loaded:
    """Fashion-MNIST: ``path``, else Keras's cache, else Debian's ``dataset-fashion-mnist``,
    else a download through Keras."""
    return _load_keras_format("fashion_mnist", path, cache_dir)


def load_digits() -> Loaded:
    """scikit-learn's bundled 8x8 digits, resized to 28x28; the first 80% train."""
    import sklearn.datasets

    files = (Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz",)
    return Loaded(
        *_load_digits(),
        source="scikit-learn load_digits (resized to 28x28)",
        files=files,
        class_names=DIGIT_NAMES,
        image_size=(IMAGE_SIZE, IMAGE_SIZE),
    )


def load_xai_tris(
    scenario: str,
    background: str,
    image_size: int = 8,
    images: int = 10_000,
    alpha: float | None = None,
    seed: int = 0,
) -> Loaded:
    """An XAI-TRIS scenario (:mod:`src.data.xai_tris`): ``images`` generated from ``seed``, the
    first 80% train, the rest test, each test image with its ground-truth mask."""
    from src.data import xai_tris

    for value, valid, key in (
        (scenario, xai_tris.SCENARIOS, "scenario"),
        (background, xai_tris.BACKGROUNDS, "background"),
        (image_size, xai_tris.SIZES, "image_size"),
    ):
        if value not in valid:
            raise UserError(f"dataset.{key}={value}: choose one of: {', '.join(map(str, valid))}")
    if isinstance(images, bool) or not isinstance(images, int) or images < 10:
        raise UserError(f"dataset.images must be an integer of 10 or more, got {images!r}")
    made = xai_tris.generate(scenario, background, images, seed, image_size, alpha)
    cut = int(images * 0.8)
    return Loaded(
        made.images[:cut],
        made.labels[:cut],
        made.images[cut:],
        made.labels[cut:],
        source=f"XAI-TRIS {scenario}, {background} background, {image_size}x{image_size}, "
        f"alpha {made.alpha:g}, seed {seed}",
        class_names=("T", "L"),
        scaled=True,
        test_masks=made.masks[cut:],
    )


def load_npz(path: str) -> Loaded:
    """Any image data in Keras's ``.npz`` layout: ``x_train``, ``y_train``, ``x_test``,
    ``y_test`` (images ``(N, H, W)`` or ``(N, H, W, C)`` of bytes 0..255, integer labels
    0..K-1), and optionally ``class_names``."""
    location = Path(path).expanduser()
    if not location.is_file():
        raise DataError(f"dataset.path {str(location)!r} is not a file")
    arrays, names = _read_npz(location, optional=("class_names",))
    names = [str(name) for name in names["class_names"]] if "class_names" in names else None
    return Loaded(*arrays, source=str(location), files=(location,), class_names=names)


CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_BATCHES = "cifar-10-batches-py"  # the folder Keras downloads and keeps in its cache


def load_cifar10(path: str | None = None, cache_dir: str | None = "~/.keras/datasets") -> Loaded:
    """CIFAR-10 (32x32 colour, 10 classes), looked for as MNIST is: ``path`` (an ``.npz`` in
    Keras's layout, or a ``cifar-10-batches-py`` folder), else Keras's cache ``cache_dir``,
    else a download through Keras. The batches folder is the CIFAR distribution's Python
    pickles, read with Keras's own ``load_batch``: only use files from the CIFAR site."""
    tried = []
    candidates = [Path(path).expanduser()] if path is not None else []
    if path is None and cache_dir is not None:
        candidates.append(Path(cache_dir).expanduser() / CIFAR10_BATCHES)
    for candidate in candidates:
        if candidate.suffix == ".npz" and candidate.is_file():
            arrays, _ = _read_npz(candidate)
            files: tuple[Path, ...] = (candidate,)
        elif candidate.is_dir():
            arrays, files = _read_cifar_batches(candidate)
        else:
            if path is not None:
                raise DataError(f"dataset.path {str(candidate)!r} does not exist")
            tried.append(str(candidate))
            continue
        return Loaded(*arrays, source=str(candidate), files=files, class_names=CIFAR10_NAMES)
    try:
        from src.common.tf_runtime import tensorflow

        (x_train, y_train), (x_test, y_test) = tensorflow().keras.datasets.cifar10.load_data()
    except Exception as error:  # noqa: BLE001 - any failure means "not downloadable here"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        tried.append(f"download through Keras ({reason[:200]})")
        raise DataError(
            f"no cifar10 data found; tried {'; '.join(tried)}. To fix: pass dataset.path="
            "an .npz in Keras's layout or the cifar-10-batches-py folder"
        ) from error
    arrays = (x_train, y_train.reshape(-1), x_test, y_test.reshape(-1))
    return Loaded(
        *arrays, source="downloaded by tf.keras.datasets.cifar10", class_names=CIFAR10_NAMES
    )


def _read_cifar_batches(folder: Path) -> tuple[Arrays, tuple[Path, ...]]:
    """``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` of the CIFAR-10 Python
    distribution (any number of images each), as ``(N, 32, 32, 3)`` bytes and labels."""
    train = sorted(folder.glob("data_batch_*"))
    test = folder / "test_batch"
    if not train or not test.is_file():
        raise DataError(f"{folder} lacks the CIFAR-10 batches data_batch_1.. and test_batch")
    try:
        parts = [internals.read_cifar_batch(str(file)) for file in [*train, test]]
    except Exception as error:  # noqa: BLE001 - pickle and shape errors mean a corrupt batch
        raise DataError(f"{folder}: a CIFAR-10 batch cannot be read ({error})") from error
    images = [data.transpose(0, 2, 3, 1) for data, _ in parts]  # (N, 3, 32, 32) -> NHWC
    labels = [np.asarray(label, dtype=np.int64).reshape(-1) for _, label in parts]
    arrays = (np.concatenate(images[:-1]), np.concatenate(labels[:-1]), images[-1], labels[-1])
    return arrays, (*train, test)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_PIXELS = 40_000_000  # dataset.max_pixels: a 40-megapixel photo, ~160 MB decoded as RGBA


def load_image_folder(
    path: str,
    image_size: Sequence[int] = (32, 32),
    mode: str = "RGB",
    max_pixels: int = MAX_PIXELS,
) -> Loaded:
    """Images in ``path/train/<class>/`` and ``path/test/<class>/`` (PNG or JPEG, one
    sub-folder per class, class names = folder names in sorted order), each resized to
    ``image_size`` (height, width) with Pillow and converted to ``mode`` (``RGB`` or ``L``,
    grey). A file of more than ``max_pixels`` pixels is refused, naming it, before it is
    decoded."""

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset.path {str(root)!r} is not a folder")
    if mode not in ("RGB", "L"):
        raise DataError(f"dataset.mode must be RGB or L (grey), got {mode!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise DataError(f"dataset.max_pixels must be a positive integer, got {max_pixels!r}")
    height, width = (int(n) for n in image_size)
    splits = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{root} has no {split}/ folder (one sub-folder per class inside)")
        splits[split] = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = splits["train"]
    if not classes:
        raise DataError(f"{root / 'train'} has no class folders")
    missing = [name for name in classes if name not in splits["test"]]
    if missing:
        raise DataError(f"{root / 'test'} lacks the class folders {', '.join(missing)}")
    extra = [name for name in splits["test"] if name not in classes]
    if extra:
        raise DataError(f"{root / 'test'} has class folders not in train/: {', '.join(extra)}")
    arrays, files = [], []
    for split in ("train", "test"):
        images, labels = [], []
        for label, name in enumerate(classes):
            for file in sorted((root / split / name).iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                images.append(_read_image(file, mode, (width, height), max_pixels))
                labels.append(label)
                files.append(file)
        if not images:
            raise DataError(f"{root / split} holds no PNG or JPEG images")
        arrays += [np.stack(images), np.array(labels, dtype=np.int64)]
    return Loaded(*arrays, source=str(root), files=tuple(files), class_names=tuple(classes))


def _read_image(file: Path, mode: str, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """One image file as ``mode`` pixels, resized to ``size`` (width, height). Its size is
    read from the header first: Pillow's own guard (``MAX_IMAGE_PIXELS``, a warning, then an
    error at twice it) would blame no file and no setting."""
    from PIL import Image

    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the check below replaces it, for this file only
    try:
        with Image.open(file) as image:
            if image.width * image.height > max_pixels:
                raise DataError(
                    f"{file} has {image.width}x{image.height} = {image.width * image.height:,} "
                    f"pixels, more than dataset.max_pixels ({max_pixels:,}); shrink it, remove "
                    "it, or raise dataset.max_pixels"
                )
            resized = image.convert(mode).resize(size, Image.BILINEAR)
            return np.asarray(resized, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"{file} is not a readable image ({error})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _load_keras_format(name: str, path: str | None, cache_dir: str | None) -> Loaded:
    arrays, source = _load_from_first_source(name, path, cache_dir)
    return Loaded(
        *arrays,
        source=source,
        files=tuple(files_read(name, source)),
        class_names=FASHION_NAMES if name == "fashion_mnist" else DIGIT_NAMES,
        image_size=(IMAGE_SIZE, IMAGE_SIZE),
    )

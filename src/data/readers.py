"""Reading a dataset's files (``.npz``, IDX, Keras's cache, a system copy, a download) and
checking, scaling and cutting what a loader read (:func:`prepare`).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from src.data.datasets import IMAGE_SIZE, DataError, DataFile, Dataset, Loaded

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SYSTEM_COPIES = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
KERAS_CACHE_ENTRIES = {"mnist": "mnist.npz", "fashion_mnist": "fashion-mnist"}
HOW_TO_PROVIDE = {
    "mnist": "download mnist.npz (Keras layout) or the four MNIST IDX files and pass "
    "dataset.path=FILE_OR_FOLDER, or use dataset=digits, which ships with scikit-learn",
    "fashion_mnist": "install Debian's dataset-fashion-mnist package, or pass "
    "dataset.path=FOLDER holding the four Fashion-MNIST IDX files",
}


log = logging.getLogger(__name__)


def prepare(
    loaded: Loaded,
    train_size: int | None = None,
    test_size: int | None = None,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """Check what a loader read, scale it to float32 in [0, 1] with a channel axis, and keep
    the first ``train_size`` / ``test_size`` images. ``class_names`` (the config's) win over
    the data's; without either, classes are named by their numbers."""
    arrays = (loaded.train_images, loaded.train_labels, loaded.test_images, loaded.test_labels)
    names = class_names or loaded.class_names
    train_images, train_labels, test_images, test_labels = _checked(
        arrays, loaded.source, loaded.image_size, names, loaded.scaled
    )
    if names is None:
        count = int(max(train_labels.max(), test_labels.max())) + 1
        names = [str(label) for label in range(count)]
    trained = np.unique(train_labels[:train_size])
    if len(trained) < 2:
        # A classifier learns nothing from one class, and the scores compare the explained
        # class with another (random logit).
        raise DataError(
            f"{loaded.source}: the training images hold 1 class ({names[trained[0]]}); two or "
            "more are needed (a larger dataset.train_size, or data of more classes)"
        )
    tested = np.unique(test_labels[:test_size])
    if len(tested) < 2:  # a model explained on one class's images: allowed, but said
        log.warning(
            "warning: %s: the test images hold 1 class (%s): every explanation and score is "
            "of that class (a larger dataset.test_size takes in more)",
            loaded.source,
            names[tested[0]],
        )
    scale = (lambda images: images.astype(np.float32)) if loaded.scaled else _scaled
    masks = loaded.test_masks
    return Dataset(
        train_images=scale(train_images[:train_size]),
        train_labels=train_labels[:train_size].astype(np.int64),
        test_images=scale(test_images[:test_size]),
        test_labels=test_labels[:test_size].astype(np.int64),
        source=loaded.source,
        checksum=_checksum(arrays),
        files=tuple(file_digest(Path(file)) for file in loaded.files),
        class_names=tuple(str(name) for name in names),
        test_masks=None if masks is None else np.asarray(masks, dtype=bool)[:test_size],
    )


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def files_read(name: str, source: str) -> list[Path]:
    """The files behind the arrays that :func:`load_arrays` gave with this ``source``."""
    if name == "digits":
        import sklearn.datasets

        # Where load_digits reads it: scikit-learn's package data, beside its datasets module.
        return [Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"]
    if source.startswith("downloaded by "):
        # Keras keeps what it downloads in ~/.keras/datasets (/tmp/.keras if that is read-only).
        homes = (Path("~/.keras").expanduser(), Path("/tmp/.keras"))
        entries = [home / "datasets" / KERAS_CACHE_ENTRIES[name] for home in homes]
        location = next((entry for entry in entries if entry.exists()), None)
        if location is None:
            return []
    else:
        location = Path(source)
    if location.is_dir():
        return [_idx_file(location, stem) for stem in IDX_FILES.values()]
    return [location]


def file_digest(path: Path) -> DataFile:
    """A file's sha256 and size; computed once per process for each version of the file."""
    path = path.absolute()
    stat = path.stat()
    return DataFile(str(path), _sha256(str(path), stat.st_size, stat.st_mtime_ns), stat.st_size)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and modification time too: a file changed in place is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _load_from_first_source(
    name: str, path: str | None, cache_dir: str | None
) -> tuple[Arrays, str]:
    if path is not None:
        location = Path(path).expanduser()
        if not location.exists():
            raise DataError(f"dataset.path {str(location)!r} does not exist")
        return load_path(location), str(location)

    tried: list[str] = []
    candidates: list[Path] = []
    if cache_dir is not None:
        candidates.append(Path(cache_dir).expanduser() / KERAS_CACHE_ENTRIES[name])
    if name in SYSTEM_COPIES:
        candidates.append(SYSTEM_COPIES[name])
    for candidate in candidates:
        if candidate.exists():
            return load_path(candidate), str(candidate)
        tried.append(str(candidate))

    try:
        return _download(name), f"downloaded by tf.keras.datasets.{name}"
    except Exception as error:  # noqa: BLE001 - any failure means "not downloadable here"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        tried.append(f"download through Keras ({reason[:200]})")
    here = available_here(exclude=name)
    raise DataError(
        f"no {name} data found; tried {'; '.join(tried)}. To fix: {HOW_TO_PROVIDE[name]}"
        + (f". Data that is here: {', '.join(here)}" if here else "")
    )


def available_here(exclude: str = "") -> list[str]:
    """The built-in datasets this machine can load without a download, as the overrides that
    choose them: ``dataset=digits`` (it ships with scikit-learn) and those with a copy in
    Keras's cache or from a system package."""
    found = []
    for name, entry in KERAS_CACHE_ENTRIES.items():
        copies = [Path("~/.keras/datasets").expanduser() / entry]
        if name in SYSTEM_COPIES:
            copies.append(SYSTEM_COPIES[name])
        where = next((copy for copy in copies if copy.exists()), None)
        if where is not None and name != exclude:
            found.append(f"dataset={name} ({where})")
    return [*found, "dataset=digits (scikit-learn's 8x8 digits, scaled to 28x28)"]


def _download(name: str) -> Arrays:
    from src.common.tf_runtime import tensorflow

    module = getattr(tensorflow().keras.datasets, name)
    (train_images, train_labels), (test_images, test_labels) = module.load_data()
    return train_images, train_labels, test_images, test_labels


def load_path(location: Path) -> Arrays:
    """Read an ``.npz`` file in Keras's layout or a folder of the four IDX files."""
    if location.is_dir():
        return tuple(read_idx(_idx_file(location, stem)) for stem in IDX_FILES.values())  # type: ignore[return-value]
    if location.suffix == ".npz":
        return _read_npz(location)[0]
    raise DataError(
        f"dataset.path {str(location)!r} is neither an .npz file nor a folder of IDX files"
    )


def _read_npz(location: Path, optional: Sequence[str] = ()) -> tuple[Arrays, dict[str, np.ndarray]]:
    """The four arrays of an ``.npz`` in Keras's layout (pickles refused), and the
    ``optional`` ones it has."""
    try:
        with np.load(location, allow_pickle=False) as npz:
            missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in npz]
            if missing:
                raise DataError(f"{location} lacks the arrays {', '.join(missing)}")
            arrays = (npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"])
            return arrays, {key: npz[key] for key in optional if key in npz}
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - zip/pickle/IO errors all mean corrupt
        raise DataError(f"{location} is not a readable .npz file ({error})") from error


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} has no {stem} (or {stem}.gz)")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) of unsigned bytes.

    Written by hand: the format is a 4-byte magic, one big-endian uint32 per dimension, then
    the data, and no library already among the dependencies reads it with these checks.
    """
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} cannot be read ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path} has a truncated IDX header")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) + header
    if len(raw) != expected:
        raise DataError(
            f"{path} is truncated or padded: {len(raw)} bytes, its header promises {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write unsigned bytes as an IDX file (gzipped if the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    opener: Callable = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as stream:
        stream.write(header + array.tobytes())


def _load_digits() -> Arrays:
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 values 0..16 -> 28x28 values 0..255, bilinear, the same range as MNIST's bytes.
    images = zoom(digits.images, (1, IMAGE_SIZE / 8, IMAGE_SIZE / 8), order=1)
    images = np.clip(np.rint(images * (255 / 16)), 0, 255).astype(np.uint8)
    split = int(round(0.8 * len(images)))
    return images[:split], digits.target[:split], images[split:], digits.target[split:]


def _checked(
    arrays: Arrays,
    source: str,
    image_size: tuple[int, int] | None,
    class_names: Sequence[str] | None,
    scaled: bool = False,
) -> Arrays:
    """The arrays, images as ``(N, H, W, C)``, if they are what the pipeline needs: pixel
    bytes (floats in [0, 1] if ``scaled``), the same image shape in both splits
    (``image_size`` if the format fixes it), integer labels 0..K-1 (K = the number of class
    names, if there are any), one per image."""
    checked = []
    expected = "(N, H, W) or (N, H, W, C)"
    if image_size is not None:
        expected = f"(N, {image_size[0]}, {image_size[1]})"
    splits = ((arrays[0], arrays[1], "training"), (arrays[2], arrays[3], "test"))
    for images, labels, split in splits:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim == 3:
            images = images[..., np.newaxis]
        if images.ndim != 4 or (image_size is not None and images.shape[1:] != (*image_size, 1)):
            shown = images.shape if images.ndim != 4 or images.shape[-1] != 1 else images.shape[:3]
            raise DataError(f"{source}: {split} images have shape {shown}, expected {expected}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{source}: {len(images)} {split} images but labels of shape {labels.shape}"
            )
        if len(images) == 0:
            raise DataError(f"{source}: no {split} images")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.issubdtype(labels.dtype, np.floating):
                raise DataError(
                    f"{source}: {split} labels must be integers, got {labels.dtype} values"
                )
            if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise DataError(
                    f"{source}: {split} labels must be integers, got values such as "
                    f"{labels[~np.isfinite(labels) | (labels != np.round(labels))][0]!r}"
                )
            labels = labels.astype(np.int64)
        count = len(class_names) if class_names else None
        top = count - 1 if count else None
        if labels.min() < 0 or (top is not None and labels.max() > top):
            wanted = f"0..{top}" if top is not None else "0 or more"
            raise DataError(
                f"{source}: {split} labels range {labels.min()}..{labels.max()}, expected {wanted}"
            )
        if scaled:
            if not np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 1:
                raise DataError(
                    f"{source}: {split} images must be floats in [0, 1], got {images.dtype} "
                    f"values {images.min()}..{images.max()}"
                )
        elif not np.issubdtype(images.dtype, np.integer) or images.min() < 0 or images.max() > 255:
            raise DataError(
                f"{source}: {split} images must be pixel bytes 0..255, got {images.dtype} "
                f"values {images.min()}..{images.max()}"
            )
        checked += [images, labels]
    if checked[0].shape[1:] != checked[2].shape[1:]:
        raise DataError(
            f"{source}: training images are {checked[0].shape[1:]} but test images "
            f"{checked[2].shape[1:]}; both splits need one shape"
        )
    return tuple(checked)  # type: ignore[return-value]


def _scaled(images: np.ndarray) -> np.ndarray:
    """Bytes 0..255 -> float32 in [0, 1] (divided in place: one float copy of the images at a
    time, not two)."""
    scaled = images.astype(np.float32)
    scaled /= 255.0
    return scaled


def _checksum(arrays: Arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)  # the array's buffer, not a copy
    return digest.hexdigest()

"""The data stage: datasets as float32 images in [0, 1] (:mod:`src.data.datasets`), the
loaders the configs name (:mod:`src.data.loaders`: ``_target_: src.data.load_mnist`` in
``conf/dataset/*.yaml``, re-exported here), reading and checking their files
(:mod:`src.data.readers`), and the planted shortcut (:mod:`src.data.shortcut`)."""

from src.data.datasets import (
    BUILT_IN_28X28,
    DIGIT_NAMES,
    FASHION_NAMES,
    IMAGE_SIZE,
    READ_BY_PIPELINE,
    DataError,
    DataFile,
    Dataset,
    Loaded,
)
from src.data.loaders import (
    CIFAR10_NAMES,
    load_cifar10,
    load_configured,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    load_mnist,
    load_npz,
    load_xai_tris,
    with_shortcut,
)
from src.data.readers import IDX_FILES, available_here, prepare, read_idx, write_idx

__all__ = [
    "BUILT_IN_28X28",
    "CIFAR10_NAMES",
    "DIGIT_NAMES",
    "FASHION_NAMES",
    "IDX_FILES",
    "IMAGE_SIZE",
    "READ_BY_PIPELINE",
    "DataError",
    "DataFile",
    "Dataset",
    "Loaded",
    "available_here",
    "load_cifar10",
    "load_configured",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "load_xai_tris",
    "prepare",
    "read_idx",
    "with_shortcut",
    "write_idx",
]

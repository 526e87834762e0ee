"""Shared fixtures: configs composed with Hydra's compose API, small data written to tmp_path.
The helpers they use, and the tests' other helpers, are in support.py."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from src.config.cli import register_resolvers
from src.data import IDX_FILES, write_idx
from src.tracking import set_up

# MLflow's settings and loggers as the entry points make them (src/train.py, src/report/,
# src/tracking/repair.py): for the runs, stores and reports the tests make in this process.
# Before anything imports MLflow, as in the entry points: support.py imports it.
set_up()

register_resolvers()

from support import KERAS3_PYTHON, MAKERS, composed, require, synthetic_split  # noqa: E402

Compose = Callable[..., DictConfig]


@pytest.fixture
def compose_config(tmp_path: Path) -> Compose:
    """Compose the real config with overrides; the store, outputs and reports go to
    ``tmp_path`` (support.composed)."""

    def _compose(*overrides: str) -> DictConfig:
        return composed(tmp_path, *overrides)

    return _compose


@pytest.fixture
def idx_folder(tmp_path: Path) -> Callable[..., Path]:
    """Write the four IDX files of a small synthetic dataset; returns the folder."""

    def _write(train: int = 300, test: int = 100, gz: bool = True) -> Path:
        folder = tmp_path / ("idx_gz" if gz else "idx_raw")
        folder.mkdir(exist_ok=True)
        train_images, train_labels = synthetic_split(train, seed=1)
        test_images, test_labels = synthetic_split(test, seed=2)
        arrays = (train_images, train_labels, test_images, test_labels)
        for stem, array in zip(IDX_FILES.values(), arrays, strict=True):
            write_idx(folder / (f"{stem}.gz" if gz else stem), array)
        return folder

    return _write


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    train_images, train_labels = synthetic_split(200, seed=1)
    test_images, test_labels = synthetic_split(50, seed=2)
    path = tmp_path / "mnist.npz"
    np.savez(
        path, x_train=train_images, y_train=train_labels, x_test=test_images, y_test=test_labels
    )
    return path


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Write ``<package>/<module>.py`` outside ``src/`` (a user's own code) and make it
    importable: ``user_package("mylab.nets", source)``."""

    def _write(dotted: str, source: str) -> None:
        package, module = dotted.split(".")
        folder = tmp_path / package
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text("")
        (folder / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))

    return _write


@pytest.fixture(scope="session")
def keras3_files(tmp_path_factory) -> Path:
    """Every family of ``tests/makers/families.py`` saved by Keras 3 as .keras and .h5, with
    Keras 3's own outputs of every layer, and the odd files to refuse (one run of
    ``tests/makers/keras3_files.py`` in the Keras 3 environment)."""
    require(KERAS3_PYTHON.exists(), "the Keras 3 environment .venv-keras3")
    out = tmp_path_factory.mktemp("keras3")
    made = subprocess.run(
        [str(KERAS3_PYTHON), str(MAKERS / "keras3_files.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(out)},
    )
    assert made.returncode == 0, made.stderr[-3000:]
    return out

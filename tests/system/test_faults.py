"""Corrupt inputs against a store that already holds a run: each gives one clear error line and
changes nothing already stored (the real CLI in subprocesses, the store read back)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from support import SMALL, all_runs, assert_one_line_error, client_for, store_dir, train_cli

# What every run here sets besides its dataset: one epoch, 100 test images, 6 explained, no scores.
QUICK = [
    "dataset.test_size=100",
    "train.epochs=1",
    "explain.n_images=6",
    "evaluate=off",
    "analyzer=gradient",
]


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A folder with a store (``base/store``) holding one finished run. World-readable, unlike
    pytest's tmp_path: the permission cases run the CLI as an unprivileged user."""
    folder = Path(tempfile.mkdtemp(prefix="xai-lab-faults-")).resolve()
    folder.chmod(0o755)
    try:
        result = train_cli(folder, *SMALL, *QUICK)
        assert result.returncode == 0, result.stderr[-3000:]
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def snapshot(base: Path) -> dict:
    """The store as a user sees it: each run's status, params, metrics (every step) and tags,
    and every file under the artifacts and the model cache with its sha256."""
    client = client_for(base)
    runs = {
        run.info.run_id: {
            "status": run.info.status,
            "end_time": run.info.end_time,
            "params": run.data.params,
            "tags": run.data.tags,
            "metrics": {
                key: [
                    (m.step, m.timestamp, m.value)
                    for m in client.get_metric_history(run.info.run_id, key)
                ]
                for key in run.data.metrics
            },
        }
        for run in all_runs(base)
    }
    store = store_dir(base)
    files = {
        str(path.relative_to(store)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in ("artifacts", "model_cache")
        for path in sorted((store / folder).rglob("*"))
        if path.is_file()
    }
    return {"runs": runs, "files": files}


def truncated_idx(tmp_path: Path, idx_folder, npz_file) -> tuple[str, str]:
    folder = idx_folder(gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1000])
    return f"dataset.path={folder}", f"{path} is truncated or padded"


def truncated_npz(tmp_path: Path, idx_folder, npz_file) -> tuple[str, str]:
    npz_file.write_bytes(npz_file.read_bytes()[:500])
    return f"dataset.path={npz_file}", f"{npz_file} is not a readable .npz file"


def with_arrays(npz_file: Path, **changes: np.ndarray) -> None:
    with np.load(npz_file) as npz:
        arrays = {key: npz[key] for key in npz.files}
    np.savez(npz_file, **{**arrays, **changes})


def images_32x32(tmp_path: Path, idx_folder, npz_file) -> tuple[str, str]:
    with_arrays(npz_file, x_train=np.zeros((200, 32, 32), np.uint8))
    return f"dataset.path={npz_file}", "training images have shape (200, 32, 32), expected (N, 28"


def label_10(tmp_path: Path, idx_folder, npz_file) -> tuple[str, str]:
    with np.load(npz_file) as npz:
        labels = npz["y_train"].copy()
    labels[5] = 10
    with_arrays(npz_file, y_train=labels)
    return f"dataset.path={npz_file}", "training labels range 0..10, expected 0..9"


class Payload:
    """Unpickled, it creates the file ``marker``: proof that code in the data ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def pickled_objects(tmp_path: Path, idx_folder, npz_file) -> tuple[str, str]:
    marker = tmp_path / "the-pickle-ran"
    payload = np.empty(200, dtype=object)
    payload[:] = [Payload(marker)] * 200
    with_arrays(npz_file, x_train=payload)
    # The trap is armed: loading the file with pickles allowed runs the payload.
    with np.load(npz_file, allow_pickle=True) as npz:
        npz["x_train"]
    assert marker.exists()
    marker.unlink()
    return f"dataset.path={npz_file}", f"{npz_file} is not a readable .npz file (Object arrays"


CORRUPT_DATA: dict[str, Callable[..., tuple[str, str]]] = {
    "truncated IDX": truncated_idx,
    "truncated npz": truncated_npz,
    "32x32 images": images_32x32,
    "label 10": label_10,
    "pickled objects": pickled_objects,
}


@pytest.mark.slow
@pytest.mark.parametrize("corrupt", CORRUPT_DATA.values(), ids=CORRUPT_DATA.keys())
def test_corrupt_data_fails_in_one_line_and_changes_nothing_stored(
    base, tmp_path, idx_folder, npz_file, corrupt
):
    path_override, message = corrupt(tmp_path, idx_folder, npz_file)
    before = snapshot(base)
    result = train_cli(base, "dataset=mnist", path_override, "dataset.train_size=300", *QUICK)
    assert result.returncode == 2, result.stderr[-3000:]
    assert_one_line_error(result, message)
    assert snapshot(base) == before
    assert not (tmp_path / "the-pickle-ran").exists()


def unprivileged(command: list[str]) -> tuple[list[str], dict]:
    """``command`` and subprocess options that run it as a user who cannot write root's files.
    Root itself may write anything, whatever the permission bits say."""
    if os.geteuid() != 0:
        return command, {}
    nobody = pwd.getpwnam("nobody")
    options = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    try:
        subprocess.run([sys.executable, "-c", ""], check=True, timeout=60, **options)
        return command, options
    except (OSError, subprocess.CalledProcessError):
        pass
    # This interpreter is out of nobody's reach (say a Python under /root, mode 0700): run it
    # as nobody with only the capability to read and search everything (CAP_DAC_READ_SEARCH);
    # writing still obeys the permission bits.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(f"user nobody cannot run {sys.executable}, and there is no setpriv")
    capability = "+dac_read_search"
    wrapper = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    wrapper += [f"--inh-caps={capability}", f"--ambient-caps={capability}"]
    return [*wrapper, *command], {}


# Each part of the store that prepare checks, in its order, and the error it gives.
UNWRITABLE = {
    "store folder": ("", "the tracking store folder {path} is not writable (tracking.dir)"),
    "database": (
        "mlflow.db",
        "the tracking store database {path} is not writable (tracking.dir)",
    ),
    "artifacts folder": (
        "artifacts",
        "the tracking store artifacts folder {path} is not writable (tracking.dir)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("part, message", UNWRITABLE.values(), ids=UNWRITABLE.keys())
def test_a_store_that_cannot_be_written_fails_in_one_line_and_changes_nothing(base, part, message):
    store = store_dir(base)
    checked = [store, store / "mlflow.db", store / "artifacts"]
    target = store / part if part else store
    modes = {path: path.stat().st_mode & 0o7777 for path in checked}
    # The user's own folders: home, working directory and Hydra's outputs.
    own = base / "unprivileged"
    own.mkdir(exist_ok=True)
    own.chmod(0o777)
    command = [sys.executable, "-m", "src.train", f"tracking.dir={store}"]
    command += [f"paths.output_dir={own / 'outputs'}", f"paths.report_dir={own / 'reports'}"]
    command, options = unprivileged([*command, *SMALL, *QUICK])
    before = snapshot(base)
    try:
        if os.geteuid() == 0:
            # Root owns the store: the parts checked before the target are opened to everyone,
            # the target stays writable by its owner only.
            for path in checked[: checked.index(target)]:
                path.chmod(0o777 if path.is_dir() else 0o666)
            target.chmod(0o755 if target.is_dir() else 0o644)
        else:
            target.chmod(0o555 if target.is_dir() else 0o444)
        result = subprocess.run(
            command,
            cwd=own,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "HOME": str(own)},
            **options,
        )
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert result.returncode == 2, result.stderr[-3000:]
    assert_one_line_error(result, message.format(path=target))
    assert snapshot(base) == before


@pytest.mark.slow
def test_an_unreadable_cached_model_is_trained_again_and_earlier_runs_stay(base):
    before = snapshot(base)
    (weights,) = (store_dir(base) / "model_cache").glob("*/epoch-*/weights.h5")
    weights.write_bytes(weights.read_bytes()[:200])
    result = train_cli(base, *SMALL, *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    (warning,) = [line for line in result.stderr.splitlines() if "training again" in line]
    assert f"{weights} is damaged (its SHA-256 differs" in warning

    after = snapshot(base)
    (added,) = set(after["runs"]) - set(before["runs"])
    assert after["runs"][added]["status"] == "FINISHED"
    assert after["runs"][added]["tags"]["model_reused"] == "false"
    assert {run_id: after["runs"][run_id] for run_id in before["runs"]} == before["runs"]
    # Every artifact stored before is still there, unchanged; the cache entry is new.
    artifacts = {path for path in before["files"] if path.startswith("artifacts/")}
    assert {path: after["files"].get(path) for path in artifacts} == {
        path: before["files"][path] for path in artifacts
    }


@pytest.mark.slow
def test_a_cache_folder_that_cannot_be_made_fails_in_one_line_before_any_run(base):
    """``train.cache_dir`` under a regular file: checked up front, like the store."""
    blocker = base / "a-file"
    blocker.write_text("not a folder")
    before = snapshot(base)
    try:
        result = train_cli(base, *SMALL, *QUICK, f"train.cache_dir={blocker / 'cache'}")
    finally:
        blocker.unlink()
    assert result.returncode == 2, result.stderr[-3000:]
    assert_one_line_error(result, f"train.cache_dir={blocker / 'cache'}: cannot create it")
    assert snapshot(base) == before

"""The tests' helpers, in one place: where a test's store and outputs go, the real config
composed, the real CLI run in a subprocess and its store read back, small data files, and the
services and system packages some tests need. Fixtures live in conftest.py and use these."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from src.common.paths import CONFIG_DIR, PROJECT_ROOT

# A small run: the bundled digits (offline) and 300 training images. Every test that runs the
# lab starts from it and adds what it needs: `[*SMALL, "train.epochs=1"]`.
SMALL = ["dataset=digits", "dataset.train_size=300"]
# ...with no scores: a run that stops after its explanation.
SMALL_UNSCORED = [*SMALL, "evaluate=off"]


# The Keras 3 environment (`make install-system-tests`) and the scripts it runs to make model
# files (tests/makers/).
KERAS3_PYTHON = PROJECT_ROOT / ".venv-keras3" / "bin" / "python"
MAKERS = Path(__file__).resolve().parent / "makers"


def store_dir(folder: Path) -> Path:
    """The store of a test's runs in ``folder`` (a tmp_path): every helper here puts it there."""
    return folder / "store"


def default_overrides(tmp_path: Path) -> list[str]:
    """The store, Hydra's outputs and the reports in ``tmp_path``, never in the project."""
    return [
        f"tracking.dir={store_dir(tmp_path)}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.report_dir={tmp_path / 'reports'}",
    ]


def composed(tmp_path: Path, *overrides: str) -> DictConfig:
    """The real config composed with ``overrides``, as a run in ``tmp_path`` gets it (see
    :func:`default_overrides`)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*default_overrides(tmp_path), *overrides])


def command_line(tmp_path: Path, start: Sequence[str], args: Sequence[str]) -> list[str]:
    """``python <start> <flags> <store overrides> <overrides>``: flags such as ``-m`` go first,
    as Hydra's command line wants them, and the store and outputs go to ``tmp_path``."""
    flags = [arg for arg in args if arg.startswith("-")]
    overrides = [arg for arg in args if not arg.startswith("-")]
    return [sys.executable, *start, *flags, *default_overrides(tmp_path), *overrides]


def run_module(
    tmp_path: Path, module: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` (see :func:`command_line`) from ``tmp_path``, not the
    project root."""
    return subprocess.run(
        command_line(tmp_path, ("-m", module), args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": str(tmp_path)},  # an empty Keras cache
    )


def train_cli(tmp_path: Path, *overrides: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_module(tmp_path, "src.train", *overrides, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    """The command's stderr ends in exactly one ``error:`` line, which says ``message``, and
    shows no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert message in errors[0], result.stderr[-3000:]
    assert errors[0] == lines[-1]
    assert "Traceback" not in result.stderr


def client_for(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{store_dir(tmp_path) / 'mlflow.db'}")


def all_runs(tmp_path: Path) -> list[Run]:
    if not (store_dir(tmp_path) / "mlflow.db").exists():
        return []
    client = client_for(tmp_path)
    experiments = client.search_experiments()
    return client.search_runs([e.experiment_id for e in experiments]) if experiments else []


def metrics_logged(db: Path) -> int:
    """How many metric values the SQLite store holds, read directly: safe while another process
    is still creating the store (an MlflowClient would try to create it too)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    except sqlite3.OperationalError:  # tables not made yet, or locked for a moment
        return 0


def sweep_runs(tmp_path: Path) -> tuple[list[Run], dict[str, list[Run]]]:
    """The sweeps' parent runs, and each parent's children by its run id."""
    runs = all_runs(tmp_path)
    parents = [run for run in runs if run.data.tags.get("sweep_role") == "parent"]
    children = {
        parent.info.run_id: [
            r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        ]
        for parent in parents
    }
    return parents, children


@dataclass(frozen=True)
class Stopped:
    returncode: int
    stderr: str
    seconds: float  # from the signal to the process's exit


def signal_when(
    tmp_path: Path,
    signum: int,
    *args: str,
    ready: Callable[[], bool] | None = None,
    group: bool = False,
) -> Stopped:
    """Start ``python -m src.train <args>`` and send ``signum`` once ``ready()`` (by default:
    once the first epoch's metrics are in the store), to the whole process group if ``group``
    (as Ctrl-C in a terminal does, reaching every worker too)."""
    db = store_dir(tmp_path) / "mlflow.db"
    ready = ready or (lambda: metrics_logged(db) > 0)
    process = subprocess.Popen(
        command_line(tmp_path, ("-m", "src.train"), args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never got ready:\n{process.communicate()[1][-3000:]}")
            time.sleep(0.2)
        sent = time.monotonic()
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
        return Stopped(process.returncode, stderr, time.monotonic() - sent)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# Measurements of time and memory, which differ from one run to the next by nature, and of
# cost: the epochs a run trained itself (0 when it reused its model).
MEASURED = re.compile(r"(_s|_mb)$|^train_epochs_run$")


def run_record(
    client, run, folder: Path, artifacts: Sequence[str] = ("heatmaps.npz", "scores.npz")
) -> dict:
    """What must be bit-identical between two runs of one config: every metric that is not a
    measurement (each step, as the float's hex), and the heatmaps and per-image scores."""
    record = {}
    for key in sorted(run.data.metrics):
        if not MEASURED.search(key):
            history = client.get_metric_history(run.info.run_id, key)
            record[key] = sorted((m.step, float(m.value).hex()) for m in history)
    for artifact in artifacts:
        path = client.download_artifacts(run.info.run_id, artifact, str(folder / run.info.run_id))
        with np.load(path, allow_pickle=False) as npz:
            record.update({f"{artifact}:{key}": npz[key].tobytes() for key in npz.files})
    return record


def free_port() -> int:
    """A loopback port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(available: bool, what: str) -> None:
    """Skip a test whose system package is missing, unless told that it must run (.ci/run sets
    XAI_LAB_REQUIRE_SYSTEM_TESTS=1 after installing them): then a missing package fails it."""
    if available:
        return
    message = f"{what} is not installed (make install-system-tests)"
    if os.environ.get("XAI_LAB_REQUIRE_SYSTEM_TESTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def make_service(target: str, port: int, **variables: str) -> Iterator[str]:
    """``make <target> PORT=<port> VAR=value ...`` (``ui`` or ``server``) in the background, as a
    person starts it; yields its URL once it answers, then stops it and its workers."""
    # -o: the project is installed already; never reinstall it inside a test.
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", target, f"PORT={port}"]
    command += [f"{name}={value}" for name, value in variables.items()]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while not _answers(f"{url}/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read()[-3000:]
                    raise AssertionError(f"`{' '.join(command)}` did not come up:\n{output}")
                time.sleep(0.5)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at ``port``, from /proc/net/tcp."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A = LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return addresses


def mounted_tmpfs(folder: Path, size: str) -> contextlib.AbstractContextManager:
    """A file system of ``size`` (e.g. "64k") at ``folder`` for the block: a disk that fills
    up for real. Needs root (as CI has)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    require(mounted.returncode == 0, f"mounting a tmpfs (root): {mounted.stderr.strip()}")

    @contextlib.contextmanager
    def unmount() -> Iterator[None]:
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)

    return unmount()


# -- data files -------------------------------------------------------------------------------


def synthetic_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k is a bright bar at row 2k + 4, plus a little noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[2 * label + 4 : 2 * label + 6, 4:24] = 255
    return images, labels.astype(np.uint8)


def colour_npz(path, train=120, test=40, classes=5, size=32, names=True):
    """RGB images: class k is a bright square in colour channel k % 3 at a place of its own."""
    rng = np.random.default_rng(0)

    def split(count):
        labels = np.arange(count) % classes
        images = rng.integers(0, 60, size=(count, size, size, 3), dtype=np.uint8)
        for image, label in zip(images, labels, strict=True):
            row = 4 + 5 * label
            image[row : row + 4, 6:26, label % 3] = 250
        return images, labels.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(train), split(test)
    extra = {"class_names": np.array([f"class {k}" for k in range(classes)])} if names else {}
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    return path


def image_folder(root, classes=("cat", "dog", "eel"), per_class=(4, 2), size=(20, 24)):
    """PNG and JPEG files of solid colours, one colour per class, in train/ and test/."""
    from PIL import Image

    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
    for split, count in zip(("train", "test"), per_class, strict=True):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                suffix = ".png" if index % 2 == 0 else ".jpg"
                Image.new("RGB", size, colours[label]).save(folder / f"{index}{suffix}")
            (folder / "notes.txt").write_text("not an image")
    return root

"""Helpers for tests that run the real CLI in a subprocess and read the store back."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient


def default_overrides(tmp_path: Path) -> list[str]:
    return [
        f"tracking.dir={tmp_path / 'store'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.report_dir={tmp_path / 'reports'}",
    ]


def run_module(
    tmp_path: Path, module: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """``python -m <module> <flags> <store overrides> <overrides>`` from ``tmp_path`` (not the
    project root); flags such as ``-m`` go first, as Hydra's command line wants them."""
    flags = [arg for arg in args if arg.startswith("-")]
    overrides = [arg for arg in args if not arg.startswith("-")]
    return subprocess.run(
        [sys.executable, "-m", module, *flags, *default_overrides(tmp_path), *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": str(tmp_path)},  # an empty Keras cache
    )


def train_cli(tmp_path: Path, *overrides: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_module(tmp_path, "src.train", *overrides, timeout=timeout)


def client_for(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")


def all_runs(tmp_path: Path) -> list[Run]:
    if not (tmp_path / "store" / "mlflow.db").exists():
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


def interrupt_during_training(tmp_path: Path, signum: int, *args: str) -> tuple[int, str]:
    """Start ``python -m src.train <args>`` (a long training on the digits), send ``signum``
    once the first epoch is logged; returns the exit code and stderr."""
    flags = [arg for arg in args if arg.startswith("-")]
    overrides = [arg for arg in args if not arg.startswith("-")]
    process = subprocess.Popen(
        [sys.executable, "-m", "src.train", *flags, *default_overrides(tmp_path), *overrides],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while metrics_logged(tmp_path / "store" / "mlflow.db") == 0:
            assert process.poll() is None and time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr


def free_port() -> int:
    """A loopback port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""A store that fails under a running run: a tracking server killed, a disk that fills up, a
database another process keeps locked, a kill while a fresh store is being made, stdout closed.
The real CLI in a subprocess, the fault injected from outside, the store read back.

What each must give: one line naming the fault (no traceback), a true end status, or a line
saying the run is left RUNNING and that `make repair` ends it, which is then checked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import (
    SMALL_UNSCORED,
    all_runs,
    command_line,
    free_port,
    metrics_logged,
    mounted_tmpfs,
    run_module,
    store_dir,
)

pytestmark = pytest.mark.slow
LONG = [*SMALL_UNSCORED, "train.epochs=2000"]  # stopped by the fault long before it ends


def start_training(tmp_path: Path, *args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(
        command_line(tmp_path, ("-m", "src.train"), args),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **{"stdout": subprocess.DEVNULL, **popen},
    )


def wait_until(ready, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never got ready:\n{process.communicate()[1][-3000:]}")
        time.sleep(0.2)


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, float]:
    """Wait for the process; its exit code, stderr and the seconds it took from now."""
    started = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stderr, time.monotonic() - started


def assert_one_error_line(stderr: str, *phrases: str) -> str:
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


@contextlib.contextmanager
def locked(database: Path, seconds: float) -> Iterator[subprocess.Popen]:
    """Another process holding the SQLite database's write lock for ``seconds``."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(database)!r}, isolation_level=None, timeout=60)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            f"time.sleep({seconds})\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


def repair(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    result = run_module(tmp_path, "src.repair", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_sigterm_while_another_process_locks_the_store_exits_130_within_30_s(tmp_path):
    """SLURM's grace between SIGTERM and SIGKILL is 30 s; MLflow waits 20 s for a lock per
    write. The run says it is left RUNNING, and `make repair` ends it once the lock is gone."""
    database = store_dir(tmp_path) / "mlflow.db"
    process = start_training(tmp_path, *LONG)
    wait_until(lambda: metrics_logged(database) > 0, process)
    with locked(database, 90):
        time.sleep(1)  # the run's next epoch write now waits for the lock
        process.send_signal(signal.SIGTERM)
        code, stderr, seconds = finish(process)
    assert code == 130, stderr[-3000:]
    assert seconds < 30, seconds
    assert_one_error_line(stderr, "left RUNNING", "make repair")
    (run,) = all_runs(tmp_path)
    assert run.info.status == "RUNNING"
    assert (
        "1 run(s) left RUNNING by a process that is gone marked KILLED" in repair(tmp_path).stderr
    )
    (run,) = all_runs(tmp_path)
    assert run.info.status == "KILLED"


@pytest.mark.parametrize("seconds", [30, 60])
def test_a_store_locked_longer_than_mlflow_waits_fails_the_run_in_one_line(tmp_path, seconds):
    """MLflow waits 20 s for the lock per write: the write fails; the end status waits in turn,
    and is retried, until the lock is gone."""
    database = store_dir(tmp_path) / "mlflow.db"
    process = start_training(tmp_path, *LONG)
    wait_until(lambda: metrics_logged(database) > 0, process)
    with locked(database, seconds):
        code, stderr, _ = finish(process)
    assert code == 1, stderr[-3000:]
    assert_one_error_line(stderr, "stayed locked by another process")
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FAILED"  # written once the lock was released


@contextlib.contextmanager
def kept_full(folder: Path) -> Iterator[None]:
    """The file system of ``folder`` filled to the last byte, and kept so: space that SQLite
    frees (a rolled-back transaction's journal deleted) is taken again at once, not left for
    the run's next write. The filler is gone afterwards."""
    filler = folder / "filler"
    stop = threading.Event()
    with filler.open("wb", buffering=0) as out:

        def keep_full() -> None:
            while not stop.is_set():
                try:
                    out.write(b"\0" * 4096)
                except OSError:  # full: look again in a moment
                    time.sleep(0.0005)

        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        keeper = threading.Thread(target=keep_full, daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
    filler.unlink()


def test_a_full_artifact_disk_fails_the_run_in_one_line(tmp_path):
    """Artifacts on their own, full, disk: the run ends FAILED (the database takes the end)."""
    artifacts = store_dir(tmp_path) / "artifacts"
    with mounted_tmpfs(artifacts, "64k"):
        result = run_module(tmp_path, "src.train", *SMALL_UNSCORED, "train.epochs=1", timeout=600)
        assert result.returncode == 1, result.stderr[-3000:]
        assert_one_error_line(result.stderr, "its disk is full")
        (run,) = all_runs(tmp_path)
        assert run.info.status == "FAILED"


def test_a_store_whose_disk_fills_up_leaves_the_run_for_make_repair(tmp_path):
    """Database and artifacts on one disk that fills up mid-run and stays full: neither the
    next write nor the end status fits; the line says the run is left RUNNING, and `make
    repair` ends it once there is room. Should the end status fit after all (space freed by
    the store itself), the line must not say so and the run must be FAILED: the line is true
    either way."""
    store = store_dir(tmp_path)
    with mounted_tmpfs(store, "8m"):
        process = start_training(tmp_path, *LONG)
        wait_until(lambda: metrics_logged(store / "mlflow.db") > 0, process)
        with kept_full(store):
            code, stderr, _ = finish(process)
        assert code == 1, stderr[-3000:]
        line = assert_one_error_line(stderr, "its disk is full")
        (run,) = all_runs(tmp_path)
        if "left RUNNING" not in line:
            assert run.info.status == "FAILED", line
            return
        assert "make repair" in line
        assert run.info.status == "RUNNING"
        repair(tmp_path)
        (run,) = all_runs(tmp_path)
        assert run.info.status == "KILLED"


@contextlib.contextmanager
def tracking_server(folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError):
                import urllib.request

                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            assert server.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.5)
        yield url, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_a_tracking_server_that_dies_is_noticed_within_30_s_in_one_line(tmp_path):
    with tracking_server(tmp_path) as (url, server):
        process = start_training(tmp_path, *LONG, f"tracking.uri={url}")
        wait_until(lambda: metrics_logged(tmp_path / "server.db") > 0, process)
        os.killpg(server.pid, signal.SIGKILL)
        code, stderr, seconds = finish(process)
    assert code == 1, stderr[-3000:]
    assert seconds < 35, seconds
    assert_one_error_line(
        stderr, "tracking server stopped answering", "left RUNNING", "make repair"
    )
    with tracking_server(tmp_path) as (url, _):  # back, on the same database
        assert "1 run(s) left RUNNING" in repair(tmp_path, f"tracking.uri={url}").stderr
        (run,) = MlflowClient(url).search_runs(["1"])
        assert run.info.status == "KILLED"


def test_ctrl_c_with_stdout_closed_still_ends_the_sweep_and_its_runs(tmp_path):
    """`python -m src.train -m … | tee log`, then Ctrl-C: tee dies with the terminal's signal,
    stdout becomes a closed pipe. MLflow printed "View run …" there before writing the status
    (BrokenPipeError): the parent stayed RUNNING. Against a tracking server, where it prints."""
    with tracking_server(tmp_path) as (url, _):
        reader, writer = os.pipe()
        process = start_training(
            tmp_path, "-m", *LONG, "seed=0,1", f"tracking.uri={url}", stdout=writer
        )
        os.close(writer)
        wait_until(lambda: metrics_logged(tmp_path / "server.db") > 0, process)
        os.close(reader)  # tee is gone
        process.send_signal(signal.SIGINT)
        code, stderr, _ = finish(process)
        assert code == 130, stderr[-3000:]
        runs = MlflowClient(url).search_runs(["1"])
    statuses = {run.data.tags.get("sweep_role", "job"): run.info.status for run in runs}
    assert statuses == {"parent": "KILLED", "job": "KILLED"}, statuses


def test_a_kill_while_a_fresh_store_is_made_leaves_it_usable(tmp_path):
    """SIGKILL while MLflow creates the tables of a new store (a second or so of migrations)
    used to leave a database every later run refused ("table … already exists")."""
    store = store_dir(tmp_path)
    store.mkdir()
    killer = (
        "import os, signal, threading, time\n"
        "from pathlib import Path\n"
        f"store = Path({str(store)!r})\n"
        "def size(path):\n"  # a journal file can go between listing and stat
        "    try:\n"
        "        return path.stat().st_size\n"
        "    except FileNotFoundError:\n"
        "        return 0\n"
        "def watch():\n"
        "    while True:\n"
        "        made = [p for p in store.iterdir() if 'mlflow.db' in p.name]\n"
        "        if any(size(p) > 200_000 for p in made):\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        time.sleep(0.005)\n"
        "threading.Thread(target=watch, daemon=True).start()\n"
        "import runpy\n"
        "runpy.run_module('src.train', run_name='__main__', alter_sys=True)\n"
    )
    killed = subprocess.run(
        command_line(tmp_path, ("-c", killer), [*SMALL_UNSCORED, "train.epochs=1"]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    again = run_module(tmp_path, "src.train", *SMALL_UNSCORED, "train.epochs=1", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    with sqlite3.connect(store / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    assert not list(store.glob(".mlflow.db.*"))  # no staging file left behind

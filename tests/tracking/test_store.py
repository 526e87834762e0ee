"""The local store's edge cases (src/tracking/: paths escaped in the URI, a database made whole
or made again, a copied store, the store's faults, a KILLED end bounded in time, the process
tags) and the model cache's (src/models/cache.py: a folder that cannot be made, staging left by
killed processes, a full disk, a job that waits for another's training)."""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient
from support import mounted_tmpfs

from src.common.errors import UserError
from src.models.cache import ModelCache
from src.models.training import TrainingResult, TrainingState
from src.tracking.faults import store_fault
from src.tracking.lifecycle import _end_within, process_tags
from src.tracking.store import prepare, resolve_store

# MLflow 3.17's last schema revision (mlflow/store/db_migrations/versions/dc11669786a5_*.py).
HEAD_REVISION = "dc11669786a5"
# MLflow's first schema revision (451aebb31d03_add_metric_step.py in mlflow/store/db_migrations):
# a store left at it is one whose migrations did not all run.
OLD_REVISION = "451aebb31d03"
LINK_PAGE = "#/experiments/3/runs/abc?workflowType=machine_learning"
TRAINING = TrainingResult(
    history={"train_loss": [1.0, 0.5]}, train_time_s=2.0, test_loss=0.4, test_accuracy=0.9
)


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def set_schema_version(database: Path, version: str) -> None:
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (version,))
    connection.close()


def experiment_names(database: Path) -> list[str]:
    """The experiments in the file on disk (not in a connection MLflow keeps open)."""
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute("SELECT name FROM experiments ORDER BY experiment_id")]


def schema_version(database: Path) -> str:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


# -- paths escaped in the SQLite URI ------------------------------------------------------------

URI_CHARACTERS = "my store?mode=ro%41#frag"


def test_a_store_path_with_uri_characters_names_the_literal_database(tmp_path):
    folder = tmp_path / URI_CHARACTERS
    store = resolve_store(str(folder))
    assert store.tracking_uri == f"sqlite:///{tmp_path}/my store%3Fmode%3Dro%2541%23frag/mlflow.db"
    assert store.database == folder / "mlflow.db"


def test_a_store_path_with_uri_characters_keeps_the_database_and_artifacts_there(tmp_path):
    folder = tmp_path / URI_CHARACTERS
    store = resolve_store(str(folder))
    experiment_id = prepare(store, "lab")
    assert prepare(store, "lab") == experiment_id  # its artifact location is this store's

    client = MlflowClient(store.tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_text(run_id, "hello", "note.txt")

    assert (folder / "mlflow.db").is_file()
    assert list(tmp_path.rglob("mlflow.db")) == [folder / "mlflow.db"]
    assert not (tmp_path / "my store").exists()  # the path cut at '?'
    note = folder / "artifacts" / run_id / "artifacts" / "note.txt"
    assert note.read_text() == "hello"


def test_a_store_path_with_uri_characters_writes_nothing_but_mlflows_empty_folder_beside(tmp_path):
    """MLflow 3.17 makes the escaped path's folder as it opens the store (src/tracking/,
    _sqlite_uri); it stays empty. A new MLflow that stops doing so fails this test: then the
    README's note on it goes."""
    folder = tmp_path / URI_CHARACTERS
    prepare(resolve_store(str(folder)), "lab")
    escaped = urllib.parse.quote(URI_CHARACTERS, safe=" ")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([URI_CHARACTERS, escaped])
    assert list((tmp_path / escaped).iterdir()) == []


# -- a database made whole, or made again -------------------------------------------------------


def test_prepare_on_a_fresh_folder_leaves_a_whole_database_and_no_staging_file(tmp_path):
    folder = tmp_path / "store"
    prepare(resolve_store(str(folder)), "lab")
    assert list(folder.glob(".mlflow.db.*")) == []
    assert not any("creating" in path.name for path in folder.iterdir())
    assert {"experiments", "runs", "alembic_version"} <= tables(folder / "mlflow.db")


@pytest.fixture(scope="module")
def complete_database(tmp_path_factory) -> Path:
    """A whole store without experiments or runs, made once (MLflow's tables take a second),
    to be copied: MLflow keeps a connection open to each database it has used in this
    process, so a copy is as if the process that made it were another one."""
    database = tmp_path_factory.mktemp("made-elsewhere") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


def no_schema_version(database: Path, complete: Path) -> None:
    """Killed after the tables were made, before MLflow stamped their version: every later
    use failed with "duplicate column name" / "table … already exists"."""
    shutil.copy(complete, database)
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM alembic_version")


def empty_file(database: Path, complete: Path) -> None:
    database.write_bytes(b"")


def store_at_an_old_revision(database: Path, complete: Path) -> None:
    shutil.copy(complete, database)
    set_schema_version(database, OLD_REVISION)


@pytest.mark.parametrize(
    "half_make, schema", [(store_at_an_old_revision, OLD_REVISION), (no_schema_version, "none")]
)
def test_a_half_made_database_without_data_is_named_with_what_to_do_and_left_as_it_is(
    tmp_path, complete_database, half_make, schema
):
    """A store another tool (or an older version of this project) left half made, which MLflow
    refuses; this project's own are made whole or not at all, and it never deletes one."""
    folder = tmp_path / "store"
    folder.mkdir()
    database = folder / "mlflow.db"
    half_make(database, complete_database)
    before = database.read_bytes()
    store = resolve_store(str(folder))

    with pytest.raises(UserError) as error:
        prepare(store, "lab")

    assert str(error.value) == (
        f"cannot use the tracking store {store.tracking_uri}: the database is incomplete "
        f"(schema {schema}, MLflow's is {HEAD_REVISION}) and holds nothing: delete {database}"
    )
    assert database.read_bytes() == before


def test_an_empty_database_file_is_completed_by_mlflow(tmp_path, complete_database):
    folder = tmp_path / "store"
    folder.mkdir()
    empty_file(folder / "mlflow.db", complete_database)
    store = resolve_store(str(folder))
    experiment_id = prepare(store, "lab")
    client = MlflowClient(store.tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id, "FINISHED")
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_half_made_database_with_a_run_is_refused_and_left_untouched(tmp_path, complete_database):
    folder = tmp_path / "store"
    folder.mkdir()
    database = folder / "mlflow.db"
    shutil.copy(complete_database, database)
    with sqlite3.connect(database) as db:  # a run, as a run row (this process has no cache)
        db.execute(
            "INSERT INTO runs (run_uuid, name, status, experiment_id, lifecycle_stage) "
            "VALUES ('r1', 'r', 'FINISHED', 0, 'active')"
        )
    set_schema_version(database, OLD_REVISION)
    before = database.read_bytes()

    with pytest.raises(UserError) as error:
        prepare(resolve_store(str(folder)), "lab")

    assert f"the database is incomplete (schema {OLD_REVISION}" in str(error.value)
    assert "holds runs or models: back it up, then try `mlflow db upgrade" in str(error.value)
    assert database.read_bytes() == before


# -- a copied store -----------------------------------------------------------------------------


def test_a_copied_store_refuses_an_experiment_whose_artifacts_stay_in_the_original(tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    prepare(resolve_store(str(original)), "lab")
    shutil.copytree(original, copy)
    copied = resolve_store(str(copy))

    with pytest.raises(UserError) as error:
        prepare(copied, "lab")

    message = str(error.value)
    assert f"keeps its artifacts in file://{original}/artifacts, outside this store" in message
    assert f"experiment 'lab' of the tracking store {copy}" in message
    # A new experiment in the copy keeps its artifacts in the copy.
    other = prepare(copied, "other")
    location = MlflowClient(copied.tracking_uri).get_experiment(other).artifact_location
    assert location == f"file://{copy}/artifacts"


# -- faults of the store ------------------------------------------------------------------------


def caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def in_context_of(error: BaseException, context: BaseException) -> BaseException:
    error.__context__ = context
    return error


@pytest.mark.parametrize(
    "error, fault",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "its disk is full"),
        (
            caused_by(RuntimeError("write failed"), OSError(errno.ENOSPC, "quota")),
            "its disk is full",
        ),
        (
            in_context_of(
                RuntimeError("commit failed"),
                sqlite3.OperationalError("database or disk is full"),
            ),
            "its disk is full",
        ),
        (
            caused_by(
                RuntimeError("(sqlite3.OperationalError) see below"),
                sqlite3.OperationalError("database is locked"),
            ),
            "its database stayed locked by another process longer than MLflow waits",
        ),
        (
            requests.exceptions.ConnectionError(
                "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded with url:"
                " /api/2.0/mlflow/runs/update"
            ),
            "the tracking server stopped answering",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied"),
            "it cannot be written (Permission denied)",
        ),
        (ValueError("a bad value"), None),
        (caused_by(KeyError("x"), ValueError("a bug")), None),
    ],
)
def test_store_fault_reads_the_whole_chain_of_causes(error, fault):
    assert store_fault(error) == fault


# -- a KILLED end, bounded in time --------------------------------------------------------------


@pytest.fixture
def local_store(tmp_path, complete_database):
    (tmp_path / "store").mkdir()
    shutil.copy(complete_database, tmp_path / "store" / "mlflow.db")
    store = resolve_store(str(tmp_path / "store"))
    experiment_id = prepare(store, "lab")  # also sets MLflow's tracking URI
    yield store, experiment_id
    while mlflow.active_run() is not None:  # a failed test's run, not left for the next
        mlflow.end_run()


def test_end_within_writes_the_status_and_takes_the_run_off_mlflows_stack(local_store):
    store, experiment_id = local_store
    run_id = mlflow.start_run(experiment_id=experiment_id).info.run_id

    assert _end_within(run_id, "KILLED", 10.0) is True

    assert mlflow.active_run() is None
    assert "MLFLOW_RUN_ID" not in os.environ
    client = MlflowClient(store.tracking_uri)
    assert client.get_run(run_id).info.status == "KILLED"
    # The next run starts (none is "already active") and ending it leaves the first KILLED.
    with mlflow.start_run(experiment_id=experiment_id) as next_run:
        pass
    assert client.get_run(next_run.info.run_id).info.status == "FINISHED"
    assert client.get_run(run_id).info.status == "KILLED"


def test_end_within_gives_up_on_a_locked_store_after_its_time(local_store):
    store, experiment_id = local_store
    run_id = mlflow.start_run(experiment_id=experiment_id).info.run_id
    holder = sqlite3.connect(store.database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's long write
    try:
        started = time.monotonic()
        assert _end_within(run_id, "KILLED", 0.5) is False
        assert time.monotonic() - started < 5  # MLflow's own wait for the lock is 20 s
        assert mlflow.active_run() is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for thread in threading.enumerate():  # the abandoned write goes on once the lock is free
        if thread.name == "end-run":
            thread.join(30)
    assert MlflowClient(store.tracking_uri).get_run(run_id).info.status == "KILLED"


# -- the link to a run, the process tags --------------------------------------------------------


def test_the_run_link_quotes_a_store_path_with_a_space(tmp_path):
    store = resolve_store(str(tmp_path / "with space"))
    assert store.run_link("3", "abc") == (
        f"make ui STORE='{tmp_path}/with space', then http://127.0.0.1:5000/{LINK_PAGE}"
    )
    assert store.run_link("3", "abc", ui_host="0.0.0.0", ui_port=5001) == (
        f"make ui STORE='{tmp_path}/with space' HOST=0.0.0.0 PORT=5001, "
        f"then http://127.0.0.1:5001/{LINK_PAGE}"
    )


def test_the_run_link_quotes_a_store_path_with_a_quote(tmp_path):
    store = resolve_store(str(tmp_path / "it's"))
    expected_store = "'" + str(tmp_path) + "/it'\"'\"'s'"
    assert store.run_link("3", "abc") == (
        f"make ui STORE={expected_store}, then http://127.0.0.1:5000/{LINK_PAGE}"
    )


def test_process_tags_name_the_slurm_job_only_in_one(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    tags = process_tags()
    assert tags["process.slurm_job_id"] == "4242"
    assert tags["process.host"] == socket.gethostname()
    assert tags["process.pid"] == str(os.getpid())

    monkeypatch.delenv("SLURM_JOB_ID")
    assert "process.slurm_job_id" not in process_tags()
    monkeypatch.setenv("SLURM_JOB_ID", "")
    assert "process.slurm_job_id" not in process_tags()


# -- the model cache ----------------------------------------------------------------------------


def test_a_cache_folder_under_a_regular_file_is_a_user_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"train.cache_dir=.*a-file/cache: cannot create it"):
        ModelCache(blocker / "cache").check()


def staging_folder(cache: Path, name: str, age_s: float) -> Path:
    folder = cache / name
    folder.mkdir(parents=True)
    (folder / "weights.h5").write_text("half")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_check_removes_staging_older_than_an_hour_and_keeps_younger(tmp_path):
    old = staging_folder(tmp_path, ".k1.aaaa.tmp", age_s=2 * 3600)
    young = staging_folder(tmp_path, ".k2.bbbb.tmp", age_s=30 * 60)
    # A snapshot's staging inside its training's entry (a run killed at an epoch's end).
    old_snapshot = staging_folder(tmp_path, "k3/.epoch-0002.cccc.tmp", age_s=2 * 3600)
    # A snapshot, however old, stays.
    snapshot = staging_folder(tmp_path, "k3/epoch-0001", age_s=2 * 3600)

    ModelCache(tmp_path).check()

    assert not old.exists() and not old_snapshot.exists()
    assert young.is_dir() and (young / "weights.h5").read_text() == "half"
    assert snapshot.is_dir()


def test_a_full_disk_costs_only_the_reuse_with_one_warning(tmp_path, caplog):
    """A real full disk: the snapshot's bytes do not fit; one warning, nothing left behind,
    and the run writes no more snapshots (the next, which would fit, is not tried)."""
    with mounted_tmpfs(tmp_path / "cache", "64k"):
        cache = ModelCache(tmp_path / "cache")
        cache.store("k", 2, bytes(200_000), TRAINING, run_id="run1", model_uri="models:/m-1")
        cache.store("k", 3, b"weights", TRAINING, run_id="run1")

        assert "could not be cached" in caplog.text
        assert "No space left on device" in caplog.text
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert list((tmp_path / "cache").iterdir()) == []  # no staging folder, no entry
        assert cache.load("k", 2) is None and cache.load("k", 3) is None


def test_a_full_disk_under_the_training_state_is_one_warning_and_no_traceback(
    tmp_path, caplog, monkeypatch
):
    """The weights fit, the optimizer's state does not: one warning, and nothing raised later
    from a destructor (``np.savez`` into the file left a ``ZipFile`` that failed again when
    collected, a traceback on stderr in the slow full-store test)."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    state = TrainingState([np.ones(50_000, np.float32)], np.random.RandomState(0).get_state())
    with mounted_tmpfs(tmp_path / "cache", "64k"):
        cache = ModelCache(tmp_path / "cache")
        cache.store("k", 2, b"weights", TRAINING, run_id="run1", state=state)
        gc.collect()

        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "No space left on device" in caplog.text
        assert unraisable == []
        assert list((tmp_path / "cache").iterdir()) == []


def test_a_full_disk_keeps_the_entry_that_was_there(tmp_path):
    with mounted_tmpfs(tmp_path / "cache", "64k"):
        ModelCache(tmp_path / "cache").store("k", 2, b"weights", TRAINING, run_id="run1")
        cache = ModelCache(tmp_path / "cache")
        cache.store("k", 2, bytes(200_000), TRAINING, run_id="run2", model_uri="m")
        assert cache.load("k", 2).trained_by_run == "run1"
        assert [path.name for path in (tmp_path / "cache").iterdir()] == ["k"]
        assert [path.name for path in (tmp_path / "cache" / "k").iterdir()] == ["epoch-0002"]


# Holds an entry's lock, as a job training its model does, until told (a line on stdin).
HOLDER = """
import sys
from pathlib import Path
from filelock import FileLock

folder, key = Path(sys.argv[1]), sys.argv[2]
lock = FileLock(folder / f"{key}.lock")
lock.acquire()
(folder / f"{key}.holder").write_text("run abc123 (pid 1 on node7)\\n")
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


class ReleaseOnWait(logging.Handler):
    """Lets the holder go once the claim says it waits: no timing in the test."""

    def __init__(self, holder: subprocess.Popen) -> None:
        super().__init__()
        self.holder = holder

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for" in record.getMessage():
            self.holder.stdin.write("release\n")
            self.holder.stdin.flush()


def test_a_claim_held_by_another_process_says_whom_it_waits_for(tmp_path, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "k"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    logger = logging.getLogger("src.models.cache")
    release = ReleaseOnWait(holder)
    try:
        assert holder.stdout.readline() == "held\n"
        logger.addHandler(release)
        with (
            caplog.at_level(logging.INFO, logger="src.models.cache"),
            ModelCache(tmp_path).claim("k", holder="run new456"),
        ):
            note = (tmp_path / "k.holder").read_text()
        assert holder.wait(timeout=30) == 0
    finally:
        logger.removeHandler(release)
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert caplog.messages == [
        "waiting for run abc123 (pid 1 on node7) to train the model this run reuses"
    ]
    assert note == f"run new456 (pid {os.getpid()} on {socket.gethostname()})\n"


def test_a_free_claim_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="src.models.cache"), ModelCache(tmp_path).claim("k"):
        pass
    assert caplog.messages == []

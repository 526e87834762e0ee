"""Everything that talks to MLflow: the store, the run's life cycle, and what a run logs.

The default store is a SQLite database with artifacts beside it (``<dir>/mlflow.db`` and
``<dir>/artifacts``), anchored at the project root by the config; ``tracking.uri`` points at a
tracking server instead. A run's code hands this module values to log; only the sweep's parent
run (src/sweep.py) and the report (src/report.py) also use MLflow's client, on other runs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import psutil
import yaml
from filelock import FileLock
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from src import names, signals
from src.errors import StoreFault, Terminated, TimeLimit, UserError, one_line
from src.paths import PROJECT_ROOT
from src.redact import redact, redact_handlers

# No progress bars for the few small artifacts a report downloads.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints "View run ..." to stdout as it ends a run: with stdout piped (`| tee`) and
# the pipe closed by Ctrl-C, that print raised BrokenPipeError before the status was written.
# The project prints its own link, on stderr.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# A tracking server that stops answering is noticed in seconds, not MLflow's minutes (7 retries
# with doubling pauses, 120 s timeouts): 2 retries, a pause of about 2 s, 8 s timeouts. A call
# to a server that is gone fails in ~2 s; to one that hangs, in at most ~26 s.
for _name, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "8"),
):
    os.environ.setdefault(_name, _value)
# Its start-up notes ("Creating initial MLflow database tables...") are not for users.
logging.getLogger("mlflow").setLevel(logging.WARNING)
# A database error is raised to the project, which says it in one line (StoreFault); MLflow
# would first log it with its traceback.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
# MLflow's loggers print through a handler of their own, not the root's (whose filter Hydra's
# logging config sets): a URI's password is masked there too.
redact_handlers(logging.getLogger("mlflow"))

# MLflow caps a param value at 6,000 characters; a longer one is cut, with a marker.
MAX_PARAM_LENGTH = 6000
# How a run records the process that makes it (src.repair reads them).
HOST, PID, STARTED = "process.host", "process.pid", "process.started"
# A run made in a SLURM job records the job's id too: src.repair asks sacct about it.
SLURM_JOB = "process.slurm_job_id"
# How the jobs of a multirun learn their parent run (inherited by joblib and submitit workers).
PARENT_RUN_ENV = "XAI_LAB_PARENT_RUN_ID"
SWEEP_ID_ENV = "XAI_LAB_SWEEP_ID"
# The experiment of the sweep's parent run, which its jobs join; and the keys the sweep varies
# (JSON), which the jobs' names show.
EXPERIMENT_ENV = "XAI_LAB_EXPERIMENT"
SWEPT_KEYS_ENV = "XAI_LAB_SWEPT_KEYS"
# The experiment of a sweep over several datasets (one dataset's runs go to xai-lab-<dataset>).
SHARED_EXPERIMENT = "xai-lab"
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)
# Ending a run is tried again, a second apart, for this long when the store fails (seconds).
END_RETRY_S = 10.0
# How long a run stopped by a signal waits for its KILLED status to be written (seconds).
KILLED_END_S = 8.0
PACKAGES = ("tensorflow", "innvestigate", "mlflow", "hydra-core", "numpy")


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifact_root: str | None  # where new experiments keep artifacts; None = the server decides

    @property
    def database(self) -> Path | None:
        """The local store's SQLite file; None for a tracking server."""
        if self.artifact_root is None:
            return None
        return Path(urllib.parse.unquote(self.tracking_uri.removeprefix("sqlite:///")))

    def run_link(
        self, experiment_id: str, run_id: str, ui_host: str = "127.0.0.1", ui_port: int = 5000
    ) -> str:
        """Where a person sees the run: the command that starts the UI (on the host and port
        the user asked for: ``tracking.ui_host``, ``tracking.ui_port``, which ``make``'s
        ``HOST`` and ``PORT`` set), then the run's page."""
        # The UI opens on MLflow 3's GenAI view; this parameter shows the model-training one.
        page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
        if self.database is None:  # a tracking server, its password masked
            return f"{redact(self.tracking_uri).rstrip('/')}/{page}"
        folder = self.database.parent
        start = ["make ui"]
        if folder != PROJECT_ROOT / "mlruns":
            start.append(f"STORE={shlex.quote(str(folder))}")
        if str(ui_host) != "127.0.0.1":
            start.append(f"HOST={ui_host}")
        if int(ui_port) != 5000:
            start.append(f"PORT={ui_port}")
        # A UI listening on every interface is reached, from here, on loopback.
        address = "127.0.0.1" if str(ui_host) in ("0.0.0.0", "::") else ui_host
        return f"{' '.join(start)}, then http://{address}:{ui_port}/{page}"


def resolve_store(dir: str, uri: str | None = None) -> Store:
    """A tracking server URI as given, or the local SQLite store in folder ``dir``."""
    if uri:
        return Store(tracking_uri=str(uri), artifact_root=None)
    folder = Path(dir).expanduser().resolve()
    return Store(
        tracking_uri=_sqlite_uri(folder / "mlflow.db"),
        artifact_root=(folder / "artifacts").as_uri(),
    )


def _sqlite_uri(database: Path) -> str:
    """The SQLAlchemy URI of a SQLite file, its path escaped: unescaped, ``?`` would start the
    URI's options (``…/what?mode=ro`` opened ``…/what``) and ``%41`` would be read as ``A``.
    (MLflow 3.17 also makes an empty folder at the escaped path, ``what%3Fmode%3Dro``, as it
    opens such a store: harmless, and not undone here, since every MLflow client makes it.)"""
    return f"sqlite:///{urllib.parse.quote(str(database), safe='/ ')}"


def prepare(store: Store, experiment_name: str | None) -> str | None:
    """Check the store is usable and return the experiment's id (creating it if needed; None
    for no name: the store only).

    Called before any data is loaded or model trained, so an unusable store fails at once.
    """
    if store.database is not None:
        folder = store.database.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"cannot create the tracking store folder {folder}: {error.strerror}"
            ) from error
        # A store that exists already: its database and artifacts must take the new run too.
        parts = (
            (folder, "folder"),
            (store.database, "database"),
            (folder / "artifacts", "artifacts folder"),
        )
        for path, what in parts:
            if path.exists() and not os.access(path, os.W_OK):
                raise UserError(f"the tracking store {what} {path} is not writable (tracking.dir)")
    mlflow.set_tracking_uri(store.tracking_uri)
    # One quick try instead of MLflow's minutes of retries: a wrong URI should fail now. For a
    # local store, a file lock makes concurrent first uses safe: MLflow's creation of the
    # SQLite tables, and get-or-create of the experiment, are not.
    with (
        _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"),
        _store_lock(store),
    ):
        try:
            if store.database is not None:
                _create_database(store.database)
            client = MlflowClient(store.tracking_uri)
            if experiment_name is None:  # only the store is checked
                client.search_experiments(max_results=1)
                return None
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment.experiment_id)
                _check_artifact_location(store, experiment)
                return experiment.experiment_id
            return client.create_experiment(experiment_name, artifact_location=store.artifact_root)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure here means "store unusable"
            why = _half_made_advice(store.database) or _reason(error)
            raise UserError(
                f"cannot use the tracking store {redact(store.tracking_uri)}: {why}"
            ) from error


def _create_database(database: Path) -> None:
    """Create the local store's database whole, or not at all: MLflow creates its tables in
    some sixty migrations (about a second), and a process killed halfway left a file every
    later use refused ("table datasets already exists"). So the tables are made in a file
    beside it, renamed into place when complete. (A database half made by another tool is
    named, with what to do, when it fails: :func:`_half_made_advice`.)"""
    if database.exists():
        return
    for left in database.parent.glob(f".{database.name}.*.creating*"):  # and its journal
        left.unlink()  # a killed creation's: under the store's lock, no other is under way
    # A new name each time: MLflow keeps its connections to a URI it has opened.
    staging = database.with_name(f".{database.name}.{uuid.uuid4().hex}.creating")
    uri = _sqlite_uri(staging)
    MlflowClient(uri).search_experiments(max_results=1)  # creates every table
    os.replace(staging, database)


def _half_made_advice(database: Path | None) -> str:
    """For a database MLflow cannot open, what to do if a kill (of an older version of this
    project, or of another tool) left it half made: tables missing, or migrations not at
    MLflow's head. Never done here: the database may hold what the user wants kept. Only on
    this failure path: the check costs ~0.4 s (Alembic reading MLflow's migrations)."""
    problem = None if database is None or not database.exists() else _half_made(database)
    if problem is None:
        return ""
    if _holds_data(database):
        return (
            f"the database is incomplete ({problem}) and holds runs or models: back it up, "
            f"then try `mlflow db upgrade {_sqlite_uri(database)}`"
        )
    return f"the database is incomplete ({problem}) and holds nothing: delete {database}"


def _read_only(database: Path) -> contextlib.closing:
    """The SQLite database opened read-only (MLflow's connections are not needed to look)."""
    import sqlite3

    return contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True))


def _half_made(database: Path) -> str | None:
    """Why the database is not a complete MLflow store; None if it is."""
    import sqlite3

    from alembic.script import ScriptDirectory

    migrations = Path(mlflow.__file__).parent / "store" / "db_migrations"
    head = ScriptDirectory(str(migrations)).get_current_head()
    try:
        with _read_only(database) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if "alembic_version" not in tables or "runs" not in tables:
                return "MLflow's tables are missing"
            (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    except sqlite3.OperationalError:
        return None  # locked, or a journal to roll back: MLflow's own opening deals with it
    except sqlite3.DatabaseError as error:
        return f"not a readable SQLite database: {error}"
    return None if version == head else f"schema {version or 'none'}, MLflow's is {head}"


def _holds_data(database: Path) -> bool:
    """Whether the database holds anything of a user's: runs, experiments besides MLflow's
    Default, registered or logged models, traces. When in doubt, yes."""
    import sqlite3

    queries = {
        "runs": "SELECT count(*) FROM runs",
        "experiments": "SELECT count(*) FROM experiments WHERE experiment_id != 0",
        "registered_models": "SELECT count(*) FROM registered_models",
        "logged_models": "SELECT count(*) FROM logged_models",
        "trace_info": "SELECT count(*) FROM trace_info",
    }
    try:
        with _read_only(database) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            return any(
                db.execute(query).fetchone()[0] > 0
                for table, query in queries.items()
                if table in tables
            )
    except sqlite3.DatabaseError:
        return True  # cannot tell: treated as holding data, never deleted


def _check_artifact_location(store: Store, experiment: Any) -> None:
    """A local store's experiment must keep its artifacts in this store: one copied or moved
    elsewhere still names the old folder, and would write there (or fail once it is gone)."""
    if store.artifact_root is None:
        return
    if experiment.artifact_location.rstrip("/") != store.artifact_root.rstrip("/"):
        raise UserError(
            f"experiment {experiment.name!r} of the tracking store {store.database.parent} keeps "
            f"its artifacts in {experiment.artifact_location}, outside this store (was the store "
            "copied or moved?): log to another tracking.experiment_name, or use the store where "
            "it was made"
        )


def _reason(error: Exception) -> str:
    """A short reason; MLflow's connection errors quote whole urllib3 retry reports, and the
    URI with its password (masked here)."""
    text = redact(" ".join(str(error).split()))
    if "Max retries exceeded" in text or "Connection refused" in text:
        return "no answer there (is an MLflow server running at that address?)"
    return text[:300]


def _store_lock(store: Store) -> contextlib.AbstractContextManager:
    if store.database is None:
        return contextlib.nullcontext()
    return FileLock(store.database.with_suffix(".init.lock"))


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def store_fault(error: BaseException) -> str | None:
    """What a failed store call says about the store, in a few words; None if it is not a
    fault of the store (a bug, bad input). Reads the whole chain of causes: MLflow wraps the
    driver's and the HTTP library's errors."""
    seen: BaseException | None = error
    texts = []
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return "its disk is full"
        texts.append(redact(" ".join(str(seen).split())))
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts)
    if "database or disk is full" in text or "No space left on device" in text:
        return "its disk is full"
    if "database is locked" in text:
        return "its database stayed locked by another process longer than MLflow waits"
    server_gone = (
        "Max retries exceeded",
        "Connection refused",
        "Connection aborted",
        "Read timed out",
        "RemoteDisconnected",
        "API request to",
    )
    if any(marker in text for marker in server_gone):
        return "the tracking server stopped answering"
    if isinstance(error, OSError):
        return f"it cannot be written ({error.strerror or error})"
    # Any other database error MLflow passes on (a read-only file, a disk I/O error on a
    # network file system, a database removed under the run): say SQLite's own words.
    if (
        getattr(error, "error_code", None) == "TEMPORARILY_UNAVAILABLE"
        or "OperationalError" in text
    ):
        said = text.split(") ", 1)[-1] if "(sqlite3.OperationalError)" in text else text
        return f"its database failed ({said.split('[SQL')[0].strip()[:120]})"
    return None


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """A write to the store: a signal waits for it to end (src/signals.py), and a fault of the
    store is raised as :class:`StoreFault`, one line, instead of MLflow's tracebacks."""
    with signals.deferred():
        try:
            yield
        except Exception as error:
            fault = store_fault(error)
            if fault is None:
                raise
            raise StoreFault(f"the tracking store failed: {fault}") from error


def store_write(function: F) -> F:
    """``function`` as a write to the store (see :func:`_writing`)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _writing():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def end_run(run_id: str, status: str, tracking_uri: str | None = None) -> bool:
    """Set a run's end status, retried for a few seconds when the store fails (a lock held a
    moment too long, a server restarting); whether it was written."""
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + END_RETRY_S
    while True:
        try:
            with signals.deferred():
                client.set_terminated(run_id, status)
            return True
        except Exception as error:  # noqa: BLE001 - classified below
            if store_fault(error) is None:
                raise
            log.debug("ending run %s failed: %s", run_id, error)
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


@contextlib.contextmanager
def tracked_run(
    experiment_id: str, run_name: str, tags: Mapping[str, str], parent_run_id: str | None = None
) -> Iterator[str]:
    """An active MLflow run (a child of ``parent_run_id`` if given) that ends FINISHED, FAILED
    on an exception, or KILLED on Ctrl-C / SIGTERM / a SLURM time limit. If the store cannot
    take the end status even after retries, :class:`StoreFault` says the run is left RUNNING
    and how ``make repair`` ends it. Yields the run id."""
    previous = signals.install()
    status = "FAILED"
    run_id = None
    fault = "the tracking store failed"
    try:
        with _writing():  # a run created but not yet ours to end would stay RUNNING
            run_id = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=redact(run_name),
                tags={key: redact(value) for key, value in {**tags, **process_tags()}.items()},
                parent_run_id=parent_run_id,
            ).info.run_id
        yield run_id
        status = "FINISHED"
    except TimeLimit as limit:
        status = "KILLED"
        with contextlib.suppress(Exception), signals.deferred():
            mlflow.set_tag("end_reason", f"time limit: {limit}")
        raise
    except (KeyboardInterrupt, Terminated):
        status = "KILLED"
        raise
    except StoreFault as error:
        fault = str(error)
        raise
    except Exception as error:
        # Why it failed, on the run: the sweep's summary and the UI show it beside FAILED.
        with contextlib.suppress(Exception), signals.deferred():
            mlflow.set_tag("error", redact(one_line(error)))
        raise
    finally:
        try:
            try:
                ended = run_id is None or _end_active_run(run_id, status)
            except (KeyboardInterrupt, Terminated):  # a second signal while it was being ended
                ended, status, fault = False, "KILLED", "a second signal stopped the run's end"
            if not ended:
                raise StoreFault(
                    f"{fault}, and run {run_id} could not be marked {status}: it is left "
                    "RUNNING there; `make repair` (with the same tracking.dir or "
                    "tracking.uri) marks it KILLED once the store works again",
                    130 if status == "KILLED" else 1,
                )
        finally:
            signals.restore(previous)


def _end_active_run(run_id: str, status: str) -> bool:
    """End the active run with ``status``, retried when the store fails; whether it was.

    A run stopped by a signal must end within SLURM's grace (30 s between SIGTERM and SIGKILL)
    even when another process holds the store's lock: each SQLite write may wait 20 s for it
    (MLflow's busy timeout), and the write the signal came in may have waited as long. So a
    KILLED run's status is written by a thread given ``KILLED_END_S``; if it has not written
    it by then the run is reported left RUNNING. (Abandoned, the thread's write is rolled back
    as the process exits: SQLite commits whole transactions or none.)"""
    if status == "KILLED":
        return _end_within(run_id, status, KILLED_END_S)
    try:
        with signals.deferred():
            mlflow.end_run(status=status)  # takes the run off MLflow's stack, then writes
        return True
    except Exception as error:  # noqa: BLE001 - classified below
        if store_fault(error) is None:
            raise
    return end_run(run_id, status)


def _end_within(run_id: str, status: str, seconds: float) -> bool:
    """Write the run's end status from a thread, waiting for it at most ``seconds``; then take
    the run off MLflow's stack of active runs without writing (``mlflow.end_run`` would write
    again, and MLflow's exit hook would end a run left on the stack FINISHED)."""
    ended: list[bool] = []
    client = MlflowClient()

    def write() -> None:
        try:
            client.set_terminated(run_id, status)
            ended.append(True)
        except Exception as error:  # noqa: BLE001 - reported below as "left RUNNING"
            log.debug("ending run %s failed: %s", run_id, error)

    writer = threading.Thread(target=write, name="end-run", daemon=True)
    writer.start()
    try:
        writer.join(seconds)
    finally:  # even if another signal cuts the wait: never leave it to MLflow's exit hook
        _forget_active_run(run_id)
    return bool(ended)


def _forget_active_run(run_id: str) -> None:
    """Take ``run_id`` off MLflow's (thread-local) stack of active runs. MLflow has no public
    call that does this without writing the status: this reaches into ``mlflow.tracking.fluent``,
    and tests/test_faults.py fails if a new MLflow moves it."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()
    fluent.MLFLOW_RUN_ID.unset()


def run_tags(analyzer: str, dataset: str, seed: int, epochs: int) -> dict[str, str]:
    """Tags that identify what a run is and which code and libraries made it."""
    commit, dirty = _git_state()
    tags = {
        "analyzer": analyzer,
        "dataset": dataset,
        "seed": str(seed),
        "epochs": str(epochs),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    # Package metadata, not __version__: iNNvestigate 2.1.2 still reports "2.0.1" there.
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    tags["version.python"] = platform.python_version()
    return tags


@functools.lru_cache(maxsize=1)
def environment() -> str:
    """Python, the platform and every installed distribution as ``name==version``, sorted; the
    header lines are comments, so the rest reads as a pip requirements file."""
    distributions = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    header = [
        f"# python {platform.python_version()} ({platform.python_implementation()}): "
        + " ".join(sys.version.split()),
        f"# platform {platform.platform()} ({platform.machine()})",
    ]
    return "\n".join([*header, *sorted(distributions, key=str.lower)]) + "\n"


def log_environment() -> None:
    """The whole environment of the run, as ``environment.txt`` (listed before the store
    write: reading every package's metadata takes a moment)."""
    _log_text(environment(), "environment.txt")


@store_write
def _log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


@store_write
def log_data_files(files: Sequence[Any]) -> None:
    """The data files a run read (``path``, ``sha256``, ``bytes`` each), as ``data_files.json``:
    ``{path: {"sha256": ..., "bytes": ...}}``."""
    mlflow.log_dict(
        {file.path: {"sha256": file.sha256, "bytes": file.bytes} for file in files},
        "data_files.json",
    )


def _git_state() -> tuple[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", "unknown"
    return commit, str(bool(status.strip())).lower()


@store_write
def log_config(config: Mapping[str, Any]) -> None:
    """The resolved config: as dotted params (keys fit for MLflow: a key of the user's own
    config may be any text), and whole as ``config.yaml``; a URI's password masked in both
    (``tracking.uri=http://alice:***@host``)."""
    params: dict[str, str] = {}
    taken: set[str] = set()
    for key, value in flatten(config).items():
        text = redact(str(value))
        params[names.mlflow_name(key, taken)] = (
            text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
        )
    mlflow.log_params(params)
    mlflow.log_text(redact(yaml.safe_dump(dict(config), sort_keys=False)), "config.yaml")


@store_write
def log_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    """One epoch's metrics, with ``step`` = the 1-based epoch."""
    mlflow.log_metrics(dict(metrics), step=epoch)


@store_write
def log_reused_training(
    history: Mapping[str, list[float]],
    trained_by_run: str,
    model_uri: str,
    accuracy_mismatch: str = "",
) -> None:
    """For a run that reuses a trained model: its training curve, where the model came from,
    and (tag ``model_accuracy_mismatch``) how its measured test accuracy differs from the one
    recorded when it was trained, if it does."""
    _log_history(history)
    mlflow.set_tags(
        {"model_reused": "true", "trained_by_run": trained_by_run, "model_uri": model_uri}
    )
    if accuracy_mismatch:
        mlflow.set_tag("model_accuracy_mismatch", accuracy_mismatch)
    mlflow.set_tag(
        "mlflow.note.content",
        f"Reuses the model trained by run {trained_by_run} (same data, model, training and seed).",
    )


@store_write
def log_continued_training(
    history: Mapping[str, list[float]], epochs: int, trained_by_run: str
) -> None:
    """For a run that goes on from another's snapshot: the curve of the epochs it did not
    train (steps 1..``epochs``), and whose training it continues."""
    _log_history(history)
    mlflow.set_tag("continued_from", f"epoch {epochs} of run {trained_by_run}")


def _log_history(history: Mapping[str, list[float]]) -> None:
    """A training curve another run trained, epoch k at step k."""
    for key, values in history.items():
        log_curve(key, values, first_step=1)


@store_write
def log_curve(key: str, values: Sequence[float], first_step: int = 0) -> None:
    """One metric as a curve: ``values[i]`` at step ``first_step + i``."""
    client, run_id = MlflowClient(), mlflow.active_run().info.run_id
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(value), int(time.time() * 1000), first_step + step)
            for step, value in enumerate(values)
        ],
    )


@store_write
def log_metrics(metrics: Mapping[str, float]) -> None:
    mlflow.log_metrics(dict(metrics))


def log_figure(figure: Any, artifact_file: str) -> None:
    """Log a matplotlib figure (see src/figures.py: no pyplot, nothing to close) as a PNG, as
    ``mlflow.log_figure`` saves it. Drawn here, before the store write: a signal waits for the
    upload only, never for the drawing (seconds for a large figure)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    log_png(buffer.getvalue(), artifact_file)


def log_png(png: bytes, artifact_file: str) -> None:
    """A figure already drawn (one kept with its model) as the artifact ``artifact_file``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(artifact_file).name
        path.write_bytes(png)
        parent = Path(artifact_file).parent.as_posix()
        log_artifact(path, None if parent == "." else parent)


@store_write
def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Upload a file as an artifact of the active run (into ``artifact_path``, a folder)."""
    mlflow.log_artifact(str(path), artifact_path)


@store_write
def log_image(key: str, image: np.ndarray, step: int) -> None:
    """An image under ``key`` at ``step``: MLflow's chart view shows every run's image of one
    key side by side, with a slider over steps."""
    mlflow.log_image(image, key=key, step=step, synchronous=True)


@store_write
def log_dataset(
    name: str,
    digest: str,
    source: str,
    features: np.ndarray,
    targets: np.ndarray,
    context: str,
) -> None:
    """The data a run used, as an MLflow dataset input (the runs table's Dataset column):
    ``name``, ``digest``, ``source`` (a URL, a path, or a description)."""
    import warnings

    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if source.startswith(("http://", "https://")):
        where: Any = HTTPDatasetSource(source)
    elif Path(source).expanduser().exists():
        where = source  # MLflow resolves a path to a local artifact source
    else:  # "scikit-learn load_digits ...", "downloaded by tf.keras.datasets.cifar10"
        where = CodeDatasetSource({"description": source})
    with warnings.catch_warnings():
        # A local path can be read as two kinds of source, MLflow warns; both are the same.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(
            features, source=where, targets=targets, name=name, digest=digest
        )
    mlflow.log_input(dataset, context=context)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def process_tags() -> dict[str, str]:
    """The tags by which a run records the process that makes it; its start as a readable
    UTC time to the microsecond (``2026-11-30T12:45:51.120000+00:00``), which
    :func:`process_started` reads back."""
    process = psutil.Process()
    started = datetime.fromtimestamp(process.create_time(), tz=timezone.utc)
    tags = {
        HOST: socket.gethostname(),
        PID: str(process.pid),
        STARTED: started.isoformat(timespec="microseconds"),
    }
    if os.environ.get("SLURM_JOB_ID"):
        tags[SLURM_JOB] = os.environ["SLURM_JOB_ID"]
    return tags


def process_started(text: str) -> float:
    """A ``process.started`` tag as a Unix time: ISO 8601, or the bare number of older runs."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def log_arrays(artifact_file: str, **arrays: np.ndarray) -> None:
    """Log arrays as one compressed ``.npz`` artifact (compressed before the store write: a
    signal waits for the upload only)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / artifact_file
        np.savez_compressed(path, **arrays)
        log_artifact(path)


def log_keras_model(model: Any, input_example: np.ndarray) -> str:
    """Log the model with MLflow's TensorFlow flavor; returns its URI, also tagged ``model_uri``.
    Its signature is computed (a prediction) before the store write."""
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    # Pinned requirements: MLflow would otherwise infer them by loading the model in a
    # subprocess, which costs a TensorFlow start-up per run.
    requirements = [
        f"{package}=={metadata.version(package)}" for package in ("tensorflow", "numpy", "protobuf")
    ]
    return _log_keras_model(model, input_example, signature, requirements)


@store_write
def _log_keras_model(
    model: Any, input_example: np.ndarray, signature: Any, requirements: list[str]
) -> str:
    import mlflow.tensorflow

    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        input_example=input_example,
        pip_requirements=requirements,
        # HDF5, not the SavedModel default: one file in ~0.05 s instead of ~0.6 s of tracing,
        # and mlflow.tensorflow.load_model() reads it back the same way.
        keras_model_kwargs={"save_format": "h5"},
    )
    mlflow.set_tags({"model_uri": info.model_uri, "model_reused": "false"})
    return info.model_uri

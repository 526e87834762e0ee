"""The tracking store: a SQLite database with artifacts beside it (``<dir>/mlflow.db`` and
``<dir>/artifacts``), anchored at the project root by the config, or a tracking server
(``tracking.uri``); made, checked and its experiment set before a run starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.tracking import MlflowClient

from src.common.errors import UserError
from src.common.paths import PROJECT_ROOT
from src.common.redact import redact

log = logging.getLogger(__name__)


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


def check_folders(store: Store) -> None:
    """A local store's folder can be made, and what exists of it written (a server: nothing to
    check here). The part of :func:`prepare` that needs no MLflow: a run that opens its store in
    the background (src/tracking/lifecycle.py) checks this first, at once."""
    if store.database is None:
        return
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


def use(store: Store) -> None:
    """Make ``store`` the one MLflow's calls without a URI go to (nothing is opened): a run
    whose store is set up in the background reads a model of an earlier run from it first."""
    mlflow.set_tracking_uri(store.tracking_uri)


def prepare(store: Store, experiment_name: str | None) -> str | None:
    """Check the store is usable and return the experiment's id (creating it if needed; None
    for no name: the store only).

    Called before any data is loaded or model trained, so an unusable store fails at once
    (a single run's local store: as its training starts, src/experiment.py).
    """
    check_folders(store)
    use(store)
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

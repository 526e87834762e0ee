"""A tracking server as ``make server`` starts it, on SQLite and on PostgreSQL, with the real
CLI training against it (``tracking.uri``) and the run read back through the server."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from support import (
    all_runs,
    free_port,
    listening_addresses,
    make_service,
    require,
    store_dir,
    train_cli,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_make_server_on_sqlite_records_a_run_trained_against_it(tmp_path):
    store = tmp_path / "server-store"
    port = free_port()
    with make_service("server", port, STORE=str(store)) as url:
        assert listening_addresses(port) == {"127.0.0.1"}
        run = train_and_read_back(tmp_path, url, artifacts=store / "artifacts")

    # The run is in the server's database, read directly.
    with contextlib.closing(sqlite3.connect(store / "mlflow.db")) as database:
        (status,) = database.execute(
            "SELECT status FROM runs WHERE run_uuid = ?", (run.info.run_id,)
        ).fetchone()
        (test_accuracy,) = database.execute(
            "SELECT value FROM latest_metrics WHERE run_uuid = ? AND key = 'test_accuracy'",
            (run.info.run_id,),
        ).fetchone()
    assert status == "FINISHED"
    assert test_accuracy == run.data.metrics["test_accuracy"]

    # The same training in the local store trains its own model: the cached one's run and
    # logged copy are on the server, which the local store cannot link to.
    result = train_cli(tmp_path, "dataset=digits", "train.epochs=2", "evaluate=off")
    assert result.returncode == 0, result.stderr[-3000:]
    (local_run,) = all_runs(tmp_path)
    assert local_run.data.tags["model_reused"] == "false"
    assert local_run.data.tags["model_fingerprint"] == run.data.tags["model_fingerprint"]


@pytest.mark.slow
@pytest.mark.system
def test_make_server_on_postgresql_records_a_run_trained_against_it(tmp_path, postgres_uri):
    import psycopg2

    artifacts = tmp_path / "artifacts"
    # As the README says: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, and the
    # postgres extra installs psycopg2.
    backend = postgres_uri.replace("postgresql://", "postgresql+psycopg2://", 1)
    port = free_port()
    with make_service("server", port, BACKEND=backend, ARTIFACTS=str(artifacts)) as url:
        assert listening_addresses(port) == {"127.0.0.1"}
        run = train_and_read_back(tmp_path, url, artifacts=artifacts)

    with (
        contextlib.closing(psycopg2.connect(postgres_uri)) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchall() == [("FINISHED",)]


def train_and_read_back(tmp_path: Path, url: str, artifacts: Path) -> Run:
    """Train a tiny run against the server at ``url`` and check what it holds, through the
    server and on its disk (``artifacts``: its ARTIFACTS folder); returns the run."""
    result = train_cli(
        tmp_path, "dataset=digits", "train.epochs=2", "evaluate=off", f"tracking.uri={url}"
    )
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("xai-lab-digits")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    summary = result.stderr.strip().splitlines()[-1]
    assert run_id in summary and url in summary
    assert run.info.status == "FINISHED"

    params = run.data.params
    assert params["train.epochs"] == "2" and params["dataset.name"] == "digits"
    assert params["analyzer.name"] == "deep_taylor"
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1, 2]
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == metrics["val_accuracy"] > 0.5
    assert not [key for key in metrics if key.startswith("eval_")]  # evaluate=off

    # The client sent the artifacts to the server, which keeps them in its ARTIFACTS folder.
    experiment_id = experiment.experiment_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    on_server = artifacts / experiment_id / run_id / "artifacts"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    figure = Path(
        client.download_artifacts(run_id, "figures/heatmaps_deep_taylor.png", str(downloads))
    )
    assert figure.read_bytes().startswith(PNG_SIGNATURE) and figure.stat().st_size > 1000
    heatmaps = np.load(client.download_artifacts(run_id, "heatmaps.npz", str(downloads)))
    assert heatmaps["heatmaps"].shape == (10, 28, 28, 1)
    kept = {path.relative_to(on_server).as_posix() for path in on_server.rglob("*.*")}
    assert {"config.yaml", "heatmaps.npz", "figures/heatmaps_deep_taylor.png"} <= kept
    assert figure.read_bytes() == (on_server / "figures" / "heatmaps_deep_taylor.png").read_bytes()
    # The logged model too (MLflow 3 keeps models beside the runs, by model id).
    model_id = run.data.tags["model_uri"].removeprefix("models:/")
    model_files = artifacts / experiment_id / "models" / model_id / "artifacts"
    assert (model_files / "MLmodel").is_file()

    # Nothing went to a local store on the client's side (only the model cache is there:
    # train.cache_dir is beside tracking.dir whatever the store, with entries per store).
    assert not (store_dir(tmp_path) / "mlflow.db").exists()
    assert not (store_dir(tmp_path) / "artifacts").exists()
    assert not (tmp_path / "mlruns").exists()
    return run


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port with an empty database ``mlflow``
    that user ``xai`` may use without a password; stopped and removed afterwards."""
    initdbs = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    require(bool(initdbs), "PostgreSQL (Debian's postgresql)")
    require(importlib.util.find_spec("psycopg2") is not None, "psycopg2 (the postgres extra)")
    import psycopg2

    bin_dir = Path(max(initdbs, key=lambda path: int(Path(path).parts[-3].split(".")[0]))).parent
    # PostgreSQL refuses to run as root: then its programs run as the user the package made, in
    # a folder of their own (pytest's tmp_path lies in a folder only root may enter).
    owner = None
    if os.geteuid() == 0:
        users = {user.pw_name: user for user in pwd.getpwall()}
        require("postgres" in users, "PostgreSQL's postgres user (Debian's postgresql)")
        owner = users["postgres"]
    folder = Path(tempfile.mkdtemp(prefix="xai-lab-postgres-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log = folder / "data", folder / "server.log"
    port = free_port()

    def postgres(program: str, *args: str) -> subprocess.CompletedProcess:
        as_owner = ["runuser", "-u", owner.pw_name, "--"] if owner is not None else []
        return subprocess.run(
            [*as_owner, str(bin_dir / program), *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        created = postgres(
            "initdb", "-D", str(data), "-U", "xai", "--auth=trust", "--no-locale", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        started = postgres(
            "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
            "-o", f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off",
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr + _tail(log)
        admin = psycopg2.connect(host="127.0.0.1", port=port, user="xai", dbname="postgres")
        with contextlib.closing(admin):
            admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with admin.cursor() as cursor:
                cursor.execute("CREATE DATABASE mlflow")
        yield f"postgresql://xai@127.0.0.1:{port}/mlflow"
    finally:
        if data.exists():
            postgres("pg_ctl", "-D", str(data), "stop", "-m", "fast")
        shutil.rmtree(folder, ignore_errors=True)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:] if log.exists() else ""

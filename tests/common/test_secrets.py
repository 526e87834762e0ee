"""Secrets in URIs (a tracking server's password, a database's) are never stored or printed:
:func:`src.common.redact.redact` on hand-made and generated strings, and a planted password looked
for in every file and record a run and a sweep against a real tracking server leave."""

from __future__ import annotations

import logging
import subprocess
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hydra.types import RunMode
from hypothesis import given
from hypothesis import strategies as st
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from support import SMALL, free_port, make_service, train_cli

from src.common.redact import RedactFilter, RedactHydraOutputs, redact, redact_file
from src.tracking.faults import store_fault
from src.tracking.lifecycle import tracked_run
from src.tracking.records import log_config
from src.tracking.store import _reason, prepare, resolve_store

SECRET = "PLANTED-S3cret-42"
TINY = (*SMALL, "train.epochs=1", "compare.baselines=[]")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://alice:S3cretPW@127.0.0.1:5177", "http://alice:***@127.0.0.1:5177"),
        ("https://alice:S3cret@host/path?q=1#top", "https://alice:***@host/path?q=1#top"),
        # A percent-encoded password, "@" and "/" in it included.
        ("http://alice:p%40ss%2Fw@host:5000/", "http://alice:***@host:5000/"),
        # A raw "@" in the password: the authority ends at its last "@", as urllib reads it.
        ("http://alice:p@ss@host", "http://alice:***@host"),
        (
            "postgresql+psycopg2://xai:pw@127.0.0.1:5432/mlflow",
            "postgresql+psycopg2://xai:***@127.0.0.1:5432/mlflow",
        ),
        ("s3://AKIAKEY:wJalrXUtn/bucket", "s3://AKIAKEY:wJalrXUtn/bucket"),  # no "@": no user-info
        ("s3://AKIAKEY:wJalr+Xk@bucket/runs", "s3://AKIAKEY:***@bucket/runs"),
        # A user-info without a password is often a token: masked whole.
        ("https://ghp_token123@github.com/x.git", "https://***@github.com/x.git"),
        ("http://:token@host", "http://:***@host"),
        # Several in one line, and in a YAML list, a command line and an HTML attribute.
        (
            "from http://a:one@h1/x to mysql://b:two@h2, done",
            "from http://a:***@h1/x to mysql://b:***@h2, done",
        ),
        ("- tracking.uri=http://a:b@h:1", "- tracking.uri=http://a:***@h:1"),
        ("a=http://u:p@h1,b=http://v:q@h2", "a=http://u:***@h1,b=http://v:***@h2"),
        ('<a href="http://u:p@h/">', '<a href="http://u:***@h/">'),
        # As Hydra writes a sweep's overrides, special characters escaped.
        ("tracking.uri=http\\://alice\\:PW@h\\:5000", "tracking.uri=http\\://alice\\:***@h\\:5000"),
        (
            '["tracking.uri=http\\\\://a\\\\:PW@h"]',
            '["tracking.uri=http\\\\://a\\\\:***@h"]',
        ),  # in JSON
        # A password as a query parameter (libpq's).
        (
            "postgresql://xai@h/db?sslmode=require&password=pw&x=1",
            "postgresql://***@h/db?sslmode=require&password=***&x=1",
        ),
        # Not URIs, or URIs without user-info: as they were.
        ("write to alice@example.com", "write to alice@example.com"),
        ("mailto:alice@example.com", "mailto:alice@example.com"),
        ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
        ("http://host/user@home and a@b", "http://host/user@home and a@b"),
        ("http://host?mail=a@b.com", "http://host?mail=a@b.com"),
        ("sqlite:////tmp/x@y/mlflow.db", "sqlite:////tmp/x@y/mlflow.db"),
        ("", ""),
        # Redacted already: unchanged.
        ("http://alice:***@host", "http://alice:***@host"),
    ],
)
def test_redact_masks_the_user_info_of_every_uri_and_nothing_else(text, expected):
    assert redact(text) == expected


SCHEMES = st.sampled_from(["http", "https", "postgresql+psycopg2", "mysql", "s3", "ftp"])
# Text around a URI, which a URI ends at: a space or a newline after it.
AROUND = st.text(max_size=30)


@given(
    scheme=SCHEMES,
    user=st.text(max_size=12),
    password=st.text(min_size=6, max_size=30),
    before=AROUND,
    after=AROUND,
    path=st.sampled_from(["", "/", "/db", "/api/2.0?x=1", "#/runs"]),
)
def test_a_password_written_in_a_uri_never_survives_redaction(
    scheme, user, password, before, after, path
):
    name = urllib.parse.quote(user, safe="")
    uri = f"{scheme}://{name}:{urllib.parse.quote(password, safe='')}@host.example:5000{path}"
    # The URI's password is gone, whatever it was; the text around it is redacted on its own.
    assert redact(f"{before} {uri}\n{after}") == (
        f"{redact(before)} {scheme}://{name}:***@host.example:5000{path}\n{redact(after)}"
    )


# A password as a person may type it, unencoded: anything but what ends a URI's authority.
RAW_PASSWORDS = st.text(min_size=1, max_size=30).filter(
    lambda text: not any(char in "/?#" or char.isspace() for char in text)
)


@given(user=st.from_regex(r"[A-Za-z0-9._~-]{0,12}", fullmatch=True), password=RAW_PASSWORDS)
def test_an_unencoded_password_never_survives_redaction(user, password):
    uri = f"http://{user}:{password}@127.0.0.1:5177/api"
    assert redact(f"uri={uri} and more") == f"uri=http://{user}:***@127.0.0.1:5177/api and more"


def test_redact_file_rewrites_a_yaml_file_that_stays_valid(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("- tracking.uri=http://alice:S3cret@127.0.0.1:5177\n- dataset=digits\n")
    assert redact_file(path)
    assert yaml.safe_load(path.read_text()) == [
        "tracking.uri=http://alice:***@127.0.0.1:5177",
        "dataset=digits",
    ]
    config = tmp_path / "config.yaml"
    config.write_text("tracking:\n  uri: postgresql+psycopg2://xai:S3cret@db/mlflow\n")
    assert redact_file(config)
    assert yaml.safe_load(config.read_text()) == {
        "tracking": {"uri": "postgresql+psycopg2://xai:***@db/mlflow"}
    }
    assert not redact_file(config)  # nothing left to redact
    assert not redact_file(tmp_path / "missing.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "overrides.yaml"]


def test_the_log_filter_redacts_messages_their_arguments_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("test_secrets.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("cannot use %s", "http://alice:S3cret@host")
        try:
            raise ValueError("API request to http://alice:S3cret@host/api failed")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "cannot use http://alice:***@host"
    assert records[1].startswith("failed\nTraceback")
    assert "ValueError: API request to http://alice:***@host/api failed" in records[1]
    assert "S3cret" not in "".join(records)


def test_hydras_files_of_a_job_and_a_sweep_are_rewritten_redacted(tmp_path):
    sweep, job = tmp_path / "sweep", tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    secret = "tracking.uri=http://alice:S3cret@h:5177"
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (job / ".hydra" / name).write_text(f"- {secret}\n")
    (sweep / "multirun.yaml").write_text(f"task:\n- {secret}\n")
    config = OmegaConf.create(
        {
            "hydra": {
                "output_subdir": ".hydra",
                "runtime": {"output_dir": str(job)},
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(sweep)},
            }
        }
    )
    RedactHydraOutputs().on_job_start(config=config)
    texts = [path.read_text() for path in sorted(sweep.rglob("*.yaml"))]
    assert len(texts) == 4
    assert all("tracking.uri=http://alice:***@h:5177" in text for text in texts)
    assert not any("S3cret" in text for text in texts)


def test_a_run_stores_no_password_of_a_uri_in_its_params_tags_name_or_config(tmp_path):
    store = resolve_store(str(tmp_path / "store"))
    client, experiment_id = MlflowClient(store.tracking_uri), prepare(store, "lab")
    uri = "http://alice:S3cret@127.0.0.1:5177"
    tags = {"job_overrides": f"seed=0 tracking.uri={uri}"}
    with (
        pytest.raises(ValueError),
        tracked_run(experiment_id, f"run of {uri}", tags) as run_id,
    ):
        log_config({"tracking": {"uri": uri}, "seed": 0})
        raise ValueError(f"API request to {uri}/api failed")
    run = client.get_run(run_id)
    masked = "http://alice:***@127.0.0.1:5177"
    assert run.data.params["tracking.uri"] == masked
    assert run.data.tags["job_overrides"] == f"seed=0 tracking.uri={masked}"
    assert run.info.run_name == f"run of {masked}"
    assert run.data.tags["error"] == f"ValueError: API request to {masked}/api failed"
    config = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert yaml.safe_load(config.read_text())["tracking"]["uri"] == masked
    server = resolve_store(str(tmp_path), uri=uri)
    assert server.run_link("1", "abc").startswith(f"{masked}/#/experiments/1/runs/abc")


def test_the_reasons_a_store_failed_quote_no_password():
    database = "postgresql+psycopg2://xai:S3cret@db:5432/mlflow"
    error = RuntimeError(f"(psycopg2.OperationalError) cannot reach {database}")
    assert _reason(error) == (
        "(psycopg2.OperationalError) cannot reach postgresql+psycopg2://xai:***@db:5432/mlflow"
    )
    locked = RuntimeError(f"(sqlite3.OperationalError) disk I/O error at {database}")
    assert "S3cret" not in store_fault(locked)


def test_a_report_page_shows_no_password_whatever_older_runs_recorded(tmp_path):
    from src.report.page import write_page

    page = tmp_path / "report.html"
    write_page(page, "<td>seed=0 tracking.uri=http\\://alice\\:S3cret@h\\:5177</td>")
    assert page.read_text() == "<td>seed=0 tracking.uri=http\\://alice\\:***@h\\:5177</td>"


def files_holding(folder: Path, secret: str) -> tuple[list[str], int]:
    """The files under ``folder`` whose bytes hold ``secret``, and how many files were read."""
    found, read = [], 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            read += 1
            if secret.encode() in path.read_bytes():
                found.append(str(path.relative_to(folder)))
    return found, read


def server_records(client: MlflowClient, downloads: Path) -> dict[str, str]:
    """Every record the server holds, as text by where it is: experiments, and each run's name,
    params, tags, metric keys and dataset inputs; each run's artifacts are downloaded into
    ``downloads`` (to be searched with the files)."""
    records = {}
    experiments = client.search_experiments(view_type=ViewType.ALL)
    for experiment in experiments:
        records[f"experiment {experiment.name}"] = repr(experiment)
        runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
        for run in runs:
            where = f"run {run.info.run_name!r}"
            records[f"{where} name"] = str(run.info.run_name)
            records[f"{where} params"] = repr(run.data.params)
            records[f"{where} tags"] = repr(run.data.tags)
            records[f"{where} metric keys"] = repr(sorted(run.data.metrics))
            records[f"{where} inputs"] = repr(run.inputs)
            folder = downloads / run.info.run_id
            folder.mkdir(parents=True)
            client.download_artifacts(run.info.run_id, "", str(folder))
    return records


@pytest.mark.slow
def test_a_planted_password_is_in_no_file_record_or_line_a_run_and_a_sweep_leave(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    port = free_port()
    store = tmp_path / "server-store"
    printed: dict[str, subprocess.CompletedProcess] = {}
    # One worker instead of MLflow's four: half the server's start-up.
    with make_service("server", port, STORE=str(store), ARGS="--workers 1") as url:
        # A server without auth takes the basic-auth header and ignores it.
        uri = url.replace("http://", f"http://alice:{SECRET}@")
        printed["single run"] = train_cli(
            tmp_path, *TINY, "evaluate=off", f"tracking.uri={uri}", timeout=120
        )
        printed["sweep"] = train_cli(
            tmp_path,
            "-m",
            *TINY,
            "analyzer=gradient,input_t_gradient",
            "evaluate=off",
            "evaluate.scores.complexity=true",
            "evaluate.n_images=20",
            f"tracking.uri={uri}",
            timeout=180,
        )
        records = server_records(MlflowClient(url), tmp_path / "downloads")
    # The server gone: the error line names no secret either.
    dead = f"http://alice:{SECRET}@127.0.0.1:{free_port()}"
    printed["server down"] = train_cli(tmp_path, *TINY, f"tracking.uri={dead}", timeout=120)

    # Everything left behind: Hydra's outputs, the reports, the server's database and
    # artifacts, the model cache, the downloaded artifacts; the server's records; the output.
    found, files_read = files_holding(tmp_path, SECRET)
    found += [where for where, text in records.items() if SECRET in text]
    found += [
        f"{what}: {stream}"
        for what, result in printed.items()
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr))
        if SECRET in text
    ]
    per_folder = Counter(
        path.relative_to(tmp_path).parts[0] for path in tmp_path.rglob("*") if path.is_file()
    )
    print(
        f"searched {files_read} files ({dict(sorted(per_folder.items()))}), {len(records)} "
        f"records on the server ({', '.join(records)}), the output of {len(printed)} commands "
        f"({', '.join(printed)}): found in {len(found)}"
    )
    assert not found, "\n".join(found)

    for what in ("single run", "sweep"):
        assert printed[what].returncode == 0, printed[what].stderr[-3000:]
    # The lines that name the server still name it, and its user.
    down = printed["server down"]
    assert down.returncode == 2
    assert "cannot use the tracking store http://alice:***@127.0.0.1:" in down.stderr
    assert "browse: http://alice:***@127.0.0.1:" in printed["single run"].stderr
    assert "browse: http://alice:***@127.0.0.1:" in printed["sweep"].stderr
    # What the runs record says which server and user, with the password masked.
    params = [text for where, text in records.items() if where.endswith(" params")]
    assert (
        sum(f"'tracking.uri': 'http://alice:***@127.0.0.1:{port}'" in text for text in params) == 3
    )
    overrides = [text for text in params if "sweep.overrides" in text]
    assert len(overrides) == 1 and f"tracking.uri=http://alice:***@127.0.0.1:{port}" in overrides[0]
    hydra_files = list((tmp_path / "outputs").rglob(".hydra"))
    assert len(hydra_files) == 4  # the run, the sweep's two jobs, the run with the server down
    for folder in hydra_files:
        # A sweep's job has its overrides as Hydra escapes them: http\://alice\:***@...
        text = (folder / "overrides.yaml").read_text().replace("\\", "")
        assert "tracking.uri=http://alice:***@127.0.0.1:" in text


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_a_password_is_refused_where_the_launcher_stores_job_files(launcher):
    """submitit pickles each job's config under .submitit/ (a job needs it whole): with a
    password in tracking.uri such a sweep is refused before it starts, naming the way out."""
    from hydra import compose, initialize_config_dir

    from src.common.errors import UserError
    from src.common.paths import CONFIG_DIR
    from src.sweep.jobs import check_no_secret_in_job_files

    def config(*overrides):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", list(overrides), return_hydra_config=True)

    secret = "tracking.uri=http://alice:S3cret@127.0.0.1:5000"
    with pytest.raises(UserError) as refused:
        check_no_secret_in_job_files(config(f"hydra/launcher={launcher}", secret))
    assert "S3cret" not in str(refused.value)
    assert "http://alice:***@127.0.0.1:5000 holds a password" in str(refused.value)
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in str(refused.value)
    check_no_secret_in_job_files(config(f"hydra/launcher={launcher}", "tracking.uri=http://h:5000"))
    check_no_secret_in_job_files(config(secret))  # the basic launcher writes no job files

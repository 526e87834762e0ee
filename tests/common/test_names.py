"""Names that cannot break a run or a sweep: whatever a user types, what MLflow keeps as a name
(metric, param and tag keys, artifact paths, run names) is valid for it and unique in its set
(src/common/names.py ``mlflow_name``), and a sweep over hostile values ends FINISHED with its
comparison, which ``python -m src.report`` rebuilds."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.entities import Metric, Param
from mlflow.store.artifact.artifact_repo import verify_artifact_path
from mlflow.store.tracking.dbmodels.models import SqlRun
from mlflow.tracking import MlflowClient
from mlflow.utils.uri import validate_path_is_safe
from mlflow.utils.validation import (
    MAX_DATASET_NAME_SIZE,
    MAX_ENTITY_KEY_LENGTH,
    _validate_length_limit,
    _validate_metric_name,
    _validate_param_name,
    _validate_tag_name,
)
from support import SMALL, client_for, run_module, sweep_runs, train_cli

from src.common import names
from src.common.names import mlflow_name
from src.report.page import build_report, log_report
from src.report.queries import analyzer_label
from src.sweep.parent import SweepTracker
from src.tracking.lifecycle import tracked_run
from src.tracking.records import log_config, log_metrics
from src.tracking.store import Store, prepare, resolve_store

# --- the function, on names worked out by hand -----------------------------------------------


def sha8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    "text, key, file",
    [
        ("gradient name:ok", "gradient name:ok", "gradient name_ok"),  # ordinary: unchanged
        ("../../evil", "__/__/evil", "_._.._evil"),  # ".." parts, and no start in ".."
        ("gradient name:../../evil", "gradient name:../__/evil", "gradient name_.._.._evil"),
        ("models/./a.h5", "models/_/a.h5", "models_._a.h5"),
        ("/abs//x/", "abs/x", "_abs__x_"),  # no empty part: no leading, double or last /
        ("", "_", "_"),
        ("..", "__", "__"),
        ("...x", "_..x", "_..x"),  # MLflow refuses any name that starts with ".."
        ("lrp ε=0.1 · #1", "lrp ε_0.1 _ _1", "lrp ε_0.1 _ _1"),  # letters of any script stay
    ],
)
def test_names_by_hand(text, key, file):
    assert mlflow_name(text) == key
    assert mlflow_name(text, kind="file") == file


def test_long_names_end_in_a_hash_and_taken_names_get_a_number():
    # 300 x: cut to 250 - 9 characters, then "-" and the first 8 hex digits of SHA-256("x"*300).
    assert mlflow_name("x" * 300) == "x" * 241 + "-" + sha8("x" * 300)
    # File names are counted in UTF-8 bytes: 150 ε are 300 bytes; 95 of them (190 bytes) and
    # the 9 bytes of the hash fit in 200.
    assert mlflow_name("ε" * 150, kind="file") == "ε" * 95 + "-" + sha8("ε" * 150)
    taken: set[str] = set()
    assert [mlflow_name(t, taken) for t in ("a b", "a\tb", "a_b", "a_b")] == [
        "a b",
        "a_b",
        "a_b-2",
        "a_b-3",
    ]
    assert taken == {"a b", "a_b", "a_b-2", "a_b-3"}
    # A run's name keeps what MLflow keeps (· and =), loses what is no text, fits in 250.
    assert mlflow_name("a\nb · c=1", kind="label") == "a_b · c=1"
    name = names.run_name("gradient", ["name=" + "x" * 500], 0, "1 ep")
    assert len(name) == 250 and name.endswith(" · seed 0 · 1 ep")
    assert names.run_name("gradient", ["name=ok"], 0, "1 ep") == "gradient name=ok · seed 0 · 1 ep"


def test_the_limits_are_mlflows():
    assert names.MAX_KEY == MAX_ENTITY_KEY_LENGTH
    assert SqlRun.name.type.length == names.MAX_RUN_NAME
    assert names.MAX_DATASET_NAME == MAX_DATASET_NAME_SIZE


# --- the function, on any text ---------------------------------------------------------------

# Pieces a user's value may hold: path tricks, MLflow's reserved characters, other scripts,
# what is no text; joined in any order, or any text at all, or 500 characters of it.
PATH_TRICKS = ["..", ".", "/", "../", "/./", "x/../", "//"]
RESERVED = [":", "=", "#", "%2e%2e", "?", "\\", "~", "-", "_", " "]
SCRIPTS = ["a", "ok", "ε", "é", "中文", "²", "😀"]
NO_TEXT = ["\n", "\t", "\x00", "\u2028", "\u200d"]
PIECES = PATH_TRICKS + RESERVED + SCRIPTS + NO_TEXT
texts = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.text(),
    st.text(min_size=490, max_size=510),
    st.lists(st.sampled_from(PIECES), min_size=200, max_size=250).map("".join),
)


def assert_valid_key(name: str) -> None:
    """What MLflow checks of a metric's, param's and tag's key, by its own functions."""
    _validate_metric_name(name)
    _validate_param_name(name)
    _validate_tag_name(name)
    _validate_length_limit("key", MAX_ENTITY_KEY_LENGTH, name)  # raises: truncate is off
    verify_artifact_path(name)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(texts)
def test_every_text_makes_a_valid_name_of_each_kind(text):
    assert_valid_key(mlflow_name(text))
    # Artifact paths: one part, in MLflow's checks of a path and a file system's 255 bytes.
    file = mlflow_name(text, kind="file")
    path = f"figures/heatmaps_{file}.png"
    assert "/" not in file and ":" not in file
    verify_artifact_path(path)
    assert validate_path_is_safe(path) == path
    assert len(f"heatmaps_{file}.png".encode()) <= 255
    # A run's name: within its column, and text a database stores (no lone surrogate).
    label = mlflow_name(text, kind="label")
    assert 0 < len(label) <= SqlRun.name.type.length
    label.encode("utf-8")
    assert "\n" not in label and "\x00" not in label
    # A dataset's name.
    assert len(mlflow_name(text, kind="label", limit=names.MAX_DATASET_NAME)) <= 500


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(st.lists(texts, max_size=8), st.sampled_from(["key", "file", "label"]))
def test_names_in_one_set_are_unique(many, kind):
    taken: set[str] = set()
    made = [mlflow_name(text, taken, kind) for text in many]
    assert len(set(made)) == len(made)
    if kind == "key":
        for name in made:
            assert_valid_key(name)


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(st.text(min_size=260, max_size=300), st.text(min_size=1), st.text(min_size=1))
def test_long_texts_that_differ_only_at_the_end_stay_distinct(start, end, other):
    if end != other:
        assert mlflow_name(start + end) != mlflow_name(start + other)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.text(alphabet="ab/.:- _ε中", max_size=30))
def test_a_name_mlflow_takes_is_kept_as_it_is(text):
    try:
        assert_valid_key(text)
    except Exception:  # noqa: BLE001 - MLflow refuses it: it is changed, tested above
        return
    assert mlflow_name(text) == text
    assert mlflow_name(mlflow_name(text, kind="file"), kind="file") == mlflow_name(
        text, kind="file"
    )


def test_two_files_of_one_name_are_told_apart_by_their_paths():
    def run(path: str):
        params = {"analyzer.name": "gradient", "seed": "0", "model.path": path}
        return type("Run", (), {"data": type("Data", (), {"params": params})})

    runs = [run("../../models/a.h5"), run("models/./a.h5"), run("b.h5")]
    assert [analyzer_label(r.data.params, runs) for r in runs] == [
        "gradient path=../../models/a.h5",
        "gradient path=models/./a.h5",
        "gradient path=b.h5",  # the only file of its name
    ]


# --- in the store ----------------------------------------------------------------------------

EVIL = "../../evil"


@pytest.fixture(scope="module")
def local_store(tmp_path_factory) -> Store:
    """One store for the tests below (making its database costs seconds)."""
    return resolve_store(str(tmp_path_factory.mktemp("names") / "store"))


@pytest.fixture
def store(local_store, request):
    """The store, and an experiment of the test's own."""
    return local_store, prepare(local_store, request.node.name)


def fake_sweep(client: MlflowClient, experiment_id: str) -> str:
    """A finished sweep over ``dataset.name=../../evil,ok`` x ``seed=0,1`` as its jobs log it:
    params, an AOPC per image and its mean, the heatmaps; returns the parent's id."""
    jobs = [f"dataset.name={name} seed={seed}" for name in (EVIL, "ok") for seed in (0, 1)]
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep · dataset.name={EVIL},ok seed=0,1",
        tags={"sweep_role": "parent", "jobs_expected": str(len(jobs))},
    ).info.run_id
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "sweep_jobs.json").write_text(json.dumps(jobs))
        client.log_artifact(parent, str(Path(folder) / "sweep_jobs.json"))
    rng = np.random.default_rng(0)
    for job in jobs:
        name, seed = job.removeprefix("dataset.name=").split(" seed=")
        run = client.create_run(
            experiment_id,
            run_name=names.run_name("gradient", [f"name={name}"], int(seed), "1 ep"),
            tags={"mlflow.parentRunId": parent, "job_overrides": job, "dataset": name},
        ).info.run_id
        aopc = rng.uniform(size=4)
        params = {"analyzer.name": "gradient", "analyzer.method": "gradient"}
        params |= {"seed": seed, "train.epochs": "1", "dataset.name": name}
        client.log_batch(
            run,
            metrics=[Metric(k, v, 0, 0) for k, v in {"eval_aopc": aopc.mean()}.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        with tempfile.TemporaryDirectory() as folder:
            images = rng.uniform(size=(4, 8, 8, 1))
            np.savez(
                Path(folder) / "heatmaps.npz",
                images=images,
                labels=np.arange(4),
                predictions=np.arange(4),
                explained_classes=np.arange(4),
                heatmaps=rng.normal(size=images.shape),
                class_names=np.array([str(k) for k in range(4)]),
            )
            np.savez(Path(folder) / "scores.npz", aopc=aopc)
            client.log_artifacts(run, folder)
        client.set_terminated(run, "FINISHED")
    return parent


def test_a_sweep_over_a_path_like_value_ends_with_its_comparison_and_is_rebuilt(store, tmp_path):
    store, experiment_id = store
    client = MlflowClient(store.tracking_uri)
    parent = fake_sweep(client, experiment_id)
    # The sweep's closer, as src.train calls it once every job is done.
    tracker = SweepTracker()
    tracker.parent_run_id, tracker.store = parent, store
    tracker.output_dir, tracker.sweep_dir, tracker.grid_images = str(tmp_path / "r"), ".", 4
    assert tracker.finish() == "FINISHED"
    closed = client.get_run(parent)
    assert closed.info.status == "FINISHED"
    children = client.search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=10
    )
    for name, row in ((EVIL, "gradient name:../__/evil"), ("ok", "gradient name:ok")):
        aopc = [r.data.metrics["eval_aopc"] for r in children if r.data.tags["dataset"] == name]
        assert closed.data.metrics[f"aopc/{row}"] == pytest.approx(np.mean(aopc))
        assert closed.data.metrics[f"aopc_std/{row}"] == pytest.approx(np.std(aopc, ddof=1))
    table = pd.read_csv(tmp_path / "r" / parent / "table.csv")
    assert sorted(table["analyzer"]) == [f"gradient name={EVIL}", "gradient name=ok"]
    # What `python -m src.report` does (src.report.hydra_main), again from the store alone.
    report = build_report(client, closed, tmp_path / "again", 4, store.tracking_uri)
    log_report(client, parent, tmp_path / "again", report)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "table.csv"), table)


def test_mlflow_takes_every_kind_of_name_made_of_hostile_values(store):
    """The names go into a real store: a run named by a 500-character value, params whose
    keys come from a user's own config, metrics, tags and an artifact."""
    store, experiment_id = store
    hostile = ["../../evil", "a/./b", "/abs", "x" * 500, "ε中文😀", "a\nb", "", "#%2e?"]
    run_name = names.run_name("gradient", [f"name={v}" for v in hostile], 0, "1 ep")
    with tracked_run(experiment_id, run_name, {}) as run_id:
        log_config({"dataset": {value: 1 for value in hostile}, "seed": 0})
        taken: set[str] = set()
        keys = [mlflow_name(f"aopc/{value}", taken) for value in hostile]
        log_metrics({key: 1.0 for key in keys})
        mlflow.set_tags({key: "v" for key in keys})
        with tempfile.TemporaryDirectory() as folder:
            for value in hostile:
                path = Path(folder) / f"heatmaps_{mlflow_name(value, kind='file')}.png"
                path.write_bytes(b"png")
            mlflow.log_artifacts(folder, "figures")
    run = MlflowClient(store.tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == run_name
    assert len(run_name) == 250
    assert set(keys) <= set(run.data.metrics) and set(keys) <= set(run.data.tags)
    assert len([k for k in run.data.params if k.startswith("dataset.")]) == len(hostile)
    assert run.data.params["seed"] == "0"
    artifacts = MlflowClient(store.tracking_uri).list_artifacts(run_id, "figures")
    assert len(artifacts) == len(hostile)


# --- the real command line -------------------------------------------------------------------

# Scored with AOPC alone, on 8 images: the parent's metrics come from the verdict.
QUICK = [
    *SMALL,
    "dataset.test_size=100",
    "train.epochs=1",
    "evaluate.n_images=8",
    "evaluate.perturbation.steps=3",
    *(
        f"evaluate.scores.{score}=false"
        for score in (
            "faithfulness_correlation",
            "road",
            "randomisation",
            "random_logit",
            "complexity",
            "conservation",
            "blank_maps",
        )
    ),
]


@pytest.mark.slow
def test_a_real_sweep_over_hostile_values_finishes_and_its_report_is_rebuilt(tmp_path):
    """``dataset.name=../../evil`` and a 510-character one, ``analyzer.name=../x/./y``: every
    job finishes (its heatmap figure, its dataset input), the parent FINISHED with the
    verdict's metrics, and ``python -m src.report`` rebuilds the comparison."""
    long = "ε" * 10 + "x" * 500
    result = train_cli(
        tmp_path, *QUICK, "-m", f"dataset.name={EVIL},'{long}'", "analyzer.name=../x/./y"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert [kid.info.status for kid in kids] == ["FINISHED", "FINISHED"]
    assert "aopc/__/x/_/y name:../__/evil" in parent.data.metrics
    assert len([key for key in parent.data.metrics if key.startswith("aopc/")]) == 2
    client = client_for(tmp_path)
    for kid in kids:
        figures = {a.path for a in client.list_artifacts(kid.info.run_id, "figures")}
        assert "figures/heatmaps__._x_._y.png" in figures
        assert len(kid.info.run_name) <= names.MAX_RUN_NAME
    rebuilt = run_module(
        tmp_path, "src.report", f"parent={parent.info.run_id}", f"paths.report_dir={tmp_path}/r"
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    table = pd.read_csv(tmp_path / "r" / parent.info.run_id / "table.csv")
    assert len(table) == 2

"""Reproducibility: the same config and seed, run twice in separate processes, gives bit-identical
metrics and heatmaps, and each run records what reproducing it needs."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import MEASURED, SMALL, all_runs, client_for, run_record, train_cli

from src.common.paths import PROJECT_ROOT
from src.data import IDX_FILES, load_dataset, write_idx
from src.tracking.records import PACKAGES, environment, flatten

# Small, but every part of a run: training with validation, explanation, every score.
EVERY_PART = [
    *SMALL,
    "train.epochs=2",
    "explain.n_images=6",
    "evaluate.n_images=16",
    "seed=3",
    "train.reuse=false",  # the second run trains again instead of reusing the first's model
]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_dataset_names_each_file_it_read_with_its_sha256_and_size(idx_folder):
    folder = idx_folder(gz=True)
    dataset = load_dataset("mnist", path=str(folder))
    assert [file.path for file in dataset.files] == [
        str(folder / f"{stem}.gz") for stem in IDX_FILES.values()
    ]
    for file in dataset.files:
        assert file.sha256 == sha256_of(Path(file.path))
        assert file.bytes == Path(file.path).stat().st_size

    # A file changed in place is hashed again, not taken from the first hashing.
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    before = {file.path: file.sha256 for file in dataset.files}
    stat = labels.stat()
    write_idx(labels, (np.arange(100) + 1) % 10)
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = {file.path: file.sha256 for file in load_dataset("mnist", path=str(folder)).files}
    assert after[str(labels)] == sha256_of(labels) != before[str(labels)]
    assert {path: sha for path, sha in after.items() if path != str(labels)} == {
        path: sha for path, sha in before.items() if path != str(labels)
    }


def test_the_environment_lists_python_the_platform_and_every_distribution_sorted():
    lines = environment().splitlines()
    header = [line for line in lines if line.startswith("#")]
    packages = [line for line in lines if not line.startswith("#")]
    assert lines[: len(header)] == header and len(header) == 2
    assert f"# python {platform.python_version()} " in header[0]
    assert platform.platform() in header[1]
    assert packages == sorted(packages, key=str.lower)
    installed = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()}
    assert set(packages) == installed
    assert "innvestigate==2.1.2" in packages


def git_head() -> str:
    return subprocess.check_output(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True
    ).strip()


@pytest.mark.slow
def test_the_same_config_and_seed_in_two_processes_gives_identical_results(tmp_path):
    for _ in range(2):
        result = train_cli(tmp_path, *EVERY_PART)
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = sorted(all_runs(tmp_path), key=lambda run: run.info.start_time)
    client = client_for(tmp_path)
    assert first.info.status == second.info.status == "FINISHED"
    assert first.data.tags["model_reused"] == second.data.tags["model_reused"] == "false"

    # Every metric that is not a measurement of time or memory: the same float at every step.
    compared = sorted(key for key in first.data.metrics if not MEASURED.search(key))
    assert compared == sorted(key for key in second.data.metrics if not MEASURED.search(key))
    assert {"train_loss", "val_accuracy", "test_loss", "eval_aopc", "eval_gini"} <= set(compared)
    assert {"eval_perturbation_accuracy", "eval_mprt_curve"} <= set(compared)
    assert {"eval_conservation_error"} <= set(compared)  # deep_taylor, the default analyzer

    def history(run, key: str) -> list[tuple[int, str]]:
        metrics = client.get_metric_history(run.info.run_id, key)
        return sorted((metric.step, float(metric.value).hex()) for metric in metrics)

    for key in compared:
        assert history(first, key) == history(second, key), key

    # The heatmaps and what they explain: the same arrays, byte for byte.
    arrays = []
    for run in (first, second):
        path = client.download_artifacts(
            run.info.run_id, "heatmaps.npz", str(tmp_path / run.info.run_id)
        )
        with np.load(path, allow_pickle=False) as npz:
            arrays.append({key: npz[key] for key in npz.files})
    assert arrays[0].keys() == arrays[1].keys() >= {"heatmaps", "images", "indices"}
    for key, array in arrays[0].items():
        other = arrays[1][key]
        assert array.dtype == other.dtype and np.array_equal(array, other), key
        assert array.tobytes() == other.tobytes(), key

    # ...and so are the figures drawn from them.
    figures = [
        {
            Path(artifact.path).name: sha256_of(
                Path(
                    client.download_artifacts(
                        run.info.run_id, artifact.path, str(tmp_path / f"fig-{run.info.run_id}")
                    )
                )
            )
            for artifact in client.list_artifacts(run.info.run_id, "figures")
        }
        for run in (first, second)
    ]
    assert set(figures[0]) == {
        "heatmaps_deep_taylor.png",
        "training.png",
        "perturbation.png",
        "randomisation.png",
    }
    assert figures[0] == figures[1]

    digits_file = resources.files("sklearn.datasets.data") / "digits.csv.gz"
    for run in (first, second):
        record = Path(
            client.download_artifacts(run.info.run_id, "", str(tmp_path / f"rec-{run.info.run_id}"))
        )
        tags, params = run.data.tags, run.data.params
        # The resolved config, whole and as params.
        config = yaml.safe_load((record / "config.yaml").read_text())
        assert {key: str(value) for key, value in flatten(config).items()} == params
        assert params == first.data.params
        # The code: commit and whether the tree had uncommitted changes.
        assert tags["git_commit"] == git_head()
        assert tags["git_dirty"] in ({"true", "false"} if git_head() != "unknown" else {"unknown"})
        # The libraries: tags for the main ones, and the whole environment.
        for package in PACKAGES:
            assert tags[f"version.{package}"] == metadata.version(package)
        assert tags["version.tensorflow"].startswith("2.14.")
        assert tags["version.innvestigate"] == "2.1.2"
        assert tags["version.python"] == platform.python_version()
        environment = (record / "environment.txt").read_text().splitlines()
        assert any(re.fullmatch(r"tensorflow==2\.14\.\d+", line) for line in environment)
        assert "innvestigate==2.1.2" in environment
        assert any(platform.python_version() in line for line in environment if line[0] == "#")
        # The data: where it came from, a checksum of the arrays, and one of each file read.
        assert tags["data_source"] == "scikit-learn load_digits (resized to 28x28)"
        assert tags["data_sha256"] == load_dataset("digits").checksum
        files = json.loads((record / "data_files.json").read_text())
        assert list(files) == [str(digits_file)]
        assert files[str(digits_file)] == {
            "sha256": sha256_of(Path(str(digits_file))),
            "bytes": Path(str(digits_file)).stat().st_size,
        }


# Every score, and noise drawn by TensorFlow (SmoothGrad) and by NumPy (the noise baseline).
SCORED = [
    *SMALL,
    "train.epochs=2",
    "explain.n_images=6",
    "evaluate.n_images=24",
    "seed=3",
    "compare.baselines=[]",
]


@pytest.mark.slow
def test_a_run_that_reuses_a_model_scores_exactly_as_the_run_that_trained_it(tmp_path):
    """Found: the second of two identical commands reused the model, skipped training (which
    advances np.random's global state) and got other scores (digits eval_aopc 0.46638 vs
    0.46972)."""
    for _ in range(2):
        result = train_cli(
            tmp_path, *SCORED, "analyzer=smoothgrad", "analyzer.params.augment_by_n=4"
        )
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = sorted(all_runs(tmp_path), key=lambda run: run.info.start_time)
    assert (first.data.tags["model_reused"], second.data.tags["model_reused"]) == (
        "false",
        "true",
    )
    client = client_for(tmp_path)
    trained = run_record(client, first, tmp_path)
    reused = run_record(client, second, tmp_path)
    # The reusing run logs its model's training curve too; every score must match.
    assert {key for key in trained if key.startswith("eval_")} >= {"eval_aopc", "eval_mprt"}
    assert trained == reused


@pytest.mark.slow
def test_every_launcher_trains_the_same_weights_and_computes_the_same_scores(tmp_path):
    """Found: joblib's workers ran TensorFlow with fewer intra-op threads, which changes the
    rounding: other weights than the default launcher for the same config."""
    records = {}
    for launcher in ("basic", "joblib", "local"):
        folder = tmp_path / launcher
        folder.mkdir()
        chosen = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
        if launcher == "joblib":
            chosen.append("hydra.launcher.n_jobs=2")
        result = train_cli(folder, "-m", *SCORED, "analyzer=smoothgrad,noise", *chosen)
        assert result.returncode == 0, result.stderr[-3000:]
        client = client_for(folder)
        records[launcher] = {
            run.data.params["analyzer.name"]: run_record(client, run, folder)
            for run in all_runs(folder)
            if run.data.tags.get("sweep_role") != "parent"
        }
        assert sorted(records[launcher]) == ["noise", "smoothgrad"], launcher
    assert records["basic"]["smoothgrad"]["train_loss"]  # training was compared
    assert records["basic"] == records["joblib"] == records["local"]


# Two training lengths of one seed, two analyzers (one with NumPy-drawn noise).
SNAPSHOT_SWEEP = [
    *[o for o in SCORED if not o.startswith("train.epochs=")],
    "train.epochs=1,3",
    "analyzer=gradient,noise",
]


def records_by_job(folder: Path) -> dict[tuple[str, str], dict]:
    """(analyzer, epochs) -> the run's record, with the epochs it trained apart."""
    client = client_for(folder)
    records = {}
    for run in all_runs(folder):
        if run.data.tags.get("sweep_role") == "parent":
            continue
        record = run_record(client, run, folder)
        record["trained"] = run.data.metrics["train_epochs_run"]
        # The training figure, drawn once per model and kept with it: the same PNG.
        figure = client.download_artifacts(
            run.info.run_id, "figures/training.png", str(folder / f"fig-{run.info.run_id}")
        )
        record["training.png"] = sha256_of(Path(figure))
        records[(run.data.params["analyzer.name"], run.data.params["train.epochs"])] = record
    return records


def sweep_records(folder: Path, *overrides: str) -> dict[tuple[str, str], dict]:
    folder.mkdir()
    result = train_cli(folder, "-m", *SNAPSHOT_SWEEP, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return records_by_job(folder)


@pytest.mark.slow
def test_models_from_snapshots_are_the_models_trained_from_the_start_in_every_launcher(tmp_path):
    """Each seed's training runs once, to 3 epochs, and the 1-epoch runs take its snapshot (or
    the 3-epoch run continues the 1-epoch one, as the launcher orders them): every metric,
    heatmap and score is the run's that trained its epochs from the start."""
    scratch = sweep_records(tmp_path / "scratch", "train.reuse=false")
    assert sorted(scratch) == [("gradient", "1"), ("gradient", "3"), ("noise", "1"), ("noise", "3")]
    assert sum(r["trained"] for r in scratch.values()) == 8  # 1 + 3 + 1 + 3

    def without_cost(records):
        return {job: {k: v for k, v in r.items() if k != "trained"} for job, r in records.items()}

    for launcher in ("basic", "joblib", "local"):
        chosen = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
        if launcher == "joblib":
            chosen.append("hydra.launcher.n_jobs=2")
        reused = sweep_records(tmp_path / launcher, *chosen)
        assert sum(r["trained"] for r in reused.values()) == 3, launcher
        assert without_cost(reused) == without_cost(scratch), launcher

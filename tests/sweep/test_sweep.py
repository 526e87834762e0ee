"""Sweeps through the real CLI: train once per model, one parent per sweep, the comparison."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from support import SMALL, all_runs, client_for, run_module, store_dir, sweep_runs, train_cli

from src.common.tf_runtime import threads_per_job
from src.report.queries import analyzer_label
from src.sweep.jobs import expand_sweep, sweep_name_overrides

# The runs here: SMALL, 100 test images, one epoch.
QUICK = [*SMALL, "dataset.test_size=100", "train.epochs=1", "compare.baselines=[]"]


def test_expand_sweep_lists_every_combination_as_hydra_launches_it():
    jobs = expand_sweep(["analyzer=gradient,deep_taylor", "seed=0,1", "train.epochs=3"])
    assert jobs == [
        "analyzer=gradient seed=0 train.epochs=3",
        "analyzer=gradient seed=1 train.epochs=3",
        "analyzer=deep_taylor seed=0 train.epochs=3",
        "analyzer=deep_taylor seed=1 train.epochs=3",
    ]


def test_the_parent_is_named_by_what_the_sweep_compares_not_where_it_writes():
    overrides = ["tracking.dir=/x", "analyzer=a,b", "paths.output_dir=/y", "seed=0,1"]
    overrides += ["hydra.launcher.n_jobs=2", "tracking.experiment_name=e", "train.epochs=2"]
    assert sweep_name_overrides(overrides) == ["analyzer=a,b", "seed=0,1", "train.epochs=2"]


def test_parallel_jobs_share_the_cores_through_their_inter_op_threads():
    assert threads_per_job(8, None) is None  # one job at a time: TensorFlow decides
    assert threads_per_job(8, 2) == 4
    assert threads_per_job(8, -1) == 1  # joblib's default: one job per core
    assert threads_per_job(8, 16) == 1


def fake_run(**params: str) -> SimpleNamespace:
    base = {"seed": "0", "train.epochs": "1", "tracking.dir": "/x", "train.learning_rate": "0.001"}
    return SimpleNamespace(data=SimpleNamespace(params={**base, **params}))


def test_labels_tell_apart_settings_the_sweep_varied_besides_seed_and_epochs():
    gradient = fake_run(**{"analyzer.name": "gradient", "seed": "1", "tracking.dir": "/y"})
    eps_small = fake_run(**{"analyzer.name": "lrp_epsilon", "analyzer.params.epsilon": "0.01"})
    eps_large = fake_run(**{"analyzer.name": "lrp_epsilon", "analyzer.params.epsilon": "0.1"})
    runs = [gradient, eps_small, eps_large]
    assert analyzer_label(gradient.data.params, runs) == "gradient"
    assert analyzer_label(eps_small.data.params, runs) == "lrp_epsilon ε=0.01"
    assert analyzer_label(eps_small.data.params, [gradient, eps_small]) == "lrp_epsilon"
    faster = fake_run(**{"analyzer.name": "gradient", "train.learning_rate": "0.01"})
    assert analyzer_label(faster.data.params, [gradient, faster]) == "gradient lr=0.01"
    # Model files by their names: a table's column shows no more of a path.
    files = [
        fake_run(**{"analyzer.name": "gradient", "model.path": f"/data/m/net{ext}"})
        for ext in (".keras", ".h5")
    ]
    assert {analyzer_label(run.data.params, files) for run in files} == {
        "gradient path=net.keras",
        "gradient path=net.h5",
    }
    # A param that is the seed (analyzer.params.seed: ${seed}) is no setting of its own.
    noise = [
        fake_run(**{"analyzer.name": "noise", "seed": seed, "analyzer.params.seed": seed})
        for seed in ("0", "1")
    ]
    assert {analyzer_label(run.data.params, noise) for run in noise} == {"noise"}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_sweep_trains_each_model_once_and_compares_on_its_parent(tmp_path, launcher):
    sweep = [
        *QUICK,
        "-m",
        "analyzer=gradient,input_t_gradient",
        "seed=0,1",
        f"hydra/launcher={launcher}",
    ]
    result = train_cli(tmp_path, *sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    # Progress, in whichever process ran the job: one line per job done.
    done = re.findall(r"sweep: (\d+)/4 jobs done", result.stderr)
    assert sorted(done) == ["1", "2", "3", "4"], result.stderr[-3000:]

    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert sorted(kid.info.run_name for kid in kids) == [
        "gradient · seed 0 · 1 ep",
        "gradient · seed 1 · 1 ep",
        "input_t_gradient · seed 0 · 1 ep",
        "input_t_gradient · seed 1 · 1 ep",
    ]
    assert all(kid.info.status == "FINISHED" for kid in kids)
    assert {kid.data.tags["sweep_id"] for kid in kids} == {parent.data.tags["sweep_id"]}
    # One thread policy in every launcher, on every run: one thread per BLAS pool, however many
    # pools the machine's wheels load (two here, three on another CPU).
    (pools,) = {kid.data.tags["threads_blas"] for kid in kids}
    assert pools and all(pool.startswith("openblas:") for pool in pools.split(","))
    assert {pool.rsplit(":", 1)[1] for pool in pools.split(",")} == {"1"}

    # Four jobs, two distinct models (one per seed): two trainings, two reuses.
    trainers = {kid.info.run_id: kid for kid in kids if kid.data.tags["model_reused"] == "false"}
    assert len(trainers) == len({kid.data.tags["model_fingerprint"] for kid in kids}) == 2
    # Start-up is a single run's measure: a sweep's jobs share their process.
    assert not any("time_to_first_step_s" in kid.data.metrics for kid in kids)
    client = client_for(tmp_path)
    for kid in kids:
        trainer = trainers[kid.data.tags.get("trained_by_run", kid.info.run_id)]
        assert trainer.data.tags["model_fingerprint"] == kid.data.tags["model_fingerprint"]
        assert kid.data.tags["model_uri"] == trainer.data.tags["model_uri"]
        history = [m.value for m in client.get_metric_history(kid.info.run_id, "val_accuracy")]
        assert history == [
            m.value for m in client.get_metric_history(trainer.info.run_id, "val_accuracy")
        ]
        assert kid.data.metrics["test_accuracy"] == trainer.data.metrics["test_accuracy"]

    # The comparison on the parent agrees with what the children logged.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    expected = {
        "grid.png",
        "metrics_vs_epochs.png",
        "quality_curves.png",
        "report.html",
        "table.csv",
        "table.html",
        "verdict.md",
        "answer.md",
        "answer.json",
    }
    expected.add("missing.txt")
    assert artifacts == {f"comparison/{name}" for name in expected}
    table = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "comparison/table.csv", str(tmp_path))
    )
    assert sorted(table["analyzer"]) == ["gradient", "input_t_gradient"]
    parent_metrics = client.get_run(parent.info.run_id).data.metrics
    for row in table.itertuples():
        logged = [
            kid.data.metrics for kid in kids if kid.data.params["analyzer.name"] == row.analyzer
        ]
        assert row.n_seeds == 2
        assert row.test_accuracy_mean == pytest.approx(
            np.mean([m["test_accuracy"] for m in logged])
        )
        assert row.test_accuracy_std == pytest.approx(
            np.std([m["test_accuracy"] for m in logged], ddof=1)
        )
        assert row.analysis_time_s_mean == pytest.approx(
            np.mean([m["analysis_time_s"] for m in logged])
        )
        for score in ("eval_aopc", "eval_gini", "eval_mprt"):
            mean = np.mean([m[score] for m in logged])
            assert getattr(row, f"{score}_mean") == pytest.approx(mean)
        assert -1 <= row.stability_spearman_mean <= 1
        # The verdict's metrics on the parent: the mean and std over seeds, per analyzer.
        for score in ("aopc", "mprt", "emprt", "random_logit", "gini"):
            values = [m[f"eval_{score}"] for m in logged]
            assert parent_metrics[f"{score}/{row.analyzer}"] == pytest.approx(np.mean(values))
            assert parent_metrics[f"{score}_std/{row.analyzer}"] == pytest.approx(
                np.std(values, ddof=1)
            )
    assert (tmp_path / "reports" / parent.info.run_id / "grid.png").is_file()
    # The verdict is printed before the sweep's last line, and written on the parent.
    verdict = result.stderr[result.stderr.index("verdict (") :]
    # Every default criterion in the registry's order, as many side by side as fit in 100
    # columns, the rest in tables below.
    headers = re.findall(r"^analyzer +(.*)$", verdict, re.M)
    headings = " ".join(headers).split()
    criteria = ["AOPC", "LeRF", "ABPC", "FCorr", "ROAD", "MPRT", "eMPRT", "rlogit", "Gini"]
    assert headings[::2] == criteria
    rows = [line for line in verdict.splitlines() if line.startswith(("analyzer", "gradient"))]
    assert len(rows) == 2 * len(headers) and max(len(line) for line in rows) <= 100
    assert re.search(r"^gradient +\d\.\d{3}[*= ]", verdict, re.M)
    # The answer comes first (this sweep ran no baseline: it says there is none to give).
    answer = result.stderr[result.stderr.index("answer (") : result.stderr.index("verdict (")]
    assert "No answer: the sweep ran no baseline (compare.baselines=[])" in answer
    assert "sweep 4 of 4 jobs finished" in verdict.splitlines()[-1]
    assert "| gradient |" in (tmp_path / "reports" / parent.info.run_id / "verdict.md").read_text()

    # `python -m src.report` rebuilds the same table from the store alone.
    rebuilt = run_module(
        tmp_path,
        "src.report",
        f"parent={parent.info.run_id}",
        f"paths.report_dir={tmp_path / 'again'}",
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert re.search(r"^input_t_gradient +\d\.\d{3}[*= ]", rebuilt.stdout, re.M)  # the verdict
    assert "No answer: the sweep ran no baseline" in rebuilt.stdout  # the answer, first
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "again" / parent.info.run_id / "table.csv"), table
    )


@pytest.mark.slow
def test_a_second_sweep_reuses_every_model_and_the_report_defaults_to_it(tmp_path):
    sweep = [*QUICK, "-m", "analyzer=gradient,deep_taylor", "seed=3"]
    assert train_cli(tmp_path, *sweep).returncode == 0
    assert train_cli(tmp_path, *sweep).returncode == 0
    parents, children = sweep_runs(tmp_path)
    first, second = sorted(parents, key=lambda run: run.info.start_time)
    assert [kid.data.tags["model_reused"] for kid in children[second.info.run_id]] == [
        "true",
        "true",
    ]
    trainer_ids = {kid.info.run_id for kid in children[first.info.run_id]}
    assert {kid.data.tags["trained_by_run"] for kid in children[second.info.run_id]} <= trainer_ids

    report = run_module(tmp_path, "src.report")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "reports" / second.info.run_id / "table.csv").is_file()

    # ...unless told to train afresh.
    assert train_cli(tmp_path, *sweep, "train.reuse=false").returncode == 0
    parents, children = sweep_runs(tmp_path)
    third = max(parents, key=lambda run: run.info.start_time)
    assert [kid.data.tags["model_reused"] for kid in children[third.info.run_id]] == [
        "false",
        "false",
    ]


@pytest.mark.slow
def test_bad_input_in_a_sweep_is_refused_once_before_anything_exists(tmp_path):
    """Every job's inputs are checked before the parent run: one line per distinct problem
    naming its jobs, exit 2, no run, no folder, no report link."""
    files = ",".join(str(tmp_path / name) for name in ("a.h5", "b.keras"))
    sweep = [
        *QUICK,
        "-m",
        "analyzer=gradient,lrp_epsilon",
        "model=keras_file",
        f"model.path={files}",
    ]
    result = train_cli(tmp_path, *sweep)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 2, result.stderr[-3000:]
    for name in ("a.h5", "b.keras"):
        (line,) = [line for line in errors if f"{name}' does not exist" in line]
        assert line.endswith(
            f"(2 of 4 jobs: analyzer=gradient model.path={tmp_path / name}; "
            f"analyzer=lrp_epsilon model.path={tmp_path / name})"
        ), line
    params = [*QUICK, "-m", "analyzer=lrp_epsilon", "analyzer.params.epsilon=0.1,-1", "seed=0,1"]
    result = train_cli(tmp_path, *params)
    assert result.returncode == 2, result.stderr[-3000:]
    (error,) = [line for line in result.stderr.splitlines() if "error: " in line]
    assert "rejects analyzer.params" in error and error.endswith(
        "(2 of 4 jobs: analyzer.params.epsilon=-1 seed=0; analyzer.params.epsilon=-1 seed=1)"
    ), error
    for output in (result.stderr, *(line for line in errors)):
        assert "Traceback" not in output and "browse" not in output
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "reports").exists()
    assert all_runs(tmp_path) == []


CRASHING_BUILDER = """
import os

import tensorflow as tf

from src.models.zoo import build_cnn


class Crashing(tf.keras.Model):
    def fit(self, *args, **kwargs):  # a bug met once the job's run exists
        raise RuntimeError(f"planted crash {self.crash}")


def build(input_shape, num_classes, crash="none", **kwargs):
    model = build_cnn(input_shape, num_classes, **kwargs)
    if crash == "none":
        return model
    crashing = Crashing(inputs=model.inputs, outputs=model.outputs)
    crashing.crash = crash
    return crashing
"""


@pytest.mark.slow
def test_every_failed_jobs_reason_is_kept_and_the_others_finish(tmp_path):
    """Two jobs crash (a bug, not bad input): each one's reason is printed as it fails, its
    traceback is in its train.log, and the sweep's summary names both; the third finishes."""
    (tmp_path / "crashing.py").write_text(CRASHING_BUILDER)
    sweep = [*QUICK, "-m", "model._target_=crashing.build", "+model.crash=none,first,second"]
    result = train_cli(tmp_path, *sweep)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for crash in ("first", "second"):
        reason = f"RuntimeError: planted crash {crash}"
        # When it failed (the progress line), and in the closing summary.
        assert re.search(
            rf"jobs done, \d failed · job \+model.crash={crash}: FAILED \({reason}\)", result.stderr
        ), result.stderr[-3000:]
        assert re.search(
            rf"did not finish: \+model.crash={crash} \(FAILED: {reason}\)",
            result.stderr,
        ), result.stderr[-3000:]
    logs = sorted((tmp_path / "outputs" / "multiruns").glob("*/*/*/train.log"))
    crashed = [log.read_text() for log in logs if "planted crash" in log.read_text()]
    assert len(crashed) == 2 and all("Traceback" in text for text in crashed)
    (parent,), children = sweep_runs(tmp_path)
    assert parent.info.status == "FAILED"
    kids = {kid.data.params["model.crash"]: kid for kid in children[parent.info.run_id]}
    assert kids["none"].info.status == "FINISHED" and "error" not in kids["none"].data.tags
    for crash in ("first", "second"):
        assert kids[crash].info.status == "FAILED"
        assert kids[crash].data.tags["error"] == f"RuntimeError: planted crash {crash}"
    metrics = client_for(tmp_path).get_run(parent.info.run_id).data.metrics
    assert (metrics["jobs_finished"], metrics["jobs_not_finished"]) == (1, 2)
    text = (tmp_path / "reports" / parent.info.run_id / "report.html").read_text("utf-8")
    assert "2 job(s) did not finish" in text


@pytest.mark.slow
def test_the_submitit_launcher_path_works_locally(tmp_path):
    sweep = [*QUICK, "-m", "analyzer=gradient,deep_taylor", "hydra/launcher=local"]
    result = train_cli(tmp_path, *sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert sorted(kid.data.tags["model_reused"] for kid in kids) == ["false", "true"]


@pytest.mark.slow
def test_a_cached_model_that_cannot_be_read_is_trained_again_with_a_warning(tmp_path):
    run = [*QUICK, "analyzer=gradient"]
    assert train_cli(tmp_path, *run).returncode == 0
    (weights,) = (store_dir(tmp_path) / "model_cache").glob("*/epoch-*/weights.h5")
    weights.write_bytes(weights.read_bytes()[:200])
    result = train_cli(tmp_path, *run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{weights} is damaged" in result.stderr and "training again" in result.stderr
    retrained = max(all_runs(tmp_path), key=lambda r: r.info.start_time)
    assert retrained.data.tags["model_reused"] == "false"
    # ...and the entry written by that training is readable again.
    assert train_cli(tmp_path, *run).returncode == 0
    latest = max(all_runs(tmp_path), key=lambda r: r.info.start_time)
    assert latest.data.tags["trained_by_run"] == retrained.info.run_id


def test_two_sweeps_started_in_one_second_get_folders_of_their_own(tmp_path):
    """hydra.sweep.dir ends in the sweep's id (the second it started and a random part);
    the jobs' configs, copies of the sweep's made by Hydra, keep the same folder."""
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    from src.common.paths import CONFIG_DIR
    from src.config.cli import new_sweep_id, register_resolvers

    register_resolvers()
    setup_globals()  # Hydra's ${now:}
    folders, ids = [], []
    for _ in range(2):  # well within one second
        ids.append(new_sweep_id())
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", [f"paths.output_dir={tmp_path}"], return_hydra_config=True)
        folders.append(str(cfg.hydra.sweep.dir))
        job = OmegaConf.create(OmegaConf.to_container(cfg))  # a job's config, as Hydra makes it
        OmegaConf.copy_cache(from_config=cfg, to_config=job)
        new_sweep_id()  # another sweep starting meanwhile does not move this one's folder
        assert str(job.hydra.sweep.dir) == folders[-1]
    assert folders[0] != folders[1]
    assert [Path(folder).name for folder in folders] == ids


def test_a_missing_jobs_reason_with_parentheses_stays_whole():
    from src.sweep.jobs import job_and_status

    line = "seed=1 (no run: FAILED (…/a.png is not a readable image (cannot identify it)))"
    assert job_and_status(line) == (
        "seed=1",
        "no run: FAILED (…/a.png is not a readable image (cannot identify it))",
    )
    assert job_and_status("seed=2 (KILLED)") == ("seed=2", "KILLED")


def test_a_half_written_record_of_a_killed_job_is_skipped(tmp_path):
    from src.sweep.jobs import JOBS_DONE, jobs_done

    (tmp_path / JOBS_DONE).write_text(
        '{"num": 0, "job": "seed=0", "ok": true}\n{"num": 1, "job": "se\n'
        '{"num": 2, "job": "seed=2", "ok": false, "outcome": "FAILED"}\n'
    )
    assert [record["num"] for record in jobs_done(tmp_path)] == [0, 2]


def test_a_worker_without_the_cached_sweep_id_takes_the_sweeps_from_its_environment(
    monkeypatch,
):
    from src.common import sweep_context
    from src.config import cli

    context = sweep_context.SweepContext("run1", "20261204-083212-1a2b3c", "xai-lab", (), 2)
    monkeypatch.setattr(cli, "_sweep_id", None)
    monkeypatch.setattr(sweep_context, "_current", None)  # a worker: only the environment
    monkeypatch.setenv(sweep_context.ENV, context.to_json())
    assert cli.sweep_id() == "20261204-083212-1a2b3c"


@pytest.mark.slow
def test_a_sweep_over_analyzers_runs_the_baselines_on_the_same_model_without_being_asked(tmp_path):
    sweep = [*SMALL, "dataset.test_size=100", "train.epochs=1", "evaluate.n_images=30"]
    result = train_cli(tmp_path, "-m", *sweep, "analyzer=gradient,input_t_gradient")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: with the baselines noise, edge, input, on the same models" in result.stderr
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert sorted(kid.data.params["analyzer.name"] for kid in kids) == [
        "edge",
        "gradient",
        "input",
        "input_t_gradient",
        "noise",
    ]
    # One model: trained once, the four other jobs reuse it.
    assert sorted(kid.data.tags["model_reused"] for kid in kids) == ["false"] + ["true"] * 4
    verdict = (tmp_path / "reports" / parent.info.run_id / "verdict.md").read_text("utf-8")
    assert "noise" in verdict and "edge" in verdict and "input" in verdict

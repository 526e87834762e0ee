"""The real CLI, ``python -m src.train``, in a subprocess, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support import all_runs, assert_one_line_error, client_for, free_port, store_dir, train_cli

from src.common.paths import CONFIG_DIR
from src.config.cli import config_summary


def test_a_run_logs_everything_and_its_model_loads_in_graph_mode(tmp_path, idx_folder):
    result = train_cli(
        tmp_path,
        "dataset=mnist",
        f"dataset.path={idx_folder(gz=False)}",
        "train.epochs=2",
        "train.batch_size=32",
        "analyzer=gradient",
        "seed=7",
    )
    assert result.returncode == 0, result.stderr[-3000:]

    (run,) = all_runs(tmp_path)
    client = client_for(tmp_path)
    assert run.info.status == "FINISHED"
    # A setting given on the command line is in the name (train.batch_size=32).
    assert run.info.run_name == "gradient batch_size=32 · seed 7 · 2 ep"
    summary = result.stderr.strip().splitlines()[-1]
    assert (
        run.info.run_id in summary
        and "test accuracy" in summary
        and f"make ui STORE={store_dir(tmp_path)}, then http://127.0.0.1:5000/#/experiments/"
        f"{run.info.experiment_id}/runs/{run.info.run_id}"
        in summary
    )

    # The store is where the config put it, not in the working directory.
    assert run.info.artifact_uri.startswith((store_dir(tmp_path) / "artifacts").as_uri())
    assert not (tmp_path / "mlruns").exists()

    tags = run.data.tags
    assert (tags["analyzer"], tags["dataset"], tags["seed"]) == ("gradient", "mnist", "7")
    assert tags["version.innvestigate"] == "2.1.2" and tags["data_source"] == str(
        idx_folder(gz=False)
    )
    params = run.data.params
    assert params["train.epochs"] == "2" and params["analyzer.method"] == "gradient"
    assert params["dataset.path"] == str(idx_folder(gz=False))
    assert params["model.conv_layers"].startswith("[{'filters': 32")

    for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2]
    metrics = run.data.metrics
    assert metrics["test_accuracy"] == metrics["val_accuracy"] > 0.5  # the synthetic bars are easy
    assert metrics["train_time_s"] > 0 and metrics["analysis_images_per_s"] > 0
    # Seconds from the command's start to its first training step: more than the imports take,
    # less than the whole run plus its start-up.
    run_s = (run.info.end_time - run.info.start_time) / 1000
    assert 1 < metrics["time_to_first_step_s"] < run_s + 30

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    figures = {"heatmaps_gradient", "training", "perturbation", "randomisation"}
    assert {
        "config.yaml",
        "heatmaps.npz",
        *(f"figures/{name}.png" for name in figures),
    } <= artifacts
    # Explanation-quality scores on the test images (the synthetic set has 100).
    assert {"eval_aopc", "eval_aopc_random", "eval_aopc_gain", "eval_gini"} <= set(metrics)
    assert {"eval_mprt", "eval_mprt_full", "eval_emprt", "eval_random_logit"} <= set(metrics)
    assert {"eval_blank_fraction", "eval_mprt_blank_fraction_full"} <= set(metrics)
    assert "eval_conservation_error" not in metrics  # only for relevance propagation
    steps = client.get_metric_history(run.info.run_id, "eval_perturbation_accuracy")
    assert [m.step for m in steps] == list(range(16))
    for name in ("eval_mprt_curve", "eval_mprt_blank_fraction"):
        curve = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in curve] == [1, 2, 3, 4, 5]
    assert "scores.npz" in artifacts  # per image, for the verdict's paired tests
    with np.load(client.download_artifacts(run.info.run_id, "scores.npz", str(tmp_path))) as npz:
        assert {"aopc", "mprt", "random_logit", "gini"} <= set(npz.files)
        assert all(len(npz[key]) == 100 for key in npz.files)

    arrays = np.load(client.download_artifacts(run.info.run_id, "heatmaps.npz", str(tmp_path)))
    assert arrays["heatmaps"].shape == arrays["images"].shape == (10, 28, 28, 1)
    assert sorted(arrays["labels"].tolist()) == list(range(10))  # one image per class

    # The logged model loads in a fresh graph-mode process and predicts what the run recorded.
    loader = textwrap.dedent(
        f"""
        import json, numpy as np, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        import mlflow, mlflow.tensorflow
        mlflow.set_tracking_uri({client.tracking_uri!r})
        model = mlflow.tensorflow.load_model({tags["model_uri"]!r})
        images = np.load({str(tmp_path / "heatmaps.npz")!r})["images"]
        print(json.dumps(model.predict(images, verbose=0).argmax(axis=1).tolist()))
        """
    )
    loaded = subprocess.run(
        [sys.executable, "-c", loader], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == arrays["predictions"].tolist()


BAD_INPUTS = {
    "unknown analyzer": (
        ["analyzer=deep_tailor"],
        "unknown analyzer 'deep_tailor'; choose one of: blurred_noise, deconvnet",
    ),
    "unknown dataset": (
        ["dataset=imagenet"],
        "unknown dataset 'imagenet'; choose one of: cifar10, digits, fashion_mnist, "
        "image_folder, mnist, npz",
    ),
    "unknown model": (
        ["model=vgg"],
        "unknown model 'vgg'; choose one of: cnn, cnn_small, keras_file, lenet, mlp, resnet, run",
    ),
    "unknown model key": (
        ["+model.width=3"],
        "unknown key model.width: src.model.build_cnn takes conv_layers, dense_units, activation",
    ),
    "unknown conv block key": (
        ["model.conv_layers=[{filters:16,kernel_size:5,pool:2,dilation:2}]"],
        "conv_layers[0] has no key dilation; a conv block takes filters, kernel_size, padding, "
        "pool, stride",
    ),
    "a model file that does not exist": (
        ["model=keras_file", "model.path=/nonexistent/model.keras"],
        "model.path '/nonexistent/model.keras' does not exist",
    ),
    "a model file that is not a Keras model": (
        ["model=keras_file", f"model.path={__file__}"],
        "test_cli.py' is damaged or not a Keras model file (neither a whole .keras zip nor "
        "HDF5 nor a SavedModel folder)",
    ),
    "a run id not in the store": (
        ["model=run", "model.run_id=0123456789abcdef"],
        "model.run_id '0123456789abcdef' is not a run of the store",
    ),
    "a model file without its path": (["model=keras_file"], "model.path"),
    "an npz dataset without its path": (["dataset=npz"], "dataset.path"),
    "a model the analyzer cannot explain": (
        ["model=lenet", "model.activation=tanh", "analyzer=deep_taylor"],
        "analyzer=deep_taylor: deep_taylor cannot explain this model: This DeepTaylor "
        "implementation only supports ReLU activations. (layers: Conv2D, Dense); the analyzers "
        "that can explain it: ",
    ),
    "zero epochs": (["train.epochs=0"], "train.epochs must be a positive integer, got 0"),
    "negative epochs": (["train.epochs=-2"], "train.epochs must be a positive integer, got -2"),
    "zero batch size": (
        ["train.batch_size=0"],
        "train.batch_size must be a positive integer, got 0",
    ),
    "missing dataset file": (
        ["dataset=mnist", "dataset.path=/nonexistent/mnist.npz"],
        "dataset.path '/nonexistent/mnist.npz' does not exist",
    ),
    "bad analyzer parameter": (
        ["analyzer=lrp_epsilon", "analyzer.params.epsilon=-1"],
        "rejects analyzer.params",
    ),
    "an unknown score": (
        ["evaluate.scores.fidelity=true"],
        "unknown score evaluate.scores.fidelity; choose from: perturbation, "
        "faithfulness_correlation, road, randomisation",
    ),
    "a marker larger than the image": (
        ["experiment=shortcut", "dataset.shortcut.size=40"],
        "dataset.shortcut.size 40 is larger than the 28x28 images",
    ),
    "a marker share outside [0, 1]": (
        ["experiment=shortcut", "dataset.shortcut.share=1.5"],
        "dataset.shortcut.share must be a number from 0 to 1, got 1.5",
    ),
    "robustness on more images than exist": (
        ["evaluate=full", "evaluate.robustness.n_images=500"],
        "evaluate.robustness.n_images is 500, but the data has only 359 test images",
    ),
    "localisation without ground truth": (
        ["evaluate.scores.localisation=true"],
        "evaluate.scores.localisation needs ground-truth masks: run it with experiment=shortcut",
    ),
}


@pytest.mark.parametrize("overrides, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_fails_in_one_line_and_creates_no_run(tmp_path, overrides, message):
    result = train_cli(tmp_path, "dataset=digits", *overrides)  # later overrides win
    assert result.returncode == 2, result.stderr[-3000:]
    assert_one_line_error(result, message)
    assert all_runs(tmp_path) == []


def test_corrupt_dataset_file_fails_in_one_line_and_creates_no_run(tmp_path, idx_folder):
    folder = idx_folder()
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    result = train_cli(tmp_path, f"dataset.path={folder}")
    assert result.returncode == 2
    assert_one_line_error(result, "train-images-idx3-ubyte.gz cannot be read")
    assert all_runs(tmp_path) == []


def test_unreachable_tracking_server_fails_in_one_line(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    result = train_cli(tmp_path, "dataset=digits", f"tracking.uri={uri}", timeout=120)
    assert result.returncode == 2
    assert_one_line_error(result, f"cannot use the tracking store {uri}")


def test_a_local_store_found_unusable_as_the_training_starts_fails_in_one_line(tmp_path):
    """The local store's database is opened in the background as the training starts (issue
    30): one that turns out unusable still ends the command in one line, exit 2, no run, and
    nothing trained is cached (the first epoch's snapshot waits for the run)."""
    database = store_dir(tmp_path) / "mlflow.db"
    database.parent.mkdir()
    database.write_bytes(b"not a database " * 1000)
    result = train_cli(tmp_path, "dataset=digits", "train.epochs=2", "evaluate=off")
    assert result.returncode == 2, result.stderr[-3000:]
    assert_one_line_error(result, f"cannot use the tracking store sqlite:///{database}")
    assert database.read_bytes() == b"not a database " * 1000
    cached = [path for path in (store_dir(tmp_path) / "model_cache").rglob("*") if path.is_file()]
    assert not [path for path in cached if path.suffix in (".h5", ".npz", ".json")], cached


@pytest.mark.parametrize("flag", ["--help", "--cfg=job"])
def test_help_and_config_printing_do_not_import_tensorflow_or_mlflow(flag):
    probe = textwrap.dedent(
        f"""
        import runpy, sys
        sys.argv = ["src.train", "{flag}"]
        try:
            runpy.run_module("src.train", run_name="__main__")
        except SystemExit:
            pass
        print(sorted(m for m in ("tensorflow", "mlflow", "innvestigate") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "analyzer:" in result.stdout or "analyzer" in result.stdout


def test_help_lists_every_group_option_with_what_it_is_and_marks_the_choice():
    chosen = {"analyzer": "gradient", "dataset": "mnist", "model": "cnn", "train": "default"}
    chosen |= {"explain": "default", "evaluate": "default", "tracking": "default"}
    chosen |= {"paths": "default"}
    result = subprocess.run(
        [sys.executable, "-m", "src.train", "analyzer=gradient", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},  # one line per option
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for group in [path for path in CONFIG_DIR.iterdir() if path.is_dir() and path.name != "hydra"]:
        assert f"{group.name}=" in lines
        for option in group.glob("*.yaml"):
            summary = config_summary(option)
            assert summary, f"{option} does not start with a comment saying what it is"
            mark = "*" if chosen.get(group.name) == option.stem else " "
            assert any(
                line.split() == [*mark.split(), option.stem, *summary.split()] for line in lines
            ), f"no line for {group.name}={option.stem}"


def test_every_config_file_opens_with_a_comment_saying_what_it_is():
    for path in CONFIG_DIR.rglob("*.yaml"):
        assert config_summary(path), path

"""Any Keras model on any image data, end to end through the real CLI (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from support import all_runs, client_for, colour_npz, image_folder, sweep_runs, train_cli

SCORES = ("eval_aopc", "eval_mprt", "eval_emprt", "eval_random_logit", "eval_gini")


@pytest.mark.slow
def test_lenet_on_rgb_32x32_with_5_classes_is_explained_and_scored_by_three_analyzers(tmp_path):
    data = colour_npz(tmp_path / "rgb.npz")
    result = train_cli(
        tmp_path,
        "-m",
        "dataset=npz",
        f"dataset.path={data}",
        "model=lenet",
        "train.epochs=2",
        "evaluate.n_images=40",
        "evaluate.perturbation.region_shape=[8,8]",
        "analyzer=deep_taylor,gradient,lrp_epsilon",
        "compare.baselines=[]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(kids) == 3
    client = client_for(tmp_path)
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert set(SCORES) <= set(kid.data.metrics), kid.info.run_name
        assert kid.data.metrics["test_accuracy"] > 0.5  # the coloured bars are learnable
        path = client.download_artifacts(
            kid.info.run_id, "heatmaps.npz", str(tmp_path / kid.info.run_id)
        )
        with np.load(path) as arrays:
            assert arrays["heatmaps"].shape == arrays["images"].shape == (10, 32, 32, 3)
            assert list(arrays["class_names"]) == [f"class {k}" for k in range(5)]
    assert "eval_conservation_error" in next(
        kid.data.metrics for kid in kids if kid.data.params["analyzer.name"] == "deep_taylor"
    )
    # The sweep's comparison and verdict were built for the colour images.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/grid.png", "comparison/verdict.md"} <= artifacts
    assert "aopc/gradient" in client.get_run(parent.info.run_id).data.metrics


MAKE_OUTSIDE = """
import sys, numpy as np, tensorflow as tf
# Plain TensorFlow 2 (eager), nothing of the project: a model made elsewhere.
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.layers.Input((28, 28, 1)),
    tf.keras.layers.Conv2D(8, 3, activation="relu"),
    tf.keras.layers.MaxPooling2D(2),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy")
from sklearn.datasets import load_digits
from scipy.ndimage import zoom
digits = load_digits()
x = zoom(digits.images, (1, 3.5, 3.5), order=1)[..., None] / 16
model.fit(x, digits.target, epochs=2, verbose=0)
model.save(sys.argv[1])
"""


@pytest.mark.slow
def test_a_keras_file_made_elsewhere_is_explained_in_a_sweep_without_training(tmp_path):
    import hashlib
    import subprocess
    import sys

    path = tmp_path / "outside.keras"
    made = subprocess.run(
        [sys.executable, "-c", MAKE_OUTSIDE, str(path)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr[-3000:]
    result = train_cli(
        tmp_path,
        "-m",
        "dataset=digits",
        "model=keras_file",
        f"model.path={path}",
        "evaluate.n_images=40",
        "analyzer=deep_taylor,gradient,lrp_epsilon",
        "compare.baselines=[]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training:" not in result.stderr  # no progress bar of training
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(kids) == 3
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert kid.info.run_name.endswith("· outside.keras")
        assert kid.data.tags["model_fingerprint"] == sha256
        assert kid.data.tags["model_source"] == str(path)
        assert kid.data.tags["model_trained_here"] == "false"
        assert "train_loss" not in kid.data.metrics and kid.data.metrics["test_accuracy"] > 0.7
        assert set(SCORES) <= set(kid.data.metrics)


@pytest.mark.slow
def test_a_model_of_an_earlier_run_scores_exactly_as_when_it_was_trained(tmp_path):
    small = ["dataset=digits", "train.epochs=1", "evaluate.n_images=30", "analyzer=gradient"]
    assert train_cli(tmp_path, *small).returncode == 0
    (first,) = [run for run in all_runs(tmp_path)]
    again = train_cli(tmp_path, *small, "model=run", f"model.run_id={first.info.run_id}")
    assert again.returncode == 0, again.stderr[-3000:]
    (second,) = [run for run in all_runs(tmp_path) if run.info.run_id != first.info.run_id]
    assert second.data.tags["model_source"] == f"runs:/{first.info.run_id}"
    assert second.data.tags["model_fingerprint"] == first.data.tags["model_fingerprint"]
    scores = {key for key in first.data.metrics if key.startswith("eval_")}
    assert {"eval_aopc", "eval_mprt"} <= scores
    for key in scores | {"test_accuracy"}:
        assert first.data.metrics[key] == second.data.metrics[key], key
    # The training run's test loss is its last validation, summed in fit's own order.
    assert first.data.metrics["test_loss"] == pytest.approx(second.data.metrics["test_loss"])


@pytest.mark.slow
def test_an_image_folder_trains_an_mlp_and_is_explained(tmp_path):
    root = image_folder(tmp_path / "pets", per_class=(12, 4), size=(24, 24))
    result = train_cli(
        tmp_path,
        "dataset=image_folder",
        f"dataset.path={root}",
        "dataset.image_size=[24,24]",
        "model=mlp",
        "train.epochs=3",
        "analyzer=gradient",
        "evaluate.perturbation.region_shape=[6,6]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "image_folder"
    assert run.data.metrics["test_accuracy"] == 1.0  # three solid colours
    assert set(SCORES) <= set(run.data.metrics)

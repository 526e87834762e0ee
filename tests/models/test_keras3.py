"""Models saved by today's Keras 3, made by Keras 3 itself in its own environment
(``.venv-keras3``, ``make install-system-tests``) and read by the project without it: every
layer's output against Keras 3's own, and the files the project must refuse."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from makers.families import FAMILIES, file_stem
from support import all_runs, assert_one_line_error, train_cli

from src.common.errors import UserError
from src.common.tf_runtime import reset, tensorflow
from src.models.canonical import explainable, output_kind
from src.models.files import SUPPORTED
from src.models.zoo import load_keras_file

# The conversion's tolerance: every layer's output within this of Keras 3's.
TOLERANCE = 1e-4

pytestmark = pytest.mark.system


def layer_outputs(model, names: list[str], inputs: np.ndarray) -> list[np.ndarray]:
    keras = tensorflow().keras
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    return probe.predict(inputs, verbose=0)


# The .h5 reader with the slow tests: the fast suite stays under its time.
@pytest.mark.parametrize("suffix", [".keras", pytest.param(".h5", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_keras3_file_computes_what_keras3_computes_layer_by_layer(keras3_files, family, suffix):
    stem = file_stem(family)
    reference = dict(np.load(keras3_files / f"{stem}.npz"))
    inputs = reference.pop("inputs")
    reset(0)
    loaded = load_keras_file((28, 28, 1), 10, str(keras3_files / f"{stem}{suffix}"))
    version = json.loads((keras3_files / "keras_version.json").read_text())["keras"]
    assert loaded.converted_from == f"Keras {version}" and version.startswith("3.")
    names = list(reference)  # every layer but the input, by the names Keras 3 gave them
    for name, ours in zip(names, layer_outputs(loaded.model, names, inputs), strict=True):
        difference = float(np.abs(ours - reference[name]).max())
        assert difference <= TOLERANCE, f"{family} {suffix}: layer {name} differs by {difference}"
    # The form the analyzers see gives the logits of the same output.
    logits = explainable(loaded.model).predict(inputs, verbose=0)
    output = reference[names[-1]]
    if output_kind(loaded.model) == "logits":
        np.testing.assert_allclose(logits, output, atol=TOLERANCE)
    else:
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(exp / exp.sum(axis=1, keepdims=True), output, atol=TOLERANCE)


def test_the_families_use_every_layer_the_project_says_it_rebuilds():
    """So every supported layer is checked against Keras 3 by the test above."""
    from makers.families import build

    reset(0)
    used = {"InputLayer"}
    for family in FAMILIES:
        used |= {type(layer).__name__ for layer in build(family, tensorflow().keras).layers}
    assert used == set(SUPPORTED)


def test_an_unsupported_keras3_layer_is_named_with_the_supported_ones(keras3_files):
    reset(0)
    with pytest.raises(UserError) as refused:
        load_keras_file((28, 28, 1), 10, str(keras3_files / "odd" / "conv_transpose.keras"))
    message = str(refused.value)
    assert "cannot rebuild: Conv2DTranspose; supported: " + ", ".join(SUPPORTED) in message


@pytest.mark.parametrize("name", ["resnet_style.keras", "resnet_style.h5"])
def test_a_truncated_model_file_is_refused_in_one_line(keras3_files, tmp_path, name):
    whole = (keras3_files / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(whole[: len(whole) // 2])
    reset(0)
    with pytest.raises(UserError, match="is damaged or not a Keras model file"):
        load_keras_file((28, 28, 1), 10, str(cut))


LAMBDA_H5 = """
import sys, tensorflow as tf
marker = sys.argv[2]
def double(x, marker=marker):
    open(marker, "w").write("the Lambda's code ran")
    return x * 2.0
model = tf.keras.Sequential([
    tf.keras.layers.Input((28, 28, 1)),
    tf.keras.layers.Lambda(double),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.save(sys.argv[1])
"""


def test_code_in_an_h5_is_refused_before_it_runs_unless_allowed(tmp_path):
    """Keras runs a Lambda's code while loading an .h5 (safe mode guards .keras files only);
    the project reads the config first and refuses."""
    path, marker = tmp_path / "lambda.h5", tmp_path / "ran.txt"
    made = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LAMBDA_H5), str(path), str(marker)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    marker.unlink(missing_ok=True)  # saving traced it once
    reset(0)
    with pytest.raises(UserError, match="Lambda layer 'lambda'.*model.allow_code=true"):
        load_keras_file((28, 28, 1), 10, str(path))
    assert not marker.exists()
    reset(0)
    load_keras_file((28, 28, 1), 10, str(path), allow_code=True)
    assert marker.exists()  # so the refusal is what kept it from running


KERAS3_BAD = {
    "an unsupported layer": ("conv_transpose.keras", "cannot rebuild: Conv2DTranspose"),
    "code in a .keras file": ("lambda.keras", "holds code that loading would run"),
    "code in an .h5 file": ("lambda.h5", "holds code that loading would run"),
    "another input shape": ("wrong_input.keras", "takes images of shape (32, 32, 3), the data's"),
    "another number of classes": ("five_classes.keras", "has 5 outputs, the data 10 classes"),
}


@pytest.mark.parametrize("name, message", KERAS3_BAD.values(), ids=KERAS3_BAD.keys())
def test_a_keras3_file_that_cannot_be_explained_is_refused_in_one_line(keras3_files, name, message):
    reset(0)
    with pytest.raises(UserError) as refused:
        load_keras_file((28, 28, 1), 10, str(keras3_files / "odd" / name))
    assert message in str(refused.value) and "\n" not in str(refused.value)


# Through the CLI: one of them in the fast suite, the others with the slow tests.
CLI_CASES = [
    pytest.param(*KERAS3_BAD[key], id=key, marks=[] if index == 0 else [pytest.mark.slow])
    for index, key in enumerate(KERAS3_BAD)
]


@pytest.mark.parametrize("name, message", CLI_CASES)
def test_a_keras3_file_that_cannot_be_explained_fails_in_one_line_before_any_run(
    keras3_files, tmp_path, name, message
):
    path = keras3_files / "odd" / name
    result = train_cli(tmp_path, "dataset=digits", "model=keras_file", f"model.path={path}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert_one_line_error(result, message)
    assert all_runs(tmp_path) == []


@pytest.mark.slow
def test_a_sweep_explains_a_keras3_logits_resnet_from_both_file_kinds(keras3_files, tmp_path):
    """The issue's first contact: a model ending in logits, saved by Keras 3 with default
    layer names, BatchNorm, Add and global pooling; every job FINISHED, with every default
    score, tagged as converted and as logits."""
    from support import client_for, sweep_runs

    paths = ",".join(str(keras3_files / f"resnet_style{suffix}") for suffix in (".keras", ".h5"))
    result = train_cli(
        tmp_path,
        "-m",
        "dataset=digits",
        "model=keras_file",
        f"model.path={paths}",
        "analyzer=lrp_epsilon,deep_taylor",
        "compare.baselines=[]",
        "evaluate.n_images=40",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,), children = sweep_runs(tmp_path)
    kids = children[parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(kids) == 4
    for kid in kids:
        assert kid.info.status == "FINISHED", kid.info.run_name
        assert kid.data.tags["model_output"] == "logits"
        assert kid.data.tags["model_converted_from"].startswith("Keras 3.")
        assert {"eval_aopc", "eval_mprt", "eval_emprt", "eval_road"} <= set(kid.data.metrics)
        assert kid.data.metrics["train_epochs_run"] == 0
    assert client_for(tmp_path).get_run(parent.info.run_id).data.metrics

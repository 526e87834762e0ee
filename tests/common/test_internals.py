"""Each reach into a library's private parts (src/common/internals.py), against the installed
library: an upgrade that moves one fails here, by name, in the fast suite."""

from __future__ import annotations

import argparse
import inspect
import io
import pickle

import h5py
import numpy as np
import pytest

from src.common import internals
from src.common.tf_runtime import reset, tensorflow


@pytest.fixture(autouse=True)
def fresh_graph():
    reset(0)  # a clean graph, seeded (determinism wants a seed for every random op)


def test_forget_active_run_takes_the_run_off_mlflows_stack_without_ending_it(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        run = mlflow.start_run()
        internals.forget_active_run(run.info.run_id)
        assert mlflow.active_run() is None
        # Not ended: its status is still the store's to be told.
        assert MlflowClient(uri).get_run(run.info.run_id).info.status == "RUNNING"
    finally:
        mlflow.set_tracking_uri(None)


def small_model(name: str, extra: list) -> object:
    keras = tensorflow().keras
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name=f"{name}_dense")(inputs)
    for layer in extra:
        hidden = layer(hidden)
    return keras.Model(inputs, keras.layers.Dense(2, name=f"{name}_out")(hidden))


def test_random_layers_are_found_in_nested_models_too():
    keras = tensorflow().keras
    inner = small_model("inner", [keras.layers.GaussianNoise(0.1, name="noise")])
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.5, name="drop")(inputs)
    outer = keras.Model(inputs, inner(hidden))
    assert sorted(internals.random_layers(outer)) == ["drop", "noise"]
    assert internals.random_layers(small_model("plain", [])) == []


def test_weights_written_to_an_open_h5_file_load_as_model_save_weights_files_do(tmp_path):
    written = small_model("same", [])
    image = io.BytesIO()
    with h5py.File(image, "w") as file:
        internals.save_weights_to_h5(file, written)
    path = tmp_path / "weights.h5"
    path.write_bytes(image.getvalue())
    read = small_model("same", [])  # other initial weights
    read.load_weights(str(path))
    for before, after in zip(written.get_weights(), read.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_a_legacy_optimizers_slots_exist_before_its_first_step():
    model = small_model("opt", [])
    model.compile(optimizer="adam", loss="mse")
    assert model.optimizer.get_weights() == []
    internals.create_optimizer_slots(model.optimizer, model.trainable_weights)
    # Adam: its step count, and two slots (m, v) for each of the four variables.
    assert len(model.optimizer.get_weights()) == 1 + 2 * len(model.trainable_weights)


def test_raw_ops_wrapped_with_live_variable_reads_follow_the_weights():
    """A Keras model over a raw TensorFlow op that reads a variable, called again on a new
    input (as iNNvestigate's wrappers call their inner analyzer's model): by default the
    variable was read once, when Keras wrapped the op; with live reads it is read at each
    call. The flag is restored after."""
    from keras.src.engine import base_layer_utils

    tf = tensorflow()

    def model_over_a_raw_op():
        dense = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
        inputs = tf.keras.Input((2,))
        outputs = tf.matmul(dense(inputs), tf.transpose(dense.kernel))  # raw op, reads kernel
        return dense, tf.keras.Model(inputs, outputs)

    def called_again(model):
        other = tf.keras.Input((2,))
        again = tf.keras.Model(other, model(other))
        return float(again.predict(np.ones((1, 2), np.float32), verbose=0)[0, 0])

    dense, snapshot = model_over_a_raw_op()
    with internals.live_variable_reads():
        live_dense, live = model_over_a_raw_op()
    assert base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION is False
    for layer in (dense, live_dense):
        layer.set_weights([np.full((2, 1), 3.0, np.float32)])
    assert called_again(snapshot) == 6.0 * 1.0  # the kernel of the build (ones) in the raw op
    assert called_again(live) == 6.0 * 3.0


def test_a_cifar_batch_file_is_read_as_channels_first_bytes_and_labels(tmp_path):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [3, 7]}))
    images, labels = internals.read_cifar_batch(str(path))
    assert images.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(images.reshape(2, 3072), data)
    assert list(labels) == [3, 7]


def test_a_job_returns_value_is_read_whether_it_completed_or_failed():
    from hydra.core.utils import JobReturn, JobStatus

    completed = internals.completed_job_return(["seed=1"], 42)
    assert completed.status == JobStatus.COMPLETED and completed.overrides == ["seed=1"]
    assert completed.return_value == 42 == internals.job_return_value(completed)
    error = ValueError("a bug")
    failed = JobReturn(overrides=[], status=JobStatus.FAILED, _return_value=error)
    with pytest.raises(ValueError):
        failed.return_value  # the public property re-raises: why the field is read  # noqa: B018
    assert internals.job_return_value(failed) is error


def test_a_jobs_arguments_are_those_the_submitit_plugin_builds_for_its_call():
    from hydra.core.singleton import Singleton
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    arguments = internals.submitit_job_arguments(("seed=1",), 3)
    parameters = list(inspect.signature(BaseSubmititLauncher.__call__).parameters)[1:]
    assert parameters == ["sweep_overrides", "job_dir_key", "job_num", "job_id", "singleton_state"]
    assert arguments[:4] == (["seed=1"], "hydra.sweep.dir", 3, "job_id_for_3")
    assert arguments[4].keys() == Singleton.get_state().keys()
    # The plugin's own launch builds the same key and id.
    source = inspect.getsource(BaseSubmititLauncher.launch)
    assert '"hydra.sweep.dir"' in source and 'f"job_id_for_{idx}"' in source


def test_submitits_error_for_a_job_without_a_result_is_where_it_was():
    error = internals.uncompleted_job_error()
    assert issubclass(error, Exception) and error.__name__ == "UncompletedJobError"


def options(parser: argparse.ArgumentParser) -> dict[str, object]:
    """Each flag with whether it takes a value: what tells a flag from an override."""
    return {option: action.nargs for action in parser._actions for option in action.option_strings}


def test_the_copy_of_hydras_flags_has_each_of_hydras_flags():
    from hydra._internal.utils import get_args_parser

    assert options(internals.hydra_flags_parser()) == options(get_args_parser())

"""Every reach into a library's private parts, in one place, each with the reason no public way
exists. tests/common/test_internals.py exercises each against the installed library, so an
upgrade that moves one fails a fast test that names it, not a run.

Not here: iNNvestigate's internal modules (``innvestigate.backend.graph``,
``innvestigate.analyzer.wrapper`` ...), which the explainers build on. 2.1.2 is iNNvestigate's last
release and is pinned, so they cannot move; its public surface is ``create_analyzer`` alone.

Every import of a library is inside the function that needs it: the entry point's ``--help``
imports none of them.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

# MLflow ---------------------------------------------------------------------------------------


def forget_active_run(run_id: str) -> None:
    """Take ``run_id`` off MLflow's (thread-local) stack of active runs without writing its
    status: a run whose end the store could not take must not be ended again, RUNNING, by
    MLflow's exit hook. MLflow has no public call that does this (``mlflow.end_run`` writes the
    status)."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()
    fluent.MLFLOW_RUN_ID.unset()


# Keras (tf.keras 2.14) ------------------------------------------------------------------------


def random_layers(model: Any) -> list[str]:
    """The names of the layers of ``model``, nested models' included, that draw random numbers
    while training (Dropout, GaussianNoise, random augmentation): Keras marks them by the base
    class ``BaseRandomLayer``, exported only under ``keras.__internal__``, and lists nested
    layers only through ``Model._flatten_layers``."""
    from src.common.tf_runtime import tensorflow

    base = tensorflow().keras.__internal__.layers.BaseRandomLayer
    return [layer.name for layer in model._flatten_layers() if isinstance(layer, base)]


def save_weights_to_h5(file: Any, model: Any) -> None:
    """Write ``model``'s weights into the open ``h5py.File`` ``file`` as ``model.save_weights``
    writes an ``.h5`` file: Keras's public saving takes a path, never an open (in-memory) file."""
    from keras.src.saving.legacy import hdf5_format

    hdf5_format.save_weights_to_hdf5_group(file, model)


def create_optimizer_slots(optimizer: Any, variables: Sequence[Any]) -> None:
    """Make a legacy (graph-mode) optimizer's slots for ``variables`` before its first step, so
    that ``set_weights`` can restore a saved state. Keras's own model loading does it this way;
    no public call does."""
    optimizer._create_all_weights(variables)


@contextlib.contextmanager
def live_variable_reads() -> Iterator[None]:
    """While active, graph-mode Keras wraps raw TensorFlow ops (iNNvestigate's backward pass is
    ``tf.gradients``) into ``TensorFlowOpLayer``s that keep their other inputs, the weights'
    variable reads among them, as tensors. By default it evaluates those inputs once, to NumPy
    constants (``keras/src/engine/base_layer_utils.py``, ``_create_keras_history_helper``): a
    built analyzer model called again on new inputs (what iNNvestigate's augment-and-reduce
    wrappers, integrated gradients and SmoothGrad, do) then computes its backward pass with the
    weights the model had when it was built. Keras has no public switch; the module flag
    ``_UNSAFE_GRAPH_OP_LAYER_CREATION`` is it (what it gives up, config serialisation of such
    layers, analyzer models never use)."""
    from keras.src.engine import base_layer_utils

    before = base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION
    base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION = True
    try:
        yield
    finally:
        base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION = before


def read_cifar_batch(path: str) -> tuple[Any, Any]:
    """One batch file of the CIFAR-10 Python distribution: ``(N, 3, 32, 32)`` bytes and labels.
    tf.keras reads them with this helper and exports only the downloading loader."""
    from keras.src.datasets.cifar import load_batch

    return load_batch(path)


# Hydra and its submitit launcher plugin -------------------------------------------------------


def job_return_value(job_return: Any) -> Any:
    """What a job returned, or the exception it raised: Hydra's ``JobReturn.return_value``
    re-raises a failed job's exception, the field itself is ``_return_value``."""
    return job_return._return_value


def completed_job_return(overrides: Sequence[str], value: Any) -> Any:
    """A ``JobReturn`` of a completed job with ``value``: its constructor takes the value only
    as the private field."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=value)


def submitit_job_arguments(overrides: Sequence[str], job_num: int) -> tuple[Any, ...]:
    """The arguments of the submitit launcher plugin's ``__call__`` (one job), in its order, as
    its own ``launch`` builds them; the project's launcher submits jobs itself (in waves, with
    dependencies), so it builds them too. Hydra's ``Singleton`` state carries the config
    search path and plugins into the worker."""
    from hydra.core.singleton import Singleton

    return (
        list(overrides),
        "hydra.sweep.dir",
        job_num,
        f"job_id_for_{job_num}",
        Singleton.get_state(),
    )


def uncompleted_job_error() -> type[Exception]:
    """submitit's error for a job that ended without a result (cancelled, timed out, killed):
    raised by ``Job.results()``, defined in ``submitit.core.utils``, not exported."""
    from submitit.core.utils import UncompletedJobError

    return UncompletedJobError


def hydra_flags_parser() -> argparse.ArgumentParser:
    """Hydra's command-line flags (``hydra.main``'s, as of Hydra 1.3) beside the overrides, so
    the overrides and the flags that stop a run (``--help``, ``--cfg`` ...) are told apart before
    Hydra runs. Hydra's own parser is internal (``hydra._internal.utils.get_args_parser``); this
    is a copy of its flags, which tests/common/test_internals.py compares with it."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("overrides", nargs="*")
    for flag in ("--help", "--hydra-help", "--version", "--resolve", "--run", "--multirun"):
        short = {"--help": ["-h"], "--run": ["-r"], "--multirun": ["-m"]}.get(flag, [])
        parser.add_argument(flag, *short, action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--package", "-p")
    parser.add_argument("--shell-completion", "-sc", action="store_true")
    parser.add_argument("--config-path", "-cp")
    parser.add_argument("--config-name", "-cn")
    parser.add_argument("--config-dir", "-cd")
    parser.add_argument("--experimental-rerun")
    parser.add_argument("--info", "-i", nargs="?", const="all")
    return parser

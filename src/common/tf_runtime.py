"""TensorFlow's process-wide state, kept in this one module.

iNNvestigate 2.1.2 builds its analyzers as Keras graphs, which needs TF1-style graph mode
(``tf.compat.v1.disable_eager_execution()``) before any model is built or loaded. Everything
that touches global TensorFlow state (eager mode, log levels, seeds, the default graph) happens
here, so a run starts from a clean graph and several runs in one process do not pile up.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import warnings
from types import ModuleType

import numpy as np

_tf: ModuleType | None = None


def tensorflow() -> ModuleType:
    """Import TensorFlow quietly and in graph mode (once per process)."""
    global _tf
    if _tf is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ log lines (CUDA plug-in noise)
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
        # Keras's graph-mode (training_v1) code warns on every fit/predict about deprecated
        # properties it uses itself; nothing a user can act on.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        tf.compat.v1.disable_eager_execution()
        # Same seed -> bit-identical weights, metrics and heatmaps (at some cost in speed).
        tf.config.experimental.enable_op_determinism()
        _tf = tf
    return _tf


def available_cores() -> int:
    """The cores this process may run on (a SLURM allocation, taskset), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(intra_op: int, inter_op: int | None = None) -> None:
    """Threads for TensorFlow's ops; call before the first run of the process.

    ``intra_op`` (the threads one op is split over) changes the floating-point results: Eigen
    and oneDNN block their loops by it, so the same seed trains other weights with 1 thread
    than with 2. It is therefore always set explicitly and part of a model's fingerprint
    (:func:`intra_op_threads`). ``inter_op`` (ops run side by side) only schedules.
    """
    tf = tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op or intra_op)


# The BLAS/LAPACK and OpenMP pools of NumPy and SciPy (each wheel ships its own OpenBLAS): one
# thread each. The project's NumPy/SciPy work is many small calls (ROAD's banded solves, per-image
# statistics) between TensorFlow's ops, which hold the cores. OpenBLAS's idle threads spin, so with
# its default (one per core) they fought TensorFlow's and any other process for the cores: ROAD
# took 5-80x its idle time on a shared machine (issue 30; `make bench`'s `loaded` section).
LIBRARY_THREADS = 1


def configure_threads(threads: int | None, parallel_jobs: int | None = None) -> dict[str, str]:
    """The one thread policy of a run, in every launcher: TensorFlow's intra-op threads
    (``threads``, else one per available core: they decide the bits of the results); jobs run
    in parallel (``parallel_jobs``, joblib's ``n_jobs``) share out the cores through their
    inter-op threads only; NumPy's and SciPy's BLAS and OpenMP pools get ``LIBRARY_THREADS``.
    Returns the policy in force, for the run's tags (:func:`thread_policy`)."""
    cores = available_cores()
    set_threads(threads or cores, threads_per_job(cores, parallel_jobs))
    limit_library_threads(LIBRARY_THREADS)
    return thread_policy()


def limit_library_threads(limit: int) -> None:
    """``limit`` threads for every BLAS and OpenMP pool of the process: those loaded already
    (NumPy's OpenBLAS, SciPy's own, TensorFlow's imports') through threadpoolctl, those loaded
    later (OpenCV's OpenBLAS and scikit-learn's OpenMP under Quantus, POT's) through the
    environment variables they read as they load, as do the processes this one starts."""
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(limit)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=limit, user_api="blas")
    threadpool_limits(limits=limit, user_api="openmp")


def thread_policy() -> dict[str, str]:
    """The threads in force, as the run's tags: TensorFlow's intra- and inter-op threads and
    each BLAS/OpenMP pool loaded so far (``threads_blas``: ``openblas:1,openblas:1`` for NumPy's
    and SciPy's; a run tags them again once it has scored, when more may be loaded)."""
    from threadpoolctl import threadpool_info

    tf = tensorflow()
    pools: dict[str, list[str]] = {"blas": [], "openmp": []}
    for pool in threadpool_info():
        pools.setdefault(pool["user_api"], []).append(
            f"{pool['internal_api']}:{pool['num_threads']}"
        )
    return {
        "intra_op_threads": str(intra_op_threads()),
        "inter_op_threads": str(
            tf.config.threading.get_inter_op_parallelism_threads() or available_cores()
        ),
        "threads_blas": ",".join(sorted(pools["blas"])) or "none",
        "threads_openmp": ",".join(sorted(pools["openmp"])) or "none",
    }


def threads_per_job(cores: int, parallel_jobs: int | None) -> int | None:
    """For jobs run in parallel (joblib), the cores shared out; None for one job at a time."""
    if parallel_jobs is None:
        return None
    jobs = cores if parallel_jobs < 0 else parallel_jobs
    return max(1, cores // max(1, jobs))


def intra_op_threads() -> int:
    """The intra-op threads in force (TensorFlow's default, 0, is one per available core)."""
    return tensorflow().config.threading.get_intra_op_parallelism_threads() or available_cores()


def reset(seed: int) -> None:
    """Start a run from an empty graph and a fresh session, with every RNG seeded."""
    tf = tensorflow()
    tf.keras.backend.clear_session()  # closes the session, resets the default graph
    gc.collect()  # the old graph's Python objects are in reference cycles
    # After the reset: in graph mode the TensorFlow seed belongs to the default graph.
    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)


def innvestigate() -> ModuleType:
    """iNNvestigate, imported only after TensorFlow is in graph mode."""
    tensorflow()
    import innvestigate as module

    return module

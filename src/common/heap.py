"""The garbage collector and the objects that live as long as the process.

CPython's cyclic collector re-scans every object it tracks at each full (generation 2)
collection, and once more as the interpreter exits. Once TensorFlow, Keras, MLflow and Hydra
are imported a run holds ~640,000 of them, nearly all alive until the process ends: its full
collections cost ~1.1 s and the one at exit ~1.2 s (the bare Keras script's 0.3 and 0.5 s).
``gc.freeze`` (the standard library's tool for this) moves the objects alive now into a
permanent generation the collector no longer scans. Objects made later are collected as
always; frozen ones are still freed when their last reference goes.
"""

from __future__ import annotations

import atexit
import gc

_started = False
_runs_began = False


def defer_collection() -> None:
    """As the entry point starts: no full collections while the libraries are imported (their
    modules live as long as the process; :func:`freeze_imports` takes them out of the scans and
    turns the collector back on), and none as the interpreter exits (the operating system frees
    the memory; the freeze, registered first, runs after the exit hooks registered later,
    MLflow's and the run's)."""
    global _started
    if not _started:
        _started = True
        gc.disable()
        atexit.register(gc.freeze)


def freeze_imports() -> None:
    """Take what exists now (the imported libraries) out of the collector's scans, and turn it
    back on. Nothing is frozen once a run has begun in this process (:func:`runs_begin`): in a
    sweep's process a later job's freeze would keep the earlier jobs' cyclic garbage for good."""
    if not _runs_began:
        gc.freeze()
    gc.enable()


def runs_begin() -> None:
    """The last freeze, as the process's first run is about to begin (its libraries imported)."""
    global _runs_began
    freeze_imports()
    _runs_began = True

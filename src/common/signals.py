"""Ctrl-C and SIGTERM stop the main thread at once, except in the middle of a store write.

Python runs a signal's handler between two bytecodes of the main thread, wherever it is. An
exception raised there while SQLAlchemy commits would cut the write halfway and leave the
connection half-closed, just when the run has to be marked KILLED. A run's writes to the
tracking store go through src/tracking/, which wraps each in :func:`deferred` (as do the
sweep's parent run, and the launcher around submitting and cancelling jobs): a signal that
comes meanwhile waits for the block to end (milliseconds; at most the store's lock wait) and
is raised there. Anywhere else (training, analysis, reading) it is raised at once. A second
signal while the first waits is raised at once: the user insists.

In a SLURM job (or a submitit worker), SIGUSR2 is the warning that the job's time limit is near
(submitit asks SLURM for it with ``--signal=USR2@<signal_delay_s>``): it stops the run like
SIGTERM, as :class:`TimeLimit`.

Python runs a handler between any two bytecodes of the main thread, also inside a finaliser
(``__del__``, a weakref callback) that the garbage collector happens to run there; an exception
raised in one is reported as "Exception ignored in" and lost, and the run would go on to its
end. So the stop a process was asked for is kept, and :func:`checkpoint`, called at each step
of long work (every progress bar's update: each training batch, each image explained), raises
it again until it reaches the run (:func:`delivered`).

Python's own handlers and those ``signal.signal`` sets raise wherever the main thread is; no
library defers them around chosen blocks or raises again a stop a finaliser swallowed, hence
this module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from src.common import sweep_context
from src.common.errors import Terminated, TimeLimit

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SLURM_JOB_ENV = "SLURM_JOB_ID"

_depth = 0  # the deferred() blocks the main thread is in
_pending: int | None = None  # a signal waiting for the outermost block to end
_requested: int | None = None  # the stop asked for, until it has reached the run (delivered)


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a run: SIGINT and SIGTERM, and in a SLURM job or a submitit
    worker the time-limit warning SIGUSR2."""
    if os.environ.get(SLURM_JOB_ENV) or sweep_context.worker():
        return (*STOP_SIGNALS, signal.SIGUSR2)
    return STOP_SIGNALS


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signum == signal.SIGUSR2:
        job = os.environ.get(SLURM_JOB_ENV)
        raise TimeLimit(f"SLURM job {job} reached its time limit" if job else "time limit reached")
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _pending, _requested
    _requested = signum if _requested is None else _requested
    if _depth and _pending is None:
        _pending = signum  # raised when the store write ends (deferred)
        return
    _pending = None
    _raise(signum)


def checkpoint() -> None:
    """Raise again a stop signal this process got whose exception has not reached the run (a
    finaliser swallowed it; see the module docstring); nothing otherwise, and nothing within a
    :func:`deferred` block or outside the main thread."""
    if _requested is not None and _depth == 0 and _main_thread():
        _raise(_requested)


def delivered() -> None:
    """The stop's exception has reached the run (which ends KILLED): :func:`checkpoint` has
    nothing more to raise. A later signal is a new stop."""
    global _requested
    _requested = None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> dict[int, Any]:
    """From now on in this process, SIGTERM raises ``Terminated``, SIGINT (Ctrl-C)
    ``KeyboardInterrupt`` and (see :func:`stop_signals`) SIGUSR2 ``TimeLimit``, in the main thread,
    outside :func:`deferred` blocks; a signal set to be ignored stays ignored. Returns the
    handlers it replaced, for :func:`restore`. Does nothing in other threads (a thread-based
    launcher), where Python cannot set handlers."""
    if not _main_thread():
        return {}
    previous = {signum: signal.getsignal(signum) for signum in stop_signals()}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install` replaced; a signal still waiting goes to them."""
    global _pending
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    waiting, _pending = _pending, None
    if waiting is not None and _depth == 0:
        signal.raise_signal(waiting)
    elif waiting is not None:
        _pending = waiting


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: a stop signal waits until the outermost block ends, then is raised there (a
    second one is raised at once). For writes to the store, which must not be cut halfway."""
    global _depth, _pending
    if not _main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            waiting, _pending = _pending, None
            if signal.getsignal(waiting) is _on_signal:
                _raise(waiting)
            else:  # the handlers were restored within the block: theirs to handle
                signal.raise_signal(waiting)

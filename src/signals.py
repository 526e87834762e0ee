"""Ctrl-C and SIGTERM stop the main thread, but never in the middle of a tracking-store call.

Python runs a signal's handler between two bytecodes of the main thread, wherever it is. An
exception raised there while SQLAlchemy is fetching rows or sqlite3 is committing leaves the
connection half-closed: SQLAlchemy logs an "Error closing cursor" traceback, just when the run
has to be marked KILLED. So when the signal finds the main thread in the store's database code,
it waits for the outermost such call to return (a trace function on that one frame, the way
``bdb`` traces a running frame) and is raised as it returns, milliseconds later. A second
signal meanwhile raises at once. (Under a debugger, that waiting replaces its trace function:
the signal is ending the program anyway.)

No library does this: Python's own SIGINT handler, and any handler ``signal.signal`` sets,
raise wherever the main thread happens to be.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from src.errors import Terminated

# The modules of the tracking store's database layer (MLflow's SQLAlchemy store, Alembic's
# migrations, SQLAlchemy and the sqlite3 driver). The REST store is not here: an HTTP request
# stopped halfway leaves nothing half-written, and its retries may take minutes.
STORE_MODULES = (
    "sqlalchemy",
    "sqlite3",
    "alembic",
    "mlflow.store.db",
    "mlflow.store.tracking.sqlalchemy_store",
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_pending: int | None = None  # a signal waiting for a store call to return, or for held()
_traced: FrameType | None = None  # the store call it waits for


def outermost_store_frame(frame: FrameType | None) -> FrameType | None:
    """The outermost frame, of ``frame`` and those that called it, running code of
    ``STORE_MODULES``; None if there is none."""
    outermost = None
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(STORE_MODULES):
            outermost = frame
        frame = frame.f_back
    return outermost


def _untrace() -> None:
    global _traced
    if _traced is not None:
        _traced.f_trace = None
        _traced = None
        sys.settrace(None)


def _stop(signum: int) -> None:
    global _pending
    _pending = None
    _untrace()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"signal {signum}")


def _on_return(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "return" and frame is _traced and _pending is not None:
        # Raised from the trace function, the exception takes the place of the return value:
        # the call is complete, its caller gets the exception (as ``bdb`` stops a program).
        _stop(_pending)
    return _on_return


def _no_new_frames(frame: FrameType, event: str, arg: Any) -> None:
    return None  # the thread's trace function must be set for a frame's own to be called


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _pending, _traced
    store_call = outermost_store_frame(frame)
    if _pending is not None or store_call is None:
        _stop(signum)
    _pending, _traced = signum, store_call
    store_call.f_trace = _on_return
    store_call.f_trace_lines = False
    sys.settrace(_no_new_frames)


def _hold(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _pending is None:
        _pending = signum


def _deliver_waiting() -> None:
    """Send a waiting signal again, to the handlers now set."""
    global _pending
    waiting, _pending = _pending, None
    if waiting is not None:
        signal.raise_signal(waiting)


def install() -> dict[int, Any]:
    """From now on in this process, SIGTERM raises ``Terminated`` and SIGINT (Ctrl-C)
    ``KeyboardInterrupt`` in the main thread, outside store calls; a signal set to be ignored
    stays ignored. Returns the handlers it replaced, for ``restore``. Does nothing in other
    threads (a thread-based launcher), where Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers ``install`` replaced; a signal still waiting goes to them."""
    _untrace()
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    _deliver_waiting()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within: SIGINT and SIGTERM wait until the block ends, then act as ``install`` says;
    for what must not be cut halfway, such as creating or ending a run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _deliver_waiting()

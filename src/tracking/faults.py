"""Store faults: which errors mean that the tracking store failed (a full disk, a server gone,
a locked database), and the guard of every write that says so in one line (StoreFault).
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from src.common import signals
from src.common.errors import StoreFault
from src.common.redact import redact

F = TypeVar("F", bound=Callable[..., Any])


def store_fault(error: BaseException) -> str | None:
    """What a failed store call says about the store, in a few words; None if it is not a
    fault of the store (a bug, bad input). Reads the whole chain of causes: MLflow wraps the
    driver's and the HTTP library's errors."""
    seen: BaseException | None = error
    texts = []
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return "its disk is full"
        texts.append(redact(" ".join(str(seen).split())))
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts)
    if "database or disk is full" in text or "No space left on device" in text:
        return "its disk is full"
    if "database is locked" in text:
        return "its database stayed locked by another process longer than MLflow waits"
    server_gone = (
        "Max retries exceeded",
        "Connection refused",
        "Connection aborted",
        "Read timed out",
        "RemoteDisconnected",
        "API request to",
    )
    if any(marker in text for marker in server_gone):
        return "the tracking server stopped answering"
    if isinstance(error, OSError):
        return f"it cannot be written ({error.strerror or error})"
    # Any other database error MLflow passes on (a read-only file, a disk I/O error on a
    # network file system, a database removed under the run): say SQLite's own words.
    if (
        getattr(error, "error_code", None) == "TEMPORARILY_UNAVAILABLE"
        or "OperationalError" in text
    ):
        said = text.split(") ", 1)[-1] if "(sqlite3.OperationalError)" in text else text
        return f"its database failed ({said.split('[SQL')[0].strip()[:120]})"
    return None


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """A write to the store: a signal waits for it to end (src/common/signals.py), and a fault of
    the store is raised as :class:`StoreFault`, one line, instead of MLflow's tracebacks."""
    with signals.deferred():
        try:
            yield
        except Exception as error:
            fault = store_fault(error)
            if fault is None:
                raise
            raise StoreFault(f"the tracking store failed: {fault}") from error


def store_write(function: F) -> F:
    """``function`` as a write to the store (see :func:`_writing`)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _writing():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

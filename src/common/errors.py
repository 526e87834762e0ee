"""The exceptions every stage raises; imported by all, importing nothing of the project."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, without a traceback."""


class StoreFault(Exception):
    """The tracking store stopped taking writes during a run (a server gone, a full disk, a
    database locked past the store's wait); printed as one line, without a traceback. The
    process then exits with ``exit_code``: 1, or 130 when a signal was stopping it anyway."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM, so runs can end KILLED; like
    KeyboardInterrupt, not an Exception, so no ``except Exception`` swallows it."""


class TimeLimit(Terminated):
    """Raised in a SLURM job when the scheduler warns that its time limit is near (SIGUSR2)."""


def one_line(error: BaseException) -> str:
    """An error in one line: a :class:`UserError`'s message; otherwise its type and the first
    line of its message (``ValueError: low >= high``); at most 300 characters."""
    lines = str(error).strip().splitlines()
    if isinstance(error, UserError) and lines:
        return lines[0][:300]
    return f"{type(error).__name__}: {lines[0]}"[:300] if lines else type(error).__name__

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

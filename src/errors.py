"""The exceptions every stage raises; imported by all, importing nothing of the project."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, without a traceback."""


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM, so runs can end KILLED; like
    KeyboardInterrupt, not an Exception, so no ``except Exception`` swallows it."""

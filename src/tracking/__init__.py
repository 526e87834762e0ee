"""Everything that talks to MLflow: the store (:mod:`src.tracking.store`), which errors are
store faults (:mod:`src.tracking.faults`), the run's life cycle
(:mod:`src.tracking.lifecycle`), and what a run logs (:mod:`src.tracking.records`).

The default store is a SQLite database with artifacts beside it (``<dir>/mlflow.db`` and
``<dir>/artifacts``), anchored at the project root by the config; ``tracking.uri`` points at a
tracking server instead. A run's code hands this package values to log; only the sweep's
parent run (src/sweep/) and the report (src/report/) also use MLflow's client, on other runs.

Importing it changes nothing: the entry points call :func:`set_up` first (MLflow's settings
and loggers, for the whole process).
"""

from __future__ import annotations

import logging
import os


def set_up() -> None:
    """MLflow's settings and loggers as the project wants them, for this process and the
    workers it starts (environment variables: a value the user set is kept). Called by the
    entry points before they use the store; calling it again changes nothing."""
    # No progress bars for the few small artifacts a report downloads.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run ..." to stdout as it ends a run: with stdout piped (`| tee`) and
    # the pipe closed by Ctrl-C, that print raised BrokenPipeError before the status was
    # written. The project prints its own link, on stderr.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # A tracking server that stops answering is noticed in seconds, not MLflow's minutes (7
    # retries with doubling pauses, 120 s timeouts): 2 retries, a pause of about 2 s, 8 s
    # timeouts. A call to a server that is gone fails in ~2 s; to one that hangs, in at most
    # ~26 s.
    for name, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "8"),
    ):
        os.environ.setdefault(name, value)
    import mlflow  # noqa: F401 - its loggers' own handlers are made as it is imported

    from src.common.redact import redact_handlers

    # Its start-up notes ("Creating initial MLflow database tables...") are not for users.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # A database error is raised to the project, which says it in one line (StoreFault); MLflow
    # would first log it with its traceback.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # MLflow's loggers print through a handler of their own, not the root's (whose filter
    # Hydra's logging config sets): a URI's password is masked there too.
    redact_handlers(logging.getLogger("mlflow"))

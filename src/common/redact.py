"""Secrets kept out of what is stored and printed: the user-info of every URI in a text.

``http://alice:S3cret@host:5000`` -> ``http://alice:***@host:5000``, wherever a URI is quoted:
params, tags, run names, config files, Hydra's output files, log lines (:class:`RedactFilter`,
set on the handlers by conf/hydra/default.yaml), reports. The run itself connects with the URI
as given; MLflow's ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` keep credentials
out of the URI altogether. Imports nothing of the project, so every stage may use it.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

MASK = "***"
# A scheme (``http``, ``postgresql+psycopg2``, ``s3``), ``://``, then the user-info: what comes
# before the last ``@`` of the authority (which ends at ``/``, ``?``, ``#`` or a space). The last
# ``@``, as urllib's parser reads it: a password with a raw ``@`` (or a quote, which a URI should
# not hold but HTTP libraries take) is still masked whole. Hydra writes a sweep's overrides
# with ``:`` escaped (``http\://alice\:pw@host``; in JSON ``http\\://``): read as well.
_USER_INFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*\\*://)(?P<info>[^/?#\s]*)@")
# A password given as a query parameter (libpq's and SQLAlchemy's ``?password=``).
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd)=)[^&#\s]*", flags=re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URI in it replaced by ``***``: ``scheme://user:***@``;
    a user-info without a password (often a token: ``https://TOKEN@host``) becomes ``***``
    whole, and so does a ``password=`` query parameter. Text that is not a URI (``a@b.com``)
    is left as it is."""
    text = _USER_INFO.sub(_masked, text)
    return _QUERY_PASSWORD.sub(lambda match: f"{match['key']}{MASK}", text)


def _masked(match: re.Match) -> str:
    user, colon, _ = match["info"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


class RedactFilter(logging.Filter):
    """A filter for logging handlers: each record's message, and its traceback, redacted
    (:func:`redact`). On a handler, it covers every logger that reaches the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call: logging's own handler reports it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_handlers(logger: logging.Logger) -> None:
    """Add :class:`RedactFilter` to the handlers of ``logger`` that have none (a library's own
    handlers, which the records of its loggers reach instead of the root's)."""
    for handler in logger.handlers:
        if not any(isinstance(known, RedactFilter) for known in handler.filters):
            handler.addFilter(RedactFilter())


def redact_file(path: Path) -> bool:
    """Rewrite the text file ``path`` redacted (replaced whole, never half written); whether
    it held something to redact. A missing file is left missing."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    cleaned = redact(text)
    if cleaned == text:
        return False
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        file.write(cleaned)
    os.chmod(staging, path.stat().st_mode & 0o777)
    os.replace(staging, path)
    return True


class RedactHydraOutputs(Callback):
    """Hydra's own records of a job, redacted as Hydra writes them: its output folder's
    ``.hydra/{config,hydra,overrides}.yaml`` (written just before ``on_job_start``) and, in a
    sweep, the sweep folder's ``multirun.yaml`` (written by the launcher before its jobs
    start). Hydra writes them from the config as given, credentials included; the job's log
    file goes through :class:`RedactFilter`."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = config.hydra
        if hydra.output_subdir is not None:
            folder = Path(hydra.runtime.output_dir) / str(hydra.output_subdir)
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                redact_file(folder / name)
        if hydra.mode == RunMode.MULTIRUN:
            redact_file(Path(hydra.sweep.dir) / "multirun.yaml")

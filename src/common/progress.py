"""Progress bars that stay readable in a terminal and in log files."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm

from src.common import signals

# When stderr is a file or a pipe, a bar is redrawn at most this often (and once at the end).
LOG_INTERVAL_S = 30.0


class _Bar(tqdm):
    """A tqdm bar whose every step is a checkpoint for a stop signal a finaliser swallowed
    (src/common/signals.py): long work is what a Ctrl-C must never fail to stop."""

    def update(self, n: float | None = 1) -> bool | None:
        signals.checkpoint()
        return super().update(n)


class _LogLineBar(_Bar):
    """A tqdm bar for a log file: each redraw is a whole timestamped line, in ASCII.

    tqdm redraws in place with carriage returns, which a log file keeps as one long line of
    overwritten bars; ``display`` is the hook tqdm's own contrib bars override to send a bar
    elsewhere.
    """

    _logged_n = -1  # the count the last line showed

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing its bar: a log has nothing to clear
            return False
        # While closing, tqdm itself ends the last line.
        end = "" if self.disable else "\n"
        self.fp.write(f"[{time.strftime('%H:%M:%S')}] {msg or self.__str__()}{end}")
        self.fp.flush()
        self._logged_n = self.n
        return True

    def close(self) -> None:
        if self.n == self._logged_n:
            self.leave = False  # the last line already says it all: no repeat
        super().close()


def progress_bar(total: int, description: str, unit: str) -> Any:
    """A tqdm bar on stderr: live in a terminal; otherwise a line every 30 s and at the end;
    none within :func:`quiet_bars`."""
    if _quiet:
        return _Bar(total=total, disable=True)
    if sys.stderr.isatty():
        return _Bar(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True)
    return _LogLineBar(
        total=total,
        desc=description,
        unit=unit,
        file=sys.stderr,
        ncols=100,
        ascii=True,
        mininterval=LOG_INTERVAL_S,
        leave=True,
    )


_quiet = False


@contextlib.contextmanager
def quiet_bars() -> Iterator[None]:
    """Within the block, bars are not shown (work repeated many times that says its progress
    in a line of its own: the meta-evaluation's perturbed scorings)."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before

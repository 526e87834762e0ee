"""Progress bars that stay readable in a terminal and in log files."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, description: str, unit: str) -> Any:
    """A tqdm bar on stderr; redrawn at most every 30 s when stderr is not a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=interactive,
        ncols=None if interactive else 100,
        mininterval=0.2 if interactive else 30.0,
        leave=True,
    )

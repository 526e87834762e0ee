"""What one job of a sweep came to: the value its task function returns to Hydra, which the
launcher (src/sweep/launcher.py) and the sweep's progress (src/sweep/parent.py) read."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class JobOutcome:
    status: str  # FINISHED, FAILED (bad input, a store fault, a crash) or KILLED
    test_accuracy: float = math.nan
    reason: str = ""  # why it did not finish, in a few words

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    def summary(self) -> str:
        if self.finished:
            return f"FINISHED (test accuracy {self.test_accuracy:.4f})"
        return f"{self.status} ({self.reason})" if self.reason else self.status

"""What the jobs of a sweep learn from the sweep, as one value: its parent run, its id, the
experiment its runs join, the keys it varies, its number of jobs; and whether this process is
a launcher's worker.

The sweep's process sets it (src/sweep/parent.py) before any job starts, and ends it when the
sweep ends. Its jobs read it with :func:`current`: jobs run in the sweep's own process (Hydra's
basic launcher) from here; jobs in other processes (joblib's workers, submitit's local ones,
SLURM's) from the one environment variable :data:`ENV`, which those processes inherit from the
sweep's. The environment is that process boundary's only use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

# The context as JSON, for the sweep's worker processes (they inherit the environment).
ENV = "XAI_LAB_SWEEP"


@dataclass(frozen=True)
class SweepContext:
    parent_run_id: str
    sweep_id: str
    experiment: str  # the parent's, which the jobs' runs join
    swept_keys: tuple[str, ...]  # the override keys given more than one value (names show them)
    jobs: int  # how many jobs the sweep has (its progress line counts them)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SweepContext:
        fields = json.loads(text)
        return cls(**{**fields, "swept_keys": tuple(fields["swept_keys"])})


_current: SweepContext | None = None
_worker: str | None = None  # "slurm" or "local" in a submitit worker, set there


def begin(context: SweepContext) -> None:
    """The sweep of this process and of the workers it starts from now on."""
    global _current
    _current = context
    os.environ[ENV] = context.to_json()


def end() -> None:
    """No sweep any more (its parent ended): a later run in this process is a single run."""
    global _current
    _current = None
    os.environ.pop(ENV, None)


def current() -> SweepContext | None:
    """The sweep this job belongs to, or None for a single run."""
    if _current is not None:
        return _current
    text = os.environ.get(ENV)
    return SweepContext.from_json(text) if text else None


def set_worker(executor: str) -> None:
    """This process is a submitit worker (``executor``: "slurm" or "local"): there an
    interrupted job returns its outcome instead of stopping the process, which is the worker's
    alone, and SLURM's time-limit warning stops a run."""
    global _worker
    _worker = executor


def worker() -> str | None:
    return _worker

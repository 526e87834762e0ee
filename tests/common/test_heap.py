"""The collector and the process's long-lived objects (src/common/heap.py).

Each case runs in a fresh interpreter: the collector's state is the process's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A cycle whose collection prints: it is garbage only the cyclic collector frees.
CYCLE = """
import gc

class Node:
    def __init__(self):
        self.me = self
    def __del__(self):
        print("collected", flush=True)

def garbage():
    Node()  # unreachable at once, alive through its cycle
"""


def run(body: str) -> list[str]:
    code = textwrap.dedent(CYCLE) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def test_without_the_project_the_interpreter_collects_a_cycle_as_it_exits():
    # The cost the project skips: Python's own exit collection (the check of the case below).
    assert run("gc.disable()\ngarbage()\n") == ["collected"]


def test_no_collection_at_exit_once_the_entry_point_deferred_it():
    lines = run(
        """
        from src.common import heap
        heap.defer_collection()
        assert not gc.isenabled()
        garbage()
        """
    )
    assert lines == []


def test_imports_are_frozen_and_the_collector_turned_back_on_until_the_first_run():
    lines = run(
        """
        from src.common import heap
        heap.defer_collection()
        frozen_at_start = gc.get_freeze_count()
        heap.freeze_imports()  # a sweep's parent, its libraries imported
        print(gc.isenabled(), gc.get_freeze_count() > frozen_at_start)
        heap.runs_begin()  # the first run of the process: a last freeze
        frozen = gc.get_freeze_count()
        garbage()  # a run's cyclic garbage
        gc.collect()  # still collected: made after the freeze
        kept = [[] for _ in range(10)]  # a run's live objects
        heap.runs_begin()  # a later run of the same process freezes nothing more
        heap.freeze_imports()
        print(gc.isenabled(), gc.get_freeze_count() == frozen)
        """
    )
    assert lines == ["True", "True", "collected", "True", "True"]

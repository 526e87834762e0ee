"""Runs left RUNNING by a process that is gone (SIGKILL, a crashed worker, a lost machine).

A run records the process that made it (tags ``process.host``, ``process.pid``,
``process.started``, see :func:`src.tracking.process_tags`). A RUNNING run whose process no
longer exists on this host, or whose pid now belongs to a later process, can never end by
itself: ``python -m src.repair`` (``make repair``) marks it KILLED. Runs made on another host,
and runs without those tags (made by other tools), are left alone: their process cannot be
checked from here. Every sweep does this for its store when it starts, and for its own jobs
when it ends.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import hydra
import psutil
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from src.cli import register_resolvers
from src.tracking import HOST, PID, STARTED, process_started, resolve_store

log = logging.getLogger(__name__)


@dataclass
class Repair:
    killed: list[str] = field(default_factory=list)  # runs marked KILLED
    alive: list[str] = field(default_factory=list)  # RUNNING, and their process is
    unchecked: list[str] = field(default_factory=list)  # another host's, or without tags

    def summary(self) -> str:
        return (
            f"{len(self.killed)} run(s) left RUNNING by a process that is gone marked KILLED; "
            f"{len(self.alive)} still running; {len(self.unchecked)} not checkable here "
            "(another host, or no process tags)"
        )


def process_gone(tags: dict[str, str]) -> bool | None:
    """Whether the process that made a run is gone; None when it cannot be told from here."""
    if tags.get(HOST) != socket.gethostname() or PID not in tags or STARTED not in tags:
        return None
    try:
        process = psutil.Process(int(tags[PID]))
        # A pid is reused sooner or later: the same pid with another start time is another
        # process. A zombie has ended and only waits for its parent to read its exit code.
        return (
            abs(process.create_time() - process_started(tags[STARTED])) > 0.01
            or process.status() == psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return True


def running_runs(client: MlflowClient, filter_string: str = "") -> Iterator[Run]:
    """Every RUNNING run in the store (all experiments), page by page."""
    experiments = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
    if not experiments:
        return
    query = " and ".join(part for part in ("attributes.status = 'RUNNING'", filter_string) if part)
    token = None
    while True:
        page = client.search_runs(
            experiments, query, run_view_type=ViewType.ALL, max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def repair(client: MlflowClient, filter_string: str = "", dry_run: bool = False) -> Repair:
    """Mark KILLED the RUNNING runs (matching ``filter_string``) whose process is gone."""
    result = Repair()
    for run in running_runs(client, filter_string):
        run_id, tags = run.info.run_id, run.data.tags
        gone = process_gone(tags)
        if gone is None:
            result.unchecked.append(run_id)
            continue
        if not gone:
            result.alive.append(run_id)
            continue
        result.killed.append(run_id)
        log.warning(
            "run %s (%s) was left RUNNING by process %s, which is gone: %s",
            run_id,
            run.info.run_name,
            tags[PID],
            "would mark it KILLED" if dry_run else "marked KILLED",
        )
        if not dry_run:
            client.set_tag(
                run_id,
                "repair.note",
                f"marked KILLED on {datetime.now():%Y-%m-%d %H:%M:%S}: process {tags[PID]} "
                f"on {tags[HOST]} had ended without ending the run",
            )
            client.set_terminated(run_id, "KILLED")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="repair")
def hydra_main(cfg: DictConfig) -> None:

    store = resolve_store(cfg.tracking.dir, cfg.tracking.uri)
    if store.database is not None and not store.database.exists():
        log.error("error: there is no tracking store at %s (tracking.dir)", store.database)
        raise SystemExit(2)
    result = repair(MlflowClient(store.tracking_uri), dry_run=cfg.dry_run)
    log.info("repair of %s: %s", store.tracking_uri, result.summary())


def main() -> None:
    register_resolvers()
    hydra_main()


if __name__ == "__main__":
    main()

"""``python -m src.repair`` (``make repair``): mark KILLED the runs left RUNNING by a process
that is gone (:mod:`src.tracking.repair`)."""

from __future__ import annotations

import logging

import hydra
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from src.config.cli import register_resolvers
from src.tracking import set_up
from src.tracking.repair import repair
from src.tracking.store import resolve_store

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="repair")
def hydra_main(cfg: DictConfig) -> None:
    set_up()
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

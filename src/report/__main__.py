"""``python -m src.report [parent=RUN_ID]``: rebuild a sweep's comparison from the tracking
store (:func:`src.report.page.build_report`).

Hydra's entry is this file, run as ``__main__``, so that ``config_path`` is found beside it;
``conf/report.yaml`` names the job ``report`` (its log, ``report.log``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from src.common.redact import redact
from src.config.cli import register_resolvers
from src.report.page import build_report, log_report
from src.report.queries import latest_parent, readable
from src.report.roar import text as roar_text
from src.report.verdict_text import judgement_text, terminal_table

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="report")
def hydra_main(cfg: DictConfig) -> None:
    from src.common.errors import UserError
    from src.tracking import set_up
    from src.tracking.store import prepare, resolve_store

    set_up()  # MLflow's settings, before the store is read
    try:
        store = resolve_store(cfg.tracking.dir, cfg.tracking.uri)
        prepare(store, cfg.tracking.experiment_name)
        client = MlflowClient(store.tracking_uri)
        if cfg.parent:
            try:
                parent = client.get_run(cfg.parent)
            except Exception as error:  # noqa: BLE001 - MLflow's "not found"
                raise UserError(f"no run {cfg.parent!r} in {redact(store.tracking_uri)}") from error
        else:
            parent = latest_parent(client, cfg.tracking.experiment_name)
        folder = Path(cfg.output_dir) / parent.info.run_id
        report = build_report(
            client, parent, folder, cfg.report.grid_images, store_uri=store.tracking_uri
        )
        log_report(client, parent.info.run_id, folder, report)
    except UserError as error:
        log.error("error: %s", error)
        raise SystemExit(2) from None
    if report.table is not None:
        print(readable(report.table).to_string(index=False))
    if report.answer is not None:
        print(f"\n{report.answer.text()}")
    if report.verdict is not None:
        print(f"\n{terminal_table(report.verdict)}{judgement_text(report.verdict)}")
    if report.retraining is not None:
        print(f"\n{roar_text(report.retraining)}")
    log.info(
        "comparison of sweep %s written to %s and logged on its parent run",
        parent.info.run_id,
        folder / "report.html",
    )


def main() -> None:
    register_resolvers()
    hydra_main()


if __name__ == "__main__":
    main()

"""Entry point: ``python -m src.train [overrides]`` runs one experiment, ``-m`` a sweep."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src.config import UserError, check_group_overrides
from src.paths import register_resolvers

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    # Imported here, not at the top: `--help` and `--cfg job` then never import TensorFlow.
    from src.experiment import run_experiment
    from src.tracking import Terminated

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return run_experiment(cfg)
    except UserError as error:
        log.error("error: %s", error)
        if multirun:
            raise  # Hydra records the job as failed and goes on with the others
        raise SystemExit(2) from None
    except (KeyboardInterrupt, Terminated):
        log.error("interrupted: the run was marked KILLED")
        raise SystemExit(130) from None


def main() -> None:
    register_resolvers()
    try:
        check_group_overrides(sys.argv[1:])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    hydra_main()


if __name__ == "__main__":
    main()

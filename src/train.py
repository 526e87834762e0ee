"""Entry point: ``python -m src.train [overrides]`` runs one experiment, ``-m`` a sweep."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from datetime import datetime

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.common import heap, signals, sweep_context
from src.common.errors import StoreFault, Terminated, TimeLimit, UserError, one_line
from src.common.outcome import JobOutcome
from src.common.redact import redact
from src.config.cli import preflight, register_resolvers, with_baselines, with_roar_fractions
from src.sweep.parent import finish_sweeps

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def hydra_main(cfg: DictConfig) -> JobOutcome:
    """One job: its outcome. Bad input or a store fault ends a single run with one line and
    exit 2 or 1; in a sweep the job returns its outcome, and the others go on. An interrupt
    ends the process (exit 130), except in a submitit worker, whose job returns it too."""
    from src.config.checks import validate
    from src.data.shared import start_loading

    # The data is read in the background while MLflow and TensorFlow are imported (the first
    # training step ~1.5 s sooner; src/data/shared.py). A bad config is reported by the run's
    # own checks below, in its one line.
    with contextlib.suppress(UserError):
        validate(cfg)
        start_loading(OmegaConf.to_container(cfg.dataset, resolve=True))
    # Imported here, not at the top: `--help` and `--cfg job` then never import TensorFlow.
    from src.common.tf_runtime import configure_threads
    from src.experiment import run_experiment
    from src.tracking import set_up

    set_up()  # MLflow's settings, before the run touches the store
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    configure_threads(cfg.threads, OmegaConf.select(hydra_cfg, "launcher.n_jobs"))
    heap.runs_begin()  # TensorFlow and MLflow imported: the collector stops re-scanning them
    try:
        accuracy = run_experiment(cfg, job_overrides=list(hydra_cfg.overrides.task))
    except UserError as error:
        log.error("error: %s", error)
        if multirun:
            return JobOutcome("FAILED", reason=str(error))
        raise SystemExit(2) from None
    except StoreFault as fault:
        log.error("error: %s", fault)
        stopped = fault.exit_code == 130  # a signal was stopping the run
        if multirun and (not stopped or sweep_context.worker()):
            return JobOutcome("KILLED" if stopped else "FAILED", reason=str(fault))
        raise SystemExit(fault.exit_code) from None
    except (KeyboardInterrupt, Terminated) as stop:
        signals.delivered()
        why = f"{stop}: " if isinstance(stop, TimeLimit) else ""
        log.error("interrupted: %sthe run was marked KILLED", why)
        if sweep_context.worker():
            return JobOutcome("KILLED", reason=str(stop) or "interrupted")
        raise SystemExit(130) from None
    except Exception as error:
        if not multirun:
            raise  # a single run's traceback is the user's to see
        # A crash of one job (a bug): its traceback in the job's train.log, its reason in one
        # line on the terminal, and the sweep goes on. Raised, Hydra's basic sweeper would print
        # the first failed job's traceback only and lose every later one's reason.
        reason, where = one_line(error), job_log(hydra_cfg)
        log.error("error: the job crashed: %s (traceback in %s)", reason, where)
        # The file only (the terminal has the line above); a log that cannot be written costs
        # the traceback, not the sweep.
        with contextlib.suppress(OSError), open(where, "a") as file:
            file.write(redact("".join(traceback.format_exception(error))))
        return JobOutcome("FAILED", reason=reason)
    return JobOutcome("FINISHED", accuracy)


def job_log(hydra_cfg) -> str:
    """Where the job's log file is (Hydra's ``<output dir>/<job name>.log``)."""
    return os.path.join(hydra_cfg.runtime.output_dir, f"{hydra_cfg.job.name}.log")


def main() -> None:
    heap.defer_collection()
    register_resolvers()
    try:
        sys.argv[1:], added = with_baselines(sys.argv[1:])
        sys.argv[1:], fractions = with_roar_fractions(sys.argv[1:])
        preflight(sys.argv[1:])
    except UserError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        raise SystemExit(2) from None
    if added:
        print(
            f"[{datetime.now():%H:%M:%S}] sweep: with the baselines {', '.join(added)}, on the "
            "same models (compare.baselines; compare.baselines=[] leaves them out)",
            file=sys.stderr,
        )
    if fractions:
        print(
            f"[{datetime.now():%H:%M:%S}] sweep: remove-and-retrain at {', '.join(fractions)}% "
            "of the pixels (roar.fractions; 0 is the model as trained, scored as usual)",
            file=sys.stderr,
        )
    signals.install()  # for the process's life, so a signal never cuts a store write halfway
    interrupted = False
    try:
        hydra_main()
    except (KeyboardInterrupt, Terminated):
        signals.delivered()
        interrupted = True  # in a sweep's process, while its jobs run in workers (joblib)
    except SystemExit as exit:
        interrupted = exit.code == 130  # a job run in this process was interrupted
        if not interrupted:
            raise
    finally:
        sweeps = finish_sweeps(interrupted)  # the one place a sweep's parent run is ended
    if interrupted or any(sweep.interrupted for sweep in sweeps):
        for sweep in sweeps:
            log.error("interrupted: the sweep's parent run is %s", sweep.outcome())
        raise SystemExit(130)
    if any(sweep.status != "FINISHED" for sweep in sweeps):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

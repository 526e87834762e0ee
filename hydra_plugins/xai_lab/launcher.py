"""The project's launchers, where Hydra looks for plugins (the ``hydra_plugins`` package): Hydra's
submitit launchers with src/sweep/launcher.py's waiting, cancelling and progress."""

from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from src.sweep.launcher import Waiting


class SlurmLauncher(Waiting, submitit_launcher.SlurmLauncher):
    """``hydra/launcher=slurm``."""


class LocalLauncher(Waiting, submitit_launcher.LocalLauncher):
    """``hydra/launcher=local``."""

"""Checks on a composed config, so bad input fails in one line before any run is created."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.data import IMAGE_SIZE
from src.errors import Terminated, UserError
from src.paths import CONFIG_DIR

__all__ = ["Terminated", "UserError"]  # re-exported: the command line's errors

DATASETS = ("mnist", "fashion_mnist", "digits")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl")
NEURON_SELECTIONS = ("predicted", "true_label")
DISPLAYS = ("signed", "absolute")
ANALYZER_COUNTS = ("augment_by_n", "steps")  # SmoothGrad's samples, Integrated Gradients' steps
MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit
PERTURBATIONS = ("gaussian", "zeros", "mean", "invert")  # innvestigate.tools.perturbate's


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in ``conf/<group>/``."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def describe_groups(choices: Mapping[str, Any]) -> str:
    """The config groups for ``--help``: each option with the opening comment of its file.

    Hydra's help template lists a group's options on one line, without saying what they are;
    each file's first comment line says it, so it is read from there. ``choices`` are the
    options the composed config uses (Hydra's ``hydra.runtime.choices``), marked with ``*``.
    """
    groups = sorted(
        path.name for path in CONFIG_DIR.iterdir() if path.is_dir() and path.name != "hydra"
    )
    width = max(len(name) for group in groups for name in group_options(group))
    columns = max(60, shutil.get_terminal_size().columns - 1)
    lines = []
    for group in groups:
        lines.append(f"{group}=")
        for name in group_options(group):
            mark = "*" if choices.get(group) == name else " "
            prefix = f"  {mark} {name:<{width}}  "
            lines.append(
                textwrap.fill(
                    config_summary(CONFIG_DIR / group / f"{name}.yaml"),
                    width=columns,
                    initial_indent=prefix,
                    subsequent_indent=" " * len(prefix),
                )
            )
    return "\n".join(lines)


def config_summary(path: Path) -> str:
    """The first line of a config file's opening comment (Hydra's ``# @package`` skipped)."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith("@"):
            return text
    return ""


def check_group_overrides(overrides: Iterable[str]) -> None:
    """Reject ``group=option`` overrides naming an option that does not exist.

    Hydra reports these itself, over many lines with its search path; this gives the one-line
    error with the valid choices. Overrides are parsed with Hydra's own parser so sweeps
    (``analyzer=a,b``) and other syntax are understood the same way Hydra will.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [arg for arg in overrides if "=" in arg and not arg.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # noqa: BLE001 - malformed overrides are Hydra's to report
        return
    for override in parsed:
        group = override.key_or_group.lstrip("+~")
        if "." in group or "/" in group or not (CONFIG_DIR / group).is_dir():
            continue
        if override.is_delete():
            continue
        values = (
            list(override.sweep_string_iterator())
            if override.is_sweep_override()
            else [override.get_value_element_as_str()]
        )
        choices = group_options(group)
        for value in values:
            if value not in choices and value != "null":
                raise UserError(f"unknown {group} '{value}'; choose one of: {', '.join(choices)}")


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs a sweep over ``overrides`` runs, each as its sorted list of overrides.

    Uses the basic sweeper's own expansion (the joblib and submitit launchers use that sweeper
    too), so the list matches what Hydra launches.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [sorted(job) for batch in batches for job in batch]


def preflight(argv: list[str]) -> None:
    """Check a command line of ``python -m src.train`` before anything runs: the overrides
    parse, name existing options and keys, and every job's composed config resolves and
    validates. Raises :class:`UserError` with one line; Hydra's own reports of the same
    problems span several lines and come after a sweep has begun.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion:
        return
    if args.config_path or args.config_dir:
        return  # another config tree: Hydra checks it
    check_group_overrides(args.overrides)
    try:
        jobs = sweep_jobs(args.overrides)
    except HydraException as error:
        raise UserError(f"cannot read the overrides: {_one_line(error)}") from error
    if len(jobs) > 1 and not args.multirun:
        raise UserError(
            f"{' '.join(args.overrides)} asks for {len(jobs)} runs: add -m to sweep over them, "
            "or write a list as key=[a,b]"
        )
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for job in jobs:
            where = f" (in the sweep's job {' '.join(job)})" if len(jobs) > 1 else ""
            try:
                cfg = compose(args.config_name or "config", overrides=job)
                OmegaConf.to_container(cfg, resolve=True)
                validate(cfg)
            except UserError as error:
                raise UserError(f"{error}{where}") from error
            except (HydraException, OmegaConfBaseException, ValueError) as error:
                raise UserError(f"{_one_line(error)}{where}") from error


def _one_line(error: Exception) -> str:
    """Hydra's and OmegaConf's messages, which span lines and add their own advice, in one."""
    if getattr(error, "full_key", None) and getattr(error, "msg", None):  # OmegaConf's
        return f"{error.full_key}: {' '.join(error.msg.split())}"
    cause = error.__cause__
    if cause is not None and "not in struct" in str(cause):
        key = str(error).split("'")[1] if "'" in str(error) else str(cause)
        return f"unknown key {key}: the config has no such key (to add one, write +{key}=VALUE)"
    text = " ".join(str(error).split())
    if cause is not None and str(cause) and str(cause) not in text:
        text += f": {' '.join(str(cause).split())}"
    return text[:400]


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{key} must be a positive integer, got {value!r}")


def _optional_positive_int(cfg: DictConfig, key: str) -> None:
    if OmegaConf.select(cfg, key) is not None:
        _positive_int(cfg, key)


def _one_of(cfg: DictConfig, key: str, choices: Iterable[str]) -> None:
    value = OmegaConf.select(cfg, key)
    choices = tuple(choices)
    if value not in choices:
        raise UserError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`UserError` for the first invalid value in a composed run config."""
    _one_of(cfg, "dataset.name", DATASETS)
    if cfg.dataset.name == "digits" and cfg.dataset.path is not None:
        raise UserError("dataset.path is not used by dataset=digits, which ships with scikit-learn")
    _optional_positive_int(cfg, "dataset.train_size")
    _optional_positive_int(cfg, "dataset.test_size")
    _positive_int(cfg, "train.epochs")
    _positive_int(cfg, "train.batch_size")
    _one_of(cfg, "train.optimizer", OPTIMIZERS)
    learning_rate = cfg.train.learning_rate
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not (learning_rate > 0)
    ):
        raise UserError(f"train.learning_rate must be a positive number, got {learning_rate!r}")
    _positive_int(cfg, "explain.n_images")
    _positive_int(cfg, "explain.batch_size")
    _one_of(cfg, "analyzer.neuron_selection", NEURON_SELECTIONS)
    _one_of(cfg, "analyzer.display", DISPLAYS)
    _positive_int(cfg, "evaluate.n_images")
    _positive_int(cfg, "evaluate.batch_size")
    _positive_int(cfg, "evaluate.perturbation.steps")
    _one_of(cfg, "evaluate.perturbation.function", PERTURBATIONS)
    shape = cfg.evaluate.perturbation.region_shape
    if not OmegaConf.is_list(shape) or len(shape) != 2:
        shown = list(shape) if OmegaConf.is_list(shape) else shape
        raise UserError(
            f"evaluate.perturbation.region_shape must be [height, width], got {shown!r}"
        )
    _positive_int(cfg, "evaluate.perturbation.region_shape.0")
    _positive_int(cfg, "evaluate.perturbation.region_shape.1")
    height, width = shape
    if height > IMAGE_SIZE or width > IMAGE_SIZE:
        raise UserError(
            f"evaluate.perturbation.region_shape {[height, width]} does not fit in the "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} images"
        )
    regions = -(-IMAGE_SIZE // height) * -(-IMAGE_SIZE // width)
    if cfg.evaluate.perturbation.steps > regions:
        raise UserError(
            f"evaluate.perturbation.steps is {cfg.evaluate.perturbation.steps}, but the images "
            f"have only {regions} regions of {height}x{width} to perturb"
        )
    # iNNvestigate takes any value for these and fails only while explaining, in the run.
    for key in ANALYZER_COUNTS:
        if key in cfg.analyzer.params:
            _positive_int(cfg, f"analyzer.params.{key}")
    _positive_int(cfg, "evaluate.randomisation.n_examples")
    _positive_int(cfg, "evaluate.randomisation.emprt_bins")
    _optional_positive_int(cfg, "threads")
    name = cfg.tracking.experiment_name
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"tracking.experiment_name must be a non-empty name, got {name!r}")
    seed = cfg.seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    validate_model(cfg)


def validate_model(cfg: DictConfig) -> None:
    """The model config's keys reach its builder (:func:`src.model.check_model_config`), and
    the built-in builders' sizes are positive."""
    from src.model import check_model_config

    check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    for index in range(len(cfg.model.get("conv_layers") or [])):
        _positive_int(cfg, f"model.conv_layers.{index}.filters")
        _positive_int(cfg, f"model.conv_layers.{index}.kernel_size")
        _optional_positive_int(cfg, f"model.conv_layers.{index}.pool")
        _optional_positive_int(cfg, f"model.conv_layers.{index}.stride")
    for key in ("dense_units", "hidden_units"):
        for index in range(len(cfg.model.get(key) or [])):
            _positive_int(cfg, f"model.{key}.{index}")


def validate_analyzer_method(method: str, known: Iterable[str]) -> None:
    """Reject an iNNvestigate analyzer name that the installed iNNvestigate does not have."""
    known = sorted(known)
    if method not in known:
        raise UserError(
            f"iNNvestigate has no analyzer {method!r} (analyzer.method); choose one of: "
            + ", ".join(known)
        )


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat

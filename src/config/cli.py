"""The command line around Hydra: the check of a whole command line before anything runs
(:func:`preflight`), ``--help``'s list of config options, and the resolvers the configs use."""

from __future__ import annotations

import itertools
import shutil
import textwrap
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.common import internals, sweep_context
from src.common.errors import UserError
from src.common.keys import override_key
from src.common.paths import CONFIG_DIR, PROJECT_ROOT, group_options
from src.config.checks import check_score_name, validate

_sweep_id: str | None = None  # the sweep this process runs (see new_sweep_id)


def register_resolvers() -> None:
    """Make ``${project_root:}``, ``${sweep_id:}`` and ``${describe_groups:...}`` (for
    ``--help``) available to the configs (idempotent)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("sweep_id"):
        # Cached in the config like Hydra's ${now:}: its jobs' configs (copies of the
        # sweep's, pickled to workers) keep the value.
        OmegaConf.register_new_resolver("sweep_id", sweep_id, use_cache=True)
    if not OmegaConf.has_resolver("describe_groups"):
        OmegaConf.register_new_resolver("describe_groups", describe_groups)


def new_sweep_id() -> str:
    """A new sweep's id, ``20261204-083212-1a2b3c``: its start to the second and six random hex
    digits, so two sweeps started in the same second have their own folder
    (``hydra.sweep.dir`` ends in it) and their own progress count."""
    global _sweep_id
    _sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    return _sweep_id


def sweep_id() -> str:
    """The id of the sweep this process runs: the one it started, else (a worker's process,
    should its config come without the sweep's cached value) the one of its sweep's context; a
    new one only where no sweep is known."""
    if _sweep_id is not None:
        return _sweep_id
    context = sweep_context.current()
    return context.sweep_id if context else new_sweep_id()


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


def check_score_overrides(overrides: Iterable[str]) -> None:
    """Reject ``evaluate.scores.NAME=...`` for a score that does not exist, naming the ones
    that do (Hydra would only say the key is not in the config)."""
    prefix = "evaluate.scores."
    keys = [override_key(arg) for arg in overrides if "=" in arg]
    for key in keys:
        if key.startswith(prefix):
            check_score_name(key.removeprefix(prefix))


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs a sweep over ``overrides`` runs, each as its sorted list of overrides.

    The basic sweeper's expansion (the joblib and submitit launchers use that sweeper too),
    written with Hydra's public override parser: every value of each swept key, the product
    over keys, a later override of a key replacing an earlier one. A test checks it against
    Hydra's own ``BasicSweeper.split_arguments``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise HydraException(f"{key}: the basic sweeper sweeps lists and ranges only")
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [sorted(job) for job in itertools.product(*choices.values())]


def swept_keys(overrides: list[str]) -> list[str]:
    """The keys to which a sweep over ``overrides`` gives more than one value, in order."""
    values: dict[str, set[str]] = {}
    for job in sweep_jobs(overrides):
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key.lstrip("+~"), set()).add(value)
    order = [override_key(override) for override in overrides]
    swept = [key for key, seen in values.items() if len(seen) > 1]
    return sorted(swept, key=lambda key: order.index(key) if key in order else len(order))


def with_baselines(argv: list[str]) -> tuple[list[str], list[str]]:
    """A sweep over analyzers (``-m analyzer=a,b``) with the baselines of
    ``compare.baselines`` that it does not name added to its analyzers, and those added: every
    comparison is read against maps that ignore the model. Anything else is returned as it
    is. The baselines are read from the config the command line composes (an experiment may set
    them); one that is not a baseline is a UserError."""
    swept = _swept_overrides(argv)
    if swept is None:
        return argv, []
    candidates, parsed, config_name = swept
    last = [
        (arg, override)
        for arg, override in zip(candidates, parsed, strict=True)
        if override.get_key_element() == "analyzer"
    ][-1:]  # a later override of a key replaces the earlier ones
    if not last or not last[0][1].is_sweep_override():
        return argv, []
    arg, override = last[0]
    try:
        analyzers = list(override.sweep_string_iterator())
    except Exception:  # noqa: BLE001 - a sweep preflight cannot read either: it says so
        return argv, []
    cfg = _composed(_fixed(candidates, parsed), config_name)
    added = [name for name in _baselines(cfg) if name not in analyzers]
    if not added:
        return argv, []
    index = len(argv) - 1 - argv[::-1].index(arg)
    return [*argv[:index], f"analyzer={','.join(analyzers + added)}", *argv[index + 1 :]], added


def with_roar_fractions(argv: list[str]) -> tuple[list[str], list[str]]:
    """A sweep whose config sets ``roar.sweep`` (experiment=roar) and that does not set
    ``roar.fraction`` itself, with ``roar.fraction=0,<roar.fractions>`` added, and the fractions
    added: each (analyzer, fraction, seed) is a job. Anything else is returned as it is."""
    swept = _swept_overrides(argv)
    if swept is None:
        return argv, []
    candidates, parsed, config_name = swept
    if any(override.get_key_element() == "roar.fraction" for override in parsed):
        return argv, []
    cfg = _composed(_fixed(candidates, parsed), config_name)
    if cfg is None or not OmegaConf.select(cfg, "roar.sweep", default=False):
        return argv, []
    fractions = ["0", *(f"{value:g}" for value in OmegaConf.select(cfg, "roar.fractions"))]
    return [*argv, f"roar.fraction={','.join(fractions)}"], fractions


def _swept_overrides(argv: list[str]):
    """A sweep's ``key=value`` arguments, parsed, and its config's name; None for anything but
    a sweep of the project's config, or overrides that do not parse (preflight reports them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args, _ = internals.hydra_flags_parser().parse_known_args(argv)
    if not args.multirun or args.config_path or args.config_dir:
        return None
    candidates = [arg for arg in args.overrides if "=" in arg]
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # noqa: BLE001 - malformed overrides are preflight's to report
        return None
    return candidates, parsed, args.config_name


def _fixed(candidates: list[str], parsed: list) -> list[str]:
    """What can set the sweep's settings: not a sweep, not Hydra's own settings."""
    return [
        arg
        for arg, override in zip(candidates, parsed, strict=True)
        if not override.is_sweep_override() and not arg.lstrip("+~").startswith("hydra")
    ]


def _composed(overrides: list[str], config_name: str | None) -> DictConfig | None:
    """The config composed with ``overrides``; None if it does not compose (preflight says why)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            return compose(config_name or "config", overrides=overrides)
        except Exception:  # noqa: BLE001 - preflight reports a config that does not compose
            return None


def _baselines(cfg: DictConfig | None) -> list[str]:
    """``compare.baselines`` of ``cfg``, each checked."""
    if cfg is None:
        return []
    names = [str(name) for name in OmegaConf.select(cfg, "compare.baselines", default=[]) or []]
    choices = [
        option
        for option in group_options("analyzer")
        if str(OmegaConf.load(CONFIG_DIR / "analyzer" / f"{option}.yaml").method).startswith(
            "baseline."
        )
    ]
    for name in names:
        if name not in choices:
            raise UserError(
                f"compare.baselines: {name!r} is not a baseline; choose from: "
                f"{', '.join(choices)} (or [] for none)"
            )
    return names


def preflight(argv: list[str]) -> None:
    """Check a command line of ``python -m src.train`` before anything runs: the overrides
    parse, name existing options and keys, and every job's composed config resolves and
    validates. Raises :class:`UserError` with one line; Hydra's own reports of the same
    problems span several lines and come after a sweep has begun.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args, _ = internals.hydra_flags_parser().parse_known_args(argv)  # the rest: Hydra's to judge
    if args.help or args.hydra_help or args.version or args.info or args.shell_completion:
        return
    if args.config_path or args.config_dir:
        return  # another config tree: Hydra checks it
    check_group_overrides(args.overrides)
    check_score_overrides(args.overrides)
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
                OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
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

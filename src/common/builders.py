"""Parts built from config by ``_target_`` (Hydra's ``instantiate``), with every key checked.

A config section such as ``model`` or ``dataset`` names a function with ``_target_``; its other
keys are that function's arguments, except the few the pipeline reads itself. Hydra would
report a key the function does not take only when the job runs, in a traceback; here it is one
line before anything runs, naming the arguments the function does take.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

from src.common.errors import UserError


def target_of(section: str, spec: Mapping[str, Any]) -> Callable[..., Any]:
    """The function ``spec['_target_']`` names, imported; UserError if it cannot be."""
    from hydra.utils import get_method

    target = spec.get("_target_")
    if not isinstance(target, str) or not target:
        raise UserError(f"{section}._target_ must name a function (package.module.function)")
    try:
        return get_method(target)
    except Exception as error:  # noqa: BLE001 - Hydra wraps import errors of every kind
        reason = " ".join(str(error).split())[:200]
        raise UserError(f"{section}._target_ {target!r} cannot be imported: {reason}") from error


def check_arguments(
    section: str,
    spec: Mapping[str, Any],
    given: Collection[str] = (),
    read_by_pipeline: Collection[str] = (),
) -> None:
    """Every key of ``spec`` but ``_target_`` and ``read_by_pipeline`` must be an argument of
    its target; ``given`` are arguments the pipeline passes (from the data), which the config
    must not set and the target must take."""
    target = target_of(section, spec)
    parameters = inspect.signature(target).parameters
    keys = [key for key in spec if key != "_target_" and key not in read_by_pipeline]
    for key in keys:
        if key in given:
            raise UserError(f"{section}.{key} comes from the data; remove it from the config")
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    missing = [key for key in given if key not in parameters]
    if missing:
        raise UserError(
            f"{section}._target_ {spec['_target_']} must take {' and '.join(missing)} "
            "(given by the pipeline)"
        )
    accepted = [name for name in parameters if name not in (*given, "batch_size")]
    for key in keys:
        if key not in parameters:
            raise UserError(
                f"unknown key {section}.{key}: {spec['_target_']} takes "
                f"{', '.join(accepted) or 'no arguments'}"
            )


def build(section: str, spec: Mapping[str, Any], what: str, **given: Any) -> Any:
    """Call ``spec``'s target with its arguments and ``given`` (Hydra's ``instantiate``); a
    failure of the target becomes a UserError saying it does not give ``what``, unless the
    target raised a UserError of its own."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(dict(spec), **given, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, UserError):
            raise cause from None
        reason = " ".join(str(cause).split())[:300]
        raise UserError(f"the {section} config does not give {what}: {reason}") from error

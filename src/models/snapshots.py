"""A cached snapshot's files: their names, their SHA-256 sums (in ``meta.json``, which sums
itself too), the checks that find a damaged or unverifiable one, and atomic writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHTS, STATE, META, KEPT = "weights.h5", "state.npz", "meta.json", "model_only"
SUMS = "sha256"  # meta.json's key: file name -> SHA-256 (META's own: of the rest of meta)


class Damaged(Exception):
    """A snapshot's file that fails its check: ``str()`` names the file and what is wrong."""


class Unverifiable(Damaged):
    """A snapshot written before snapshots recorded their SHA-256 sums."""


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def meta_sha256(meta: Mapping[str, Any]) -> str:
    """The SHA-256 of ``meta``'s content (canonical JSON), its own sum left out: a change of
    any value is seen, a change of layout (indentation) is not."""
    sums = {name: sha for name, sha in meta.get(SUMS, {}).items() if name != META}
    content = {**meta, SUMS: sums}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def with_own_sum(meta: dict[str, Any]) -> str:
    """``meta.json``'s text: ``meta`` with the sum of its own content added."""
    sums = dict(meta.get(SUMS, {}))
    sums[META] = meta_sha256(meta)
    return json.dumps({**meta, SUMS: sums}, indent=1)


def verified(folder: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """The snapshot's meta, once it and ``files`` match the SHA-256 it records; else raise
    :class:`Damaged`. A snapshot without sums (written before they were recorded) is
    refused too: nothing tells a damaged one from a sound one."""
    path = folder / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise Damaged(f"{path} is missing") from None
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError included
        raise Damaged(f"{path} cannot be read ({_why(error)})") from None
    sums = meta.get(SUMS) if isinstance(meta, dict) else None
    if not isinstance(sums, dict) or META not in sums:
        raise Unverifiable(f"{path} records no SHA-256 sums (written by an older version)")
    if sums[META] != meta_sha256(meta):
        raise Damaged(f"{path} was changed after it was written (its SHA-256 differs)")
    for name in files:
        if name not in sums:
            raise Damaged(f"{path} records no {name}")
        try:
            actual = file_sha256(folder / name)
        except FileNotFoundError:
            raise Damaged(f"{folder / name} is missing") from None
        except OSError as error:
            raise Damaged(f"{folder / name} cannot be read ({_why(error)})") from None
        if actual != sums[name]:
            raise Damaged(
                f"{folder / name} is damaged (its SHA-256 differs from the one recorded when "
                "it was written)"
            )
    return meta


def _has_state(folder: Path) -> bool:
    """Whether the snapshot was written with its training state (by its meta, or, when the
    meta cannot tell, by the file being there: the check then says what is wrong)."""
    try:
        return STATE in json.loads((folder / META).read_text())[SUMS]
    except (OSError, ValueError, KeyError, TypeError):
        return (folder / STATE).exists()


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {getattr(error, 'strerror', None) or error}"


def _write_atomically(path: Path, content: bytes) -> None:
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        staging.write_bytes(content)
        os.replace(staging, path)
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()

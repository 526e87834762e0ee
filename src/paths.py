"""The project root, so that every path is anchored there and not at the working directory."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """Make ``${project_root:}`` and ``${describe_groups:...}`` (for ``--help``) available to
    the configs (idempotent)."""
    from src.config import describe_groups

    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("describe_groups"):
        OmegaConf.register_new_resolver("describe_groups", describe_groups)

"""``make install`` where Python 3.10/3.11 is missing (Debian 13, Ubuntu 24.04 ship 3.12+):
scripts/find-python's decision, on a PATH of fake Pythons and a fake uv, with no download."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from src.common.paths import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "find-python"


def fake(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)
    return path


def python(folder: Path, name: str, version: str, venv_works: bool = False) -> Path:
    """A fake Python that tells its version and whose ``-m venv`` fails (or makes a fake
    bootstrap environment whose pip cannot reach PyPI)."""
    return fake(
        folder,
        name,
        f'if [ "$1" = -c ]; then echo {version}; exit 0; fi\n'
        + ('if [ "$2" = venv ]; then exit 0; fi\n' if venv_works else "")
        + "exit 1",
    )


def find(folder: Path, *args: str, bootstrap: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(folder), "XAI_LAB_BOOTSTRAP": str(bootstrap or folder / "bootstrap")}
    return subprocess.run(
        ["/bin/bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_python_310_or_311_on_path_is_used(tmp_path):
    python(tmp_path, "python3", "3.12")
    chosen = python(tmp_path, "python3.10", "3.10")
    result = find(tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, str(chosen))


def test_with_only_newer_pythons_uv_is_bootstrapped_from_pypi(tmp_path):
    newer = python(tmp_path, "python3", "3.13")
    result = find(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"provision CPython 3.11 with uv, installed from PyPI into {tmp_path / 'bootstrap'} "
        f"by {newer}"
    )


def test_uv_on_path_provisions_cpython_311(tmp_path):
    python(tmp_path, "python3", "3.12")
    managed = tmp_path / "managed" / "bin" / "python3.11"
    fake(
        tmp_path,
        "uv",
        f'case "$2" in install) exit 0;; find) echo {managed}; exit 0;; esac\nexit 1',
    )
    result = find(tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, str(managed))


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("nothing", "no Python to bootstrap uv with (looked for python3.11, python3.10"),
        ("no venv", "cannot make a bootstrap environment for uv (Debian: apt-get install"),
        ("no pypi", "uv could not be installed from PyPI"),
        ("no download", "uv could not download CPython 3.11"),
    ],
)
def test_otherwise_it_stops_at_once_with_one_line(tmp_path, setup, reason):
    bootstrap = tmp_path / "bootstrap"
    if setup == "no venv":
        python(tmp_path, "python3", "3.12")
    if setup == "no pypi":
        python(tmp_path, "python3", "3.12", venv_works=True)
        (bootstrap / "bin").mkdir(parents=True)
        python(bootstrap / "bin", "python", "3.12")  # its pip fails, as offline
    if setup == "no download":
        python(tmp_path, "python3", "3.13")
        fake(tmp_path, "uv", "exit 1")
    result = find(tmp_path, bootstrap=bootstrap)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and reason in line
    assert "install Python 3.11 or 3.10" in line
    if setup != "nothing":
        assert "python3=3.1" in line  # which Pythons it found

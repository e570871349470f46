"""The code stays lint-clean and type-checked: ruff and a strict mypy run over the package.

They run as tests so that the one test command (and CI) checks them too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["fleetmind", "tests", "benchmarks", "examples"]


def tool(name: str) -> str:
    """The tool beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run ./scripts/setup.sh (it is a dev dependency)")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ.copy()
    )


def test_ruff_finds_nothing() -> None:
    result = run(tool("ruff"), "check", "--no-cache", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = run(tool("ruff"), "format", "--check", "--no-cache", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = run(tool("mypy"), "--no-incremental")  # files and strictness: pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr

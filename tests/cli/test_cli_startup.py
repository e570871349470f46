"""`fleetmind --help` answers at once because it loads the command line alone.

The help of every command is built from typer, rich and the commands' signatures; the SDK (task
graphs, fleets, routers, models, the wire) loads only when a command runs. The real console
script runs under ``python -X importtime``, which lists every module the process imported; the
test pins what must not be among them (it measures no time: a slow machine fails nothing, an
import that creeps back in does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

HEAVY = (
    "a2a",
    "amqtt",
    "hnswlib",
    "httpx",
    "langchain_core",
    "langgraph",
    "mcp",
    "networkx",
    "numpy",
    "paho",
    "pydantic",
    "scipy",
    "sentence_transformers",
    "starlette",
    "torch",
    "transformers",
    "uvicorn",
    "yaml",
    "fleetmind.agents",
    "fleetmind.memory",
    "fleetmind.orchestrator",
    "fleetmind.protocols",
    "fleetmind.serve",
    "fleetmind.testing",
    "fleetmind.tools",
    "fleetmind.cli._build",
    "fleetmind.cli._target",
    "fleetmind.cli._view",
)
"""Packages (and their submodules) the help must not load: the SDK's rooms, the libraries
they stand on, and the command line's own modules that build fleets and views."""

IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| (\s*)(\S+)$")


def imported_by(*args: str) -> set[str]:
    """Every module ``fleetmind ARGS`` imports, as ``-X importtime`` reports them."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", FLEETMIND, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set()
    for line in done.stderr.splitlines():
        found = IMPORTED.match(line)
        if found:
            modules.add(found.group(2))
    assert "fleetmind.cli._app" in modules  # the report is of this very command
    return modules


def heavy_among(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["--version"],
        ["run", "--help"],
        ["agent", "serve", "--help"],
        ["memory", "--help"],
        ["router", "train", "--help"],
        ["a2a", "add", "--help"],
    ],
    ids=lambda args: " ".join(args) or "(no arguments)",
)
def test_help_loads_no_sdk_and_no_heavy_library(args: list[str]) -> None:
    assert heavy_among(imported_by(*args)) == []


def test_the_pin_would_catch_a_heavy_import(tmp_path: Path) -> None:
    # The same report for a command that runs: it does load the SDK, so the list is no blind.
    modules = imported_by("tasks", "--data-dir", str(tmp_path))
    assert "fleetmind.orchestrator" in heavy_among(modules)


def test_the_package_root_loads_nothing_until_a_name_is_used() -> None:
    code = (
        "import sys, fleetmind\n"
        "before = sorted(m for m in sys.modules if m.startswith('fleetmind.'))\n"
        "fleetmind.TaskGraph\n"
        "print(before, 'fleetmind.orchestrator' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["['fleetmind._lazy',", "'fleetmind._version']", "True"]

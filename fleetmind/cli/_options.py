"""Options and places every `fleetmind` command shares: the data directory and its store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fleetmind.errors import ConfigError

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FLEETMIND_HOME",
        help="Where fleetmind keeps its task store (default: ~/.fleetmind).",
        show_default=False,
    ),
]


def home(data_dir: Path | None) -> Path:
    """The data directory: ``--data-dir``, ``FLEETMIND_HOME``, or ``~/.fleetmind``."""
    base = data_dir or Path(os.path.expanduser("~/.fleetmind"))
    if base.exists() and not base.is_dir():
        raise ConfigError(f"data directory {base} is a file, not a directory")
    return base

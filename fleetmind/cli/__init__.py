"""The `fleetmind` command line (typer + rich). The library never imports this package."""

from fleetmind.cli._main import main

__all__ = ["main"]

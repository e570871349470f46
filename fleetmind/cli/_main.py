"""Entry point: runs the typer app and turns every user mistake into one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from typer.exceptions import Abort, Exit, TyperException

from fleetmind.errors import FleetmindError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and exits with) the exit code."""
    from fleetmind.cli._app import app

    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="fleetmind", standalone_mode=False)
    except Exit as exc:
        code = exc.exit_code
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # `fleetmind` alone: show the help, as most commands do.
            print(exc.format_message())
            return _exit(0, argv)
        print(f"fleetmind: error: {exc.format_message()}", file=sys.stderr)
        code = 2
    except Abort:
        code = 130
    except FleetmindError as exc:
        # A mistake in what the user gave, or a service (broker, server, model) that cannot be
        # reached or refused: one line, exit 2. Exit 1 is kept for tasks that failed.
        print(f"fleetmind: error: {exc.message}", file=sys.stderr)
        code = 2
    return _exit(code if isinstance(code, int) else 0, argv)


def _exit(code: int, argv: Sequence[str] | None) -> int:
    if argv is None:
        sys.exit(code)
    return code

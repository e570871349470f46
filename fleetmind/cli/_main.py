"""Entry point: runs the typer app and turns every user mistake into one line and exit code 2."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import typer
from typer.exceptions import Abort, Exit, TyperException

from fleetmind._suggest import did_you_mean
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
        print(f"fleetmind: error: {_usage_error(exc)}", file=sys.stderr)
        code = 2
    except Abort:
        code = 130
    except FleetmindError as exc:
        # A mistake in what the user gave, or a service (broker, server, model) that cannot be
        # reached or refused: one line, exit 2. Exit 1 is kept for tasks that failed.
        print(f"fleetmind: error: {exc.message}", file=sys.stderr)
        code = 2
    except BaseExceptionGroup as group:
        # A long-running command's task group ended on such an error: the same one line.
        cause = _first_fleetmind_error(group)
        if cause is None:
            raise
        print(f"fleetmind: error: {cause.message}", file=sys.stderr)
        code = 2
    return _exit(code if isinstance(code, int) else 0, argv)


def _first_fleetmind_error(group: BaseExceptionGroup[BaseException]) -> FleetmindError | None:
    """The error to report when every error of ``group`` (nested groups included) is one of
    fleetmind's own (cancellations alongside do not count); None when anything else is there."""
    found: list[FleetmindError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_fleetmind_error(exc)
            if inner is None:
                return None
            found.append(inner)
        elif isinstance(exc, FleetmindError):
            found.append(exc)
        elif not isinstance(exc, asyncio.CancelledError):
            return None
    return found[0] if found else None


def _usage_error(exc: TyperException) -> str:
    """The line for a mistake in the command line itself: an unknown option is named with the
    nearest ones, in the words every other "did you mean" uses."""
    option = getattr(exc, "option_name", None)
    if isinstance(option, str) and type(exc).__name__ == "NoSuchOption":
        ctx = getattr(exc, "ctx", None)
        where = f" for {ctx.command_path}" if ctx is not None else ""
        nearest = getattr(exc, "possibilities", None) or ()
        return f"no option {option!r}{where}{did_you_mean(option, nearest)}"
    return exc.format_message()


def _exit(code: int, argv: Sequence[str] | None) -> int:
    if argv is None:
        sys.exit(code)
    return code

"""How the command line explains itself: one kind of command and of command group everywhere,
arguments shown by name (``TASK_ID``, not ``<str>``), whole summaries in command lists,
examples at the end of each command's help, and "did you mean" for a command it does not know.

Everything here is typer and the standard library: the help of every command is built from it
without loading the SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandFunctionType

from fleetmind._suggest import did_you_mean

_WHOLE = 10_000
"""A summary length no command reaches: command lists show each summary whole, wrapped."""

_UNSET_FLAGS = frozenset({"help", "install_completion", "show_completion"})
"""A group's flags that typer leaves as None when they are not given. Typer coerces a None
through a pydantic adapter (loading pydantic, a tenth of a second) before it reaches the
subcommand; these flags' callbacks read False as "not given" just the same."""


class Command(TyperCommand):
    """A command whose usage line and help show its arguments by their metavars alone."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), getattr(param, "help", None) or ""))
            elif param.param_type_name == "option":
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    name = str(param.metavar or param.name.upper())
    return name if param.nargs == 1 or name.endswith("...") else f"{name}..."


class CommandGroup(TyperGroup):
    """A group of commands that names a mistyped command and the nearest ones it has."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if (
            name
            and not name.startswith("-")
            and self.get_command(ctx, name) is None
            and not ctx.resilient_parsing
        ):
            known = [n for n in self.list_commands(ctx) if not self.commands[n].hidden]
            where = "" if ctx.parent is None else f" in {ctx.command_path}"
            hint = did_you_mean(name, known) or f"; see: {ctx.command_path} --help"
            ctx.fail(f"no command {name!r}{where}{hint}")
        return super().resolve_command(ctx, args)

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        for param in params:
            if param.name in _UNSET_FLAGS and param.default is None:
                param.default = False
        return params

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The commands and their summaries, each summary whole (the terminal wraps it)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(_WHOLE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class CommandLine(typer.Typer):
    """A typer app whose commands are :class:`Command` and whose groups are
    :class:`CommandGroup`."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("cls", CommandGroup)
        settings.setdefault("rich_markup_mode", None)
        super().__init__(**settings)

    def command(
        self, *args: Any, **settings: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        settings.setdefault("cls", Command)
        return super().command(*args, **settings)


def command_group(summary: str, details: str = "", **settings: Any) -> CommandLine:
    """A sub-app (``fleetmind broker``, ``fleetmind memory`` ...): plain help text, shown
    when it is called without a command. ``summary`` is the one sentence the parent's list
    shows; ``details`` follow it in the group's own help."""
    text = f"{summary}\n\n{details}" if details else summary
    return CommandLine(help=text, no_args_is_help=True, add_completion=False, **settings)


def examples(*lines: str) -> str:
    """The end of a command's help: ``Example:`` and command lines, kept as written."""
    # "\b" tells the help formatter not to re-wrap the paragraph after it.
    title = "Example:" if len(lines) == 1 else "Examples:"
    return "\b\n" + title + "\n" + "\n".join(f"  {line}" for line in lines)

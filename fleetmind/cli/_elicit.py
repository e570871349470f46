"""An MCP server's question, put to the user at the terminal.

While a tool call runs, a server may ask the user to fill in a form (a few named fields:
text, numbers, yes/no, choices) or to open a link. On a terminal, the command line asks the
user: first whether to answer at all (answer, decline, cancel), then each field in turn, each
answer checked against the field's schema and asked again until it fits. A link is shown, and
the user says whether they will open it. Questions from several servers at once are asked
one after the other. Off a terminal, nobody is asked (see :func:`terminal_asker`).

The prompts go to standard error and the answers come from standard input, so that standard
output keeps only the command's results. A live display (the task table of ``fleetmind run``)
registered with :func:`paused_while_asking` stops while the user answers, and goes on after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from fleetmind.tools import ElicitationHandler, ElicitationReply, ElicitationRequest, FormField

if TYPE_CHECKING:
    from rich.live import Live

_one_at_a_time = threading.Lock()
_displays_lock = threading.Lock()
_displays: list[Live] = []
"""Live displays to stop while the user answers a question."""


@contextlib.contextmanager
def paused_while_asking(live: Live) -> Iterator[None]:
    """Stop ``live`` while a question is asked at the terminal (within this block only)."""
    with _displays_lock:
        _displays.append(live)
    try:
        yield
    finally:
        with _displays_lock:
            _displays.remove(live)


def terminal_asker() -> ElicitationHandler | None:
    """What asks the user, when standard input and standard error are a terminal (else None)."""
    try:
        on_terminal = os.isatty(sys.stdin.fileno()) and os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return ask_on_terminal if on_terminal else None


async def ask_on_terminal(request: ElicitationRequest) -> ElicitationReply:
    """Ask the user ``request`` at the terminal (in a thread: the fleet goes on meanwhile)."""
    return await asyncio.to_thread(ask, request)


def ask(
    request: ElicitationRequest, source: TextIO | None = None, out: TextIO | None = None
) -> ElicitationReply:
    """Ask ``request`` through ``source`` and ``out`` (standard input and error by default,
    with live displays stopped meanwhile); the end of input cancels."""
    with _one_at_a_time:
        with _displays_lock:
            paused = list(_displays)
        for live in paused:
            live.stop()
        try:
            # Read after the displays stopped: a live display redirects standard error.
            return _Asking(source or sys.stdin, out or sys.stderr).ask(request)
        finally:
            with _displays_lock:
                for live in paused:
                    if any(d is live for d in _displays):  # its block has not ended meanwhile
                        live.start()


class _Asking:
    def __init__(self, source: TextIO, out: TextIO) -> None:
        self._source = source
        self._out = out

    def ask(self, request: ElicitationRequest) -> ElicitationReply:
        from fleetmind.tools import ElicitationReply

        self._say("")
        self._say(f"MCP server {request.server!r} asks: {request.message}")
        try:
            if request.mode == "url":
                self._say(f"  It wants you to open: {request.url}")
                choice = self._choose("  Will you open it? [y]es, [n]o, [c]ancel: ", "ync")
                if choice == "y":
                    return ElicitationReply("accept")
                return ElicitationReply("decline" if choice == "n" else "cancel")
            choice = self._choose("  Answer it? [a]nswer, [d]ecline, [c]ancel: ", "adc")
            if choice != "a":
                return ElicitationReply("decline" if choice == "d" else "cancel")
            return ElicitationReply("accept", self._fill(request.schema))
        except EOFError:
            self._say("  (no more input: the question was cancelled)")
            return ElicitationReply("cancel")

    def _fill(self, schema: dict[str, Any]) -> dict[str, Any]:
        from fleetmind.tools import check_form_answer, form_fields

        content: dict[str, Any] = {}
        properties = schema.get("properties", {})
        for field in form_fields(schema):
            one = {"type": "object", "properties": {field.name: properties[field.name]}}
            while True:
                text = self._read(f"  {_label(field)}: ")
                if not text.strip():
                    if field.default is not None:
                        content[field.name] = field.default
                        break
                    if not field.required:
                        break
                    self._say("    an answer is needed")
                    continue
                try:
                    value = field.parse(text)
                except ValueError as exc:
                    self._say(f"    {exc}")
                    continue
                problem = check_form_answer(one, {field.name: value})
                if problem is None:
                    content[field.name] = value
                    break
                self._say(f"    {problem.removeprefix(f'field {field.name!r}: ')}")
        return content

    def _choose(self, prompt: str, letters: str) -> str:
        while True:
            answer = self._read(prompt).strip().lower()[:1]
            if answer in letters and answer:
                return answer
            self._say(f"    type one of: {', '.join(letters)}")

    def _read(self, prompt: str) -> str:
        self._out.write(prompt)
        self._out.flush()
        line = self._source.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def _say(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()


def _label(field: FormField) -> str:
    """``Age (your age in years) [a whole number, default 30]``: what to type for a field."""
    label = field.title
    if field.description and field.description != field.title:
        label += f" ({field.description})"
    hints: list[str] = []
    kinds: dict[str, Callable[[], str]] = {
        "integer": lambda: "a whole number",
        "number": lambda: "a number",
        "boolean": lambda: "yes or no",
        "choice": lambda: "one of " + _numbered(field),
        "choices": lambda: "any of " + _numbered(field) + ", separated by commas",
        "string": lambda: field.format or "",
    }
    hint = kinds[field.kind]()
    if hint:
        hints.append(hint)
    if field.default is not None:
        hints.append(f"default {field.default}")
    elif not field.required:
        hints.append("optional")
    return label + (f" [{'; '.join(hints)}]" if hints else "")


def _numbered(field: FormField) -> str:
    return " ".join(f"{i}) {label}" for i, (_, label) in enumerate(field.options, start=1))

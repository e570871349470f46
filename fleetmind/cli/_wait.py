"""The status line of long waits: a spinner on a terminal, one plain line on stderr otherwise.

Loading a model, connecting to a broker or waiting for an orchestrator can take seconds to a
minute; a command that says nothing meanwhile looks hung. Every such wait goes through
:func:`waiting`. Off a terminal (a pipe, a log file) a wait that ends within about a second
prints nothing, so quick runs keep a clean log. While a task's live table is up, the table
shows the wait instead: a terminal has room for one live display.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console
from rich.status import Status

PLAIN_DELAY_S = 1.0
"""Off a terminal, how long a wait lasts before its line is printed."""


class Wait:
    """One wait on the status line; :meth:`update` says what it waits for now."""

    def __init__(self, line: StatusLine, text: str) -> None:
        self._line = line
        self.text = text
        self._timer: threading.Timer | None = None

    def update(self, text: str) -> None:
        """Wait for something else now (the line shows it; off a terminal, once it has lasted)."""
        self.text = text
        self._line.changed(self)

    def _print_later(self, console: Console) -> None:
        self._cancel_print()
        text = self.text

        def say() -> None:
            console.print(f"{text}…", highlight=False, markup=False, soft_wrap=True)

        self._timer = threading.Timer(PLAIN_DELAY_S, say)
        self._timer.daemon = True
        self._timer.start()

    def _cancel_print(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class StatusLine:
    """The one status line of this process: it shows the newest wait that has not ended."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waits: list[Wait] = []
        self._console: Console | None = None
        self._status: Status | None = None
        self._panel: Callable[[str | None], None] | None = None

    @property
    def console(self) -> Console:
        """Where waits are shown: stderr, so that stdout stays the command's output."""
        if self._console is None:
            self._console = Console(stderr=True)
        return self._console

    @contextmanager
    def waiting(self, text: str) -> Iterator[Wait]:
        """Show ``text`` while the body runs."""
        wait = Wait(self, text)
        with self._lock:
            self._waits.append(wait)
            self._refresh(wait)
        try:
            yield wait
        finally:
            with self._lock:
                wait._cancel_print()
                self._waits.remove(wait)
                self._refresh(None)

    def changed(self, wait: Wait) -> None:
        """A wait's words changed."""
        with self._lock:
            if wait in self._waits:
                self._refresh(wait)

    @contextmanager
    def shown_by(self, panel: Callable[[str | None], None]) -> Iterator[None]:
        """Let a live display show the waits (``panel(None)``: none) while the body runs."""
        with self._lock:
            self._stop_status()
            self._panel = panel
            self._refresh(None)
        try:
            yield
        finally:
            with self._lock:
                self._panel = None
                self._refresh(None)

    def close(self) -> None:
        """Take the spinner off the terminal (before the process leaves)."""
        with self._lock:
            for wait in self._waits:
                wait._cancel_print()
            self._stop_status()

    def _refresh(self, started: Wait | None) -> None:
        """Show the newest wait; ``started``: a wait that began or changed its words."""
        newest = self._waits[-1].text if self._waits else None
        if self._panel is not None:
            self._panel(newest)
            return
        if not self.console.is_terminal:
            if started is not None:
                started._print_later(self.console)
            return
        if newest is None:
            self._stop_status()
        elif self._status is None:
            self._status = self.console.status(f"{newest}…", spinner="dots")
            self._status.start()
        else:
            self._status.update(f"{newest}…")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


status_line = StatusLine()
"""The process's status line."""


def waiting(text: str) -> AbstractContextManager[Wait]:
    """Show ``text`` (``loading the model``) on the status line while the body runs."""
    return status_line.waiting(text)


def show_model_loads() -> None:
    """Put every embedding-model load of this process on the status line."""
    from fleetmind.orchestrator import watch_model_loads

    watch_model_loads(waiting)


def say(line: str) -> None:
    """Print one line on stderr, after taking the spinner away."""
    status_line.close()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()

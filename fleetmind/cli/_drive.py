"""An event loop that Ctrl-C stops cleanly on the first press, and at once on the second.

The first press records what must survive the stop (a task is marked interrupted in the
store), cancels the command's coroutine and leaves with exit status 130 once it has wound down:
within a grace period even when a worker thread is stuck in blocking code that nothing can
interrupt (such a thread is left behind: the process ends without waiting for it). A second
press leaves at once. Either way one line says what happened, and no traceback.

``FLEETMIND_STOP_GRACE_S`` sets the grace period (default 1.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, NoReturn, TypeVar

import typer

from fleetmind.cli._wait import status_line
from fleetmind.errors import ConfigError

EXIT_INTERRUPTED = 130
GRACE_S = 1.5
"""How long the first Ctrl-C lets the work wind down before the process leaves anyway."""
GRACE_ENV = "FLEETMIND_STOP_GRACE_S"
_MARK_WAIT_S = 0.5
"""How long leaving at once still waits for the interruption to be recorded."""

T = TypeVar("T")


class _Interruption:
    """What the presses of Ctrl-C have done so far; every step happens once."""

    def __init__(self, on_interrupt: Callable[[], str]) -> None:
        self._on_interrupt = on_interrupt
        self._marking = threading.Lock()
        self._line: str | None = None
        self._leaving = threading.Lock()
        self.pressed = False
        self.wound_down = threading.Event()

    def mark(self) -> str:
        """Record the interruption (once) and return the line that tells the user."""
        with self._marking:
            if self._line is None:
                try:
                    self._line = self._on_interrupt()
                except Exception as exc:  # the stop goes on; say why nothing was recorded
                    self._line = f"interrupted; it could not be recorded: {exc}"
            return self._line

    def leave_now(self) -> NoReturn:
        """Leave at once (second press, or the grace period is over): a thread may be stuck
        in blocking code, so nothing waits for the interpreter's own shutdown."""
        if not self._leaving.acquire(blocking=False):
            os._exit(EXIT_INTERRUPTED)  # the line is out, or on its way: leave without it
        # Recorded in a helper thread: this may run in a signal handler that interrupted a
        # write to the store, whose lock would then never be let go.
        marker = threading.Thread(target=self.mark, daemon=True)
        marker.start()
        marker.join(_MARK_WAIT_S)
        line = self._line or "interrupted"
        _show_cursor()
        try:
            os.write(2, f"\n{line}\n".encode() if os.isatty(2) else f"{line}\n".encode())
        finally:
            os._exit(EXIT_INTERRUPTED)

    def leave(self) -> NoReturn:
        """Leave after the work has wound down: the line, then exit status 130."""
        if not self._leaving.acquire(blocking=False):
            os._exit(EXIT_INTERRUPTED)  # a second press is leaving already
        line = self.mark()
        status_line.close()
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        if _stuck_threads():
            os._exit(EXIT_INTERRUPTED)  # the interpreter would wait for them at exit
        raise typer.Exit(EXIT_INTERRUPTED)


def run_interruptible(
    main: Coroutine[Any, Any, T], *, on_interrupt: Callable[[], str] | None = None
) -> T:
    """Run ``main`` to its end in a new event loop, with Ctrl-C handled as above.

    ``on_interrupt`` runs once, on the first press, in the loop's thread (or, when the loop
    does not answer, in a helper thread): it records the interruption and returns the line to
    print. Leaving on Ctrl-C raises ``typer.Exit(130)``, or ends the process when a worker
    thread is stuck.
    """
    try:
        grace_s = _grace_s()
    except ConfigError:
        main.close()
        raise
    stop = _Interruption(on_interrupt or (lambda: "interrupted"))
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="fleetmind-worker")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    task = loop.create_task(main)

    def first_press_in_loop() -> None:
        stop.mark()
        task.cancel()

    def watchdog() -> None:
        if not stop.wound_down.wait(grace_s):
            stop.leave_now()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop.pressed:
            stop.leave_now()
        stop.pressed = True
        with contextlib.suppress(RuntimeError):  # the loop has closed: the watchdog leaves
            loop.call_soon_threadsafe(first_press_in_loop)
        threading.Thread(target=watchdog, name="fleetmind-interrupt", daemon=True).start()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        try:
            result = loop.run_until_complete(task)
        except BaseException:
            if not stop.pressed:
                raise
        else:
            if not stop.pressed:
                return result
        # Interrupted: whatever the coroutine ended with, the command stops here.
        _close(loop, executor, wait=False)
        stop.wound_down.set()
        stop.leave()
    finally:
        if not stop.pressed:
            _close(loop, executor, wait=True)
        if in_main:
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)


def _close(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, *, wait: bool) -> None:
    """Close the loop as ``asyncio.run`` would, but without waiting for stuck worker threads
    when ``wait`` is false."""
    if loop.is_closed():
        return
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for leftover in pending:
            leftover.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        if wait:
            loop.run_until_complete(loop.shutdown_default_executor())
        else:
            executor.shutdown(wait=False, cancel_futures=True)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _grace_s() -> float:
    raw = os.environ.get(GRACE_ENV)
    if raw is None:
        return GRACE_S
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise ConfigError(f"{GRACE_ENV}={raw!r} is not a number of seconds") from None


def _stuck_threads() -> list[threading.Thread]:
    """Threads the interpreter would wait for at exit that are still busy after a moment."""
    others = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    for thread in others:
        thread.join(0.2)
    return [t for t in others if t.is_alive()]


def _show_cursor() -> None:
    """A live display hides the cursor; a process that leaves at once gives it back."""
    for fd in (1, 2):
        if os.isatty(fd):
            os.write(fd, b"\x1b[?25h")
            return

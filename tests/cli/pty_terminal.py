"""A command run on a pseudo-terminal, for tests of what a user at a terminal sees and does."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
"""Colours, cursor moves and carriage returns: what a live display adds to its text."""

# Launches a command with the pseudo-terminal as its controlling terminal, as a shell would.
LAUNCH = (
    "import os, sys; os.login_tty(os.open(sys.argv[1], os.O_RDWR)); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


class Terminal:
    """A command run on a pseudo-terminal, its output collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self._master, self._slave = os.openpty()
        # A terminal of a known size, so the live table has room.
        fcntl.ioctl(self._slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        self._output = bytearray()
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, os.ttyname(self._slave), *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._output.extend(chunk)

    @property
    def text(self) -> str:
        """Everything shown so far, without colours and cursor moves."""
        with self._lock:
            return ANSI.sub("", self._output.decode(errors="replace"))

    def press_ctrl_c(self) -> None:
        os.write(self._master, b"\x03")

    def type(self, text: str) -> None:
        """Type ``text`` at the keyboard (end it with a newline to press Enter)."""
        os.write(self._master, text.encode())

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        os.close(self._master)
        os.close(self._slave)

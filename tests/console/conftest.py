"""`fleetmind console` as a real process: started on a free port, its printed URL and token
read from its output, stopped (and killed if it must be) when the test ends."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from repo_paths import FIXTURES

from fleetmind.protocols import mosquitto_installed
from fleetmind.testing import LocalBroker, start_test_broker

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
CONSOLE_FLEET = FIXTURES / "console_fleet.py"
"""quick (skill echo), slow (skill hold: waits for the gate file), flaky (fails once per key)."""
START_S = 90.0
"""How long a console may take to print its URL: these machines can be very loaded."""
STOP_S = 30.0

COOKIE = "fleetmind_console"
FLEET = "farm"
"""The fleet's name on the test broker."""
DEVICE = "pi-1"
"""The device the test broker has credentials for (it offers the console fleet's agents)."""

_URL = re.compile(r"^(http://[^/\s]+)/\?token=(\S+)$", re.MULTILINE)


@dataclass
class RunningConsole:
    """A `fleetmind console` process and how to reach it."""

    base_url: str
    """``http://127.0.0.1:PORT``."""
    token: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    output: Path
    """Its stdout (the URL line)."""
    log: Path
    """Its stderr."""
    gate: Path
    """The file whose existence lets the fleet's ``slow`` agent finish."""
    clients: list[httpx.Client] = field(default_factory=list)
    session: str | None = None
    """The session the token was traded for (it signs in only once)."""

    @property
    def login_url(self) -> str:
        """The URL it printed: opening it trades the token for a session cookie, once."""
        return f"{self.base_url}/?token={self.token}"

    def sign_in(self) -> str:
        """The session cookie's value: the token traded for it on the first call."""
        if self.session is None:
            answer = httpx.get(self.login_url, follow_redirects=False, timeout=60.0)
            assert answer.status_code == 303, answer.text
            self.session = answer.cookies[COOKIE]
        return self.session

    def client(self, *, login: bool = True) -> httpx.Client:
        """An HTTP client; with ``login``, holding the session cookie."""
        client = httpx.Client(base_url=self.base_url, timeout=60.0)
        self.clients.append(client)
        if login:
            client.cookies.set(COOKIE, self.sign_in())
        return client

    def stop(self) -> int:
        """Stop it as Ctrl-C would, and return its exit code."""
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the console did not stop: {self.log.read_text()}") from None
        return self.process.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_console(
    workdir: Path,
    *args: str,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    name: str = "console",
    port: int = 0,
) -> RunningConsole:
    """Start ``fleetmind console ARGS --port PORT --data-dir DATA`` and wait for its URL.

    ``args`` choose the source (``--fleet F``, ``--broker URL ...``, ``--store URL``);
    ``port`` 0 is any free one (a restart passes the port it had before).
    """
    data = data_dir or workdir / "data"
    gate = workdir / "gate"
    runs = len(list(workdir.glob(f"{name}.*.out")))
    output, log = workdir / f"{name}.{runs}.out", workdir / f"{name}.{runs}.err"
    argv = [FLEETMIND, "console", *args, "--port", str(port), "--data-dir", str(data)]
    environment = {**os.environ, "FM_CONSOLE_GATE": str(gate), **(env or {})}
    with output.open("wb") as out, log.open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=environment, cwd=workdir)
    deadline = time.monotonic() + START_S
    while True:
        found = _URL.search(output.read_text(errors="replace"))
        if found is not None:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise AssertionError(
                f"the console printed no URL (exit {process.returncode}): {log.read_text()}"
            )
        time.sleep(0.05)
    return RunningConsole(found.group(1), found.group(2), process, data, output, log, gate)


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[Callable[..., RunningConsole]]:
    """Start consoles (``console_factory("--fleet", str(CONSOLE_FLEET))``); every one still
    running is stopped when the test ends."""
    started: list[RunningConsole] = []

    def start(*args: str, **options: object) -> RunningConsole:
        running = start_console(tmp_path, *args, **options)  # type: ignore[arg-type]
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A real Mosquitto with users for an orchestrator and the device ``pi-1``."""
    if not mosquitto_installed():
        if os.environ.get("CI") == "true":
            pytest.fail("needs Mosquitto")
        pytest.skip("needs Mosquitto")
    started = start_test_broker(
        tmp_path, {DEVICE: ["quick", "slow", "flaky", "expander"]}, fleet=FLEET
    )
    try:
        yield started
    finally:
        started.handle.stop()


def login_args(tmp_path: Path, broker: LocalBroker, user: str) -> list[str]:
    """``--username U --password-file F`` for one of the broker's users."""
    password = tmp_path / f"{user}.pw"
    password.write_text(broker.credentials[user])
    return ["--username", user, "--password-file", str(password)]


@contextmanager
def process(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Another fleetmind process for a test (a device, a replica), stopped at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class SseEvent:
    """One server-sent event: its id, name and JSON data."""

    id: str | None
    event: str
    data: dict[str, object]


class EventReader:
    """Reads a console's ``/api/events`` in a thread; the test waits for events it expects."""

    def __init__(self, running: RunningConsole) -> None:
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self.comments: list[str] = []
        self.status: int | None = None
        self.content_type = ""
        self._client = httpx.Client(base_url=running.base_url, timeout=httpx.Timeout(60, read=None))
        self._client.cookies.set(COOKIE, running.sign_in())
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._opened.wait(START_S), "the event stream did not open"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/api/events") as answer:
                self.status, self.content_type = (
                    answer.status_code,
                    answer.headers.get("content-type", ""),
                )
                self._opened.set()
                fields: dict[str, str] = {}
                for line in answer.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif not line:
                        if "data" in fields:
                            data = json.loads(fields["data"])
                            self.events.put(
                                SseEvent(fields.get("id"), fields.get("event", ""), data)
                            )
                        fields = {}
                    else:
                        key, _, value = line.partition(":")
                        fields[key] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass  # closed by the test, or the server stopped
        finally:
            self._opened.set()

    def wait_for(
        self, matches: Callable[[SseEvent], bool], timeout_s: float = 60.0
    ) -> list[SseEvent]:
        """Every event read until one that ``matches`` (which is last); fails after the wait."""
        seen: list[SseEvent] = []
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(e.event, e.data.get("status")) for e in seen]
                raise AssertionError(f"the expected event never came; got {kinds}")
            try:
                event = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            seen.append(event)
            if matches(event):
                return seen

    def close(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(10)

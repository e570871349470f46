"""`fleetmind mcp serve --http` of the fixture fleet in its own process on a free port, and what
its tests send it: the one way the MCP server tests start, reach and stop a server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from repo_paths import FIXTURES

from fleetmind.testing import free_port

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
FIXTURE = str(FIXTURES / "mcp_fleet.py")
SERVE = [FLEETMIND, "mcp", "serve", "--fleet", FIXTURE]
# What a streamable-HTTP client must accept and send.
JSON_RPC = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

# Three subtasks: `greet` and `count` run side by side, `loud` shouts what `greet` wrote.
THREE = {
    "name": "three",
    "subtasks": [
        {"id": "greet", "skill": "greeting", "inputs": {"name": "ada"}},
        {"id": "count", "skill": "counting", "inputs": {"n": 3}},
        {"id": "loud", "skill": "shout"},
    ],
    "dependencies": [
        {"source": "greet", "target": "loud", "kind": "data", "input": "text"},
        {"source": "count", "target": "loud"},
    ],
}


def server_env(home: Path) -> dict[str, str]:
    """The environment of a server process: its own home, output unbuffered."""
    return {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}


@dataclass
class MCPServer:
    """A running server: its endpoint, its process, its data directory and its stderr file."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    def stop(self) -> str:
        """Stop the server (SIGTERM; killed if it hangs) and give what it wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text()


@contextmanager
def serving(data_dir: Path, *args: str) -> Iterator[MCPServer]:
    """`fleetmind mcp serve --http` on a free port until the block ends (then SIGTERM).

    Its stderr goes to a file: a pipe nobody reads could fill up and stall a long-lived server.
    """
    port = free_port()
    log = data_dir / "server.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [*SERVE, "--http", f"127.0.0.1:{port}", "--data-dir", str(data_dir), *args],
            env=server_env(data_dir),
            cwd=data_dir,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server = MCPServer(f"http://127.0.0.1:{port}/mcp", process, data_dir, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited early: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the server never accepted connections")
                time.sleep(0.05)
        yield server
    finally:
        server.stop()

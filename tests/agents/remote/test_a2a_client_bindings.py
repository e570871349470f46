"""fleetmind's A2A client against agents that speak one binding only (HTTP+JSON, or gRPC), and
against one that refuses the media type of what fleetmind sends.

The agents are tests/fixtures/a2a_one_binding.py: `serve_a2a` with the other bindings off, each in
its own process on a free port.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from repo_paths import FIXTURES

from fleetmind import Fleet, TaskGraph
from fleetmind.agents.remote import connect_a2a_agent
from fleetmind.errors import ConfigError
from fleetmind.protocols import A2ATransport
from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(90)

SERVER = FIXTURES / "a2a_one_binding.py"
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TOKEN = "one-binding-token"


@contextlib.contextmanager
def one_binding(tmp_path: Path, binding: str, *args: str) -> Iterator[str]:
    """The fixture agent speaking ``binding`` only, until its card is served; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / f"{binding}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(SERVER), str(port), binding, *args],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the A2A fixture exited: {log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/.well-known/agent-card.json", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the A2A fixture did not serve its card: {log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _graph() -> TaskGraph:
    graph = TaskGraph("across one binding")
    graph.add_subtask("say", agent="remote", description="echo it", inputs={"text": "hi there"})
    graph.add_subtask("count", agent="remote", description="count", inputs={"steps": 2})
    return graph


async def _run(url: str, token: str | None = None) -> tuple[Any, list[str]]:
    fleet = Fleet([])
    remote = await fleet.add_a2a_agent(url, agent_id="remote", token=token)
    async with fleet:
        handle = fleet.submit(_graph())
        progress = [e.message async for e in handle.events() if e.kind == "subtask_progress"]
        result = await handle.result()
    assert remote.closed
    return result, progress


@pytest.mark.parametrize("binding", ["rest", "grpc"])
async def test_an_agent_that_speaks_one_binding_runs_subtasks(tmp_path: Path, binding: str) -> None:
    (tmp_path / "token").write_text(TOKEN)
    with one_binding(tmp_path, binding, "--token-file", str(tmp_path / "token")) as url:
        transport = await A2ATransport.connect(url, token=TOKEN)
        try:
            expected = {"rest": "HTTP+JSON", "grpc": "GRPC"}[binding]
            assert [i.protocol_binding for i in transport.card.supported_interfaces] == [expected]
            assert transport.binding == expected
        finally:
            await transport.aclose()
        result, progress = await _run(url, token=TOKEN)
    assert result.status == "done", result.errors
    assert result.outputs == {"say": "hi there", "count": "counted to 2"}
    # The remote engine's events, streamed over the one binding, became progress here.
    assert any("step 2 of 2" in line for line in progress), progress


@pytest.mark.parametrize("binding", ["rest", "grpc"])
async def test_a_wrong_token_is_one_clear_line_on_each_binding(
    tmp_path: Path, binding: str
) -> None:
    (tmp_path / "token").write_text(TOKEN)
    with one_binding(tmp_path, binding, "--token-file", str(tmp_path / "token")) as url:
        result, _ = await _run(url, token="not-it")
    error = result.errors["say"]
    how = "gRPC UNAUTHENTICATED" if binding == "grpc" else "HTTP 401"
    assert error["message"] == (
        f"A2A agent 'remote' at {url} refused our credentials ({how}); check its token"
    )
    assert error["retryable"] is False


async def test_a_media_type_the_agent_refuses_is_one_clear_line(tmp_path: Path) -> None:
    """fleetmind sends a subtask's inputs as a JSON data part; this agent takes text only."""
    with one_binding(tmp_path, "grpc", "--input-modes", "text/plain") as url:
        result, _ = await _run(url)
    error = result.errors["say"]
    assert error["type"] == "SubtaskFailed"
    assert error["retryable"] is False
    assert error["message"].startswith(
        f"A2A agent 'remote' at {url} does not accept the media type of a part we sent "
        "(it accepts text/plain): Media type application/json is not supported"
    )


@contextlib.contextmanager
def serving_card(card: dict[str, Any]) -> Iterator[str]:
    """A loopback HTTP server that serves ``card`` at every path; its URL."""
    body = json.dumps(card).encode()

    class Card(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the standard library's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Card)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_an_agent_with_no_binding_fleetmind_speaks_is_a_config_error() -> None:
    card = {
        "name": "Elsewhere",
        "description": "Speaks only a binding of its own.",
        "version": "1",
        "supportedInterfaces": [
            {"url": "wss://elsewhere/", "protocolBinding": "WEBSOCKET", "protocolVersion": "1.0"}
        ],
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [],
    }
    with serving_card(card) as url, pytest.raises(ConfigError) as refused:
        await connect_a2a_agent(url, timeout_s=5)
    assert str(refused.value) == (
        f"A2A agent 'Elsewhere' at {url} offers no transport fleetmind speaks "
        "(it offers WEBSOCKET; fleetmind speaks JSONRPC, HTTP+JSON, GRPC)"
    )


def test_cli_a2a_add_takes_a_grpc_only_agent(tmp_path: Path) -> None:
    with one_binding(tmp_path, "grpc") as url:
        added = subprocess.run(
            [FLEETMIND, "a2a", "add", url, "--id", "grpc-only", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert added.returncode == 0, added.stderr
    assert "added A2A agent grpc-only" in added.stdout

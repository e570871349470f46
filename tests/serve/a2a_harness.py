"""`fleetmind a2a serve` of a fixture fleet in its own process on a free port, and the a2a-sdk's
client for it: the one way the A2A server tests start, reach and stop a server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.utils.constants import TransportProtocol

from fleetmind.testing import free_port

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
CARD = "/.well-known/agent-card.json"


@dataclass
class A2AServer:
    """A running server: its base URL, its process, and the file its output goes to."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def card(self) -> dict[str, Any]:
        answer = httpx.get(self.url + CARD, timeout=30)
        answer.raise_for_status()
        card: dict[str, Any] = answer.json()
        return card

    def interface(self, binding: str) -> str:
        """The address the card gives for ``binding``."""
        urls = {i["protocolBinding"]: i["url"] for i in self.card()["supportedInterfaces"]}
        return str(urls[binding])

    def stop(self) -> int:
        """The stop signal, then the exit code (a clean stop exits 0); killed if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@contextmanager
def serving(
    fleet: Path | str,
    home: Path,
    *args: str,
    start_s: float = 60,
    stop_signal: int = signal.SIGTERM,
) -> Iterator[A2AServer]:
    """`fleetmind a2a serve` of ``fleet`` with its data and log under ``home``, ready once it
    serves its card (within ``start_s``), stopped at the end."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(FLEETMIND, "a2a", "serve", "--fleet", str(fleet), "--port", str(port)),
                *("--data-dir", str(home / "data"), *args),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = A2AServer(f"http://127.0.0.1:{port}", process, log, stop_signal)
    try:
        deadline = time.monotonic() + start_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited ({process.returncode}): {log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not serve its card: {log.read_text()}")
            try:
                if httpx.get(server.url + CARD).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)  # not listening yet
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def sdk_client(
    url: str,
    binding: str = TransportProtocol.JSONRPC,
    *,
    streaming: bool = False,
    polling: bool = False,
) -> AsyncIterator[Client]:
    """The a2a-sdk's client for the agent at ``url``, allowed to speak ``binding`` only."""
    async with httpx.AsyncClient(timeout=60) as http:
        config = ClientConfig(
            streaming=streaming,
            polling=polling,
            httpx_client=http,
            supported_protocol_bindings=[binding],
            grpc_channel_factory=grpc.aio.insecure_channel,
        )
        client = await create_client(url, client_config=config)
        try:
            yield client
        finally:
            await client.close()

"""The console's event stream in a real uvicorn server in this process, where the hub can be
looked at: heartbeats, ids, a page that leaves is forgotten, a page too slow is let go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import uvicorn

from fleetmind.orchestrator import SQLiteStore
from fleetmind.serve import ConsoleAuth, ConsoleSource, build_console_app
from fleetmind.serve._console_app import listen
from fleetmind.serve._console_events import EventHub

TOKEN = "test-token"
DEADLINE_S = 60.0


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, hub: EventHub) -> AsyncIterator[str]:
    """A store-only console on a free port, with ``hub``; its base URL."""
    store = SQLiteStore(tmp_path / "fleetmind.db")
    app = build_console_app(ConsoleSource(store, poll_s=0.1), ConsoleAuth(TOKEN), hub=hub)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    running = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        hub.close()
        server.should_exit = True
        await running
        sock.close()
        store.close()


async def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds; fail after the deadline."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def test_heartbeats_ids_and_a_page_that_leaves_is_forgotten(tmp_path: Path) -> None:
    hub = EventHub(heartbeat_s=0.05)
    async with (
        serving(tmp_path, hub) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert (await client.get("/", params={"token": TOKEN})).status_code == 303
        async with client.stream("GET", "/api/events") as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            await until(lambda: hub.streams == 1)
            lines = answer.aiter_lines()
            assert [await anext(lines), await anext(lines)] == ["retry: 2000", ": connected"]
            heartbeats = 0
            while heartbeats < 2:
                line = await anext(lines)
                heartbeats += line == ": heartbeat"
            hub.publish("task", {"task_id": "t1", "status": "running"})
            hub.publish("task", {"task_id": "t1", "status": "done"})
            frames: list[str] = []
            while len([f for f in frames if f.startswith("data:")]) < 2:
                line = await anext(lines)
                if line and not line.startswith(":"):
                    frames.append(line)
            assert frames == [
                "id: 1",
                "event: task",
                'data: {"task_id":"t1","status":"running"}',
                "id: 2",
                "event: task",
                'data: {"task_id":"t1","status":"done"}',
            ]
        # The page went away mid-stream: its queue goes with it (at the next heartbeat at most).
        await until(lambda: hub.streams == 0)
        assert (await client.get("/api/info")).json()["mode"] == "store"


async def test_a_page_too_slow_to_read_is_let_go() -> None:
    hub = EventHub(heartbeat_s=60.0, queue_limit=3)
    stream = hub.stream()
    assert await anext(stream) == b"retry: 2000\n: connected\n\n"
    for n in range(5):
        hub.publish("task", {"n": n})
    assert hub.streams == 0  # dropped when its queue was full
    read = [frame async for frame in stream]
    assert [f.split(b"\n")[0] for f in read] == [b"id: 1", b"id: 2", b"id: 3"]


async def test_a_closed_hub_ends_every_stream() -> None:
    hub = EventHub(heartbeat_s=60.0)
    stream = hub.stream()
    await anext(stream)
    hub.close()
    assert [frame async for frame in stream] == []
    assert [frame async for frame in hub.stream()] == []

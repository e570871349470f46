"""The servers of benchmarks/protocols.py: the bare-SDK ones it runs as helper processes, and
how any server process is started on a free port and stopped.

- :func:`mcp_server`: an ``MCPServer`` with one trivial tool, over stdio or streamable HTTP.
- :func:`a2a_echo_server`: a bare a2a-sdk agent that answers every message with its text, on
  the JSON-RPC binding at ``/``, the HTTP+JSON binding at ``/rest`` and, given a gRPC port, the
  gRPC binding there: the same three bindings `fleetmind a2a serve` offers, with the SDK's own
  request handler and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from _harness import _tail

from fleetmind.testing import free_port

START_TIMEOUT_S = 60.0


def mcp_server(port: int | None) -> None:
    """An MCP server with one trivial tool: over stdio, or streamable HTTP on ``port``."""
    from mcp.server import MCPServer

    server = MCPServer("bench-protocols", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        return a + b

    if port is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=port)


def a2a_echo_server(port: int, streaming: bool, grpc_port: int | None = None) -> None:
    """A bare a2a-sdk agent that answers every message with its ``text`` as an artifact.

    JSON-RPC at ``http://127.0.0.1:PORT/``, HTTP+JSON at ``/rest`` and, with ``grpc_port``,
    gRPC at ``127.0.0.1:GRPC_PORT``; the card declares each.
    """
    import uvicorn
    from a2a.helpers import new_task_from_user_message, new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import (
        create_agent_card_routes,
        create_jsonrpc_routes,
        create_rest_routes,
    )
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
    from google.protobuf.json_format import MessageToDict
    from starlette.applications import Starlette

    class Echo(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.message is not None
            task = context.current_task
            if task is None:
                task = new_task_from_user_message(context.message)
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work()
            text = context.get_user_input()
            for part in context.message.parts:
                if part.HasField("data"):
                    value = MessageToDict(part.data)
                    if isinstance(value, dict) and isinstance(value.get("text"), str):
                        text = value["text"]
            await updater.add_artifact([new_text_part(text)], name="echo")
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.task_id is not None and context.context_id is not None
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    base = f"http://127.0.0.1:{port}/"
    interfaces = [
        AgentInterface(url=base, protocol_binding="JSONRPC", protocol_version="1.0"),
        AgentInterface(url=base + "rest", protocol_binding="HTTP+JSON", protocol_version="1.0"),
    ]
    if grpc_port is not None:
        interfaces.append(
            AgentInterface(
                url=f"127.0.0.1:{grpc_port}", protocol_binding="GRPC", protocol_version="1.0"
            )
        )
    card = AgentCard(
        name="bare echo",
        description="Repeats the text it is given; a bare a2a-sdk agent.",
        version="1.0.0",
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Repeat the text.", tags=["echo"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = Starlette(
        routes=[
            *create_agent_card_routes(card),
            *create_jsonrpc_routes(handler, "/"),
            *create_rest_routes(handler, path_prefix="/rest"),
        ]
    )

    async def main() -> None:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        if grpc_port is None:
            await server.serve()
            return
        import grpc.aio
        from a2a.server.request_handlers import GrpcHandler
        from a2a.types import a2a_pb2_grpc

        rpc = grpc.aio.server()
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), rpc)
        rpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await rpc.start()
        try:
            await server.serve()
        finally:
            await rpc.stop(0)

    asyncio.run(main())


@dataclass
class Server:
    """A server process started by :func:`start_server`."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status: it is listening and serving)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            await http.get(url)
    except httpx.HTTPError:
        return False
    return True


async def start_server(
    name: str, command: Callable[[int], list[str]], probe_path: str, tmp: Path
) -> Server:
    """Start a server on a free port and wait until it answers at ``probe_path``.

    Another process may take the port between ``free_port()`` and the server's bind, so a
    server that exits early is tried again on another port.
    """
    log = tmp / f"{name}.log"
    for _ in range(3):
        port = free_port()
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *command(port), stdout=out, stderr=out, cwd=tmp
            )
        server = Server(name, process, port, log)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while process.returncode is None and time.monotonic() < deadline:
                if await _answers(server.base_url + probe_path):
                    return server
                await asyncio.sleep(0.1)
        except BaseException:
            await stop(process)
            raise
        await stop(process)  # it exited (port taken?) or never answered
        if time.monotonic() >= deadline:
            break
    raise RuntimeError(f"{name} did not start:\n{_tail(log)}")


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 10 s; waits for the process either way."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

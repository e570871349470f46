"""The fleet as an MCP server: any MCP host can submit task graphs, follow them, read results.

```python
fleet = Fleet([summarise, translate], store="tasks.db")
await serve_mcp(fleet, transport="http", host="127.0.0.1", port=8765)   # serves /mcp
```

Tools: ``submit_task``, ``get_task``, ``get_result``, ``list_agents``, ``cancel_task``.
Resources: ``fleetmind://tasks`` (recent tasks) and ``fleetmind://tasks/{task_id}/graph`` (a
task's graph with the state of every subtask, as JSON). Prompt: ``plan_task`` (help to write a
task graph for the fleet's agents). Protocol versions: 2026-07-28 (each request a single
exchange) and the handshake versions 2024-11-05 to 2025-11-25 (sessions opened with
``initialize``; from 2025-11-25 on with resumable SSE streams).

A mistake of the caller — an unknown task id, arguments that do not validate, a graph that does
not validate, a subtask no agent can take — comes back as a tool result with ``is_error`` set and
one line saying what is wrong; the server keeps serving. A tool or prompt the server does not
have is ``-32602 Invalid params``. Only the ``_mcp_*`` modules of this package (and the CLI that
loads them) import ``mcp``.

Over HTTP a gate stands in front of the SDK's app: it checks the bearer token (when one is
given), refuses bodies over :data:`MAX_BODY_BYTES` with HTTP 413, and answers a body that is
JSON but no JSON-RPC message with ``-32600 Invalid Request`` (the SDK would say ``-32602``).
Each refusal is a JSON-RPC error object in the body, which MCP clients surface as the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic_core
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import (
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from mcp.server.mcpserver.resources import FunctionResource
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    jsonrpc_message_adapter,
)
from pydantic import Field, ValidationError, WithJsonSchema
from starlette.types import ASGIApp, Scope

from fleetmind._validation import describe_validation_error
from fleetmind.errors import ConfigError, FleetmindError, FleetStateError, TaskNotFound
from fleetmind.orchestrator import Fleet, TaskGraph, TaskHandle, describe_event
from fleetmind.serve._http_gate import HttpGate, Refusal, case_blind_bearer
from fleetmind.serve._mcp_events import SessionScopes, StreamEvents
from fleetmind.serve._mcp_progress import ProgressMeter
from fleetmind.serve._mcp_prompts import add_prompts
from fleetmind.serve._mcp_results import (
    GRAPH_URI_TEMPLATE,
    AgentList,
    TaskOutcome,
    TaskState,
    agent_info,
    build_graph,
    dumps_json,
    graph_uri,
    has_ended,
    task_outcome,
    task_state,
)

TASKS_URI = "fleetmind://tasks"
_DEFINITION_KEYS = frozenset({"name", "subtasks", "dependencies"})
_TEXT_SUBTASK_ID = "request"
_STOP_REASON = "the MCP server stopped"

MAX_BODY_BYTES = 4 * 1024 * 1024
"""HTTP request bodies above this size are refused with 413 (a task graph is far smaller)."""

RETRY_MS = 1000
"""The reconnection delay a resumable SSE stream suggests to its client (its ``retry`` field)."""

_INVALID_REQUEST = -32600
"""JSON-RPC's Invalid Request; also what the SDK answers for its own transport refusals (an
unknown session). A refused token gets it too: -32000 and -32001 mean "connection closed" and
"timed out" to MCP clients, which would retry instead of reporting the refusal."""


# The service behind the tools ------------------------------------------------------------------


class _FleetService:
    """What the tools and resources do, over one open fleet.

    It remembers the tasks it started so that they can be cancelled when the server stops;
    tasks started elsewhere (earlier runs in the same store) are read from the store.
    """

    def __init__(self, fleet: Fleet, server: MCPServer) -> None:
        self.fleet = fleet
        self.server = server
        self.started: dict[str, TaskHandle] = {}

    # Lookup ----------------------------------------------------------------------------------

    def handle(self, task_id: str) -> TaskHandle | None:
        """The live handle of a task this fleet runs, if it runs it."""
        try:
            return self.fleet.handle(task_id)
        except FleetStateError:
            return None

    def task(self, task_id: str) -> tuple[str, str, TaskGraph, TaskHandle | None]:
        """Id, status, graph and (when it runs here) handle of a task; a unique prefix will do.

        Raises:
            ToolError: no such task, in this fleet or in its store.
        """
        task_id = task_id.strip()
        try:
            found = self.fleet.task(task_id)
        except TaskNotFound:
            raise ToolError(f"unknown task id {task_id!r}") from None
        return found.task_id, found.status, found.graph, found.handle

    # Tools -----------------------------------------------------------------------------------

    async def submit(self, graph: Any, text: str | None, ctx: Context) -> TaskHandle:
        built = build_graph(graph, text)
        if text is not None and self.fleet.planner is not None:
            try:
                built = (await self.fleet.plan(text)).graph
            except FleetmindError as exc:  # no valid plan, or the model is unreachable
                raise ToolError(f"cannot plan this request: {exc.message}") from None
        try:
            # Routing may embed texts (and load the model the first time): off the loop.
            await asyncio.to_thread(self.fleet.check, built)
            handle = self.fleet.submit(built, metadata={"via": "mcp"})
        except FleetmindError as exc:
            raise ToolError(f"cannot run this task: {exc.message}") from None
        self.started[handle.task_id] = handle
        self._add_graph_resource(handle.task_id, built.name)
        await ctx.notify_resources_changed()
        return handle

    async def follow(self, handle: TaskHandle, ctx: Context) -> None:
        """Report every event of a task as MCP progress until the task ends.

        The values come from a :class:`ProgressMeter`: larger with every notification, out of
        a total that is the number of subtasks. The first notification names the task, so
        that a client can cancel it while it waits.
        """
        meter = ProgressMeter()
        progress, total = meter.start(len(handle.graph))
        await ctx.report_progress(progress, total, f"task {handle.task_id} submitted")
        async with contextlib.aclosing(handle.events()) as events:
            async for event in events:
                progress, total = meter.advance(event, len(handle.graph))
                message = describe_event(event, style="notice") or event.kind
                await ctx.report_progress(progress, total, message)

    def state(self, task_id: str) -> TaskState:
        task_id, status, graph, _ = self.task(task_id)
        return task_state(task_id, status, graph)

    async def result(self, task_id: str, timeout_s: float) -> TaskOutcome:
        task_id, status, graph, handle = self.task(task_id)
        if handle is None:
            return task_outcome(task_id, status, graph, finished=has_ended(status))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended(handle), timeout_s)
        return task_outcome(task_id, handle.graph.status, handle.graph, finished=handle.done())

    async def cancel(self, task_id: str, reason: str) -> TaskOutcome:
        task_id, status, graph, handle = self.task(task_id)
        if handle is None:
            if status == "running":
                raise ToolError(
                    f"task {task_id} is not running in this server, so it cannot be cancelled here"
                )
            if status == "interrupted":
                raise ToolError(
                    f"task {task_id} is interrupted, not running: "
                    f"`fleetmind resume {task_id}` continues it"
                )
            return task_outcome(task_id, status, graph, finished=True)
        await self._cancel(handle, reason)
        return task_outcome(task_id, handle.graph.status, handle.graph, finished=handle.done())

    def agents(self) -> AgentList:
        profiles = sorted(self.fleet.profiles, key=lambda p: p.id)
        return AgentList(agents=[agent_info(p) for p in profiles])

    # Resources -------------------------------------------------------------------------------

    def graph_json(self, task_id: str) -> str:
        try:
            task_id, status, graph, _ = self.task(task_id)
        except ToolError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        data = {"task_id": task_id, "status": status, **graph.to_dict()}
        return dumps_json(data)

    def tasks_json(self) -> str:
        records = self.fleet.store.tasks(50)
        return dumps_json(
            {
                "tasks": [
                    {
                        "task_id": r.id,
                        "name": r.name,
                        "status": r.status,
                        "created_at": r.created_at,
                        "graph_uri": graph_uri(r.id),
                    }
                    for r in records
                ]
            }
        )

    def _add_graph_resource(self, task_id: str, name: str) -> None:
        async def read() -> str:
            # Async, so that the SDK reads it on the loop that owns the live graph, not in
            # a worker thread.
            return self.graph_json(task_id)

        self.server.add_resource(
            FunctionResource(
                uri=graph_uri(task_id),
                name=f"task {task_id}",
                title=f"{name} (task {task_id})",
                description="The task's graph and the state of every subtask.",
                mime_type="application/json",
                fn=read,
            )
        )

    # Lifecycle -------------------------------------------------------------------------------

    async def ended(self, handle: TaskHandle) -> None:
        """Wait for a task to end; how it ended is read from its graph, not from here."""
        with contextlib.suppress(FleetmindError):
            await handle.result()

    async def _cancel(self, handle: TaskHandle, reason: str) -> None:
        with contextlib.suppress(FleetmindError):
            await handle.cancel(reason)

    async def stop(self) -> None:
        """Cancel the tasks this server started that are still running, and wait for them."""
        async with asyncio.TaskGroup() as tg:
            for handle in self.started.values():
                if not handle.done():
                    tg.create_task(self._cancel(handle, _STOP_REASON))


# The server ----------------------------------------------------------------------------------

_INSTRUCTIONS = """\
This server runs tasks on a fleet of agents. A task is a graph of subtasks: submit one with
submit_task (a graph definition, or plain words: planned into a graph when the fleet has a
model to plan with, else one subtask), follow it with get_task,
wait for its outputs with get_result, stop it with cancel_task. list_agents says which agents
there are and what they can do. Each task's graph is also a resource:
fleetmind://tasks/{task_id}/graph. The prompt plan_task asks a model to write a task graph
for this fleet's agents that reaches a goal."""

_SUBMIT_DESCRIPTION = """\
Start a task on the fleet and return its id and state.

Give exactly one of:
- `graph`: a task graph definition (an object, or the same as a JSON string):
  {"name": "...", "subtasks": [{"id": "a", "description": "...", "skill": "...",
  "agent": "...", "inputs": {...}, "timeout_s": 30, "constraints": {...}}, ...],
  "dependencies": [{"source": "a", "target": "b"},
  {"source": "a", "target": "c", "kind": "data", "input": "text", "output": "field"}]}.
  A subtask goes to its `agent` when given, else to an agent offering its `skill`, else to
  the agent whose description fits it best. A control dependency makes the target wait; a data
  dependency also feeds the source's output (or its field `output`) to the target's input
  named `input`. Optional `condition`: success (default), always, failure.
- `text`: plain words. When the fleet has a planner (a model is configured), the text is
  planned into a task graph of the fleet's agents, and a subtask that fails for good is
  replanned. Without one, the text becomes a task of one subtask whose description is the
  text; the fleet's router picks the agent that fits it best.

With `wait: true` the call follows the task to its end, sending a progress notification for
every event (subtask started, progress, done, failed, ...), and returns the final state.
Progress counts subtasks: a finished one is worth 1, a running one the share of its work its
agent reports; it grows with every notification, and total (the number of subtasks) is
reached when the task ends."""


def build_mcp_server(fleet: Fleet) -> MCPServer:
    """An MCP server whose tools and resources drive ``fleet``.

    The fleet must be open (``async with fleet:``) while the server handles requests;
    :func:`serve_mcp` does that for you.
    """
    return _build(fleet)[0]


class _FleetMCPServer(MCPServer):
    """An ``MCPServer`` that answers a caller's mistakes with the code the spec gives them.

    A tool or prompt name the server does not have is a protocol error, ``-32602 Invalid
    params`` (the SDK makes an unknown tool a tool result and an unknown prompt an internal
    error with a traceback in the log), and so is a prompt call without its required
    arguments. Arguments that do not match a tool's input schema stay a tool error, as the
    spec asks, so that a model can correct itself, but in one line rather than pydantic's
    multi-line dump.

    Over HTTP with protocol 2025-11-25, a call that runs longer than ``stream_window_s`` has
    its SSE stream closed by the server; the client resumes it with ``Last-Event-ID`` (see
    :mod:`fleetmind.serve._mcp_events`). Elsewhere closing the stream does nothing.
    """

    stream_window_s: float | None = None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if name not in {tool.name for tool in await self.list_tools()}:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")
        try:
            async with self._stream_window(context):
                return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            problem = describe_validation_error(cause, show_input=False, count_more=True)
            # The cause is kept: the SDK logs the names of the rejected fields from it.
            raise ToolError(f"Error executing tool {name}: invalid arguments: {problem}") from cause

    @contextlib.asynccontextmanager
    async def _stream_window(self, context: Context[Any, Any] | None) -> AsyncIterator[None]:
        """While inside, close the call's SSE stream once it has been open for the window."""
        window = self.stream_window_s
        if window is None or context is None:
            yield
            return

        async def close_later() -> None:
            await asyncio.sleep(window)
            await context.close_sse_stream()

        closer = asyncio.create_task(close_later())
        try:
            yield
        finally:
            closer.cancel()

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        context: Context[Any, Any] | None = None,
    ) -> GetPromptResult | InputRequiredResult:
        prompt = next((p for p in await self.list_prompts() if p.name == name), None)
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}")
        given = arguments or {}
        missing = [a.name for a in prompt.arguments or [] if a.required and a.name not in given]
        if missing:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"prompt {name} needs the argument(s): {', '.join(missing)}",
            )
        return await super().get_prompt(name, arguments, context)


def _build(fleet: Fleet, stream_window_s: float | None = None) -> tuple[MCPServer, _FleetService]:
    from fleetmind._version import __version__

    server = _FleetMCPServer(
        name="fleetmind",
        title="fleetmind",
        description="Run task graphs on a fleet of agents.",
        instructions=_INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    server.stream_window_s = stream_window_s
    service = _FleetService(fleet, server)
    add_prompts(server, fleet)

    @server.tool(description=_SUBMIT_DESCRIPTION)
    async def submit_task(
        ctx: Context,
        graph: Annotated[
            Any,
            # Checked by build_graph, so that any wrong value gets a one-line answer.
            WithJsonSchema(
                {
                    "anyOf": [{"type": "object"}, {"type": "string"}, {"type": "null"}],
                    "description": "A task graph definition (object or JSON string).",
                }
            ),
        ] = None,
        text: Annotated[
            str | None,
            Field(description="The task in plain words (planned when the fleet has a model)."),
        ] = None,
        wait: Annotated[
            bool, Field(description="Follow the task to its end, reporting progress.")
        ] = False,
    ) -> TaskState:
        handle = await service.submit(graph, text, ctx)
        if wait:
            await service.follow(handle, ctx)
            await service.ended(handle)
        return service.state(handle.task_id)

    @server.tool()
    async def get_task(
        task_id: Annotated[str, Field(description="The task's id (from submit_task).")],
    ) -> TaskState:
        """A task's status, and every subtask's status, agent, output and error."""
        return service.state(task_id)

    @server.tool()
    async def get_result(
        task_id: Annotated[str, Field(description="The task's id (from submit_task).")],
        timeout_s: Annotated[
            float, Field(ge=0, le=3600, description="How long to wait for the end, seconds.")
        ] = 30.0,
    ) -> TaskOutcome:
        """Wait up to `timeout_s` for a task to end; its outputs and errors by subtask id.

        `finished` is false when the task was still running when the time was up.
        """
        return await service.result(task_id, timeout_s)

    @server.tool()
    async def list_agents() -> AgentList:
        """The fleet's agents: id, name, description, skills and tier (device, edge, cloud)."""
        return service.agents()

    @server.tool()
    async def cancel_task(
        task_id: Annotated[str, Field(description="The task's id (from submit_task).")],
        reason: Annotated[str, Field(description="Why; kept with the task.")] = "cancelled via MCP",
    ) -> TaskOutcome:
        """Cancel a running task and wait until its running subtasks have stopped.

        A task that has already ended is left as it is; its outcome is returned.
        """
        return await service.cancel(task_id, reason)

    @server.resource(
        TASKS_URI,
        name="tasks",
        title="Recent tasks",
        description="The 50 most recent tasks in the store, newest first.",
        mime_type="application/json",
    )
    async def tasks() -> str:
        return service.tasks_json()

    @server.resource(
        GRAPH_URI_TEMPLATE,
        name="task-graph",
        title="A task's graph",
        description="A task's subtasks, dependencies and the state of every subtask.",
        mime_type="application/json",
    )
    async def task_graph(task_id: str) -> str:
        return service.graph_json(task_id)

    return server, service


# Serving -------------------------------------------------------------------------------------


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve_mcp`` handles signals on the loop.

    uvicorn re-raises a caught SIGTERM once it has shut down, which would kill the process
    before the fleet is closed and its tasks are marked as cancelled.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so that a busy port is a clear error, not a log line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def _check_envelope(scope: Scope, body: bytes) -> Refusal | None:
    """Refuse a POST whose JSON body is no JSON-RPC message, before the SDK reads it."""
    if scope["method"] != "POST":
        return None
    problem = _envelope_problem(body)
    if problem is None:
        return None
    text, request_id = problem
    return Refusal(400, _INVALID_REQUEST, f"Invalid Request: {text}", request_id)


def _envelope_problem(body: bytes) -> tuple[str, int | str | None] | None:
    """What makes a JSON body no JSON-RPC message, and its id if it has a usable one.

    None when it is a message, and also when it is not JSON at all: the SDK answers that with
    ``-32700 Parse error`` itself. A valid JSON-RPC object that is no message is Invalid
    Request (-32600); the SDK would call it Invalid params (-32602) and dump pydantic's errors.
    """
    try:
        data = pydantic_core.from_json(body)
    except ValueError:
        return None
    try:
        jsonrpc_message_adapter.validate_python(data, by_name=False)
    except ValidationError:
        pass
    else:
        return None
    if isinstance(data, list):
        return "batches are not supported; send one JSON-RPC message", None
    if not isinstance(data, dict):
        return "expected a JSON-RPC message object", None
    request_id = data.get("id")
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        request_id = None
    if data.get("jsonrpc") != "2.0":
        return '"jsonrpc" must be "2.0"', request_id
    if "method" not in data and "result" not in data and "error" not in data:
        return 'no "method"', request_id
    if "method" in data and not isinstance(data["method"], str):
        return '"method" must be a string', request_id
    if "params" in data and not isinstance(data["params"], dict):
        return '"params" must be an object', request_id
    return "not a JSON-RPC request, notification or response", request_id


@dataclass(frozen=True)
class _HttpSettings:
    """How the HTTP side serves: address, token, body limit, stream window."""

    host: str
    token: str | None
    max_body_bytes: int
    stream_window_s: float | None


def _http_app(server: MCPServer, settings: _HttpSettings) -> ASGIApp:
    """The server's streamable-HTTP app at ``/mcp``, behind the gate.

    On a loopback host the SDK also checks the ``Host`` and ``Origin`` headers against DNS
    rebinding. Its own body limit is set to the gate's, which answers first. Its streams are
    resumable (protocol 2025-11-25): events go to a :class:`StreamEvents` store, scoped to
    their session by :class:`SessionScopes` behind the gate.
    """
    events = StreamEvents(window_s=settings.stream_window_s)
    app = server.streamable_http_app(
        host=settings.host,
        max_request_body_size=settings.max_body_bytes,
        event_store=events,
        retry_interval=RETRY_MS,
    )
    token = settings.token
    return HttpGate(
        SessionScopes(app, events),
        token_check=case_blind_bearer(token) if token is not None else None,
        realm="mcp",
        unauthorized_code=_INVALID_REQUEST,
        max_body_bytes=settings.max_body_bytes,
        check_body=_check_envelope,
    )


async def _serve_http(server: MCPServer, sock: socket.socket, settings: _HttpSettings) -> None:
    app = _http_app(server, settings)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    web = _Uvicorn(config)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        # A second signal stops at once, without waiting for open connections.
        web.force_exit = web.should_exit
        web.should_exit = True

    with _on_signals(loop, stop):
        await web.serve(sockets=[sock])


@contextlib.contextmanager
def _on_signals(loop: asyncio.AbstractEventLoop, callback: Any) -> Iterator[None]:
    """Run ``callback`` on SIGINT and SIGTERM while inside (where the loop supports it)."""
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or a platform without loop signal handlers
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_mcp(
    fleet: Fleet,
    *,
    transport: Literal["stdio", "http"],
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    stream_window_s: float | None = None,
) -> None:
    """Serve ``fleet`` over MCP until the client goes away (stdio) or a signal arrives (http).

    The fleet stays open while serving. When serving ends, the tasks started over MCP that are
    still running are cancelled, and the fleet is closed.

    Args:
        fleet: The agents to serve (not yet open).
        transport: ``stdio``, or streamable ``http`` at ``/mcp``.
        host: The address to listen on (http).
        port: The port to listen on (http; 0: any free port).
        token: When given, HTTP clients must send ``Authorization: Bearer <token>``. Over
            stdio there is no HTTP layer to check it: the host that starts the process is
            trusted, so a token there is refused rather than silently ignored.
        max_body_bytes: Larger HTTP request bodies are refused with 413.
        stream_window_s: Over HTTP with protocol 2025-11-25, close a call's SSE stream after
            this many seconds; the client resumes it with ``Last-Event-ID``, and each resumed
            stream lasts as long again (None: a stream stays open until its answer).

    Raises:
        ConfigError: the HTTP address cannot be listened on, the token is empty, a token
            was given for stdio, or the stream window is not a positive number of seconds.
    """
    if token is not None and transport == "stdio":
        raise ConfigError(
            "a bearer token applies to HTTP only; over stdio the host that starts the server "
            "is trusted"
        )
    if token is not None and not token.strip():
        raise ConfigError("the MCP bearer token is empty")
    if stream_window_s is not None and not (math.isfinite(stream_window_s) and stream_window_s > 0):
        raise ConfigError(
            f"the stream window must be a positive number of seconds; got {stream_window_s}"
        )
    sock = _listen(host, port) if transport == "http" else None
    server, service = _build(fleet, stream_window_s)
    try:
        async with fleet:
            try:
                if sock is not None:
                    auth = " (bearer token required)" if token is not None else ""
                    print(
                        f"fleetmind: serving {len(fleet.agents)} agent(s) over MCP at "
                        f"http://{_url_host(host)}:{sock.getsockname()[1]}/mcp{auth}",
                        file=sys.stderr,
                        flush=True,
                    )
                    settings = _HttpSettings(host, token, max_body_bytes, stream_window_s)
                    await _serve_http(server, sock, settings)
                else:
                    await _serve_stdio(server)
            finally:
                await service.stop()
    finally:
        if sock is not None:
            sock.close()


async def _serve_stdio(server: MCPServer) -> None:
    """Serve over stdin/stdout until the client closes stdin."""
    await server.run_stdio_async()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

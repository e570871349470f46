"""The fleet as an MCP server: any MCP host can submit task graphs, follow them, read results.

```python
fleet = Fleet([summarise, translate], store="tasks.db")
await serve_mcp(fleet, transport="http", host="127.0.0.1", port=8765)   # serves /mcp
```

Tools: ``submit_task``, ``get_task``, ``get_result``, ``list_agents``, ``cancel_task``.
Resources: ``fleetmind://tasks`` (recent tasks) and ``fleetmind://tasks/{task_id}/graph`` (a
task's graph with the state of every subtask, as JSON).

A mistake of the caller — an unknown task id, a graph that does not validate, a subtask no
agent can take — comes back as a tool result with ``is_error`` set and one line saying what is
wrong; the server keeps serving. Only this module (and the CLI that loads it) imports ``mcp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, assert_never

import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.mcpserver.resources import FunctionResource
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema
from pydantic_core import to_jsonable_python

from fleetmind.agents import AgentProfile
from fleetmind.errors import ConfigError, FleetmindError, FleetStateError, TaskNotFound
from fleetmind.orchestrator import (
    Dependency,
    Fleet,
    Subtask,
    SubtaskCancelled,
    SubtaskDone,
    SubtaskFailed,
    SubtaskSkipped,
    SubtaskStatus,
    TaskEvent,
    TaskGraph,
    TaskHandle,
)

TASKS_URI = "fleetmind://tasks"
GRAPH_URI_TEMPLATE = "fleetmind://tasks/{task_id}/graph"
_DEFINITION_KEYS = frozenset({"name", "subtasks", "dependencies"})
_TEXT_SUBTASK_ID = "request"
_STOP_REASON = "the MCP server stopped"


def graph_uri(task_id: str) -> str:
    """The resource URI of a task's graph."""
    return GRAPH_URI_TEMPLATE.format(task_id=task_id)


# Results ------------------------------------------------------------------------------------
# Pydantic models, so that clients receive structured content with an output schema.


class SubtaskInfo(BaseModel):
    """One subtask of a task, as it stands."""

    id: str
    description: str
    status: str
    agent: str | None = None
    attempts: int = 0
    output: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    """Why it was skipped, cancelled, or failed without running."""
    progress: str | None = None
    """The latest progress message of a running subtask."""


class TaskState(BaseModel):
    """A task: its status and every subtask's status, agent, output and error."""

    task_id: str
    name: str
    status: str
    """running, done, failed or cancelled."""
    finished: bool
    counts: dict[str, int]
    """How many subtasks are in each status."""
    subtasks: list[SubtaskInfo]
    graph_uri: str


class TaskOutcome(BaseModel):
    """How a task ended (or that it has not ended yet): outputs and errors by subtask id."""

    task_id: str
    status: str
    finished: bool
    outputs: dict[str, Any]
    errors: dict[str, dict[str, Any]]


class SkillInfo(BaseModel):
    """A skill an agent offers."""

    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)


class AgentInfo(BaseModel):
    """An agent of the fleet, as routing sees it."""

    id: str
    name: str
    description: str
    skills: list[SkillInfo]
    tier: str


class AgentList(BaseModel):
    """Every agent of the fleet."""

    agents: list[AgentInfo]


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
        handle = self.handle(task_id)
        if handle is None:
            resolve = getattr(self.fleet.store, "resolve_id", None)
            try:
                task_id = resolve(task_id) if resolve is not None and task_id else task_id
                handle = self.handle(task_id)
                if handle is None:
                    record, entries = self.fleet.store.load(task_id)
                    return task_id, record.status, TaskGraph.from_log(entries, record.name), None
            except TaskNotFound:
                raise ToolError(f"unknown task id {task_id!r}") from None
        return task_id, handle.graph.status, handle.graph, handle

    # Tools -----------------------------------------------------------------------------------

    async def submit(self, graph: Any, text: str | None, ctx: Context) -> TaskHandle:
        built = _build_graph(graph, text)
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

        ``progress`` counts finished subtasks and ``total`` is the number of subtasks, which may
        grow while the graph is edited. The first notification names the task, so that a
        client can cancel it while it waits.
        """
        await ctx.report_progress(0, len(handle.graph), f"task {handle.task_id} submitted")
        finished: set[str] = set()
        async with contextlib.aclosing(handle.events()) as events:
            async for event in events:
                if isinstance(event, _FINISHING_EVENTS):
                    finished.add(event.subtask_id)
                total = max(len(handle.graph), len(finished))
                await ctx.report_progress(len(finished), total, event_message(event))

    def state(self, task_id: str) -> TaskState:
        task_id, status, graph, _ = self.task(task_id)
        return task_state(task_id, status, graph)

    async def result(self, task_id: str, timeout_s: float) -> TaskOutcome:
        task_id, status, graph, handle = self.task(task_id)
        if handle is None:
            return task_outcome(task_id, status, graph, finished=status != "running")
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
        return _dumps(data)

    def tasks_json(self) -> str:
        records = self.fleet.store.tasks(50)
        return _dumps(
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


_FINISHING_EVENTS = (SubtaskDone, SubtaskFailed, SubtaskSkipped, SubtaskCancelled)


# Conversions ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Agent outputs may be any Python object: send what JSON can carry, else its repr."""
    return to_jsonable_python(value, fallback=repr)


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(_jsonable(data), indent=2)


def task_state(task_id: str, status: str, graph: TaskGraph) -> TaskState:
    """The :class:`TaskState` of a graph."""
    subtasks = []
    for subtask in graph:
        st = graph.state(subtask.id)
        subtasks.append(
            SubtaskInfo(
                id=subtask.id,
                description=subtask.description,
                status=st.status.value,
                agent=st.agent,
                attempts=st.total_attempts,
                output=_jsonable(st.output),
                error=_jsonable(st.error),
                reason=st.reason or None,
                progress=(st.progress or None) if st.status is SubtaskStatus.RUNNING else None,
            )
        )
    return TaskState(
        task_id=task_id,
        name=graph.name,
        status=status,
        finished=status != "running",
        counts=graph.counts(),
        subtasks=subtasks,
        graph_uri=graph_uri(task_id),
    )


def task_outcome(task_id: str, status: str, graph: TaskGraph, *, finished: bool) -> TaskOutcome:
    """The :class:`TaskOutcome` of a graph."""
    outputs: dict[str, Any] = {}
    errors: dict[str, dict[str, Any]] = {}
    for subtask in graph:
        st = graph.state(subtask.id)
        if st.status is SubtaskStatus.DONE:
            outputs[subtask.id] = _jsonable(st.output)
        elif st.status is SubtaskStatus.FAILED and st.error:
            errors[subtask.id] = _jsonable(st.error)
    return TaskOutcome(
        task_id=task_id, status=status, finished=finished, outputs=outputs, errors=errors
    )


def agent_info(profile: AgentProfile) -> AgentInfo:
    """The :class:`AgentInfo` of a profile."""
    return AgentInfo(
        id=profile.id,
        name=profile.display_name,
        description=profile.description,
        skills=[
            SkillInfo(name=s.name, description=s.description, tags=list(s.tags))
            for s in profile.skills
        ],
        tier=profile.tier.value,
    )


def event_message(event: TaskEvent) -> str:
    """One line saying what happened, for a progress notification."""
    match event.kind:
        case "subtask_ready":
            return f"{event.subtask_id}: ready"
        case "subtask_routed":
            best = event.candidates[0]["agent_id"] if event.candidates else "nobody"
            return f"{event.subtask_id}: routed, best candidate {best}"
        case "subtask_started":
            return f"{event.subtask_id}: started on {event.agent}"
        case "subtask_progress":
            share = f" ({event.fraction:.0%})" if event.fraction is not None else ""
            return f"{event.subtask_id}: {event.message}{share}"
        case "subtask_retried":
            return f"{event.subtask_id}: {event.agent} failed, attempt {event.attempt} follows"
        case "subtask_reassigned":
            return f"{event.subtask_id}: {event.agent} gave up, trying the next agent"
        case "subtask_done":
            return f"{event.subtask_id}: done by {event.agent}"
        case "subtask_failed":
            return f"{event.subtask_id}: failed: {event.error.get('message', '')}"
        case "subtask_skipped":
            return f"{event.subtask_id}: skipped: {event.reason}"
        case "subtask_cancelled":
            return f"{event.subtask_id}: cancelled: {event.reason}"
        case "graph_edited":
            return f"graph edited{f' by {event.by}' if event.by else ''}"
        case "task_finished":
            return f"task {event.status}"
        case _:
            assert_never(event.kind)


def _build_graph(graph: Any, text: str | None) -> TaskGraph:
    """The graph a ``submit_task`` call describes, or a ``ToolError`` saying what is wrong."""
    if (graph is None) == (text is None):
        raise ToolError("give exactly one of `graph` (a task graph definition) or `text`")
    if text is not None:
        words = " ".join(text.split())
        if not words:
            raise ToolError("`text` is empty; say what the task is")
        built = TaskGraph(words if len(words) <= 60 else words[:59] + "…")
        built.add_subtask(Subtask(id=_TEXT_SUBTASK_ID, description=text.strip()))
        return built
    data: Any = graph
    if isinstance(graph, str):
        try:
            data = json.loads(graph)
        except json.JSONDecodeError as exc:
            raise ToolError(
                f"invalid task graph: not JSON ({exc.msg}, line {exc.lineno})"
            ) from None
    if not isinstance(data, dict):
        raise ToolError("invalid task graph: expected an object with a 'subtasks' list")
    unknown = sorted(set(data) - _DEFINITION_KEYS)
    if unknown:
        raise ToolError(
            f"invalid task graph: unknown field(s) {', '.join(unknown)}; "
            "expected name, subtasks, dependencies"
        )
    subtasks, dependencies = data.get("subtasks"), data.get("dependencies") or []
    if not isinstance(subtasks, list) or not subtasks:
        raise ToolError("invalid task graph: 'subtasks' must be a non-empty list")
    if not isinstance(dependencies, list):
        raise ToolError("invalid task graph: 'dependencies' must be a list")
    # Validated one by one first, so that the message can say which entry is wrong.
    for where, model, items in (
        ("subtasks", Subtask, subtasks),
        ("dependencies", Dependency, dependencies),
    ):
        for i, item in enumerate(items):
            try:
                model.model_validate(item)
            except ValidationError as exc:
                raise ToolError(f"invalid task graph: {where}[{i}]: {_first_error(exc)}") from None
    try:
        return TaskGraph.from_definition(data)
    except FleetmindError as exc:
        raise ToolError(f"invalid task graph: {exc.message}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# The server ----------------------------------------------------------------------------------

_INSTRUCTIONS = """\
This server runs tasks on a fleet of agents. A task is a graph of subtasks: submit one with
submit_task (a graph definition, or plain text for a one-subtask task), follow it with get_task,
wait for its outputs with get_result, stop it with cancel_task. list_agents says which agents
there are and what they can do. Each task's graph is also a resource:
fleetmind://tasks/{task_id}/graph."""

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
- `text`: plain words. There is no planner yet, so the text becomes a task of one subtask
  whose description is the text; the fleet's router picks the agent that fits it best.

With `wait: true` the call follows the task to its end, sending a progress notification for
every event (subtask started, progress, done, failed, ...) with progress = finished subtasks
and total = subtasks, and returns the final state."""


def build_mcp_server(fleet: Fleet) -> MCPServer:
    """An MCP server whose tools and resources drive ``fleet``.

    The fleet must be open (``async with fleet:``) while the server handles requests;
    :func:`serve_mcp` does that for you.
    """
    return _build(fleet)[0]


def _build(fleet: Fleet) -> tuple[MCPServer, _FleetService]:
    from fleetmind import __version__

    server = MCPServer(
        name="fleetmind",
        title="fleetmind",
        description="Run task graphs on a fleet of agents.",
        instructions=_INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    service = _FleetService(fleet, server)

    @server.tool(description=_SUBMIT_DESCRIPTION)
    async def submit_task(
        ctx: Context,
        graph: Annotated[
            Any,
            # Checked by _build_graph, so that any wrong value gets a one-line answer.
            WithJsonSchema(
                {
                    "anyOf": [{"type": "object"}, {"type": "string"}, {"type": "null"}],
                    "description": "A task graph definition (object or JSON string).",
                }
            ),
        ] = None,
        text: Annotated[
            str | None, Field(description="The task in plain words (one subtask).")
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


async def _serve_http(server: MCPServer, sock: socket.socket, host: str) -> None:
    app = server.streamable_http_app(host=host)
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
) -> None:
    """Serve ``fleet`` over MCP until the client goes away (stdio) or a signal arrives (http).

    The fleet stays open while serving. When serving ends, the tasks started over MCP that are
    still running are cancelled, and the fleet is closed.

    Raises:
        ConfigError: the HTTP address cannot be listened on.
    """
    sock = _listen(host, port) if transport == "http" else None
    server, service = _build(fleet)
    try:
        async with fleet:
            try:
                if sock is not None:
                    print(
                        f"fleetmind: serving {len(fleet.agents)} agent(s) over MCP at "
                        f"http://{_url_host(host)}:{sock.getsockname()[1]}/mcp",
                        file=sys.stderr,
                        flush=True,
                    )
                    await _serve_http(server, sock, host)
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

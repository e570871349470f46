"""Fleet: the agents you have, and the tasks you run on them.

```python
fleet = Fleet([summarise, translate], store="tasks.db")
result = await fleet.run(graph)                 # run to the end

async with fleet:                               # or run several tasks side by side
    handle = fleet.submit(graph)
    async for event in handle.events():
        ...
    result = await handle.result()
```
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetmind._task_log import LogEntry, SubtaskAnswered
from fleetmind._task_model import Subtask
from fleetmind.agents import CONFIGURE_HINT, Agent, AgentProfile, IncomingMessage, LLMClient
from fleetmind.agents.remote import ResultSource
from fleetmind.errors import (
    AgentError,
    ConfigError,
    FleetmindError,
    FleetStateError,
    LeaseLost,
    ModelNotConfigured,
    NotWaitingForInput,
    StoreError,
    TaskNotFound,
)
from fleetmind.memory import MemoryStore
from fleetmind.orchestrator._checkpoints import Checkpoints
from fleetmind.orchestrator._directory import AgentDirectory
from fleetmind.orchestrator._engine import Engine
from fleetmind.orchestrator._episodes import remember_task
from fleetmind.orchestrator._fleet_stored import (
    claim_resumable,
    new_task,
    open_memory,
    prepare_resume,
    stored_message,
)
from fleetmind.orchestrator._fleet_view import FleetView
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._mcp_requests import MCPRequests
from fleetmind.orchestrator._ownership import Ownership, Replica
from fleetmind.orchestrator._planner import BoundReplanner, Plan, Planner
from fleetmind.orchestrator._preflight import check_runnable
from fleetmind.orchestrator._router import Router, RouterContext, RoutingDecision, as_router
from fleetmind.orchestrator._semantic import SemanticRouter
from fleetmind.orchestrator._store import Store, TaskRecord
from fleetmind.orchestrator._store_open import open_store
from fleetmind.orchestrator._task_handle import TaskHandle, TaskSnapshot, waiting_questions
from fleetmind.orchestrator._task_result import TaskResult
from fleetmind.tools import ToolRegistry

if TYPE_CHECKING:
    from fleetmind.protocols import MCPAuth

log = logging.getLogger(__name__)


class Fleet:
    """A set of agents, a router that picks among them, and a store that remembers tasks.

    Args:
        agents: The agents to start with (more can join and leave at any time).
        router: Chooses agents for subtasks; routes by agent id or skill by default.
        store: A :class:`Store`, a path to a SQLite file, or None to keep tasks in memory.
        tools: Tools every agent may call through ``ctx.tools``: a :class:`ToolRegistry`, or
            functions to put in a new one.
        mcp_servers: MCP servers whose tools join ``tools`` (see :meth:`add_mcp_server`).
        planner: Turns requests in plain words into task graphs (:meth:`plan`, ``run("...")``)
            and replans a planned task when one of its subtasks fails for good.
        memory: The fleet's episodic and semantic memory: a :class:`MemoryStore`, a path for
            one, or True for one beside the task store (in memory for an in-memory store).
            Agents reach it as ``ctx.memory``; every finished task is recorded in it.
        sampling_model: The model that answers the MCP servers' sampling requests: one
            client, or one per tier (default: the planner's model). The servers' questions
            go to the user or an agent: see :attr:`mcp_requests`.
        replica: This fleet is one of several orchestrator replicas sharing ``store``: it
            drives its tasks under leases, renewed while it is open (``async with fleet``),
            and takes over the tasks of a replica that stops renewing its own (see
            :class:`Replica` and :meth:`on_takeover`).

    Raises:
        ConfigError: ``replica`` is given but the store cannot be shared.
    """

    def __init__(
        self,
        agents: Iterable[Agent] = (),
        *,
        router: Router | None = None,
        store: Store | str | Path | None = None,
        tools: ToolRegistry | Iterable[Callable[..., Any]] | None = None,
        mcp_servers: Iterable[Any] = (),
        planner: Planner | None = None,
        memory: MemoryStore | str | Path | bool | None = None,
        sampling_model: LLMClient | Mapping[str, LLMClient] | None = None,
        replica: Replica | None = None,
    ) -> None:
        self._directory = AgentDirectory()
        self.store: Store = open_store(store)
        keeps_files = self.store.sibling(".checkpoints.db") is not None
        self._closes_store = not isinstance(store, Store) and not keeps_files
        """Opened here from a URL: closed with the fleet (a file's store stays readable)."""
        if replica is not None and not self.store.shared:
            raise ConfigError(
                f"replica {replica.id!r} needs a store that replicas can share (PostgreSQL, "
                f"SQLite); {type(self.store).__name__} keeps no leases"
            )
        self.replica = replica
        """This fleet as one of several replicas sharing its store, or None."""
        self._ownership = (
            None
            if replica is None
            else Ownership(replica, self.store, self._adopt, lambda: bool(self._drivers))
        )
        self._takeover_callbacks: list[Callable[[TaskHandle], None]] = []
        self.memory: MemoryStore | None = open_memory(memory, self.store)
        """The fleet's episodic and semantic memory (None: it keeps none)."""
        self.planner = planner
        self.agent_wait_s = 0.0
        """How long a subtask no agent can take waits for one to join before it fails (a
        fleet with devices waits for them to come back; see :class:`MqttFleetLink`)."""
        self.result_sources: list[ResultSource] = []
        """Where answers to attempts made before a crash may wait (the fleet link's)."""
        self.tools: ToolRegistry = (
            tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools or ())
        )
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._opened = asyncio.Event()
        self.mcp_requests = MCPRequests(
            lambda: self.agents,
            self.run,
            models=sampling_model or (planner.model if planner is not None else None),
        )
        """How the fleet answers its MCP servers' sampling requests and questions."""
        self.mcp_requests.bind_all(self.tools)
        for server in mcp_servers:
            self.add_mcp_server(server)
        self.router: Router = as_router(router) if router is not None else SemanticRouter()
        self.router.bind(RouterContext(self._directory.load, self._online, self.store))
        initial = list(agents)
        ids = [a.id for a in initial if isinstance(a, Agent)]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise AgentError(f"two agents share the id {duplicates[0]!r}; agent ids are unique")
        for agent in initial:
            self._directory.add(agent)
        self._agents_changed(added=[a.profile for a in initial])
        self._tg: asyncio.TaskGroup | None = None
        self._state = "new"
        self._handles: OrderedDict[str, TaskHandle] = OrderedDict()
        """Running tasks' handles, then the last ``_KEPT_FINISHED`` finished ones (a
        long-running ``serve`` must not keep every task it ever ran)."""
        self._drivers: set[asyncio.Task[None]] = set()
        self._running: set[str] = set()

    # Agents -------------------------------------------------------------------------------

    def add(self, agent: Agent) -> None:
        """Add an agent, or replace the agent with the same id by a new version.

        A profile that changed without a higher version gets the next version number.
        """
        self._directory.add(agent)
        self._agents_changed(added=[agent.profile])

    def remove(self, agent_id: str) -> Agent:
        """Remove an agent; subtasks waiting for it are routed again."""
        agent = self._directory.remove(agent_id)
        self._agents_changed(removed=[agent_id])
        return agent

    async def add_a2a_agent(
        self,
        url: str,
        *,
        token: str | None = None,
        agent_id: str | None = None,
        tier: str | None = None,
    ) -> Agent:
        """Add a remote A2A agent: its card is fetched, its skills become its profile.

        Subtasks are routed to it like to any other agent; it is streamed to when its card
        offers streaming, and its remote task is cancelled when ours is. Its connection closes
        with the fleet.

        Args:
            url: The agent's base URL (where ``/.well-known/agent-card.json`` is served).
            token: A bearer token, for agents whose card asks for one.
            agent_id: Its id in this fleet (default: from the card's name).
            tier: Its tier for routing constraints (default: ``cloud``).

        Raises:
            ConfigError: No A2A agent card at ``url``.
        """
        from fleetmind.agents.remote import connect_a2a_agent

        remote = await connect_a2a_agent(url, token=token, agent_id=agent_id, tier=tier)
        try:
            if self.agent(remote.id) is not None:
                raise AgentError(
                    f"the fleet already has an agent {remote.id!r}; give the A2A agent another "
                    "id with agent_id="
                )
            self.add(remote)
        except BaseException:
            await remote.aclose()
            raise
        self.on_close(remote.aclose)
        return remote

    def add_mcp_server(self, server: Any, *, prefix: str = "", auth: MCPAuth | None = None) -> None:
        """Give the fleet's agents the tools of an MCP server (``ctx.tools``).

        Args:
            server: A command line (``"python server.py"``) or URL (``"http://host/mcp"``), a
                mapping (``{"name", "command", "args", "env"}`` or ``{"name", "url",
                "headers"}``), or an ``MCPServerConfig``. The server starts on first use, is
                reused by every task, restarted once if it dies, and stopped with the fleet.
            prefix: Put before each of its tool names, so two servers' tools cannot clash.
            auth: For a URL that requires OAuth: where its tokens are kept (those of
                ``fleetmind mcp login`` are in ``<data dir>/mcp_auth``) and whether the user
                may be asked in a browser (see :class:`~fleetmind.protocols.MCPAuth`).

        Raises:
            ConfigError: The server description is invalid.
        """
        from fleetmind.tools import MCPServerConfig, MCPToolSource

        source = MCPToolSource(MCPServerConfig.parse(server), prefix=prefix, auth=auth)
        self.tools.add_source(source)
        self.mcp_requests.bind(source)
        self.on_close(source.aclose)

    def _agents_changed(
        self, added: list[AgentProfile] | None = None, removed: list[str] | None = None
    ) -> None:
        self.router.agents_changed(added=added or [], removed=removed or [])

    def _online(self, agent_id: str) -> bool:
        agent = self._directory.get(agent_id)
        return agent is not None and agent.online

    def agent(self, agent_id: str) -> Agent | None:
        """The agent with this id, if it is in the fleet."""
        return self._directory.get(agent_id)

    @property
    def agents(self) -> list[Agent]:
        """Every agent in the fleet."""
        return list(self._directory)

    @property
    def profiles(self) -> list[AgentProfile]:
        """Every agent's profile."""
        return list(self._directory.profiles.values())

    def route(self, subtask: Subtask) -> RoutingDecision:
        """Ask the router where a subtask would go now (``NoCapableAgent`` if nowhere)."""
        return self.router.route(subtask, self._directory.profiles)

    async def aroute(self, subtask: Subtask) -> RoutingDecision:
        """Like :meth:`route`, as a task would route it: with the router's review by a
        language model first, when the router has a reviewer."""
        await self.router.review([subtask], self._directory.profiles)
        return self.router.route(subtask, self._directory.profiles)

    def view(self) -> FleetView:
        """The fleet as the planner sees it: agents, skills, tiers, costs and inputs."""
        return FleetView.of(self.agents, self.route)

    async def plan(self, request: str, *, name: str | None = None) -> Plan:
        """Plan a request in plain words into a task graph on this fleet (nothing runs yet).

        Raises:
            ModelNotConfigured: the fleet has no planner.
            PlanningError: the planner found no valid plan within its rounds.
            ModelError: the planner's model could not be reached.
        """
        if self.planner is None:
            raise ModelNotConfigured(
                "this fleet has no planner to turn plain words into a task graph: give it "
                f"one, Fleet(..., planner=Planner(model)); from the command line, {CONFIGURE_HINT}"
            )
        past: list[str] = []
        if self.memory is not None:
            found = await asyncio.to_thread(
                self.memory.recall, request, layer="episodic", limit=6, recency=0.05
            )
            past = [r.item.text for r in found if r.item.kind in ("task", "subtask")][:4]
        return await self.planner.plan(request, self.view(), name=name, past=past)

    def check(self, graph: TaskGraph) -> None:
        """Raise if some subtask of ``graph`` cannot be routed or lacks a required input.

        Subtasks described in words are embedded on this thread first (a model call that may
        take a while); :meth:`acheck` embeds them off the event loop.
        """
        check_runnable(graph, self._directory, self.router)

    async def acheck(self, graph: TaskGraph) -> None:
        """Like :meth:`check`, with the router's preparation (embedding the words of the
        subtasks, a model call) in a worker thread, so the event loop keeps running."""
        pending = [s for s in graph if not graph.state(s.id).status.has_started]
        if any(s.agent is None for s in pending):
            # A subtask that names its agent is not routed: for a graph of only such
            # subtasks (a served agent's), the thread hop would be pure cost.
            await asyncio.to_thread(self.router.prepare, pending)
        check_runnable(graph, self._directory, self.router)

    def task(self, task_id: str) -> TaskSnapshot:
        """A task this fleet runs or its store keeps; a unique prefix of its id will do.

        Raises:
            TaskNotFound: no such task (or the prefix fits several).
        """
        if not task_id:
            raise TaskNotFound("no task id given")
        handle = self._handles.get(task_id)
        if handle is None:
            task_id = self.store.resolve_id(task_id)
            handle = self._handles.get(task_id)
        if handle is not None:
            return TaskSnapshot(task_id, handle.graph.status, handle.graph, handle)
        record, entries = self.store.load(task_id)
        return TaskSnapshot(task_id, record.status, TaskGraph.from_log(entries, record.name), None)

    def load(self, agent_id: str) -> tuple[int, int]:
        """Subtasks an agent is running now, and how many it may run at once."""
        return self._directory.load(agent_id)

    # Lifecycle ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the fleet is entered (``async with fleet``) and takes submitted tasks."""
        return self._state == "open"

    async def wait_open(self) -> None:
        """Return once the fleet is entered (at once if it is)."""
        await self._opened.wait()

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the fleet closes (last registered, first run).

        Resources the fleet's agents share — MCP server processes, A2A connections, a broker
        link — register here so that they end with the fleet and not with the first task.
        """
        self._closers.append(closer)

    async def aclose(self) -> None:
        """Close what registered with :meth:`on_close`; safe to call more than once."""
        closers, self._closers = self._closers[::-1], []
        errors: list[Exception] = []
        for closer in closers:
            try:
                await closer()
            except Exception as exc:  # one failing closer must not leave the others open
                errors.append(exc)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> Fleet:
        if self._state != "new":
            raise FleetStateError(f"this fleet is {self._state}; a fleet is entered once")
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._state = "open"
        self._opened.set()
        if self._ownership is not None:  # its first beat claims what waits for this replica
            self._tg.create_task(
                self._ownership.run(), name=f"replica {self._ownership.replica.id}"
            )
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Wait for submitted tasks; if the body raised, cancel them and re-raise as it was.

        A replica's tasks are not cancelled but handed over: its engines stop without writing,
        remote attempts keep running on their devices for the next owner to join, and the
        leases are released. The other replicas take the tasks over at their next heartbeat
        (within a third of their lease)."""
        assert self._tg is not None
        if self._ownership is not None:
            self._ownership.close()
            if exc is not None and self._ownership.replica.adopt:  # else cancelled, as ever
                for engine in list(self._ownership.owned.values()):
                    engine.hand_over()  # before their drivers are cancelled below
        try:
            if exc is None or isinstance(exc, asyncio.CancelledError):
                await self._tg.__aexit__(exc_type, exc, tb)
            else:
                # The user's own error propagates unwrapped (a TaskGroup would wrap it in an
                # ExceptionGroup); the tasks it interrupts are cancelled, as a TaskGroup would.
                for task in self._drivers:
                    task.cancel()
                await self._tg.__aexit__(None, None, None)
        finally:
            self._state = "closed"
            self._opened.clear()
            self._tg = None
            if self._ownership is not None:  # the leases of tasks that never started to run
                await self._ownership.release_all()
            try:
                await self.aclose()
            finally:
                if self._closes_store:
                    await asyncio.to_thread(self.store.close)

    # Tasks --------------------------------------------------------------------------------

    def _engine(
        self,
        graph: TaskGraph,
        task_id: str | None,
        source: str | None,
        metadata: dict[str, Any] | None,
        replan: bool | None = None,
        message: IncomingMessage | None = None,
    ) -> Engine:
        record, live = new_task(graph, task_id, source, metadata, message, self.replica)
        if self.replica is None:  # called as it always was: older stores know no leases
            self.store.create_task(record, live.log)
        else:
            self.store.create_task(record, live.log, lease_s=self.replica.lease_s)
        return self._created(record, live, message, replan)

    def _created(
        self,
        record: TaskRecord,
        live: TaskGraph,
        message: IncomingMessage | None,
        replan: bool | None,
    ) -> Engine:
        # A replica's task is leased to it from the start, at epoch 1 (the store's first claim).
        epoch = None if self.replica is None else 1
        return self._new_engine(record.id, live, message, replan, epoch=epoch)

    def resume_engine(self, task_id: str) -> Engine:
        """An engine that continues a stored task where its log ends (one that was interrupted,
        or whose process died while it ran).

        A replica claims the task first (see :class:`Replica`); :meth:`resume` does the
        store's work in a worker thread.

        Raises:
            FleetStateError: the task has ended, runs here already, or another replica drives it.
        """
        self._not_running_here(task_id)
        record, entries = self.store.load(task_id)
        epoch = claim_resumable(self.store, self.replica, record)
        graph, stopped_at = prepare_resume(self.store, record, entries, epoch)
        return self._resumed(record, graph, stopped_at, epoch)

    async def _aresume_engine(self, task_id: str) -> Engine:
        """:meth:`resume_engine`, with a replica's store work off the event loop."""
        if self.replica is None:  # a local store: no thread (nor its thread-safety) needed
            return self.resume_engine(task_id)
        self._not_running_here(task_id)
        record, entries = await asyncio.to_thread(self.store.load, task_id)

        def prepare() -> tuple[int | None, TaskGraph, float]:
            epoch = claim_resumable(self.store, self.replica, record)
            return (epoch, *prepare_resume(self.store, record, entries, epoch))

        epoch, graph, stopped_at = await asyncio.to_thread(prepare)
        return self._resumed(record, graph, stopped_at, epoch)

    def _not_running_here(self, task_id: str) -> None:
        if self._ownership is not None and self._ownership.running_here(task_id):
            raise FleetStateError(f"task {task_id} is running here already")

    def _resumed(
        self, record: TaskRecord, graph: TaskGraph, stopped_at: float, epoch: int | None
    ) -> Engine:
        """An engine for a stored task, made ready by :func:`prepare_resume`."""
        message = stored_message(record.metadata)
        return self._new_engine(record.id, graph, message, None, stopped_at=stopped_at, epoch=epoch)

    def _new_engine(
        self,
        task_id: str,
        graph: TaskGraph,
        message: IncomingMessage | None,
        replan: bool | None,
        *,
        stopped_at: float | None = None,
        epoch: int | None = None,
    ) -> Engine:
        engine = Engine(
            task_id,
            graph,
            directory=self._directory,
            router=self.router,
            store=self.store,
            tools=self.tools,
            checkpoints=self._checkpoints(),
            agent_wait_s=self.agent_wait_s,
            result_sources=self.result_sources,
            memory=self.memory,
            stopped_at=stopped_at,
            message=message,
            epoch=epoch,
            **self._replanning(graph, replan),
        )
        if epoch is not None:
            assert self._ownership is not None
            self._ownership.own(engine)  # leased from now: see _run_engine
        return engine

    def _replanning(self, graph: TaskGraph, replan: bool | None) -> dict[str, Any]:
        """The engine's replanner: the fleet's planner, for planned tasks unless told."""
        wanted = graph.request is not None if replan is None else replan
        if not wanted or self.planner is None:
            return {}
        return {
            "replanner": BoundReplanner(self.planner, self.view),
            "max_replans": self.planner.max_replans,
        }

    def _checkpoints(self) -> Checkpoints:
        """Where a task's LLM agents checkpoint their loops: beside a SQLite store, or in
        memory."""
        return Checkpoints(self.store.sibling(".checkpoints.db"))

    async def run(
        self,
        graph: TaskGraph | str,
        *,
        task_id: str | None = None,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        replan: bool | None = None,
    ) -> TaskResult:
        """Run a task to its end and return how it ended.

        Args:
            graph: A task graph, or a request in plain words for the fleet's planner.
            task_id: The task's id (a new one by default).
            source: Where the task came from, so that the CLI can resume it.
            metadata: Kept with the task in the store.
            replan: Ask the planner for an edit when a subtask fails for good (default: for
                planned tasks, when the fleet has a planner).
        """
        if isinstance(graph, str):
            graph = (await self.plan(graph)).graph
        return await self._run_engine(self._engine(graph, task_id, source, metadata, replan))

    async def resume(self, task_id: str) -> TaskResult:
        """Finish a stored task whose process stopped: done subtasks are not run again."""
        return await self._run_engine(await self._aresume_engine(task_id))

    async def _run_engine(self, engine: Engine) -> TaskResult:
        """Run a task's engine to its end, and record the task in the fleet's memory."""
        try:
            result = await engine.run()
        except LeaseLost:
            if self._ownership is not None and not engine.handed_over:
                self._ownership.disown(engine)  # another replica's now: not this one's to end
            raise
        except StoreError:  # the store failed a write: resumed once it answers again
            if self._ownership is not None and not engine.handed_over:
                self._ownership.stalled(engine)
            raise
        finally:
            # Ended, or stopped with the fleet (still running in the store): the lease ends
            # now, so that the task can be answered, or taken over, at once.
            if self._ownership is not None:
                await self._ownership.release(engine)
        if self.memory is not None and result.status != "cancelled":
            try:
                await remember_task(self.memory, result)
            except FleetmindError as exc:  # memory is a record, not part of the work
                log.warning(
                    "task %s ran, but recording it in memory failed: %s", result.task_id, exc
                )
        return result

    def submit(
        self,
        graph: TaskGraph,
        *,
        task_id: str | None = None,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        replan: bool | None = None,
        message: IncomingMessage | None = None,
    ) -> TaskHandle:
        """Start a task in the background of the fleet (inside ``async with fleet``).

        A request in plain words is planned first: ``fleet.submit((await fleet.plan(text)).graph)``.
        ``message`` is the protocol message the task answers (its agents' ``ctx.message``).
        """
        if self._state != "open" or self._tg is None:
            raise FleetStateError("submit() needs a started fleet: use `async with fleet:`")
        return self._start(self._engine(graph, task_id, source, metadata, replan, message))

    async def asubmit(
        self,
        graph: TaskGraph,
        *,
        task_id: str | None = None,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        replan: bool | None = None,
        message: IncomingMessage | None = None,
    ) -> TaskHandle:
        """Like :meth:`submit`, for a server's event loop: a replica creates the task in its
        store (across the network) from a worker thread, so that the loop runs on meanwhile."""
        if self._state != "open" or self._tg is None:
            raise FleetStateError("asubmit() needs a started fleet: use `async with fleet:`")
        record, live = new_task(graph, task_id, source, metadata, message, self.replica)
        if self.replica is None:  # a local store: written sooner than a thread gets the work
            self.store.create_task(record, live.log)
        else:
            lease_s = self.replica.lease_s
            await asyncio.to_thread(self.store.create_task, record, live.log, lease_s=lease_s)
        if self._state != "open":  # closed meanwhile: the task is left to the next replica
            raise FleetStateError(f"the fleet closed before task {record.id} could start here")
        return self._start(self._created(record, live, message, replan))

    async def _adopt(
        self, record: TaskRecord, entries: list[LogEntry], epoch: int, was: str | None
    ) -> bool:
        """Run a task this replica has just claimed (see :class:`Ownership`); whether it runs."""
        try:
            graph, stopped_at = await asyncio.to_thread(
                prepare_resume, self.store, record, entries, epoch
            )
            if self._state != "open":
                return False  # closing: the task is left to the next replica
            engine = self._resumed(record, graph, stopped_at, epoch)
        except FleetStateError as exc:
            log.info("task %s was not taken over: %s", record.id, exc)
            return False
        handle = self._start(engine)
        handle.taken_over_from = was
        me = None if self.replica is None else self.replica.id
        whose = "its own, from before" if was == me else f"replica {was}'s"
        log.info("replica %s took task %s over (%s; epoch %d)", me, record.id, whose, epoch)
        for callback in list(self._takeover_callbacks):
            try:
                callback(handle)
            except Exception:  # one follower's bug must not stop the task or the others
                log.warning("a takeover callback failed for task %s", record.id, exc_info=True)
        return True

    def on_takeover(self, callback: Callable[[TaskHandle], None]) -> None:
        """Call ``callback`` with the handle of every task this replica claims and resumes:
        another replica's, whose lease lapsed, or its own from before a restart. It is called
        once the task's engine has started."""
        self._takeover_callbacks.append(callback)

    def submit_resume(self, task_id: str) -> TaskHandle:
        """Continue a stored task in the background of the fleet."""
        if self._state != "open" or self._tg is None:
            raise FleetStateError("submit_resume() needs a started fleet: use `async with fleet:`")
        return self._start(self.resume_engine(task_id))

    def questions(self, task_id: str) -> dict[str, str]:
        """What a task waits for: each asking subtask's question, by subtask id.

        Empty unless the task ended only because agents raised ``InputRequired``; then
        :meth:`answer` continues it. Read from the store, so it survives a restart.
        """
        snapshot = self.task(task_id)
        if snapshot.task_id in self._running or snapshot.status == "cancelled":
            return {}
        return waiting_questions(snapshot.graph)

    def answer(
        self,
        task_id: str,
        replies: Mapping[str, Any],
        *,
        input: str = "reply",
        message: IncomingMessage | None = None,
    ) -> TaskHandle:
        """Continue a task that stopped for questions, in the background of the fleet.

        Each subtask named in ``replies`` runs again with its reply as its input ``input``, and
        so do the subtasks that its question had held back (failed or skipped without running);
        subtasks that finished, and those that agents added while the task ran, stay as they
        are. The answers are logged, so a process that dies meanwhile resumes with them.

        ``message`` is the protocol message that answered (an A2A follow-up): the subtasks named
        in ``replies`` see it as their ``ctx.message`` from then on (the others keep the task's
        first message), and its file parts as their input ``<input>_files`` (``reply_files``),
        as :func:`~fleetmind.agents.part_to_json` writes them. It is logged with the answers.

        Raises:
            FleetStateError: the fleet is not started.
            TaskNotFound: no such task.
            NotWaitingForInput: the task is not waiting for input, or a reply is for a subtask
                that asked nothing.
        """
        if self._state != "open" or self._tg is None:
            raise FleetStateError("answer() needs a started fleet: use `async with fleet:`")
        task_id = self.store.resolve_id(task_id)
        asked = self.questions(task_id)
        if not asked:
            status = "running" if task_id in self._running else self.store.load(task_id)[0].status
            raise NotWaitingForInput(f"task {task_id} is not waiting for input (it is {status})")
        waiting = ", ".join(asked)
        if not replies:
            raise NotWaitingForInput(f"no reply given; task {task_id} waits on: {waiting}")
        unknown = sorted(set(replies) - set(asked))
        if unknown:
            raise NotWaitingForInput(
                f"subtask {unknown[0]!r} of task {task_id} asked nothing; these wait: {waiting}"
            )
        record, entries = self.store.load(task_id)
        graph = TaskGraph.from_log(entries, record.name)
        now = time.time()
        kept = None if message is None else message.to_json()
        answers = [
            SubtaskAnswered(subtask_id=sid, answer=reply, input=input, message=kept, at=now)
            for sid, reply in replies.items()
        ]
        for entry in answers:
            graph.apply(entry)  # checked before anything is written
        self._not_running_here(task_id)
        epoch = None
        if self.replica is not None:
            # Claimed before the answers are written, so that they carry its epoch: only a
            # running task can be claimed, and no one drives one that has ended.
            self.store.set_status(task_id, "running")
            record.status = "running"
            epoch = claim_resumable(self.store, self.replica, record)
        fence = {} if epoch is None else {"epoch": epoch}
        self.store.append(task_id, len(entries) + 1, answers, **fence)
        if epoch is None:
            self.store.set_status(task_id, "running")
            record.status = "running"
        graph, stopped_at = prepare_resume(self.store, record, [*entries, *answers], epoch)
        return self._start(self._resumed(record, graph, stopped_at, epoch))

    def _start(self, engine: Engine) -> TaskHandle:
        assert self._tg is not None
        done: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()

        async def drive() -> None:
            # An engine's failure is reported through its handle, never raised into the
            # fleet's task group, where it would cancel every other task.
            try:
                done.set_result(await self._run_engine(engine))
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:
                done.set_exception(exc)

        handle = TaskHandle(engine, done)
        self._handles[engine.task_id] = handle
        driver = self._tg.create_task(drive(), name=f"task {engine.task_id}")
        self._drivers.add(driver)
        self._running.add(engine.task_id)
        driver.add_done_callback(lambda task: self._finished(engine.task_id, task))
        return handle

    def _finished(self, task_id: str, driver: asyncio.Task[None]) -> None:
        """Forget a finished task's driver; keep its handle among the latest finished."""
        self._drivers.discard(driver)
        self._running.discard(task_id)
        if self._ownership is not None:
            self._ownership.task_ended()
        if task_id in self._handles:
            self._handles.move_to_end(task_id)
        excess = len(self._handles) - len(self._running) - _KEPT_FINISHED
        if excess > 0:  # the oldest finished come first: stop once they are found
            finished = (tid for tid in self._handles if tid not in self._running)
            for old in list(itertools.islice(finished, excess)):
                del self._handles[old]

    def handle(self, task_id: str) -> TaskHandle:
        """The handle of a task submitted to this fleet."""
        try:
            return self._handles[task_id]
        except KeyError:
            raise FleetStateError(f"task {task_id} was not submitted to this fleet") from None


_KEPT_FINISHED = 256
"""Finished tasks whose handles a fleet keeps (older ones: read the store)."""

"""The engine: runs one task graph, event by event, until every subtask has finished.

One loop owns the graph. Everything that happens — an agent's result, a retry, a slot freed on
a busy agent, a user's live edit, a cancellation — arrives as a message in the engine's inbox.
The loop applies each message to the graph (pure, see :class:`TaskGraph`), writes the resulting
log entries to the store in one transaction, and only then acts: it publishes events and starts
the subtasks that became ready. There is no polling; the loop sleeps until a message comes.

Subtasks run as children of the engine's TaskGroup. A child never raises into the group: its
outcome comes back as a message, so one agent's failure cannot tear the task down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, assert_never

from fleetmind._task_log import (
    STRUCTURAL_KINDS,
    AddSubtask,
    GraphEdit,
    LogEntry,
    SubtaskFinished,
    SubtaskProgressed,
    SubtaskReassigned,
    SubtaskReplanned,
    SubtaskRequeued,
    SubtaskRetried,
    SubtaskStarted,
    TaskCancelledEntry,
    TaskResumed,
    UpdateSubtask,
)
from fleetmind._task_model import Subtask, SubtaskStatus
from fleetmind.agents import Agent, IncomingMessage
from fleetmind.agents.remote import HANDED_OVER, ResultSource
from fleetmind.errors import (
    FleetmindError,
    FleetStateError,
    GraphError,
    LeaseLost,
    NoCapableAgent,
    StoreError,
    blames_agent,
    replan_may_help,
)
from fleetmind.memory import MemoryStore
from fleetmind.orchestrator import _events as ev
from fleetmind.orchestrator._attempt import Fail, Reassign, Requeue
from fleetmind.orchestrator._checkpoints import Checkpoints
from fleetmind.orchestrator._directory import AgentDirectory
from fleetmind.orchestrator._engine_events import artifact_event, events_for
from fleetmind.orchestrator._engine_messages import (
    AgentGone,
    AgentsChanged,
    ArtifactStreamed,
    CancelRequested,
    EditRequested,
    LeaseEnded,
    Message,
    ProgressReported,
    Replanned,
    RunGaveUp,
    RunRetrying,
    RunSucceeded,
    SlotOffered,
    settle_leftovers,
)
from fleetmind.orchestrator._engine_runner import recovered, run_hooks, run_subtask
from fleetmind.orchestrator._engine_stop import close_checkpoints, report_stop
from fleetmind.orchestrator._engine_waits import AgentWaits
from fleetmind.orchestrator._graph import DerivedChange, TaskGraph
from fleetmind.orchestrator._replan import Replanner, ReplanRequest
from fleetmind.orchestrator._router import Router
from fleetmind.orchestrator._store import Store
from fleetmind.orchestrator._task_result import TaskResult
from fleetmind.tools import ToolRegistry

log = logging.getLogger("fleetmind.engine")


class Engine:
    """Runs one task graph on a fleet's agents until it finishes or is cancelled.

    Args:
        task_id: The task's id in the store.
        graph: The graph to run; the engine owns it from now on.
        directory: The fleet's agents and their slots.
        router: Ranks agents for each subtask.
        store: Where every entry is written before the engine acts on it.
        clock: Wall-clock time in seconds, for timestamps (injected so tests can fix it).
        tools: The fleet's tools, handed to every agent in its :class:`SubtaskContext`.
        replanner: Asked for graph edits when a subtask fails for good (planned tasks).
        max_replans: How many times per task the replanner may be asked.
        checkpoints: Where LLM agents keep their step loops' checkpoints (in memory if None).
        agent_wait_s: How long a subtask that no agent can take waits for one to join (a
            device coming back) before it fails; 0 fails it at once.
        result_sources: Where the outcomes of attempts made before a crash may be waiting
            (the fleet link keeps the answers devices sent while the orchestrator was down).
        stopped_at: For a resumed task, when its process stopped: the downtime is logged
            (``TaskResumed``) and counts in no subtask's duration.
        message: The protocol message the task was started from (``ctx.message``, but for
            a subtask whose question a message answered: that one), or None.
        epoch: The lease epoch of a replica's task, carried by every write so that the store
            refuses them once another replica has claimed the task; None for a task that is
            not leased.
    """

    def __init__(
        self,
        task_id: str,
        graph: TaskGraph,
        *,
        directory: AgentDirectory,
        router: Router,
        store: Store,
        clock: Callable[[], float] = time.time,
        tools: ToolRegistry | None = None,
        replanner: Replanner | None = None,
        max_replans: int = 3,
        checkpoints: Checkpoints | None = None,
        agent_wait_s: float = 0.0,
        result_sources: Sequence[ResultSource] = (),
        memory: MemoryStore | None = None,
        stopped_at: float | None = None,
        message: IncomingMessage | None = None,
        epoch: int | None = None,
    ) -> None:
        self.task_id = task_id
        self.epoch = epoch
        self._fence: dict[str, int] = {} if epoch is None else {"epoch": epoch}
        """What every write passes: a store that keeps no leases is called as it always was."""
        self.message = message
        self._stopped_at = stopped_at
        self._memory = memory
        self._agent_wait_s = agent_wait_s
        self._result_sources = tuple(result_sources)
        self._agent_waits = AgentWaits(agent_wait_s, self._agents_may_have_joined)
        self._after_flush: list[Callable[[], None]] = []
        self._replanner = replanner
        self._max_replans = max_replans
        self._replans_done = sum(
            1 for e in graph.log if isinstance(e, SubtaskReplanned)
        )  # a resumed task keeps counting where it stopped
        self._replanning: dict[str, asyncio.Task[None]] = {}
        self._checkpoints = checkpoints if checkpoints is not None else Checkpoints(None)
        self._tools = tools if tools is not None else ToolRegistry()
        self.graph = graph
        self.events = ev.EventBroadcaster()
        self._directory = directory
        self._router = router
        self._store = store
        self._clock = clock
        self._inbox: asyncio.Queue[Message] | None = None
        self._cancel_requested: str | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._state = "new"
        self.handed_over = False
        """Whether :meth:`hand_over` stopped the engine: the task goes on elsewhere."""
        # Work gathered while handling messages, carried out by _flush():
        self._unsaved: list[LogEntry] = []
        self._saved_version = graph.version
        self._pending_events: list[ev.TaskEvent] = []
        self._to_start: list[tuple[str, str, tuple[str, ...]]] = []
        # Runtime bookkeeping:
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._tokens: dict[str, int] = {}
        """Current run token of each running subtask; messages from older runs are stale."""
        self._next_token = 0
        self._waiting: set[str] = set()
        self._to_prepare: list[Subtask] = []
        """Subtasks the router may want to embed, in one batch, before they are routed."""
        self._candidates: dict[str, tuple[str, ...]] = {}

    # ---------------------------------------------------------------------------------------
    # Public surface (used by TaskHandle)
    # ---------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether the engine has stopped."""
        return self._state == "finished"

    @property
    def running(self) -> bool:
        """Whether the engine has started and not yet stopped."""
        return self._state in ("running", "finishing")

    def lose_lease(self) -> None:
        """Stop driving the task: its lease is gone (another replica claimed it). The run
        ends with :class:`LeaseLost` without writing anything more."""
        if self._state == "running":
            self._post(LeaseEnded())

    def hand_over(self) -> None:
        """Stop driving the task, as :meth:`lose_lease` does, and leave it to the replica that
        takes it over next (this one closes): local agents' runs are cancelled, remote attempts
        go on where they run, for the next owner's dispatches to join."""
        if self._state == "running":
            self.handed_over = True
            for runner in self._runners.values():  # now: agents see the first cancel's reason
                runner.cancel(HANDED_OVER)
            self._post(LeaseEnded())

    def cancel(self, reason: str = "cancelled by user") -> None:
        """Cancel the task: running subtasks are cancelled, the rest never start."""
        if self._state == "finished":
            return
        if self._inbox is None:
            self._cancel_requested = reason  # run() has not started yet: it starts cancelled
            return
        self._post(CancelRequested(reason))

    async def edit(self, edit: GraphEdit) -> None:
        """Apply a live edit between two events; raises ``GraphError`` if it is invalid."""
        if self._state != "running" or self._inbox is None:
            raise FleetStateError(f"task {self.task_id} is not running; it cannot be edited")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._post(EditRequested(edit, done))
        await done

    async def run(self) -> TaskResult:
        """Run the task to its end and return how it ended.

        Raises:
            LeaseLost: another replica took the task over; this engine stopped driving it.
            StoreError: a write failed (the store out of reach past its retries): the engine
                stopped driving the task, which stays running in the store, to be resumed.
        """
        if self._state != "new":
            raise FleetStateError(f"task {self.task_id} has already been run by this engine")
        if len(self.graph) == 0:
            self._state = "finished"
            self.events.close()  # followers of the stream must not wait for ever
            raise GraphError(f"task {self.task_id} has no subtasks")
        self._state = "running"
        self._inbox = asyncio.Queue()
        lost: StoreError | None = None
        try:
            self._directory.on_join(self._agent_waits.joined)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    await self._drive()
                except StoreError as exc:  # raised as it is, not in an ExceptionGroup
                    lost = exc
                    report_stop(self.task_id, exc, handed_over=self.handed_over)
                    self._taken_over()
        finally:
            self._state = "finished"
            self._tg = None
            self._directory.off_join(self._agent_waits.joined)
            self._run_hooks()  # nothing more will be saved: acknowledge what was
            await close_checkpoints(
                self._checkpoints, self.task_id, ended=self.graph.is_finished and lost is None
            )
            self.events.close()
        if lost is not None:
            raise lost
        return TaskResult.of(self.task_id, self.graph)

    async def _drive(self) -> None:
        """The loop: handle what arrived, save what it decided, act on it; until the end."""
        assert self._inbox is not None
        if self._stopped_at is not None:
            self._record(TaskResumed(at=self._clock(), stopped_at=self._stopped_at))
        for subtask_id in self.graph.running_ids():
            # A resumed task: an answer that arrived while the process was down stands,
            # whichever agent the router would choose now; the rest runs again.
            if not self._recover(subtask_id):
                self._record(SubtaskRequeued(subtask_id=subtask_id, reason="resumed"))
        self._to_prepare.extend(self.graph)
        if self._cancel_requested is not None:
            self._on_cancel(self._cancel_requested)
        await self._prepare_routing()
        self._schedule_ready()
        await self._flush()
        while not self.graph.is_finished:
            # Messages that arrive while a write is awaited wait here: the next turn handles
            # them together, and saves what they decided in one write.
            self._handle(await self._inbox.get())
            while not self._inbox.empty():
                self._handle(self._inbox.get_nowait())
            await self._prepare_routing()
            self._schedule_ready()
            await self._flush()
        self._state = "finishing"
        self._agent_waits.stop()
        settle_leftovers(self._inbox, self._directory, self.task_id)
        await self._finish()

    def _taken_over(self) -> None:
        """Another replica drives the task now (or will), or the store failed: stop at once,
        leave the store alone. Nothing decided since the last write was saved, so none of it
        is acted on: its events are not published, its agents are handed back, and its results
        are not acknowledged (their devices keep them for whoever resumes the task)."""
        self._state = "finishing"
        self._agent_waits.stop()
        assert self._inbox is not None
        settle_leftovers(self._inbox, self._directory, self.task_id)
        self._unsaved, self._pending_events, self._after_flush = [], [], []
        to_start, self._to_start = self._to_start, []
        for _, agent_id, _ in to_start:
            self._directory.release(agent_id)
        self._waiting.clear()
        for runner in self._runners.values():
            runner.cancel(HANDED_OVER)  # its remote attempts go on, for the new owner to join
        for call in self._replanning.values():
            call.cancel()

    # ---------------------------------------------------------------------------------------
    # Slot waiting (called by the AgentDirectory)
    # ---------------------------------------------------------------------------------------

    def wants_slot(self, subtask_id: str, agent_id: str) -> bool:
        if self._state != "running" or subtask_id not in self._waiting:
            return False
        if subtask_id not in self.graph:
            return False
        state = self.graph.state(subtask_id)
        return (
            state.status is SubtaskStatus.READY
            and agent_id not in state.excluded_agents
            and agent_id in self._candidates.get(subtask_id, ())
        )

    def offer_slot(self, subtask_id: str, agent_id: str) -> None:
        if self._state != "running":
            self._directory.release(agent_id)  # nobody will read the offer: hand it on
            return
        self._post(SlotOffered(subtask_id, agent_id))

    def agent_gone(self, subtask_id: str, agent_id: str) -> None:
        if self._state == "running":
            self._post(AgentGone(subtask_id))

    # ---------------------------------------------------------------------------------------
    # The loop's steps
    # ---------------------------------------------------------------------------------------

    def _post(self, message: Message) -> None:
        assert self._inbox is not None
        self._inbox.put_nowait(message)

    def _record(self, entry: LogEntry, by: str | None = None) -> list[DerivedChange]:
        """Apply an entry to the graph and queue it for the store and its events."""
        changes = self.graph.apply(entry)
        self._unsaved.append(entry)
        routing = (
            self._candidates.get(entry.subtask_id, ()) if isinstance(entry, SubtaskStarted) else ()
        )
        self._pending_events.extend(
            events_for(
                entry,
                changes,
                self.graph,
                task_id=self.task_id,
                now=self._clock(),
                by=by,
                routing=routing,
            )
        )
        if isinstance(entry, AddSubtask | UpdateSubtask):
            self._to_prepare.append(entry.subtask)
        if isinstance(entry, UpdateSubtask) and entry.subtask.id in self._waiting:
            # It waited for agents chosen under its old definition: route it again.
            self._waiting.discard(entry.subtask.id)
            self._dispatch(entry.subtask.id)
        return changes

    def _handle(self, message: Message) -> None:
        match message:
            case RunSucceeded():
                self._after_flush.extend(message.saved)
                if self._is_current(message.subtask_id, message.token):
                    self._on_success(message)
            case RunRetrying():
                self._after_flush.extend(message.saved)
                if self._is_current(message.subtask_id, message.token):
                    self._record(
                        SubtaskRetried(
                            subtask_id=message.subtask_id,
                            error=message.error,
                            delay_s=message.delay_s,
                            at=self._clock(),
                        )
                    )
            case RunGaveUp():
                self._after_flush.extend(message.saved)
                if self._is_current(message.subtask_id, message.token):
                    self._on_agent_gave_up(message)
            case ProgressReported():
                if self._is_current(message.subtask_id, message.token):
                    self._record(
                        SubtaskProgressed(
                            subtask_id=message.subtask_id,
                            message=message.message,
                            fraction=message.fraction,
                            step=message.step,
                            at=self._clock() if message.step is not None else 0.0,
                        )
                    )
            case ArtifactStreamed():  # published with the turn's events, kept in no log
                if self._is_current(message.subtask_id, message.token):
                    now, version = self._clock(), self.graph.version
                    self._pending_events.append(artifact_event(message, self.task_id, version, now))
            case SlotOffered():
                self._on_slot_offered(message.subtask_id, message.agent_id)
            case AgentGone():
                if message.subtask_id in self._waiting:
                    self._waiting.discard(message.subtask_id)
                    self._dispatch(message.subtask_id)
            case EditRequested():
                self._on_edit(message)
            case CancelRequested():
                self._on_cancel(message.reason)
            case LeaseEnded():
                raise LeaseLost(f"task {self.task_id} is no longer leased to this replica")
            case Replanned():
                self._on_replanned(message)
            case AgentsChanged():
                self._route_awaiting()
            case _:
                assert_never(message)

    def _is_current(self, subtask_id: str, token: int) -> bool:
        return (
            self._tokens.get(subtask_id) == token
            and subtask_id in self.graph
            and self.graph.state(subtask_id).status is SubtaskStatus.RUNNING
        )

    def _on_success(self, message: RunSucceeded) -> None:
        sid = message.subtask_id
        self._tokens.pop(sid, None)
        edits = message.result.edits
        try:
            if len(edits) > 1:  # all or nothing (one edit is checked as it is applied)
                self.graph.check_edits(edits)
            for edit in edits:
                self._record(edit, by=sid)
        except GraphError as exc:
            error = GraphError(f"subtask {sid!r} returned an invalid graph edit: {exc}")
            self._record(
                SubtaskFinished(
                    subtask_id=sid, status="failed", error=error.to_dict(), at=self._clock()
                )
            )
            return
        self._record(
            SubtaskFinished(
                subtask_id=sid, status="done", output=message.result.output, at=self._clock()
            )
        )
        self._observe(sid, message.agent_id, ok=True)

    def _observe(self, subtask_id: str, agent_id: str, *, ok: bool) -> None:
        self._router.observe(self.graph.subtask(subtask_id), agent_id, ok)

    def _on_agent_gave_up(self, message: RunGaveUp) -> None:
        sid = message.subtask_id
        self._tokens.pop(sid, None)
        if blames_agent(message.error):
            self._observe(sid, message.agent_id, ok=False)
        match message.step:
            case Requeue():
                # Its device went away and nobody else can do it: route it again, which waits
                # (bounded) for an agent to join, perhaps the same one back.
                reason = f"agent {message.agent_id} was lost: {message.error.get('message')}"
                self._record(SubtaskRequeued(subtask_id=sid, reason=reason, at=self._clock()))
            case Reassign():
                self._record(
                    SubtaskReassigned(
                        subtask_id=sid,
                        agent=message.agent_id,
                        error=message.error,
                        at=self._clock(),
                    )
                )
            case Fail():
                self._fail_for_good(sid, message.error)
            case _:
                assert_never(message.step)

    def _others_left(self, subtask_id: str, agent_id: str) -> bool:
        """Whether a candidate for the subtask is left besides those that failed it."""
        tried = {*self.graph.state(subtask_id).excluded_agents, agent_id}
        return any(a not in tried for a in self._candidates.get(subtask_id, ()))

    def _on_slot_offered(self, subtask_id: str, agent_id: str) -> None:
        if self.wants_slot(subtask_id, agent_id):
            self._waiting.discard(subtask_id)
            self._start(subtask_id, agent_id)
        else:
            self._directory.release(agent_id)

    def _on_edit(self, message: EditRequested) -> None:
        if message.edit.kind not in STRUCTURAL_KINDS:
            message.done.set_exception(GraphError("only structural edits can be applied by hand"))
            return
        try:
            self._record(message.edit)
        except GraphError as exc:
            message.done.set_exception(exc)
        else:
            message.done.set_result(None)

    def _on_cancel(self, reason: str) -> None:
        if self.graph.is_finished:
            return
        self._record(TaskCancelledEntry(reason=reason, at=self._clock()))
        self._waiting.clear()
        for runner in (*self._runners.values(), *self._replanning.values()):
            runner.cancel()

    # ---------------------------------------------------------------------------------------
    # Answers saved before a crash, acknowledgements, and waiting for agents
    # ---------------------------------------------------------------------------------------

    def _recover(self, subtask_id: str) -> bool:
        """Take the answer an attempt got while this process was down, if one is kept."""
        message = recovered(
            self.task_id,
            self.graph,
            subtask_id,
            self._result_sources,
            token=self._next_token + 1,
            others=lambda agent_id: self._others_left(subtask_id, agent_id),
            can_wait=self._agent_wait_s > 0,
        )
        if message is None:
            return False
        self._next_token += 1
        self._tokens[subtask_id] = self._next_token
        self._post(message)
        return True

    def _run_hooks(self) -> None:
        hooks, self._after_flush = self._after_flush, []
        run_hooks(hooks, self.task_id)

    def _agents_may_have_joined(self) -> None:
        if self._state == "running":
            self._post(AgentsChanged())

    def _route_awaiting(self) -> None:
        for subtask_id in self._agent_waits.waiting():
            if (
                subtask_id in self.graph
                and self.graph.state(subtask_id).status is SubtaskStatus.READY
            ):
                self._dispatch(subtask_id)
            else:
                self._agent_waits.done(subtask_id)

    # ---------------------------------------------------------------------------------------
    # Failing for good, and replanning
    # ---------------------------------------------------------------------------------------

    def _fail_for_good(self, subtask_id: str, error: dict[str, Any]) -> None:
        """A subtask has no agent left: ask the replanner, or record the failure."""
        if (
            self._replanner is None
            or self._replans_done >= self._max_replans
            or not replan_may_help(error)
            or subtask_id in self._replanning
            or self.graph.state(subtask_id).replanned is not None
        ):
            self._record(
                SubtaskFinished(
                    subtask_id=subtask_id, status="failed", error=error, at=self._clock()
                )
            )
            return
        # The subtask stays unfinished while the planner thinks, so that its dependents are not
        # failed before they can be rewired; the rest of the graph keeps running meanwhile.
        self._replans_done += 1
        request = ReplanRequest(
            task_id=self.task_id,
            graph=self.graph.copy(),
            subtask_id=subtask_id,
            error=error,
            replans_done=self._replans_done - 1,
        )
        assert self._tg is not None
        self._replanning[subtask_id] = self._tg.create_task(
            self._ask_replanner(request), name=f"{self.task_id}/{subtask_id}/replan"
        )

    async def _ask_replanner(self, request: ReplanRequest) -> None:
        assert self._replanner is not None
        try:
            decision = await self._replanner.replan(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = exc.message if isinstance(exc, FleetmindError) else repr(exc)
            self._post(Replanned(request.subtask_id, request.error, None, problem))
        else:
            self._post(Replanned(request.subtask_id, request.error, decision))

    def _on_replanned(self, message: Replanned) -> None:
        sid = message.subtask_id
        if self._replanning.pop(sid, None) is None or sid not in self.graph:
            return
        if self.graph.state(sid).status.is_terminal:
            return  # cancelled meanwhile
        decision = message.decision
        outcome: Literal["edited", "gave_up", "failed"] = "failed"
        reason = message.problem
        edits: tuple[GraphEdit, ...] = ()
        if decision is not None:
            edits, reason = decision.edits, decision.reason
            outcome = "edited" if edits else "gave_up"
            if edits:
                try:  # all or nothing, before the live graph is touched
                    self.graph.check_edits(
                        edits, first=SubtaskReplanned(subtask_id=sid, outcome="edited")
                    )
                except GraphError as exc:
                    outcome, reason, edits = "failed", f"the planner's edit is invalid: {exc}", ()
        self._record(
            SubtaskReplanned(
                subtask_id=sid,
                outcome=outcome,
                reason=reason,
                edits=len(edits),
                exchanges=decision.exchanges if decision is not None else (),
                at=self._clock(),
            )
        )
        for edit in edits:
            self._record(edit, by="planner")
        if sid in self.graph and not self.graph.state(sid).status.is_terminal:
            self._record(
                SubtaskFinished(
                    subtask_id=sid, status="failed", error=message.error, at=self._clock()
                )
            )

    async def _prepare_routing(self) -> None:
        """Let the router embed new subtasks in one batch, off the event loop's thread."""
        if not self._to_prepare:
            return
        pending, self._to_prepare = self._to_prepare, []
        # Only subtasks described in words need the router's embeddings; for the others the
        # thread hop would be pure cost.
        fresh = [
            s
            for s in pending
            if s.agent is None
            and s.skill is None
            and s.id in self.graph
            and not self.graph.state(s.id).status.has_started
        ]
        if fresh:
            # Embedding can take a while (a model call); runners keep running meanwhile.
            await asyncio.to_thread(self._router.prepare, fresh)
            await self._router.review(fresh, self._directory.profiles)

    def _schedule_ready(self) -> None:
        # A subtask that fails before it starts (no agent, missing input) may make its
        # fallbacks ready at once, so drain until nothing new is ready.
        while ready := self.graph.drain_ready():
            self._schedule(ready)

    def _schedule(self, ready: list[str]) -> None:
        for subtask_id in ready:
            self._pending_events.append(
                ev.SubtaskReadyEvent(
                    task_id=self.task_id,
                    version=self.graph.version,
                    at=self._clock(),
                    subtask_id=subtask_id,
                )
            )
            self._dispatch(subtask_id)

    def _dispatch(self, subtask_id: str) -> None:
        """Give a ready subtask to the best candidate with a free slot, or queue it."""
        subtask = self.graph.subtask(subtask_id)
        state = self.graph.state(subtask_id)
        try:
            decision = self._router.route(subtask, self._directory.profiles)
        except NoCapableAgent as exc:
            assert self._tg is not None
            if not self._agent_waits.wait(subtask_id, self._tg.create_task):
                self._fail_unstarted(subtask_id, exc)
            return
        self._agent_waits.done(subtask_id)
        candidates = tuple(
            a
            for a in decision.candidates
            if a not in state.excluded_agents and a in self._directory
        )
        if not candidates:
            last = state.error or {}
            self._fail_unstarted(
                subtask_id,
                NoCapableAgent(
                    f"no candidate agent is left for subtask {subtask_id!r}"
                    + (f"; last error: {last.get('message')}" if last else "")
                ),
            )
            return
        agent = self._directory.get(candidates[0])
        assert agent is not None
        missing = agent.missing_inputs(subtask_id, self.graph.supplied_inputs(subtask_id))
        if missing is not None:
            self._fail_unstarted(subtask_id, missing)
            return
        self._candidates[subtask_id] = candidates
        if decision.scores or decision.excluded or decision.review:
            self._record(decision.entry(subtask_id))
        for agent_id in candidates:
            if self._directory.try_take(agent_id):
                self._start(subtask_id, agent_id)
                return
        self._waiting.add(subtask_id)
        for agent_id in candidates:
            self._directory.wait(agent_id, self, subtask_id)

    def _fail_unstarted(self, subtask_id: str, error: FleetmindError) -> None:
        self._fail_for_good(subtask_id, error.to_dict())

    def _start(self, subtask_id: str, agent_id: str) -> None:
        self._waiting.discard(subtask_id)
        self._record(SubtaskStarted(subtask_id=subtask_id, agent=agent_id, at=self._clock()))
        self._to_start.append((subtask_id, agent_id, self._candidates.get(subtask_id, ())))

    async def _flush(self) -> None:
        """Persist what was decided, then act on it: publish events, start subtasks."""
        if self._unsaved:
            entries, self._unsaved = self._unsaved, []
            first, self._saved_version = self._saved_version + 1, self._saved_version + len(entries)
            await self._store.append_async(self.task_id, first, entries, **self._fence)
        if self._after_flush:
            # Saved now; acknowledged once this turn's work is done (acks are no one's wait).
            hooks, self._after_flush = self._after_flush, []
            asyncio.get_running_loop().call_soon(run_hooks, hooks, self.task_id)
        events, self._pending_events = self._pending_events, []
        for event in events:
            self.events.publish(event)
        to_start, self._to_start = self._to_start, []
        assert self._tg is not None
        for subtask_id, agent_id, _ in to_start:
            agent = self._directory.get(agent_id)
            if agent is None or self.graph.state(subtask_id).status is not SubtaskStatus.RUNNING:
                self._directory.release(agent_id)
                continue
            self._next_token += 1
            token = self._next_token
            self._tokens[subtask_id] = token
            self._runners[subtask_id] = self._tg.create_task(
                self._run_subtask(subtask_id, agent, token), name=f"{self.task_id}/{subtask_id}"
            )

    async def _finish(self) -> None:
        status = self.graph.status
        await self._store.set_status_async(self.task_id, status, **self._fence)
        self.events.publish(
            ev.TaskFinishedEvent(
                task_id=self.task_id,
                version=self.graph.version,
                at=self._clock(),
                status=status,
                counts=self.graph.counts(),
            )
        )

    async def _run_subtask(self, subtask_id: str, agent: Agent, token: int) -> None:
        """Attempts on one agent; the agent's slot is freed however they end."""
        try:
            await run_subtask(
                agent,
                subtask_id,
                token,
                task_id=self.task_id,
                graph=self.graph,
                post=self._post,
                tools=self._tools,
                checkpoints=self._checkpoints,
                memory=self._memory,
                message=self.message,
                others=lambda: self._others_left(subtask_id, agent.id),
                can_wait=self._agent_wait_s > 0,
            )
        finally:
            self._runners.pop(subtask_id, None)
            self._directory.release(agent.id)

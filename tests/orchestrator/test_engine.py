"""Tests for fleetmind/orchestrator/_engine.py: scheduling, limits, timeouts, retries,
reassignment, conditions, data flow, cancellation, graph edits from agents, and events.

Every test runs real agents on a real Fleet (in-memory store) and synchronises on
``asyncio.Event``s or the task's event stream; sleeps inside agents only simulate work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetmind import Fleet, RetryPolicy, SubtaskResult, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.errors import SubtaskFailed
from fleetmind.orchestrator import (
    AddSubtask,
    Dependency,
    Subtask,
    SubtaskStatus,
    TaskEvent,
    TaskResult,
)

pytestmark = pytest.mark.timeout(10)

FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001)
"""Retries with back-offs short enough to keep a test fast."""


async def run_collect(fleet: Fleet, graph: TaskGraph) -> tuple[TaskResult, list[TaskEvent]]:
    """Run a graph on a fleet and return its result with its whole event stream."""
    async with fleet:
        handle = fleet.submit(graph)
        events = [event async for event in handle.events()]
        result = await handle.result()
    return result, events


def of_kind(events: list[TaskEvent], kind: str, subtask_id: str | None = None) -> list[Any]:
    """The events of one kind (for one subtask, when given)."""
    return [
        e
        for e in events
        if e.kind == kind and (subtask_id is None or getattr(e, "subtask_id", None) == subtask_id)
    ]


def index_of(events: list[TaskEvent], kind: str, subtask_id: str) -> int:
    """Position of the first event of a kind for a subtask."""
    for i, e in enumerate(events):
        if e.kind == kind and getattr(e, "subtask_id", None) == subtask_id:
            return i
    raise AssertionError(f"no {kind} event for {subtask_id}")


# ---------------------------------------------------------------------------------------------
# Concurrency and dispatch
# ---------------------------------------------------------------------------------------------


async def test_agent_runs_at_most_max_concurrency_subtasks_at_once() -> None:
    running = peak = 0

    @agent(id="worker", skills=["work"], max_concurrency=2)
    async def worker(ctx: SubtaskContext) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.005)
        finally:
            running -= 1
        return ctx.subtask.id

    graph = TaskGraph("limits")
    for i in range(6):
        graph.add_subtask(f"s{i}", skill="work")
    fleet = Fleet([worker])

    result = await fleet.run(graph)

    assert result.status == "done"
    assert result.outputs == {f"s{i}": f"s{i}" for i in range(6)}
    assert peak == 2
    assert fleet.load("worker") == (0, 2)


async def test_every_ready_subtask_is_dispatched_at_once() -> None:
    started: list[str] = []
    all_started = asyncio.Event()

    @agent(id="worker", skills=["work"], max_concurrency=8)
    async def worker(ctx: SubtaskContext) -> str:
        started.append(ctx.subtask.id)
        if len(started) == 5:
            all_started.set()
        # Nobody finishes before all five have started: a serial engine would hang here.
        await all_started.wait()
        return ctx.subtask.id

    graph = TaskGraph("fan-out")
    for i in range(5):
        graph.add_subtask(f"s{i}", skill="work")

    async with asyncio.timeout(2):
        result, events = await run_collect(Fleet([worker]), graph)

    assert result.status == "done"
    assert sorted(started) == [f"s{i}" for i in range(5)]
    first_done = min(i for i, e in enumerate(events) if e.kind == "subtask_done")
    starts = [i for i, e in enumerate(events) if e.kind == "subtask_started"]
    assert len(starts) == 5
    assert max(starts) < first_done


async def test_subtask_waiting_for_a_slot_starts_when_one_frees() -> None:
    release = asyncio.Event()
    order: list[str] = []

    @agent(id="solo", skills=["work"], max_concurrency=1)
    async def solo(ctx: SubtaskContext) -> str:
        order.append(ctx.subtask.id)
        if ctx.subtask.id == "first":
            await release.wait()
        return ctx.subtask.id

    graph = TaskGraph()
    graph.add_subtask("first", skill="work")
    graph.add_subtask("second", skill="work")
    fleet = Fleet([solo])
    async with fleet:
        handle = fleet.submit(graph)
        async for event in handle.events():
            if event.kind == "subtask_started" and event.subtask_id == "first":
                # The one slot is taken; the other subtask is ready but waits.
                assert handle.graph.state("second").status is SubtaskStatus.READY
                assert fleet.load("solo") == (1, 1)
                release.set()
        result = await handle.result()

    assert result.status == "done"
    assert order == ["first", "second"]


# ---------------------------------------------------------------------------------------------
# Timeouts and retries
# ---------------------------------------------------------------------------------------------


async def test_attempts_past_timeout_are_retried_then_fail_with_subtask_timeout() -> None:
    calls = 0
    cancelled = 0

    @agent(id="sleepy", skills=["work"])
    async def sleepy() -> str:
        nonlocal calls, cancelled
        calls += 1
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return "never"

    graph = TaskGraph()
    graph.add_subtask(
        "slow",
        skill="work",
        timeout_s=0.01,
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.001),
    )

    result, events = await run_collect(Fleet([sleepy]), graph)

    assert result.status == "failed"
    assert calls == 2
    assert cancelled == 2
    assert result.errors["slow"]["type"] == "SubtaskTimeout"
    assert result.graph.state("slow").total_attempts == 2
    retried = of_kind(events, "subtask_retried")
    assert len(retried) == 1
    assert retried[0].error["type"] == "SubtaskTimeout"
    failed = of_kind(events, "subtask_failed", "slow")
    assert len(failed) == 1
    assert failed[0].error["type"] == "SubtaskTimeout"
    assert failed[0].agent == "sleepy"


async def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    attempts: list[int] = []

    @agent(id="flaky", skills=["work"])
    async def flaky(ctx: SubtaskContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) < 5:
            raise RuntimeError(f"failure {len(attempts)}")
        return "finally"

    policy = RetryPolicy(
        max_attempts=5, initial_backoff_s=0.001, backoff_multiplier=3, max_backoff_s=0.005
    )
    graph = TaskGraph()
    graph.add_subtask("s", skill="work", retry=policy)

    result, events = await run_collect(Fleet([flaky]), graph)

    assert result.status == "done"
    assert result.outputs["s"] == "finally"
    assert attempts == [1, 2, 3, 4, 5]
    retried = of_kind(events, "subtask_retried", "s")
    expected = [min(0.001 * 3 ** (n - 1), 0.005) for n in range(1, 5)]
    assert [e.delay_s for e in retried] == pytest.approx(expected)
    assert [e.delay_s for e in retried] == pytest.approx([0.001, 0.003, 0.005, 0.005])
    assert [e.error["message"] for e in retried] == [f"failure {n}" for n in range(1, 5)]
    assert all(e.error["type"] == "RuntimeError" for e in retried)
    assert all(e.agent == "flaky" for e in retried)


async def test_success_on_third_attempt_is_done_with_three_attempts() -> None:
    calls = 0

    @agent(id="flaky", skills=["work"])
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise SubtaskFailed("transient")
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", skill="work", retry=FAST)

    result, events = await run_collect(Fleet([flaky]), graph)

    assert result.status == "done"
    assert result.outputs == {"s": "ok"}
    assert calls == 3
    state = result.graph.state("s")
    assert state.status is SubtaskStatus.DONE
    assert state.total_attempts == 3
    assert len(of_kind(events, "subtask_retried", "s")) == 2
    assert len(of_kind(events, "subtask_started", "s")) == 1


# Regression: SubtaskRetried.attempt used to be computed after the retry was applied to the
# graph, so the first retry reported attempt 3 instead of 2.
async def test_retried_event_names_the_attempt_about_to_be_made() -> None:
    calls = 0

    @agent(id="flaky", skills=["work"])
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("transient")
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", skill="work", retry=FAST)

    _, events = await run_collect(Fleet([flaky]), graph)

    # SubtaskRetried.attempt: "The attempt that is about to be made (2 for the first retry)."
    assert [e.attempt for e in of_kind(events, "subtask_retried")] == [2, 3]


async def test_non_retryable_failure_skips_retries() -> None:
    calls = 0

    @agent(id="picky", skills=["work"])
    async def picky() -> str:
        nonlocal calls
        calls += 1
        raise SubtaskFailed("bad request", retryable=False)

    graph = TaskGraph()
    graph.add_subtask("s", skill="work", retry=FAST)

    result, events = await run_collect(Fleet([picky]), graph)

    assert calls == 1
    assert result.status == "failed"
    assert result.errors["s"]["type"] == "SubtaskFailed"
    assert result.errors["s"]["message"] == "bad request"
    assert result.errors["s"]["retryable"] is False
    assert of_kind(events, "subtask_retried") == []
    assert result.graph.state("s").total_attempts == 1


async def test_non_retryable_failure_goes_straight_to_the_next_candidate() -> None:
    calls: list[str] = []

    @agent(id="cheap", skills=["work"], cost_per_call=0.1)
    async def cheap() -> str:
        calls.append("cheap")
        raise SubtaskFailed("out of scope", retryable=False)

    @agent(id="dear", skills=["work"], cost_per_call=1.0)
    async def dear() -> str:
        calls.append("dear")
        return "dear did it"

    graph = TaskGraph()
    graph.add_subtask("s", skill="work", retry=FAST)

    result, events = await run_collect(Fleet([dear, cheap]), graph)

    assert calls == ["cheap", "dear"]
    assert result.outputs == {"s": "dear did it"}
    assert of_kind(events, "subtask_retried") == []
    assert [e.agent for e in of_kind(events, "subtask_reassigned")] == ["cheap"]


# ---------------------------------------------------------------------------------------------
# Reassignment
# ---------------------------------------------------------------------------------------------


async def test_subtask_is_reassigned_to_the_next_candidate_after_retries() -> None:
    calls: list[str] = []

    @agent(id="cheap", skills=["summarise"], cost_per_call=0.1)
    async def cheap() -> str:
        calls.append("cheap")
        raise RuntimeError("cheap model choked")

    @agent(id="dear", skills=["summarise"], cost_per_call=2.0)
    async def dear() -> str:
        calls.append("dear")
        return "summary"

    graph = TaskGraph()
    graph.add_subtask(
        "s", skill="summarise", retry=RetryPolicy(max_attempts=2, initial_backoff_s=0)
    )

    # The dear agent is listed first: the router, not the fleet's order, puts cheap first.
    result, events = await run_collect(Fleet([dear, cheap]), graph)

    assert result.status == "done"
    assert result.outputs == {"s": "summary"}
    assert calls == ["cheap", "cheap", "dear"]
    state = result.graph.state("s")
    assert state.agent == "dear"
    assert state.excluded_agents == ["cheap"]
    assert state.total_attempts == 3
    reassigned = of_kind(events, "subtask_reassigned", "s")
    assert len(reassigned) == 1
    assert reassigned[0].agent == "cheap"
    assert reassigned[0].error["message"] == "cheap model choked"
    assert [e.agent for e in of_kind(events, "subtask_started", "s")] == ["cheap", "dear"]
    assert of_kind(events, "subtask_started", "s")[0].routing == ("cheap", "dear")
    assert of_kind(events, "subtask_done", "s")[0].agent == "dear"
    kinds = [e.kind for e in events if getattr(e, "subtask_id", None) == "s"]
    assert kinds == [
        "subtask_ready",
        "subtask_routed",
        "subtask_started",
        "subtask_retried",
        "subtask_reassigned",
        "subtask_ready",
        "subtask_routed",
        "subtask_started",
        "subtask_done",
    ]


async def test_subtask_fails_with_last_agents_error_when_every_candidate_fails() -> None:
    calls: list[str] = []

    @agent(id="cheap", skills=["summarise"], cost_per_call=0.1)
    async def cheap() -> str:
        calls.append("cheap")
        raise SubtaskFailed("cheap gave up")

    @agent(id="dear", skills=["summarise"], cost_per_call=2.0)
    async def dear() -> str:
        calls.append("dear")
        raise SubtaskFailed("dear gave up too")

    graph = TaskGraph()
    graph.add_subtask(
        "s", skill="summarise", retry=RetryPolicy(max_attempts=2, initial_backoff_s=0)
    )

    result, events = await run_collect(Fleet([cheap, dear]), graph)

    assert result.status == "failed"
    assert calls == ["cheap", "cheap", "dear", "dear"]
    assert result.errors["s"]["type"] == "SubtaskFailed"
    assert result.errors["s"]["message"] == "dear gave up too"
    assert len(of_kind(events, "subtask_reassigned")) == 1
    failed = of_kind(events, "subtask_failed", "s")
    assert len(failed) == 1
    assert failed[0].agent == "dear"
    assert result.graph.state("s").total_attempts == 4


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


def _conditions_graph() -> TaskGraph:
    graph = TaskGraph("conditions")
    graph.add_subtask("a", agent="source", retry=FAST)
    for target, condition in (("on_ok", "success"), ("anyway", "always"), ("fallback", "failure")):
        graph.add_subtask(
            target,
            agent="worker",
            depends_on=[Dependency(source="a", target=target, condition=condition)],
        )
    return graph


async def test_conditions_when_the_source_fails() -> None:
    ran: list[str] = []

    @agent(id="source")
    async def source() -> str:
        raise SubtaskFailed("source broke", retryable=False)

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        return ctx.subtask.id

    result, events = await run_collect(Fleet([source, worker]), _conditions_graph())

    assert result.status == "failed"
    assert sorted(ran) == ["anyway", "fallback"]
    g = result.graph
    assert g.state("a").status is SubtaskStatus.FAILED
    assert g.state("on_ok").status is SubtaskStatus.FAILED
    assert result.errors["on_ok"]["type"] == "UpstreamFailed"
    assert g.state("anyway").status is SubtaskStatus.DONE
    assert g.state("fallback").status is SubtaskStatus.DONE
    assert result.outputs == {"anyway": "anyway", "fallback": "fallback"}
    upstream = of_kind(events, "subtask_failed", "on_ok")
    assert len(upstream) == 1
    assert upstream[0].error["type"] == "UpstreamFailed"
    assert upstream[0].agent is None
    assert of_kind(events, "subtask_started", "on_ok") == []


async def test_conditions_when_the_source_succeeds() -> None:
    ran: list[str] = []

    @agent(id="source")
    async def source() -> str:
        return "fine"

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        return ctx.subtask.id

    result, events = await run_collect(Fleet([source, worker]), _conditions_graph())

    assert result.status == "done"
    assert sorted(ran) == ["anyway", "on_ok"]
    assert result.graph.state("fallback").status is SubtaskStatus.SKIPPED
    skipped = of_kind(events, "subtask_skipped")
    assert [e.subtask_id for e in skipped] == ["fallback"]
    assert "'a'" in skipped[0].reason


async def test_skipped_source_skips_its_success_dependents() -> None:
    @agent(id="worker")
    async def worker() -> str:
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("a", agent="worker")
    graph.add_subtask(
        "fallback",
        agent="worker",
        depends_on=[Dependency(source="a", target="fallback", condition="failure")],
    )
    graph.add_subtask("after", agent="worker", depends_on=["fallback"])

    result = await Fleet([worker]).run(graph)

    assert result.status == "done"
    assert result.graph.state("fallback").status is SubtaskStatus.SKIPPED
    assert result.graph.state("after").status is SubtaskStatus.SKIPPED


# Regression: a subtask failing before it starts (here NoCapableAgent) used to make its
# failure/always dependents ready without anything scheduling them: the task hung.
async def test_fallback_runs_when_its_source_has_no_capable_agent() -> None:
    @agent(id="worker", skills=["work"])
    async def worker() -> str:
        return "fallback ran"

    graph = TaskGraph()
    graph.add_subtask("a", skill="no-such-skill")
    graph.add_subtask(
        "fallback",
        skill="work",
        depends_on=[Dependency(source="a", target="fallback", condition="failure")],
    )

    async with asyncio.timeout(0.5):
        result = await Fleet([worker]).run(graph)

    assert result.status == "failed"
    assert result.errors["a"]["type"] == "NoCapableAgent"
    assert result.outputs == {"fallback": "fallback ran"}


# ---------------------------------------------------------------------------------------------
# Data dependencies and inputs
# ---------------------------------------------------------------------------------------------


async def test_outputs_feed_inputs_whole_and_by_field() -> None:
    seen: dict[str, Any] = {}

    @agent(id="producer")
    async def producer() -> dict[str, Any]:
        return {"text": "hello", "lang": "en"}

    @agent(id="whole")
    async def whole(doc: dict[str, Any], prefix: str) -> str:
        seen["whole"] = (doc, prefix)
        return prefix + doc["text"]

    @agent(id="field")
    async def field(text: str) -> str:
        seen["field"] = text
        return text.upper()

    graph = TaskGraph()
    graph.add_subtask("make", agent="producer")
    graph.add_subtask(
        "use_all",
        agent="whole",
        inputs={"prefix": ">> "},
        depends_on=[Dependency(source="make", target="use_all", kind="data", input="doc")],
    )
    graph.add_subtask(
        "use_text",
        agent="field",
        depends_on=[
            Dependency(source="make", target="use_text", kind="data", output="text", input="text")
        ],
    )

    result = await Fleet([producer, whole, field]).run(graph)

    assert result.status == "done"
    assert seen == {"whole": ({"text": "hello", "lang": "en"}, ">> "), "field": "hello"}
    assert result.outputs["use_all"] == ">> hello"
    assert result.outputs["use_text"] == "HELLO"


async def test_ctx_inputs_hold_literal_and_resolved_inputs() -> None:
    seen: dict[str, Any] = {}

    @agent(id="producer")
    async def producer() -> int:
        return 41

    @agent(id="consumer")
    async def consumer(ctx: SubtaskContext) -> int:
        seen.update(ctx.inputs)
        return ctx.inputs["n"] + ctx.inputs["step"]

    graph = TaskGraph()
    graph.add_subtask("p", agent="producer")
    graph.add_subtask(
        "c",
        agent="consumer",
        inputs={"step": 1},
        depends_on=[Dependency(source="p", target="c", kind="data", input="n")],
    )

    result = await Fleet([producer, consumer]).run(graph)

    assert seen == {"n": 41, "step": 1}
    assert result.output == 42


async def test_missing_required_input_fails_without_retry_or_reassignment() -> None:
    calls: list[str] = []

    @agent(id="needy", skills=["translate"])
    async def needy(text: str) -> str:
        calls.append("needy")
        return text

    @agent(id="other", skills=["translate"], cost_per_call=1.0)
    async def other(text: str = "") -> str:
        calls.append("other")
        return text

    graph = TaskGraph()
    graph.add_subtask("t", skill="translate", retry=FAST)

    result, events = await run_collect(Fleet([needy, other]), graph)

    assert calls == []
    assert result.status == "failed"
    assert result.errors["t"]["type"] == "MissingInput"
    assert "text" in result.errors["t"]["message"]
    assert of_kind(events, "subtask_retried") == []
    assert of_kind(events, "subtask_reassigned") == []
    assert of_kind(events, "subtask_started") == []


async def test_input_missing_at_run_time_fails_without_retry_or_reassignment() -> None:
    # The input is promised by a data dependency whose source fails; the 'always' condition
    # lets the target run anyway, without it.
    calls: list[str] = []

    @agent(id="source")
    async def source() -> str:
        raise SubtaskFailed("no data", retryable=False)

    @agent(id="needy", skills=["use"])
    async def needy(text: str) -> str:
        calls.append("needy")
        return text

    @agent(id="other", skills=["use"], cost_per_call=1.0)
    async def other(text: str) -> str:
        calls.append("other")
        return text

    graph = TaskGraph()
    graph.add_subtask("src", agent="source")
    graph.add_subtask(
        "use",
        skill="use",
        retry=FAST,
        depends_on=[
            Dependency(source="src", target="use", kind="data", input="text", condition="always")
        ],
    )

    result, events = await run_collect(Fleet([source, needy, other]), graph)

    assert calls == []
    assert result.errors["use"]["type"] == "MissingInput"
    assert of_kind(events, "subtask_retried") == []
    assert of_kind(events, "subtask_reassigned") == []
    assert len(of_kind(events, "subtask_started", "use")) == 1


# ---------------------------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------------------------


async def test_cancel_stops_running_subtasks_and_never_starts_the_rest() -> None:
    started: list[str] = []
    saw_cancel: list[str] = []
    both_running = asyncio.Event()

    @agent(id="worker", skills=["work"], max_concurrency=2)
    async def worker(ctx: SubtaskContext) -> str:
        started.append(ctx.subtask.id)
        if len(started) == 2:
            both_running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.append(ctx.subtask.id)
            raise
        return "never"

    graph = TaskGraph("cancel me")
    graph.add_subtask("x", skill="work")
    graph.add_subtask("y", skill="work")
    graph.add_subtask("queued", skill="work")  # waits for a slot
    graph.add_subtask("after", skill="work", depends_on=["x"])  # waits for x
    fleet = Fleet([worker])

    async with fleet:
        handle = fleet.submit(graph)
        await both_running.wait()
        assert handle.graph.state("queued").status is SubtaskStatus.READY
        result = await handle.cancel()
        events = [e async for e in handle.events()]

    assert started == ["x", "y"]
    assert sorted(saw_cancel) == ["x", "y"]
    assert result.status == "cancelled"
    assert not result.ok
    for sid in ("x", "y", "queued", "after"):
        assert result.graph.state(sid).status is SubtaskStatus.CANCELLED
    assert sorted(e.subtask_id for e in of_kind(events, "subtask_cancelled")) == [
        "after",
        "queued",
        "x",
        "y",
    ]
    assert [e.subtask_id for e in of_kind(events, "subtask_started")] == ["x", "y"]
    assert events[-1].kind == "task_finished"
    assert events[-1].status == "cancelled"
    assert fleet.store.load(handle.task_id)[0].status == "cancelled"
    assert fleet.load("worker") == (0, 2)


async def test_cancel_after_finish_changes_nothing() -> None:
    @agent(id="worker")
    async def worker() -> str:
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        await handle.result()
        result = await handle.cancel()

    assert result.status == "done"
    assert result.outputs == {"s": "ok"}


# Regression: cancelling right after submit(), before the engine's loop started, used to
# raise AssertionError (Engine.cancel posted to an inbox that did not exist yet).
async def test_cancel_right_after_submit_cancels_the_task() -> None:
    calls = 0

    @agent(id="worker")
    async def worker() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")
    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        result = await handle.cancel()

    assert result.status == "cancelled"
    assert calls == 0


# ---------------------------------------------------------------------------------------------
# Graph edits carried by agents' results
# ---------------------------------------------------------------------------------------------


async def test_agent_result_adds_follow_up_subtasks_that_run() -> None:
    release_slow = asyncio.Event()
    ran: list[str] = []

    @agent(id="slow")
    async def slow(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        await release_slow.wait()
        return "slow done"

    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        # One follow-up after this subtask, one after a subtask that is still running.
        ctx.add_subtask("after_plan", agent="worker", depends_on=["plan"])
        ctx.add_subtask(
            "after_slow",
            agent="worker",
            depends_on=[Dependency(source="slow", target="after_slow", kind="data", input="x")],
        )
        return "planned"

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        if ctx.subtask.id == "after_plan":
            release_slow.set()
        return f"{ctx.subtask.id}:{ctx.inputs.get('x')}"

    graph = TaskGraph()
    graph.add_subtask("slow", agent="slow")
    graph.add_subtask("plan", agent="planner")

    result, events = await run_collect(Fleet([slow, planner, worker]), graph)

    assert result.status == "done"
    assert result.outputs["after_plan"] == "after_plan:None"
    assert result.outputs["after_slow"] == "after_slow:slow done"
    assert ran.index("after_slow") > ran.index("after_plan")
    edited = of_kind(events, "graph_edited")
    assert [e.by for e in edited] == ["plan", "plan"]
    assert [e.edit.subtask.id for e in edited] == ["after_plan", "after_slow"]
    assert index_of(events, "subtask_started", "after_slow") > index_of(
        events, "subtask_done", "slow"
    )
    # The edits come before the planner's own completion.
    assert max(events.index(e) for e in edited) < index_of(events, "subtask_done", "plan")


async def test_agent_may_return_edits_in_a_subtask_result() -> None:
    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> SubtaskResult:
        ctx.add_subtask("from_ctx", agent="worker")
        return SubtaskResult(
            output="plan",
            edits=(AddSubtask(subtask=Subtask(id="from_result", agent="worker")),),
        )

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        return ctx.subtask.id

    graph = TaskGraph()
    graph.add_subtask("plan", agent="planner")

    result = await Fleet([planner, worker]).run(graph)

    assert result.outputs == {"plan": "plan", "from_ctx": "from_ctx", "from_result": "from_result"}


async def test_agent_returning_an_invalid_edit_fails_its_subtask_with_graph_error() -> None:
    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> str:
        ctx.add_subtask("orphan", agent="planner", depends_on=["ghost"])
        return "planned"

    graph = TaskGraph()
    graph.add_subtask("plan", agent="planner", retry=FAST)
    graph.add_subtask("next", agent="planner", depends_on=["plan"])

    result, events = await run_collect(Fleet([planner]), graph)

    assert result.status == "failed"
    assert result.errors["plan"]["type"] == "GraphError"
    assert "ghost" in result.errors["plan"]["message"]
    assert result.errors["next"]["type"] == "UpstreamFailed"
    assert "orphan" not in result.graph
    assert of_kind(events, "graph_edited") == []
    assert of_kind(events, "subtask_retried") == []


# Regression: an agent's edits used to be applied one by one, so edits before an invalid one
# stayed in the graph (and ran) although the subtask failed.
async def test_invalid_edit_leaves_none_of_the_agents_edits_applied() -> None:
    ran: list[str] = []

    @agent(id="planner")
    async def planner(ctx: SubtaskContext) -> str:
        ctx.add_subtask("good", agent="worker")
        ctx.add_subtask("bad", agent="worker", depends_on=["ghost"])
        return "planned"

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ran.append(ctx.subtask.id)
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("plan", agent="planner")

    result = await Fleet([planner, worker]).run(graph)

    assert result.errors["plan"]["type"] == "GraphError"
    # "Graph edits ... are applied when the subtask finishes successfully" (SubtaskContext).
    assert "good" not in result.graph
    assert ran == []


async def test_progress_reports_become_events() -> None:
    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        ctx.progress("half way", 0.5)
        ctx.progress("almost")
        return "ok"

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")

    result, events = await run_collect(Fleet([worker]), graph)

    progress = of_kind(events, "subtask_progress", "s")
    assert [(e.message, e.fraction) for e in progress] == [("half way", 0.5), ("almost", None)]
    assert result.graph.state("s").progress == "almost"
    assert index_of(events, "subtask_progress", "s") < index_of(events, "subtask_done", "s")


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


async def test_simple_chain_event_order() -> None:
    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        return ctx.subtask.id

    graph = TaskGraph()
    graph.add_subtask("a", agent="worker")
    graph.add_subtask("b", agent="worker", depends_on=["a"])

    result, events = await run_collect(Fleet([worker]), graph)

    assert [(e.kind, getattr(e, "subtask_id", None)) for e in events] == [
        ("subtask_ready", "a"),
        ("subtask_started", "a"),
        ("subtask_done", "a"),
        ("subtask_ready", "b"),
        ("subtask_started", "b"),
        ("subtask_done", "b"),
        ("task_finished", None),
    ]
    assert all(e.task_id == result.task_id for e in events)
    versions = [e.version for e in events]
    assert versions == sorted(versions)
    finished = events[-1]
    assert finished.status == "done"
    assert finished.counts["done"] == 2
    assert of_kind(events, "subtask_done", "a")[0].output == "a"
    assert of_kind(events, "subtask_started", "b")[0].agent == "worker"


async def test_two_consumers_see_the_same_full_sequence() -> None:
    release = asyncio.Event()

    @agent(id="worker")
    async def worker(ctx: SubtaskContext) -> str:
        if ctx.subtask.id == "a":
            await release.wait()
        return ctx.subtask.id

    graph = TaskGraph()
    graph.add_subtask("a", agent="worker")
    graph.add_subtask("b", agent="worker", depends_on=["a"])
    graph.add_subtask("c", agent="worker", depends_on=["a"])

    async with Fleet([worker]) as fleet:
        handle = fleet.submit(graph)
        early: list[TaskEvent] = []
        async for event in handle.events():
            early.append(event)
            if event.kind == "subtask_started":
                release.set()
        await handle.result()
        late = [event async for event in handle.events()]

    assert early == late
    assert late[-1].kind == "task_finished"
    assert len(of_kind(late, "subtask_done")) == 3


async def test_events_of_a_failed_task_end_with_task_finished_failed() -> None:
    @agent(id="worker")
    async def worker() -> str:
        raise SubtaskFailed("nope", retryable=False)

    graph = TaskGraph()
    graph.add_subtask("s", agent="worker")

    result, events = await run_collect(Fleet([worker]), graph)

    assert result.status == "failed"
    assert events[-1].kind == "task_finished"
    assert events[-1].status == "failed"
    assert events[-1].counts["failed"] == 1

"""Tests for fleetmind/orchestrator/_engine.py: scheduling and agents' limits, conditions, data
flow and inputs, and the event stream.

Every test runs real agents on a real Fleet (in-memory store) and synchronises on
``asyncio.Event``s or the task's event stream; sleeps inside agents only simulate work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from engine_harness import FAST, of_kind, run_collect

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.errors import SubtaskFailed
from fleetmind.orchestrator import Dependency, SubtaskStatus, TaskEvent

pytestmark = pytest.mark.timeout(10)


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

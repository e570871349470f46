"""Tests of a subtask's attempts as the engine runs them (fleetmind/orchestrator/_attempt.py):
timeouts, retries with back-off, and reassignment to the next candidate.

Every test runs real agents on a real Fleet (in-memory store) and synchronises on
``asyncio.Event``s or the task's event stream; sleeps inside agents only simulate work.
"""

from __future__ import annotations

import asyncio

import pytest
from engine_harness import FAST, of_kind, run_collect

from fleetmind import Fleet, RetryPolicy, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.errors import SubtaskFailed
from fleetmind.orchestrator import SubtaskStatus

pytestmark = pytest.mark.timeout(10)


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


# Regression: SubtaskRetriedEvent.attempt used to be computed after the retry was applied to the
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

    # SubtaskRetriedEvent.attempt: "The attempt that is about to be made (2 for the first retry)."
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

"""Tests for fleetmind/orchestrator/_attempt.py: the one rule for what follows a failed attempt,
and the errors' say in it (fleetmind/errors.py: blames_agent, error_outcome)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetmind.errors import (
    AgentLost,
    CycleError,
    GraphError,
    MissingInput,
    SubtaskFailed,
    SubtaskTimeout,
    UpstreamFailed,
    blames_agent,
    error_outcome,
)
from fleetmind.orchestrator import RetryPolicy
from fleetmind.orchestrator._attempt import Fail, Reassign, Requeue, Retry, next_step

POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=0.5, backoff_multiplier=2.0)


def step(error: dict[str, Any], attempt: int = 1, *, others: bool, can_wait: bool = False) -> Any:
    return next_step(error, attempt=attempt, policy=POLICY, others=others, can_wait=can_wait)


def test_a_retryable_error_is_retried_with_backoff_until_attempts_run_out() -> None:
    error = SubtaskFailed("flaky").to_dict()

    assert step(error, 1, others=True) == Retry(0.5)
    assert step(error, 2, others=True) == Retry(1.0)
    assert step(error, 3, others=True) == Reassign()
    assert step(error, 3, others=False) == Fail()


def test_an_error_that_will_not_pass_goes_to_the_next_agent_at_once() -> None:
    error = error_outcome(ValueError("bad data"))

    assert not error["retryable"]
    assert step(error, 1, others=True) == Reassign()
    assert step(error, 1, others=False) == Fail()


@pytest.mark.parametrize(
    "error",
    [
        MissingInput("no text"),
        UpstreamFailed("its dependency failed"),
        GraphError("bad edit"),
        CycleError("a cycle"),  # a subclass is judged as its parent
    ],
)
def test_what_no_agent_could_fix_fails_without_trying_another(error: Exception) -> None:
    as_sent = error_outcome(error)

    assert not blames_agent(as_sent) and not blames_agent(error)
    assert step(as_sent, 1, others=True, can_wait=True) == Fail()


def test_a_retryable_error_no_agent_could_fix_is_still_retried_on_the_same_agent() -> None:
    error = {**MissingInput("not yet").to_dict(), "retryable": True}

    assert step(error, 1, others=True) == Retry(0.5)
    assert step(error, 3, others=True) == Fail()


def test_a_lost_agent_is_waited_for_only_when_nobody_else_can_do_the_work() -> None:
    lost = AgentLost("device pi-1 went away").to_dict()

    assert step(lost, 1, others=False, can_wait=True) == Requeue()
    assert step(lost, 1, others=True, can_wait=True) == Reassign()
    assert step(lost, 1, others=False, can_wait=False) == Fail()
    other = SubtaskFailed("gave up", retryable=False).to_dict()
    assert step(other, 1, others=False, can_wait=True) == Fail()


def test_errors_of_unknown_types_blame_the_agent() -> None:
    assert blames_agent({"type": "ValueError", "message": "x"})
    assert blames_agent({})
    assert blames_agent(RuntimeError("boom"))
    assert blames_agent(SubtaskTimeout("slow"))


def test_a_timeout_becomes_a_subtask_timeout_told_by_whoever_knows_more() -> None:
    plain = error_outcome(TimeoutError())
    told = error_outcome(TimeoutError(), timeout_message="subtask 'a' timed out after 2 s")

    assert plain == SubtaskTimeout("attempt timed out").to_dict()
    assert told["type"] == "SubtaskTimeout" and told["retryable"]
    assert told["message"] == "subtask 'a' timed out after 2 s"
    assert error_outcome(SubtaskTimeout("own words"), timeout_message="ignored")["message"] == (
        "own words"
    )

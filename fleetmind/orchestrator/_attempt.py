"""One subtask's attempts on one agent, and what follows a failed one.

:func:`next_step` is the whole rule, in one pure function: another try on the same agent
while the error may pass and attempts are left, else the next candidate agent, else a wait
for a lost agent to come back, else failure. :func:`run_attempts` carries it out for one
agent (a child task of the engine) and reports each outcome as a message to the engine's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetmind._task_model import RetryPolicy, Subtask
from fleetmind.agents import Agent, SubtaskContext, SubtaskResult
from fleetmind.errors import blames_agent, error_outcome, error_type
from fleetmind.orchestrator._engine_messages import Message, RunGaveUp, RunRetrying, RunSucceeded


@dataclass(frozen=True, slots=True)
class Retry:
    """Ask the same agent again after ``delay_s`` seconds."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Reassign:
    """Hand the subtask to the next candidate agent."""


@dataclass(frozen=True, slots=True)
class Requeue:
    """Route the subtask again, waiting (bounded) for an agent, perhaps the lost one back."""


@dataclass(frozen=True, slots=True)
class Fail:
    """No agent is left that could do better: the subtask fails (or is replanned)."""


GaveUp = Reassign | Requeue | Fail
"""What follows when an agent has given up on a subtask."""

Step = Retry | GaveUp


def next_step(
    error: Mapping[str, Any],
    *,
    attempt: int,
    policy: RetryPolicy,
    others: bool,
    can_wait: bool,
) -> Step:
    """What to do after attempt number ``attempt`` (1-based) on one agent failed with ``error``
    (``{type, message, retryable, details}``).

    Args:
        error: The failure, as :func:`fleetmind.errors.error_outcome` made it.
        attempt: How many attempts this agent has made at the subtask.
        policy: The subtask's retry policy.
        others: Whether a candidate agent that has not failed the subtask is left.
        can_wait: Whether the subtask may wait for agents to join.
    """
    if error.get("retryable") and attempt < policy.max_attempts:
        return Retry(policy.backoff_s(attempt))
    if not blames_agent(error):
        return Fail()  # another agent could not fix it either
    if not others and can_wait and error_type(error).agent_may_return:
        return Requeue()
    return Reassign() if others else Fail()


async def run_attempts(
    agent: Agent,
    subtask: Subtask,
    *,
    token: int,
    context: Callable[[int], SubtaskContext],
    others: Callable[[], bool],
    can_wait: bool,
    post: Callable[[Message], None],
) -> None:
    """Run ``subtask`` on ``agent`` until it succeeds or gives up, posting each outcome.

    Args:
        agent: The agent holding a slot for the subtask.
        subtask: The subtask.
        token: The run's token, so that the engine can ignore a superseded run's messages.
        context: The :class:`SubtaskContext` of attempt number n (1-based).
        others: Whether a candidate agent that has not failed the subtask is left.
        can_wait: Whether the subtask may wait for agents to join.
        post: Where the outcomes go (the engine's inbox).
    """
    attempt = 1
    while True:
        ctx = context(attempt)
        try:
            if subtask.timeout_s is None:
                raw = await agent.run(subtask, ctx)
            else:
                async with asyncio.timeout(subtask.timeout_s):
                    raw = await agent.run(subtask, ctx)
            result = SubtaskResult.of(raw, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            timed_out = (
                f"subtask {subtask.id!r} timed out after {subtask.timeout_s:g} s "
                f"on agent {agent.id!r}"
                if subtask.timeout_s is not None
                else None
            )
            error = error_outcome(exc, timeout_message=timed_out)
            saved = tuple(ctx._after_saved)
            step = next_step(
                error, attempt=attempt, policy=subtask.retry, others=others(), can_wait=can_wait
            )
            if isinstance(step, Retry):
                attempt += 1
                post(RunRetrying(subtask.id, agent.id, token, attempt, error, step.delay_s, saved))
                await asyncio.sleep(step.delay_s)
                continue
            post(RunGaveUp(subtask.id, agent.id, token, error, step, saved))
            return
        post(RunSucceeded(subtask.id, agent.id, token, result, tuple(ctx._after_saved)))
        return

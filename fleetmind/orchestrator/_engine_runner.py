"""One subtask on one agent, as the engine runs it: the context its attempts see, and the
answer an attempt got while the orchestrator was down.

Both read the engine's graph and report back through its inbox only (``post``), so that the
engine's loop stays the one place where the graph changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fleetmind.agents import Agent, ArtifactChunk, IncomingMessage, SubtaskContext, SubtaskResult
from fleetmind.agents.remote import ResultSource
from fleetmind.memory import AgentMemory, MemoryStore
from fleetmind.orchestrator._attempt import Retry, next_step, run_attempts
from fleetmind.orchestrator._checkpoints import Checkpoints
from fleetmind.orchestrator._engine_messages import (
    ArtifactStreamed,
    Message,
    ProgressReported,
    RunGaveUp,
    RunSucceeded,
)
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.tools import ToolRegistry

log = logging.getLogger("fleetmind.engine")


async def run_subtask(
    agent: Agent,
    subtask_id: str,
    token: int,
    *,
    task_id: str,
    graph: TaskGraph,
    post: Callable[[Message], None],
    tools: ToolRegistry,
    checkpoints: Checkpoints,
    memory: MemoryStore | None,
    message: IncomingMessage | None,
    others: Callable[[], bool],
    can_wait: bool,
) -> None:
    """Attempts on one agent, with retries; the outcome goes back as a message."""
    subtask = graph.subtask(subtask_id)
    first_epoch = graph.state(subtask_id).total_attempts  # this run's first attempt

    def report(message: str, fraction: float | None, step: Mapping[str, Any] | None = None) -> None:
        post(ProgressReported(subtask_id, token, message, fraction, dict(step) if step else None))

    def stream(chunk: ArtifactChunk) -> None:
        post(ArtifactStreamed(subtask_id, token, chunk))

    def context(attempt: int) -> SubtaskContext:
        return SubtaskContext(
            task_id=task_id,
            subtask=subtask,
            inputs=graph.resolve_inputs(subtask_id),
            attempt=attempt,
            agent_id=agent.id,
            _progress=report,
            _artifacts=stream,
            message=graph.answered_by(subtask_id) or message,
            tools=tools,
            checkpoints=checkpoints,
            memory=None if memory is None else AgentMemory(memory, agent.id, task_id=task_id),
            epoch=first_epoch + attempt - 1,
            dependents=tuple(dict.fromkeys(d.target for d in graph.dependents_of(subtask_id))),
        )

    await run_attempts(
        agent,
        subtask,
        token=token,
        context=context,
        others=others,
        can_wait=can_wait,
        post=post,
    )


def recovered(
    task_id: str,
    graph: TaskGraph,
    subtask_id: str,
    sources: Sequence[ResultSource],
    *,
    token: int,
    others: Callable[[str], bool],
    can_wait: bool,
) -> Message | None:
    """The outcome an attempt of a running subtask got while this process was down, as the
    message its runner would have posted (under ``token``), or None if no source keeps one.

    Only the attempt the log shows was made counts: an answer to any other is not taken (a
    retry whose entry a crash beat is answered by its device from the saved result).
    """
    state = graph.state(subtask_id)
    if state.agent is None:
        return None
    epochs = range(state.total_attempts, state.total_attempts + 1)
    for source in sources:
        found = source.recovered(task_id, subtask_id, state.agent, epochs)
        if found is None:
            continue
        outcome, saved = found
        if isinstance(outcome, SubtaskResult):
            return RunSucceeded(subtask_id, state.agent, token, outcome, (saved,))
        error = outcome.to_dict()
        # The answer kept from before the crash is that attempt's last word: no retry.
        policy = graph.subtask(subtask_id).retry
        step = next_step(
            error,
            attempt=policy.max_attempts,
            policy=policy,
            others=others(state.agent),
            can_wait=can_wait,
        )
        assert not isinstance(step, Retry)
        return RunGaveUp(subtask_id, state.agent, token, error, step, (saved,))
    return None


def run_hooks(hooks: Sequence[Callable[[], None]], task_id: str) -> None:
    """Call what waited for attempts' outcomes to be saved (acknowledgements to the broker);
    one that fails is logged, and the others are still called."""
    for hook in hooks:
        try:
            hook()
        except Exception:  # an acknowledgement that cannot be sent is the broker's loss
            log.warning("a hook after saving task %s failed", task_id, exc_info=True)

"""Checks a task graph against a fleet before it runs, so mistakes surface as one clear error."""

from __future__ import annotations

from fleetmind._suggest import did_you_mean
from fleetmind._task_model import Subtask
from fleetmind.errors import NoCapableAgent
from fleetmind.orchestrator._directory import AgentDirectory
from fleetmind.orchestrator._graph import TaskGraph
from fleetmind.orchestrator._router import Router


def check_runnable(graph: TaskGraph, directory: AgentDirectory, router: Router) -> None:
    """Raise for the first subtask that no agent can take or that lacks a required input.

    Raises:
        NoCapableAgent: a subtask names an unknown agent or a skill nobody offers.
        MissingInput: the best agent for a subtask requires an input nobody supplies.
    """
    for subtask in graph:
        if graph.state(subtask.id).status.has_started:
            continue
        try:
            decision = router.route(subtask, directory.profiles)
        except NoCapableAgent as exc:
            hint = _nearest_name(subtask, directory)
            if not hint:
                hint = f" (agents: {', '.join(sorted(directory.profiles)) or 'none'})"
            raise NoCapableAgent(exc.message + hint) from None
        agent = directory.get(decision.candidates[0])
        if agent is None:
            continue
        missing = agent.missing_inputs(subtask.id, graph.supplied_inputs(subtask.id))
        if missing is not None:
            raise missing


def _nearest_name(subtask: Subtask, directory: AgentDirectory) -> str:
    """`` (did you mean 'x'?)`` for a subtask's agent id or skill that nobody has; else ""."""
    profiles = directory.profiles
    if subtask.agent is not None and subtask.agent not in profiles:
        return did_you_mean(subtask.agent, profiles)
    if subtask.skill is not None:
        names = {name for p in profiles.values() for s in p.skills for name in (s.name, *s.tags)}
        if subtask.skill not in names:
            return did_you_mean(subtask.skill, names)
    return ""

"""Routing: which agents may take a subtask, best first.

The engine asks a :class:`Router` for a ranked list of candidates and walks down it as agents
fill up or fail. :class:`SkillRouter` routes by explicit agent id or by skill name/tag; semantic
routing over capability vectors replaces it behind the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile
from fleetmind.errors import NoCapableAgent


@dataclass(frozen=True)
class RoutingDecision:
    """The agents that may take a subtask, best first, and why the others may not."""

    candidates: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)
    """Agent id -> the reason it was ruled out."""
    scores: tuple[Any, ...] = ()
    """The top candidates' scores and their parts, best first (when the router scores)."""


@runtime_checkable
class Router(Protocol):
    """Chooses, for a subtask, the agents that may take it, best first."""

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        """Rank the fleet's ``agents`` (id -> profile) for ``subtask``.

        Raises:
            NoCapableAgent: no agent may take the subtask; the message says why.
        """
        ...


class SkillRouter:
    """Routes by explicit agent id, else by skill name or tag, cheapest and fastest first."""

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        if subtask.agent is not None:
            if subtask.agent in agents:
                return RoutingDecision((subtask.agent,))
            raise NoCapableAgent(
                f"subtask {subtask.id!r} asks for agent {subtask.agent!r}, "
                "which is not in the fleet"
            )
        if subtask.skill is None:
            raise NoCapableAgent(
                f"subtask {subtask.id!r} names neither an agent nor a skill to route by"
            )
        matching = [a for a in agents.values() if a.offers(subtask.skill)]
        if not matching:
            raise NoCapableAgent(
                f"no agent in the fleet offers skill {subtask.skill!r} "
                f"(needed by subtask {subtask.id!r})"
            )
        ranked = sorted(matching, key=lambda a: (a.cost_per_call, a.typical_latency_s))
        excluded = {
            a.id: f"does not offer skill {subtask.skill!r}"
            for a in agents.values()
            if a not in matching
        }
        return RoutingDecision(tuple(a.id for a in ranked), excluded)

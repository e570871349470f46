"""Routing: which agents may take a subtask, best first.

The engine asks a :class:`Router` for a ranked list of candidates and walks down it as agents
fill up or fail. :class:`SkillRouter` routes by explicit agent id or by skill name/tag; semantic
routing over capability vectors replaces it behind the same interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fleetmind._ids import agent_name
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
    review: dict[str, Any] | None = None
    """A language model's verdict on the candidates (see ``RouteReviewer``), when asked."""


class ProfileIndex(dict[str, AgentProfile]):
    """Agent id -> profile, indexed by name too (``resizer`` -> ``resizer@pi-1``, ...), so
    routing a subtask that names an agent costs the same with ten agents or ten thousand."""

    def __init__(self) -> None:
        super().__init__()
        self._named: dict[str, list[str]] = {}

    def __setitem__(self, agent_id: str, profile: AgentProfile) -> None:
        if agent_id not in self:
            self._named.setdefault(agent_name(agent_id), []).append(agent_id)
        super().__setitem__(agent_id, profile)

    def __delitem__(self, agent_id: str) -> None:
        super().__delitem__(agent_id)
        ids = self._named.get(agent_name(agent_id), [])
        if agent_id in ids:
            ids.remove(agent_id)

    def named(self, name: str) -> list[str]:
        """The ids of the agents called ``name`` on any device."""
        return list(self._named.get(name, ()))


def named_agents(subtask: Subtask, agents: Mapping[str, AgentProfile]) -> list[str]:
    """The agents a subtask names with ``agent``: that exact id, or — for a plain name — the
    agent of that name on every device that serves it (``resizer`` matches ``resizer@pi-7``).

    Raises:
        NoCapableAgent: no agent has that id or name.
    """
    wanted = subtask.agent
    assert wanted is not None
    if wanted in agents:
        return [wanted]
    if "@" in wanted:
        found = []
    elif isinstance(agents, ProfileIndex):
        found = agents.named(wanted)
    else:
        found = [a for a in agents if agent_name(a) == wanted]
    if not found:
        raise NoCapableAgent(
            f"subtask {subtask.id!r} asks for agent {wanted!r}, which is not in the fleet"
        )
    return found


def placement_violation(profile: AgentProfile, constraints: Mapping[str, Any]) -> str | None:
    """Why an agent's place rules it out (the ``device`` constraint), or None."""
    device = constraints.get("device")
    if device is None:
        return None
    wanted = [device] if isinstance(device, str) else [str(d) for d in device]
    if profile.device not in wanted:
        where = f"device {profile.device}" if profile.device else "this process"
        return f"runs on {where}, not on {' or '.join(wanted)}"
    return None


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
            named = named_agents(subtask, agents)
            placed = [
                a for a in named if placement_violation(agents[a], subtask.constraints) is None
            ]
            if not placed:
                why = placement_violation(agents[named[0]], subtask.constraints)
                raise NoCapableAgent(
                    f"agent {named[0]!r} cannot take subtask {subtask.id!r}: {why}"
                )
            named_ranked = sorted(
                placed, key=lambda a: (agents[a].cost_per_call, agents[a].typical_latency_s)
            )
            return RoutingDecision(tuple(named_ranked))
        if subtask.skill is None:
            raise NoCapableAgent(
                f"subtask {subtask.id!r} names neither an agent nor a skill to route by"
            )
        offering = [a for a in agents.values() if a.offers(subtask.skill)]
        matching = [a for a in offering if placement_violation(a, subtask.constraints) is None]
        if offering and not matching:
            why = placement_violation(offering[0], subtask.constraints)
            raise NoCapableAgent(
                f"no agent offering skill {subtask.skill!r} may take subtask {subtask.id!r}: {why}"
            )
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

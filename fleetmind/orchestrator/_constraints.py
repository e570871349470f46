"""Hard constraints: which agents a subtask allows at all, whatever the router's ordering.

Every router applies the same rules: a subtask that names an agent gets that agent (on any
device that serves it) and no other; a subtask's ``constraints`` — ``tier``, ``device``,
``data`` that must stay local, ``max_cost``, ``max_latency_s`` — and the agents' presence rule
agents out, each with a reason. Routers differ only in how they order what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fleetmind._ids import agent_name
from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile, Tier
from fleetmind.errors import ConfigError, NoCapableAgent

Online = Callable[[str], bool]
"""Whether the agent with this id can be reached now."""


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


def tiers_of(value: Any) -> list[Tier] | None:
    """The tiers a ``tier`` constraint allows (None: any).

    Raises:
        ConfigError: a tier that does not exist.
    """
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    try:
        return [Tier(v) for v in values]
    except ValueError:
        raise ConfigError(
            f"unknown tier in constraints: {value!r} (use device, edge or cloud)"
        ) from None


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


def violation(
    profile: AgentProfile, constraints: Mapping[str, Any], online: Online | None = None
) -> str | None:
    """Why an agent may not take a subtask with these constraints, or None if it may.

    Raises:
        ConfigError: the constraints name a tier that does not exist.
    """
    tiers = tiers_of(constraints.get("tier"))
    if tiers is not None and profile.tier not in tiers:
        return f"tier {profile.tier.value} is not {'/'.join(t.value for t in tiers)}"
    placed = placement_violation(profile, constraints)
    if placed is not None:
        return placed
    if online is not None and not online(profile.id):
        return "offline"
    data = constraints.get("data")
    if data:
        needed = [data] if isinstance(data, str) else list(data)
        missing = [d for d in needed if d not in profile.limits.local_data]
        if missing:
            return f"data {', '.join(missing)} must stay local and is not on this agent"
    max_cost = constraints.get("max_cost")
    if max_cost is not None and profile.cost_per_call > float(max_cost):
        return f"cost {profile.cost_per_call:g} is over the ceiling {float(max_cost):g}"
    max_latency = constraints.get("max_latency_s")
    if max_latency is not None and profile.typical_latency_s > float(max_latency):
        return f"latency {profile.typical_latency_s:g}s is over the ceiling {float(max_latency):g}s"
    return None


def unsatisfied(subtask: Subtask, excluded: Mapping[str, str]) -> NoCapableAgent:
    """The refusal when every agent that could take the subtask broke one of its constraints."""
    reason = "no agent satisfies its constraints"
    why = "; ".join(f"{a}: {r}" for a, r in list(excluded.items())[:5])
    return NoCapableAgent(
        f"no capable agent for subtask {subtask.id!r}: {reason} ({why})",
        details={"reason": reason, "excluded": dict(excluded)},
    )


def explicit_candidates(
    subtask: Subtask, agents: Mapping[str, AgentProfile], online: Online | None = None
) -> tuple[list[str], dict[str, str]]:
    """The agents a subtask that names one may go to, and why the others it names may not.

    Raises:
        NoCapableAgent: no agent has the name, or none that has it meets the constraints.
        ConfigError: the constraints name a tier that does not exist.
    """
    allowed: list[str] = []
    excluded: dict[str, str] = {}
    for agent_id in named_agents(subtask, agents):
        reason = violation(agents[agent_id], subtask.constraints, online)
        if reason is None:
            allowed.append(agent_id)
        else:
            excluded[agent_id] = reason
    if not allowed:
        raise unsatisfied(subtask, excluded)
    return allowed, excluded

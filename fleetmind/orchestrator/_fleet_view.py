"""The fleet as the planner sees it: each agent's id, tier, cost, skills and inputs, compactly.

A plan is only as good as the planner's picture of the fleet, and a fleet of hundreds of agents
must still fit in a prompt. :meth:`FleetView.render` writes one short line per agent and, when
the fleet is too large for the budget, drops descriptions first and then keeps the agents the
router ranks highest for the request (the planner sees the fleet as the router does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fleetmind._task_model import Subtask
from fleetmind.agents import Agent
from fleetmind.errors import NoCapableAgent
from fleetmind.orchestrator._router import RoutingDecision

RouteFn = Callable[[Subtask], RoutingDecision]


@dataclass(frozen=True)
class AgentSummary:
    """What the planner needs to know of one agent."""

    id: str
    tier: str
    cost: float
    latency_s: float
    skills: tuple[str, ...]
    """Skill names, with their tags in brackets."""
    description: str
    needs: tuple[str, ...]
    """Inputs the agent cannot run without."""
    optional: tuple[str, ...]
    """Inputs it reads when given."""

    @classmethod
    def of(cls, agent: Agent) -> AgentSummary:
        """The summary of an agent, from its profile and its declared inputs."""
        profile = agent.profile
        skills = tuple(
            s.name + (f" ({', '.join(s.tags)})" if s.tags else "") for s in profile.skills
        )
        return cls(
            id=profile.id,
            tier=profile.tier.value,
            cost=profile.cost_per_call,
            latency_s=profile.typical_latency_s,
            skills=skills,
            description=" ".join(profile.description.split()),
            needs=tuple(sorted(agent.required_inputs)),
            optional=tuple(sorted(agent.optional_inputs)),
        )

    def line(self, *, with_description: bool = True) -> str:
        """One line: ``- id [tier, cost C] skills: a, b; needs: x; optional: y — what it does``."""
        parts = [f"- {self.id} [{self.tier}, cost {self.cost:g}]"]
        if self.skills:
            parts.append(f" skills: {', '.join(self.skills)};")
        if self.needs:
            parts.append(f" needs: {', '.join(self.needs)};")
        if self.optional:
            parts.append(f" optional: {', '.join(self.optional)};")
        text = "".join(parts).rstrip(";")
        if with_description and self.description:
            description = self.description
            if len(description) > 160:
                description = description[:157].rstrip() + "..."
            text += f" — {description}"
        return text


class FleetView:
    """The agents a plan may use, and the router that will place its subtasks.

    Args:
        agents: Summaries of the fleet's agents.
        route: The fleet's router, applied to one subtask (used to rank agents for a request
            when the fleet is too large to show whole, and to check that planned subtasks can
            be placed).
    """

    def __init__(self, agents: Iterable[AgentSummary], route: RouteFn) -> None:
        self.agents = {a.id: a for a in agents}
        self.route = route

    @classmethod
    def of(cls, agents: Iterable[Agent], route: RouteFn) -> FleetView:
        """The view of a set of agents."""
        return cls((AgentSummary.of(a) for a in agents), route)

    @property
    def skills(self) -> set[str]:
        """Every skill name and tag some agent offers (lower case)."""
        names: set[str] = set()
        for summary in self.agents.values():
            for skill in summary.skills:
                name, _, tags = skill.partition(" (")
                names.add(name.casefold())
                names.update(t.strip().casefold() for t in tags.rstrip(")").split(",") if t.strip())
        return names

    def render(self, request: str = "", budget_chars: int = 12_000) -> str:
        """The fleet as prompt text, within ``budget_chars``."""
        summaries: Sequence[AgentSummary] = sorted(self.agents.values(), key=lambda a: a.id)
        full = "\n".join(a.line() for a in summaries)
        if len(full) <= budget_chars:
            return full
        short = "\n".join(a.line(with_description=False) for a in summaries)
        if len(short) <= budget_chars:
            return short
        ranked = self._ranked(request) if request else []
        order = [*ranked, *(a.id for a in summaries if a.id not in set(ranked))]
        lines: list[str] = []
        used = 0
        for agent_id in order:
            line = self.agents[agent_id].line(with_description=False)
            if used + len(line) + 80 > budget_chars:
                break
            lines.append(line)
            used += len(line) + 1
        hidden = len(self.agents) - len(lines)
        lines.append(
            f"({hidden} more agents are not listed; describe other work in plain words and "
            "the router will find an agent for it)"
        )
        return "\n".join(lines)

    def _ranked(self, request: str) -> list[str]:
        """Agents the router ranks for the request as a whole, best first."""
        try:
            decision = self.route(Subtask(id="request", description=request[:2000]))
        except NoCapableAgent:
            return []
        return [a for a in decision.candidates if a in self.agents]

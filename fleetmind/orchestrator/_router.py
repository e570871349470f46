"""Routing: which agents may take a subtask, best first.

The engine asks a :class:`Router` for a ranked list of candidates and walks down it as agents
fill up or fail. A router implements :meth:`Router.route`; everything else a fleet or an engine
may call on it is declared here with a default that does nothing, so a router of one's own
sees in one place what will be called. :class:`SkillRouter` routes by explicit agent id or by
skill name/tag; :class:`~fleetmind.orchestrator.SemanticRouter` routes by words as well.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fleetmind._task_log import SubtaskRouted
from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile
from fleetmind.errors import ConfigError, NoCapableAgent
from fleetmind.orchestrator._constraints import (
    Online,
    explicit_candidates,
    unsatisfied,
    violation,
)
from fleetmind.orchestrator._store import Store


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

    def entry(self, subtask_id: str) -> SubtaskRouted:
        """The decision as the log entry that explains it: the top candidates with their
        scores, and a few of the exclusions."""
        candidates = tuple(
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(s).items()}
            for s in self.scores[:5]
        ) or tuple({"agent_id": a} for a in self.candidates[:5])
        excluded = dict(list(self.excluded.items())[:10])
        return SubtaskRouted(
            subtask_id=subtask_id, candidates=candidates, excluded=excluded, review=self.review
        )


@dataclass(frozen=True)
class RouterContext:
    """What a fleet tells the router it binds (see :meth:`Router.bind`)."""

    load_of: Callable[[str], tuple[int, int]]
    """Slots an agent is using now, and how many it has."""
    online: Online
    """Whether an agent can be reached now (a device's agent may be away for a while)."""
    store: Store | None = None
    """Where past tasks are kept, for a router that learns from their outcomes."""


class Router(abc.ABC):
    """Chooses, for a subtask, the agents that may take it, best first.

    Only :meth:`route` must be written. The other methods are what a fleet and its engines
    call along the way; each does nothing (returns None) unless a router overrides it.
    """

    @abc.abstractmethod
    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        """Rank the fleet's ``agents`` (id -> profile) for ``subtask``.

        Raises:
            NoCapableAgent: no agent may take the subtask; the message says why.
        """

    def bind(self, context: RouterContext) -> None:
        """The fleet the router now serves: agents' load and presence, and the task store."""
        return None

    def agents_changed(
        self, added: Sequence[AgentProfile] = (), removed: Sequence[str] = ()
    ) -> None:
        """Agents joined (or changed version), or left the fleet."""
        return None

    def prepare(self, subtasks: Sequence[Subtask]) -> None:
        """Get ready to route many subtasks at once (embed their words in one batch, say).

        It may block (a model call): the engine calls it in a worker thread.
        """
        return None

    async def review(self, subtasks: Sequence[Subtask], agents: Mapping[str, AgentProfile]) -> None:
        """Have the candidates of ``subtasks`` judged before they are routed (by a language
        model, say); :meth:`route` applies the verdicts from then on."""
        return None

    def observe(self, subtask: Subtask, agent_id: str, ok: bool) -> None:
        """Learn from an outcome: ``agent_id`` did (or failed) ``subtask``."""
        return None

    def save(self) -> None:
        """Keep what the router learned for the next process (an index, embeddings)."""
        return None


class _RouteOnly(Router):
    """A router written before :class:`Router` was a base class: only its ``route`` is used."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        decision: RoutingDecision = self._inner.route(subtask, agents)
        return decision

    def __repr__(self) -> str:
        return f"<{type(self._inner).__name__} (route only)>"


def as_router(router: object) -> Router:
    """A fleet's router from what a user passed.

    Raises:
        ConfigError: ``router`` has no ``route`` method.
    """
    if isinstance(router, Router):
        return router
    if not callable(getattr(router, "route", None)):
        raise ConfigError(
            f"{type(router).__name__} is not a router: subclass fleetmind.orchestrator.Router"
        )
    warnings.warn(
        f"{type(router).__name__} does not subclass fleetmind.orchestrator.Router; only its "
        "route() is used (subclass Router to have the fleet call its other methods)",
        DeprecationWarning,
        stacklevel=3,
    )
    return _RouteOnly(router)


class SkillRouter(Router):
    """Routes by explicit agent id, else by skill name or tag, cheapest and fastest first."""

    def __init__(self) -> None:
        self._online: Online | None = None

    def bind(self, context: RouterContext) -> None:
        self._online = context.online

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        if subtask.agent is not None:
            named, excluded = explicit_candidates(subtask, agents, self._online)
            ranked = sorted(
                named, key=lambda a: (agents[a].cost_per_call, agents[a].typical_latency_s)
            )
            return RoutingDecision(tuple(ranked), excluded)
        if subtask.skill is None:
            raise NoCapableAgent(
                f"subtask {subtask.id!r} names neither an agent nor a skill to route by"
            )
        offering = [a for a in agents.values() if a.offers(subtask.skill)]
        if not offering:
            raise NoCapableAgent(
                f"no agent in the fleet offers skill {subtask.skill!r} "
                f"(needed by subtask {subtask.id!r})"
            )
        excluded = {
            a.id: f"does not offer skill {subtask.skill!r}"
            for a in agents.values()
            if not a.offers(subtask.skill)
        }
        matching: list[AgentProfile] = []
        ruled_out: dict[str, str] = {}
        for profile in offering:
            reason = violation(profile, subtask.constraints, self._online)
            if reason is None:
                matching.append(profile)
            else:
                ruled_out[profile.id] = reason
        if not matching:
            raise unsatisfied(subtask, ruled_out)
        cheapest = sorted(matching, key=lambda a: (a.cost_per_call, a.typical_latency_s))
        return RoutingDecision(tuple(a.id for a in cheapest), {**ruled_out, **excluded})

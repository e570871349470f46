"""Tests for fleetmind/orchestrator/_router.py: SkillRouter, the Router base class and what a
fleet does with a router that does not subclass it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import AgentProfile, FunctionAgent, Skill, SubtaskContext
from fleetmind.errors import ConfigError, NoCapableAgent
from fleetmind.orchestrator import Router, RoutingDecision, SkillRouter, Subtask


def profile(
    agent_id: str, *skills: Skill | str, cost: float = 0.0, latency: float = 0.0
) -> AgentProfile:
    return AgentProfile(
        id=agent_id,
        skills=tuple(s if isinstance(s, Skill) else Skill(name=s) for s in skills),
        cost_per_call=cost,
        typical_latency_s=latency,
    )


def by_id(*profiles: AgentProfile) -> dict[str, AgentProfile]:
    return {p.id: p for p in profiles}


FLEET = by_id(
    profile("translator", Skill(name="translate", tags=("I18N", "language")), cost=0.5),
    profile("summariser", "summarise", cost=0.1),
    profile("pricey", "summarise", Skill(name="classify", tags=("labels",)), cost=2.0),
)


def test_skill_router_is_a_router() -> None:
    assert isinstance(SkillRouter(), Router)


def test_explicit_agent_id_wins_over_skill() -> None:
    decision = SkillRouter().route(Subtask(id="s", agent="pricey", skill="translate"), FLEET)

    assert decision == RoutingDecision(("pricey",))
    assert decision.excluded == {}


def test_routes_by_skill_name() -> None:
    decision = SkillRouter().route(Subtask(id="s", skill="translate"), FLEET)

    assert decision.candidates == ("translator",)
    assert decision.excluded == {
        "summariser": "does not offer skill 'translate'",
        "pricey": "does not offer skill 'translate'",
    }


@pytest.mark.parametrize("wanted", ["i18n", "I18N", "Language", "TRANSLATE"])
def test_routes_by_tag_or_name_case_insensitively(wanted: str) -> None:
    decision = SkillRouter().route(Subtask(id="s", skill=wanted), FLEET)

    assert decision.candidates == ("translator",)


def test_ranks_cheapest_first() -> None:
    decision = SkillRouter().route(Subtask(id="s", skill="summarise"), FLEET)

    assert decision.candidates == ("summariser", "pricey")
    assert set(decision.excluded) == {"translator"}


def test_equal_cost_ranks_by_latency_then_keeps_fleet_order() -> None:
    agents = by_id(
        profile("slow", "work", cost=1.0, latency=5.0),
        profile("free-but-slow", "work", cost=0.0, latency=9.0),
        profile("fast", "work", cost=1.0, latency=0.5),
        profile("fast-too", "work", cost=1.0, latency=0.5),
    )

    decision = SkillRouter().route(Subtask(id="s", skill="work"), agents)

    assert decision.candidates == ("free-but-slow", "fast", "fast-too", "slow")


def test_unknown_agent_id_raises_no_capable_agent() -> None:
    with pytest.raises(NoCapableAgent) as caught:
        SkillRouter().route(Subtask(id="job", agent="ghost"), FLEET)

    message = str(caught.value)
    assert "'job'" in message
    assert "'ghost'" in message
    assert "not in the fleet" in message


def test_unknown_skill_raises_no_capable_agent() -> None:
    with pytest.raises(NoCapableAgent) as caught:
        SkillRouter().route(Subtask(id="job", skill="juggling"), FLEET)

    message = str(caught.value)
    assert "'juggling'" in message
    assert "'job'" in message
    assert caught.value.to_dict()["type"] == "NoCapableAgent"


def test_subtask_without_agent_or_skill_raises_no_capable_agent() -> None:
    with pytest.raises(NoCapableAgent, match="neither an agent nor a skill"):
        SkillRouter().route(Subtask(id="job"), FLEET)


def test_empty_fleet_has_no_capable_agent() -> None:
    with pytest.raises(NoCapableAgent):
        SkillRouter().route(Subtask(id="job", skill="summarise"), {})
    with pytest.raises(NoCapableAgent):
        SkillRouter().route(Subtask(id="job", agent="summariser"), {})


class Last(Router):
    """Routes by skill to the agent that joined last: only ``route`` is written."""

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        offering = [a for a, p in agents.items() if subtask.skill and p.offers(subtask.skill)]
        if not offering:
            raise NoCapableAgent(f"nobody offers {subtask.skill!r}")
        return RoutingDecision((offering[-1],))


def workers() -> list[FunctionAgent]:
    made = []
    for agent_id in ("first", "second"):

        @agent(id=agent_id, skills=["work"])
        async def work(ctx: SubtaskContext) -> str:
            return ctx.agent_id

        made.append(work)
    return made


async def test_a_router_that_writes_only_route_serves_a_fleet() -> None:
    graph = TaskGraph()
    graph.add_subtask("w", skill="work")
    graph.add_subtask("words", description="some words to embed")  # prepare() is a no-op

    result = await Fleet(workers(), router=Last()).run(graph)

    assert result.outputs == {"w": "second"}
    assert result.errors["words"]["type"] == "NoCapableAgent"


class RouteOnly:
    """A router from before Router was a base class."""

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        return RoutingDecision((sorted(agents)[0],))

    def save(self) -> None:
        raise AssertionError("only route() of a router that is not a Router is called")


async def test_a_router_that_does_not_subclass_router_still_routes_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="RouteOnly does not subclass"):
        fleet = Fleet(workers(), router=RouteOnly())  # type: ignore[arg-type]  # on purpose
    graph = TaskGraph()
    graph.add_subtask("w", skill="work")

    result = await fleet.run(graph)

    assert isinstance(fleet.router, Router)
    assert result.outputs == {"w": "first"}
    fleet.router.save()  # declared, and does nothing


def test_something_without_route_is_not_a_router() -> None:
    with pytest.raises(ConfigError, match="object is not a router"):
        Fleet([], router=object())  # type: ignore[arg-type]  # on purpose

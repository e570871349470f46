"""Tests for fleetmind/orchestrator/_constraints.py: the hard constraints every router applies
the same way (SkillRouter and SemanticRouter differ only in how they order what is left), and
the agents' presence, which a fleet tells its router when it binds it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import Agent, AgentProfile, FunctionAgent, Skill, SubtaskContext
from fleetmind.errors import ConfigError, NoCapableAgent
from fleetmind.orchestrator import Router, RouterContext, SemanticRouter, SkillRouter, Subtask
from fleetmind.orchestrator._constraints import explicit_candidates, violation

ROUTERS: dict[str, Callable[[], Router]] = {"skill": SkillRouter, "semantic": SemanticRouter}


def profile(agent_id: str, **fields: Any) -> AgentProfile:
    return AgentProfile(id=agent_id, skills=(Skill(name="resize"),), **fields)


FLEET = {
    p.id: p
    for p in (
        profile("resizer@pi-1", device="pi-1", cost_per_call=0.5),
        profile("resizer@pi-2", device="pi-2", cost_per_call=3.0, typical_latency_s=20.0),
        profile("vault", tier="edge", limits={"local_data": ["photos"]}),
    )
}


def bound(make: Callable[[], Router], offline: Collection[str] = ()) -> Router:
    router = make()
    router.bind(RouterContext(lambda a: (0, 4), lambda a: a not in offline))
    router.agents_changed(added=list(FLEET.values()))
    return router


@pytest.mark.parametrize("kind", sorted(ROUTERS))
@pytest.mark.parametrize(
    ("constraints", "allowed", "why"),
    [
        ({"max_cost": 1}, ["resizer@pi-1"], "cost 3 is over the ceiling 1"),
        ({"max_latency_s": 5}, ["resizer@pi-1"], "latency 20s is over the ceiling 5s"),
        ({"device": "pi-2"}, ["resizer@pi-2"], "runs on device pi-1, not on pi-2"),
        ({"tier": "cloud"}, [], "tier device is not cloud"),
        ({"data": "photos"}, [], "data photos must stay local and is not on this agent"),
    ],
)
def test_an_agent_named_by_a_subtask_still_meets_its_constraints(
    kind: str, constraints: dict[str, Any], allowed: list[str], why: str
) -> None:
    router = bound(ROUTERS[kind])
    subtask = Subtask(id="s", agent="resizer", constraints=constraints)

    if not allowed:
        with pytest.raises(NoCapableAgent, match="no agent satisfies its constraints") as caught:
            router.route(subtask, FLEET)
        assert why in caught.value.details["excluded"]["resizer@pi-1"]
        return
    decision = router.route(subtask, FLEET)
    assert list(decision.candidates) == allowed
    assert why in decision.excluded.values()


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_a_subtask_routed_by_skill_meets_the_same_constraints(kind: str) -> None:
    router = bound(ROUTERS[kind])

    local = router.route(Subtask(id="s", skill="resize", constraints={"data": "photos"}), FLEET)
    cheap = router.route(Subtask(id="s", skill="resize", constraints={"max_cost": 1}), FLEET)

    assert local.candidates == ("vault",)
    assert local.excluded["resizer@pi-1"].startswith("data photos must stay local")
    assert set(cheap.candidates) == {"resizer@pi-1", "vault"}
    assert cheap.excluded["resizer@pi-2"] == "cost 3 is over the ceiling 1"


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_an_offline_agent_is_passed_over_and_named_alone_is_refused(kind: str) -> None:
    router = bound(ROUTERS[kind], offline={"resizer@pi-1"})

    named = router.route(Subtask(id="s", agent="resizer"), FLEET)
    by_skill = router.route(Subtask(id="s", skill="resize"), FLEET)

    assert named.candidates == ("resizer@pi-2",)
    assert named.excluded == {"resizer@pi-1": "offline"}
    assert "resizer@pi-1" not in by_skill.candidates
    with pytest.raises(NoCapableAgent, match="resizer@pi-1: offline"):
        router.route(Subtask(id="s", agent="resizer@pi-1"), FLEET)


def test_explicit_candidates_and_violation_answer_without_a_router() -> None:
    named, excluded = explicit_candidates(
        Subtask(id="s", agent="resizer", constraints={"max_cost": 1}), FLEET
    )

    assert (named, excluded) == (["resizer@pi-1"], {"resizer@pi-2": "cost 3 is over the ceiling 1"})
    assert violation(FLEET["vault"], {"tier": ["edge", "cloud"]}) is None
    assert violation(FLEET["vault"], {}, online=lambda a: False) == "offline"
    with pytest.raises(ConfigError, match="unknown tier"):
        violation(FLEET["vault"], {"tier": "moon"})
    with pytest.raises(NoCapableAgent, match="not in the fleet"):
        explicit_candidates(Subtask(id="s", agent="ghost"), FLEET)


class Away(Agent):
    """An agent whose device has gone quiet for a while."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(AgentProfile(id=agent_id, skills=(Skill(name="resize"),)))

    @property
    def online(self) -> bool:
        return False

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        raise AssertionError("an offline agent was given work")


def here(agent_id: str) -> FunctionAgent:
    @agent(id=agent_id, skills=["resize"])
    async def resize(ctx: SubtaskContext) -> str:
        return ctx.agent_id

    return resize


@pytest.mark.parametrize("kind", sorted(ROUTERS))
async def test_a_fleet_tells_its_router_which_agents_are_offline(kind: str) -> None:
    fleet = Fleet([Away("resizer@pi-1"), here("resizer@pi-2")], router=ROUTERS[kind]())
    graph = TaskGraph()
    graph.add_subtask("named", agent="resizer")
    graph.add_subtask("skilled", skill="resize")

    result = await fleet.run(graph)

    assert result.outputs == {"named": "resizer@pi-2", "skilled": "resizer@pi-2"}
    assert fleet.route(Subtask(id="s", agent="resizer")).excluded == {"resizer@pi-1": "offline"}

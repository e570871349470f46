"""A language model reviewing the router's top candidates, over real HTTP to the scripted
loopback server: it reorders, refuses with a reason, or fails without stopping the fleet."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fleetmind import AgentProfile, Fleet, TaskGraph, agent
from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
from fleetmind.errors import NoCapableAgent
from fleetmind.orchestrator import RouteReviewer, SemanticRouter, SentenceEmbedder, Subtask
from fleetmind.testing import Reply, ScriptedLLMServer

FLEET = [
    AgentProfile(
        id="door-cam",
        description="Watches the front door camera: who is at the door, parcels left, motion.",
        skills=[{"name": "front door", "description": "Describes who or what is at the door"}],
    ),
    AgentProfile(
        id="garden-cam",
        description="Watches the garden camera: animals, people and motion in the garden.",
        skills=[{"name": "garden", "description": "Describes what moves in the garden"}],
    ),
    AgentProfile(
        id="thermostat",
        description="Reads and sets the home's heating temperature.",
        skills=[{"name": "heating", "description": "Room temperatures and set points"}],
    ),
]
AGENTS = {p.id: p for p in FLEET}


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


@pytest.fixture
async def client(server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    endpoint = ModelEndpoint(
        name="cloud",
        base_url=server.url,
        model="reviewer",
        max_retries=0,
        prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    )
    async with OpenAICompatibleClient(endpoint) as model:
        yield model


def router_with(client: OpenAICompatibleClient, **options: Any) -> SemanticRouter:
    router = SemanticRouter(
        SentenceEmbedder("light"), min_similarity=0.0, reviewer=RouteReviewer(client, **options)
    )
    router.agents_changed(added=FLEET)
    return router


def shown_ids(request: dict[str, Any]) -> list[str]:
    return re.findall(r"^- id: (\S+)$", request["messages"][1]["content"], re.M)


def answer(agent_id: str | None, reason: str) -> Reply:
    return Reply.text(json.dumps({"agent": agent_id, "reason": reason}))


SUBTASK = Subtask(id="s1", description="is somebody standing at the front door right now?")


async def test_the_reviewers_pick_goes_first_with_its_reason(
    server: ScriptedLLMServer, client: OpenAICompatibleClient
) -> None:
    router = router_with(client, candidates=2)
    plain = router.route(SUBTASK, AGENTS).candidates
    runner_up = plain[1]
    server.push(answer(runner_up, f"{runner_up} sees that spot"))
    await router.review([SUBTASK], AGENTS)
    decision = router.route(SUBTASK, AGENTS)
    assert decision.candidates[0] == runner_up
    assert set(decision.candidates) == set(plain)
    assert (
        decision.review is not None and decision.review["reason"] == f"{runner_up} sees that spot"
    )
    assert decision.review["model"] and decision.review["cost"] > 0
    [request] = server.requests
    assert shown_ids(request) == list(plain[:2])  # the model saw only the best two


async def test_a_refusal_is_no_capable_agent_with_the_models_reason(
    server: ScriptedLLMServer, client: OpenAICompatibleClient
) -> None:
    router = router_with(client)
    subtask = Subtask(id="s2", description="carry the parcel on the doorstep inside")
    server.push(answer(None, "cameras only watch; nobody can carry things"))
    await router.review([subtask], AGENTS)
    with pytest.raises(NoCapableAgent) as caught:
        router.route(subtask, AGENTS)
    reason = caught.value.details["reason"]
    assert "nobody can carry things" in reason and "reviewer refused" in reason
    assert caught.value.details["review"]["agent"] is None
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    "reply",
    [Reply.error(500, "boom"), answer("made-up-agent", "this one")],
    ids=["server-error", "made-up-id"],
)
async def test_a_failed_review_leaves_the_embedding_order(
    server: ScriptedLLMServer, client: OpenAICompatibleClient, reply: Reply
) -> None:
    router = router_with(client)
    plain = router.route(SUBTASK, AGENTS).candidates
    server.push(reply)
    await router.review([SUBTASK], AGENTS)
    decision = router.route(SUBTASK, AGENTS)
    assert decision.candidates == plain
    assert decision.review is not None and decision.review["failed"] is True
    assert decision.review["reason"].startswith("review failed")


async def test_one_question_per_distinct_text(
    server: ScriptedLLMServer, client: OpenAICompatibleClient
) -> None:
    router = router_with(client)
    server.push(answer("door-cam", "it watches the door"), answer("thermostat", "heating"))
    same = [
        Subtask(id=f"d{i}", description="is somebody standing at the front door right now?")
        for i in range(3)
    ]
    other = Subtask(id="h", description="make the living room warmer")
    pinned = Subtask(id="p", description="anything", agent="garden-cam")  # not reviewed
    await router.review([*same, other, pinned], AGENTS)
    assert len(server.requests) == 2
    await router.review(same, AGENTS)  # verdicts are kept: nothing asked again
    assert len(server.requests) == 2


def test_a_reviewer_needs_a_candidate_to_look_at() -> None:
    endpoint = ModelEndpoint(name="cloud", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ValueError, match="at least one candidate"):
        RouteReviewer(OpenAICompatibleClient(endpoint), candidates=0)


async def test_the_engine_asks_the_reviewer_and_logs_its_reason() -> None:
    @agent(id="door-cam", description=FLEET[0].description)
    async def door_cam() -> str:
        return "the postman"

    @agent(id="garden-cam", description=FLEET[1].description)
    async def garden_cam() -> str:
        return "a fox"

    def review(request: dict[str, Any]) -> Reply:
        return answer("garden-cam", "the question is about the lawn")

    graph = TaskGraph("review")
    graph.add_subtask("look", description="what is moving around out there right now?")
    with ScriptedLLMServer(responder=review) as server:
        endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", max_retries=0)
        async with OpenAICompatibleClient(endpoint) as client:
            router = SemanticRouter(
                SentenceEmbedder("light"), min_similarity=0.0, reviewer=RouteReviewer(client)
            )
            result = await Fleet([door_cam, garden_cam], router=router).run(graph)
        assert len(server.requests) == 1
    assert result.ok and result.outputs["look"] == "a fox"
    [routed] = [e for e in result.graph.log if e.kind == "subtask_routed"]
    assert routed.review is not None
    assert routed.review["reason"] == "the question is about the lawn"
    assert routed.candidates[0]["agent_id"] == "garden-cam"

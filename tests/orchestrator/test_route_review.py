"""RouteReviewer: a chat model's second look at the semantic router's best candidates, asked
over real HTTP (the scripted loopback server), applied by SemanticRouter and by the engine,
and written into the task log."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetmind import AgentProfile, Fleet, TaskGraph, agent
from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
from fleetmind.errors import NoCapableAgent
from fleetmind.orchestrator import (
    RouteReviewer,
    RouteVerdict,
    SemanticRouter,
    SentenceEmbedder,
    SQLiteStore,
    Subtask,
)
from fleetmind.testing import Reply, ScriptedLLMServer, free_port

pytestmark = pytest.mark.timeout(180)  # the first test may load the light model

PROFILES = [
    AgentProfile(
        id="translator",
        description="Translates letters and documents between English, German and French.",
        skills=[{"name": "translation", "description": "Puts a text into another language"}],
    ),
    AgentProfile(
        id="proofreader",
        description="Proofreads English letters: spelling, grammar and tone.",
        skills=[{"name": "proofreading", "description": "Corrects and polishes a text"}],
    ),
    AgentProfile(
        id="weather-station",
        description="Reads the garden's temperature, humidity and rain sensors.",
        skills=[{"name": "sensor readings", "description": "Current weather in the garden"}],
    ),
]
AGENTS = {p.id: p for p in PROFILES}
LETTER = "put this letter to our supplier into German"


def answer(agent_id: str | None, reason: str) -> Reply:
    """The reviewer's structured answer, as the model would send it."""
    return Reply.text(json.dumps({"agent": agent_id, "reason": reason}))


def shown_ids(request: dict[str, Any]) -> list[str]:
    """The candidate ids the model was shown in one request."""
    return re.findall(r"^- id: (\S+)$", request["messages"][1]["content"], re.M)


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


@pytest.fixture
async def client(server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    endpoint = ModelEndpoint(
        name="cloud",
        base_url=server.url,
        model="reviewer-model",
        max_retries=0,
        prices={"input_per_mtok": 3.0, "output_per_mtok": 15.0},
    )
    async with OpenAICompatibleClient(endpoint) as model:
        yield model


def reviewed_router(reviewer: RouteReviewer) -> SemanticRouter:
    router = SemanticRouter(SentenceEmbedder("minilm"), min_similarity=0.0, reviewer=reviewer)
    router.agents_changed(added=PROFILES)
    return router


# The router applies the verdict ---------------------------------------------------------------


@pytest.mark.parametrize("pick", [1, 2, 0], ids=["runner-up", "third", "top"])
async def test_the_reviewers_pick_goes_first_and_its_reason_explains_the_route(
    server: ScriptedLLMServer, client: OpenAICompatibleClient, pick: int
) -> None:
    reviewer = RouteReviewer(client, candidates=3)
    router = reviewed_router(reviewer)
    subtask = Subtask(id="s1", description=LETTER)
    plain = router.route(subtask, AGENTS)
    assert plain.review is None and len(plain.candidates) == 3  # not reviewed yet
    chosen = plain.candidates[pick]
    server.push(answer(chosen, f"{chosen} is the one that can do it"))

    await router.review([subtask], AGENTS)

    decision = router.route(subtask, AGENTS)
    assert decision.candidates[0] == chosen
    assert decision.candidates[1:] == tuple(a for a in plain.candidates if a != chosen)
    review = decision.review
    assert review is not None
    assert review["agent"] == chosen and review["failed"] is False
    assert review["reason"] == f"{chosen} is the one that can do it"
    assert review["model"] == "scripted-model"  # the name the server answered with
    assert review["tokens"] > 0 and review["cost"] > 0
    assert (reviewer.questions, reviewer.tokens) == (1, review["tokens"])
    assert reviewer.cost == pytest.approx(review["cost"])

    [request] = server.requests
    assert request["model"] == "reviewer-model" and request["temperature"] == 0.0
    assert request["messages"][0]["role"] == "system"
    assert "choose none" in request["messages"][0]["content"]
    assert f"Subtask: {LETTER}" in request["messages"][1]["content"]
    assert shown_ids(request) == list(plain.candidates)  # best first, as the router ranked
    assert (
        "skill translation: Puts a text into another language"
        in (request["messages"][1]["content"])
    )


async def test_the_model_sees_only_the_best_few_candidates(
    server: ScriptedLLMServer, client: OpenAICompatibleClient
) -> None:
    router = reviewed_router(RouteReviewer(client, candidates=1))
    subtask = Subtask(id="s1", description=LETTER)
    plain = router.route(subtask, AGENTS).candidates
    server.push(answer(plain[0], "it translates"))
    await router.review([subtask], AGENTS)
    assert shown_ids(server.requests[0]) == [plain[0]]
    assert router.route(subtask, AGENTS).candidates == plain


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"agent": None, "reason": "  a bakery is needed, not a translator  "}),
        json.dumps({"reason": "a bakery is needed, not a translator"}),  # agent left out
    ],
    ids=["null", "omitted"],
)
async def test_a_refusal_makes_routing_raise_no_capable_agent_with_the_reason(
    server: ScriptedLLMServer, client: OpenAICompatibleClient, content: str
) -> None:
    router = reviewed_router(RouteReviewer(client))
    subtask = Subtask(id="bake", description="bake a loaf of rye bread for the office")
    shortlist = router.route(subtask, AGENTS).candidates  # embedding alone would send it
    server.push(Reply.text(content))

    await router.review([subtask], AGENTS)

    with pytest.raises(NoCapableAgent) as caught:
        router.route(subtask, AGENTS)
    error = caught.value
    assert "\n" not in error.message
    assert "'bake'" in error.message
    assert error.message.endswith("a bakery is needed, not a translator")  # stripped
    assert error.details["reason"].startswith("the scripted-model reviewer refused")
    assert ", ".join(shortlist[:3]) in error.details["reason"]
    assert error.details["review"]["agent"] is None
    assert error.details["review"]["failed"] is False
    assert error.details["review"]["reason"] == "a bakery is needed, not a translator"
    # The same words routed again under another id are refused without a new question.
    with pytest.raises(NoCapableAgent):
        router.route(Subtask(id="again", description=subtask.description), AGENTS)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("replies", "requests", "says"),
    [
        ([Reply.error(500, "upstream exploded")], 1, "upstream exploded"),
        ([answer("interpreter", "the interpreter would do it")], 1, "'interpreter'"),
        ([answer("weather-station", "not shown to it")], 1, "'weather-station'"),
        ([Reply.text("the translator, obviously")] * 2, 2, "review failed"),
    ],
    ids=["http-500", "made-up-id", "not-shown-id", "not-json-twice"],
)
async def test_a_failed_review_falls_back_to_the_embedding_ranking(
    server: ScriptedLLMServer,
    client: OpenAICompatibleClient,
    replies: list[Reply],
    requests: int,
    says: str,
) -> None:
    reviewer = RouteReviewer(client, candidates=2)
    router = reviewed_router(reviewer)
    subtask = Subtask(id="s1", description=LETTER)
    plain = router.route(subtask, AGENTS)
    assert plain.candidates[2] == "weather-station"  # so the model is never shown it
    server.push(*replies)

    await router.review([subtask], AGENTS)  # does not raise

    decision = router.route(subtask, AGENTS)
    assert decision.candidates == plain.candidates
    review = decision.review
    assert review is not None and review["failed"] is True and review["agent"] is None
    assert review["reason"].startswith("review failed") and says in review["reason"]
    assert len(server.requests) == requests
    assert server.pending == 0


async def test_an_unreachable_reviewer_is_a_failed_verdict() -> None:
    endpoint = ModelEndpoint(
        name="cloud", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0
    )
    async with OpenAICompatibleClient(endpoint) as down:
        reviewer = RouteReviewer(down)
        subtask = Subtask(id="s1", description=LETTER)
        verdict = await reviewer.review(subtask, ("translator", "proofreader"), AGENTS)
    assert isinstance(verdict, RouteVerdict)
    assert verdict.failed and not verdict.refused and verdict.agent is None
    assert verdict.reason.startswith("review failed")
    assert verdict.model == "m"
    assert reviewer.questions == 0 and reviewer.cost == 0.0


async def test_one_question_per_distinct_subtask_text() -> None:
    def respond(request: dict[str, Any]) -> Reply:  # by what is asked, in any order
        asked = request["messages"][1]["content"].splitlines()[0]  # "Subtask: ..."
        if "German" in asked:
            return answer("proofreader", "the letter needs checking first")
        return answer("weather-station", "it has the rain gauge")

    twins = [Subtask(id=f"letter-{n}", description=LETTER) for n in range(2)]
    rain = Subtask(id="rain", description="how much rain fell in the garden today?")
    named = Subtask(id="named", description=LETTER + " now", agent="translator")
    by_skill = Subtask(id="skill", description="anything", skill="translation")
    with ScriptedLLMServer(responder=respond) as server:
        endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", max_retries=0)
        async with OpenAICompatibleClient(endpoint) as model:
            router = reviewed_router(RouteReviewer(model, max_concurrency=1))

            await router.review([*twins, rain, named, by_skill], AGENTS)

            asked = [r["messages"][1]["content"].splitlines()[0] for r in server.requests]
            assert sorted(asked) == sorted([f"Subtask: {LETTER}", f"Subtask: {rain.description}"])
            for twin in twins:  # one verdict, applied to both
                decision = router.route(twin, AGENTS)
                assert decision.candidates[0] == "proofreader"
                assert decision.review is not None
                assert decision.review["reason"] == "the letter needs checking first"
            assert router.route(rain, AGENTS).candidates[0] == "weather-station"
            assert router.route(named, AGENTS).review is None  # named agents: not reviewed
            assert router.route(by_skill, AGENTS).review is None  # nor named skills

            await router.review([*twins, rain], AGENTS)  # verdicts are kept
            await router.review([Subtask(id="letter-3", description=LETTER)], AGENTS)
            assert len(server.requests) == 2


async def test_without_a_reviewer_review_asks_nothing(server: ScriptedLLMServer) -> None:
    router = SemanticRouter(SentenceEmbedder("minilm"), min_similarity=0.0)
    router.agents_changed(added=PROFILES)
    subtask = Subtask(id="s1", description=LETTER)
    await router.review([subtask], AGENTS)
    assert router.route(subtask, AGENTS).review is None
    assert server.requests == []


@pytest.mark.parametrize("candidates", [0, -1])
async def test_a_reviewer_needs_at_least_one_candidate(candidates: int) -> None:
    endpoint = ModelEndpoint(name="cloud", base_url="http://127.0.0.1:9/v1", model="m")
    async with OpenAICompatibleClient(endpoint) as model:
        with pytest.raises(ValueError, match="at least one candidate"):
            RouteReviewer(model, candidates=candidates)
        assert RouteReviewer(model, candidates=1).candidates == 1


def test_a_verdict_says_whether_it_refused() -> None:
    refused = RouteVerdict(None, "nobody bakes", "m", cost=0.123456789, tokens=7)
    failed = RouteVerdict(None, "review failed: timeout", "m", failed=True)
    chosen = RouteVerdict("translator", "it translates", "m")
    assert refused.refused and not failed.refused and not chosen.refused
    assert refused.as_dict() == {
        "agent": None,
        "reason": "nobody bakes",
        "model": "m",
        "cost": 0.12345679,
        "tokens": 7,
        "failed": False,
    }


async def test_a_new_capable_agent_gets_a_fresh_review_after_a_refusal(
    server: ScriptedLLMServer, client: OpenAICompatibleClient
) -> None:
    router = reviewed_router(RouteReviewer(client))
    subtask = Subtask(id="bake", description="bake a loaf of rye bread for the office")
    server.push(answer(None, "nobody here bakes"))
    await router.review([subtask], AGENTS)
    with pytest.raises(NoCapableAgent):
        router.route(subtask, AGENTS)

    baker = AgentProfile(id="baker", description="Bakes bread, rolls and cakes to order.")
    router.agents_changed(added=[baker])
    fleet = {**AGENTS, "baker": baker}
    server.push(answer("baker", "it bakes bread"))
    await router.review([subtask], fleet)
    assert router.route(subtask, fleet).candidates[0] == "baker"


# The engine asks the reviewer and logs its verdict -----------------------------------------------


def _agents(ran: list[str]) -> list[Any]:
    @agent(id="translator", description=PROFILES[0].description, skills=PROFILES[0].skills)
    async def translator() -> str:
        ran.append("translator")
        return "Sehr geehrte Damen und Herren"

    @agent(id="proofreader", description=PROFILES[1].description, skills=PROFILES[1].skills)
    async def proofreader() -> str:
        ran.append("proofreader")
        return "Dear Sirs, (checked)"

    return [translator, proofreader]


async def test_the_engine_routes_by_the_review_and_logs_its_reason(tmp_path: Path) -> None:
    ran: list[str] = []
    embedding_only = SemanticRouter(SentenceEmbedder("minilm"), min_similarity=0.0)
    embedding_only.agents_changed(added=PROFILES[:2])
    plain = embedding_only.route(Subtask(id="letter", description=LETTER), AGENTS).candidates
    assert plain[0] == "translator"
    pick = plain[1]  # the reviewer overrules the embedding

    def respond(request: dict[str, Any]) -> Reply:
        return answer(pick, "the letter must be proofread before anything else")

    graph = TaskGraph("letters")
    graph.add_subtask("letter", description=LETTER)
    store = SQLiteStore(tmp_path / "tasks.db")
    try:
        with ScriptedLLMServer(responder=respond) as server:
            endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", max_retries=0)
            async with OpenAICompatibleClient(endpoint) as model:
                router = SemanticRouter(
                    SentenceEmbedder("minilm"), min_similarity=0.0, reviewer=RouteReviewer(model)
                )
                result = await Fleet(_agents(ran), router=router, store=store).run(graph)
            assert len(server.requests) == 1
            assert shown_ids(server.requests[0]) == list(plain)
        assert result.ok, result.errors
        assert ran == [pick] and result.outputs["letter"] == "Dear Sirs, (checked)"
        _, entries = store.load(result.task_id)  # the log as persisted, read back
    finally:
        store.close()
    [routed] = [e for e in entries if e.kind == "subtask_routed"]
    assert routed.subtask_id == "letter"
    assert routed.review is not None
    assert routed.review["agent"] == pick and routed.review["failed"] is False
    assert routed.review["reason"] == "the letter must be proofread before anything else"
    assert routed.review["model"] == "scripted-model" and routed.review["tokens"] > 0
    [started] = [e for e in entries if e.kind == "subtask_started"]
    assert started.agent == pick


async def test_the_logged_ranking_puts_the_reviewers_pick_first() -> None:
    ran: list[str] = []
    graph = TaskGraph("letters")
    graph.add_subtask("letter", description=LETTER)
    with ScriptedLLMServer(responder=lambda _: answer("proofreader", "check it first")) as server:
        endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", max_retries=0)
        async with OpenAICompatibleClient(endpoint) as model:
            router = SemanticRouter(
                SentenceEmbedder("minilm"), min_similarity=0.0, reviewer=RouteReviewer(model)
            )
            result = await Fleet(_agents(ran), router=router).run(graph)
    assert ran == ["proofreader"]
    [routed] = [e for e in result.graph.log if e.kind == "subtask_routed"]
    assert routed.candidates[0]["agent_id"] == "proofreader"


async def test_the_engine_fails_a_refused_subtask_without_running_any_agent() -> None:
    ran: list[str] = []
    graph = TaskGraph("bakery")
    graph.add_subtask("bread", description="bake a loaf of rye bread for the office")
    with ScriptedLLMServer([answer(None, "no agent here can bake")]) as server:
        endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", max_retries=0)
        async with OpenAICompatibleClient(endpoint) as model:
            router = SemanticRouter(
                SentenceEmbedder("minilm"), min_similarity=0.0, reviewer=RouteReviewer(model)
            )
            result = await Fleet(_agents(ran), router=router).run(graph)
        assert len(server.requests) == 1
    assert not result.ok and ran == []
    state = result.graph.state("bread")
    assert state.status.value == "failed"
    assert state.error is not None
    assert state.error["type"] == "NoCapableAgent"
    assert "no agent here can bake" in state.error["message"]


async def test_the_engine_keeps_routing_when_the_reviewer_is_down() -> None:
    ran: list[str] = []
    graph = TaskGraph("letters")
    graph.add_subtask("letter", description=LETTER)
    with ScriptedLLMServer([Reply.error(503, "overloaded")]) as server:
        endpoint = ModelEndpoint(name="cloud", base_url=server.url, model="m", max_retries=0)
        async with OpenAICompatibleClient(endpoint) as model:
            router = SemanticRouter(
                SentenceEmbedder("minilm"), min_similarity=0.0, reviewer=RouteReviewer(model)
            )
            result = await Fleet(_agents(ran), router=router).run(graph)
        assert len(server.requests) == 1
    assert result.ok and ran == ["translator"]  # the embedding's choice
    [routed] = [e for e in result.graph.log if e.kind == "subtask_routed"]
    assert routed.review is not None and routed.review["failed"] is True
    assert "overloaded" in routed.review["reason"]

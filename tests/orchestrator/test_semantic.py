"""Semantic routing with the real all-MiniLM-L6-v2 model: correctness, constraints, refusals,
live membership changes, learning from outcomes, and persistence of the index and cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from fleetmind import AgentProfile, Fleet, Skill, TaskGraph, agent
from fleetmind.agents import AgentLimits
from fleetmind.errors import AgentError, ConfigError, NoCapableAgent
from fleetmind.orchestrator import (
    CachedEmbedder,
    CapabilityIndex,
    MiniLMEmbedder,
    RoutingWeights,
    SemanticRouter,
    Subtask,
)

pytestmark = pytest.mark.timeout(180)  # the first test loads the model (once per session)


def profile(agent_id: str, description: str, *skills: Skill, **fields: object) -> AgentProfile:
    return AgentProfile(id=agent_id, description=description, skills=skills, **fields)


FLEET = [
    profile(
        "invoice-clerk",
        "Reconciles supplier invoices against payments and purchase orders.",
        Skill(name="invoice reconciliation", tags=("accounting", "payables")),
    ),
    profile(
        "translator",
        "Translates documents between English, German, French and Spanish.",
        Skill(name="translation", tags=("language",), examples=("put this letter into German",)),
        tier="cloud",
        cost_per_call=0.02,
        typical_latency_s=3.0,
    ),
    profile(
        "device-translator",
        "A small on-device model that translates short texts offline.",
        Skill(name="offline translation", tags=("language", "offline")),
        tier="device",
        cost_per_call=0.0,
        typical_latency_s=8.0,
    ),
    profile(
        "weather-station",
        "Reads the garden's temperature, humidity and rain sensors.",
        Skill(name="sensor readings", tags=("iot", "weather")),
        tier="device",
        limits=AgentLimits(local_data=("garden-sensors",)),
    ),
    profile(
        "ci-doctor",
        "Diagnoses failing continuous-integration builds from their logs.",
        Skill(name="build failure triage", tags=("ci", "devops")),
        tier="cloud",
        cost_per_call=0.05,
    ),
    profile(
        "office-helper",
        "A general assistant for office chores.",
        Skill(name="meeting scheduling", tags=("calendar",)),
        Skill(name="expense reports", tags=("receipts",)),
        Skill(
            name="currency conversion",
            description="Converts amounts between currencies at today's rates.",
            examples=("how much is 250 euros in yen",),
        ),
        tier="edge",
    ),
]


def by_id(profiles: list[AgentProfile]) -> dict[str, AgentProfile]:
    return {p.id: p for p in profiles}


@pytest.fixture(scope="module")
def router() -> SemanticRouter:
    router = SemanticRouter()
    router.agents_changed(added=FLEET)
    return router


def route(router: SemanticRouter, text: str, **constraints: object) -> list[str]:
    subtask = Subtask(id="s", description=text, constraints=constraints)
    return list(router.route(subtask, by_id(FLEET)).candidates)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "the supplier bills for March don't match what we paid; find the mismatches",
            "invoice-clerk",
        ),
        ("our nightly pipeline went red after the dependency bump, figure out why", "ci-doctor"),
        ("how humid is it out in the garden right now?", "weather-station"),
        ("find a slot next week when the whole team can meet", "office-helper"),
        ("render this contract in Spanish for our partner in Madrid", "translator"),
    ],
)
def test_routes_plain_words_to_the_agent_that_fits(
    router: SemanticRouter, text: str, expected: str
) -> None:
    assert route(router, text)[0] == expected


def test_a_broad_agents_narrow_skill_is_found_through_its_own_vector(
    router: SemanticRouter,
) -> None:
    subtask = Subtask(id="s", description="what is 1200 Swiss francs worth in US dollars?")
    decision = router.route(subtask, by_id(FLEET))

    assert decision.candidates[0] == "office-helper"
    assert decision.scores[0].via in ("skill:currency conversion", "example:currency conversion")


def test_each_hard_constraint_alone_changes_the_answer(router: SemanticRouter) -> None:
    text = "translate this short note into French"
    assert route(router, text)[0] == "translator"
    assert route(router, text, tier="device")[0] == "device-translator"
    assert route(router, text, max_cost=0.01)[0] == "device-translator"
    assert route(router, text, max_latency_s=5)[0] == "translator"
    assert "device-translator" not in route(router, text, max_latency_s=5)
    assert route(router, "read the rain gauge", data=["garden-sensors"]) == ["weather-station"]


def test_constraints_combine_and_every_exclusion_says_why(router: SemanticRouter) -> None:
    subtask = Subtask(
        id="s",
        description="translate this short note into French",
        constraints={"tier": ["device", "edge"], "max_latency_s": 10, "max_cost": 0.001},
    )
    decision = router.route(subtask, by_id(FLEET))
    assert decision.candidates[0] == "device-translator"
    assert "translator" not in decision.candidates  # its tier's shard is not even searched

    cheap = Subtask(id="s", description="translate this short note", constraints={"max_cost": 0.01})
    decision = router.route(cheap, by_id(FLEET))
    assert decision.excluded["translator"] == "cost 0.02 is over the ceiling 0.01"
    assert decision.excluded["ci-doctor"] == "cost 0.05 is over the ceiling 0.01"


def test_no_agent_satisfying_the_constraints_names_the_constraint(router: SemanticRouter) -> None:
    subtask = Subtask(
        id="s",
        description="translate this short note into French",
        constraints={"tier": "cloud", "max_cost": 0.001},
    )
    wanted = r"subtask 's': no agent satisfies its constraints.*over the ceiling"
    with pytest.raises(NoCapableAgent, match=wanted):
        router.route(subtask, by_id(FLEET))


def test_data_that_must_stay_local_never_leaves_its_device(router: SemanticRouter) -> None:
    subtask = Subtask(
        id="s", description="translate this short note", constraints={"data": "garden-sensors"}
    )
    # Only the weather station holds the data; it cannot translate, so nothing may take it —
    # but it must not be sent to a translator elsewhere either.
    try:
        decision = router.route(subtask, by_id(FLEET))
    except NoCapableAgent as exc:
        assert "translator" not in exc.message.split("nearest:")[-1] or "weather" in exc.message
    else:
        assert decision.candidates == ("weather-station",)


def test_a_subtask_nobody_can_do_is_refused_with_the_nearest_candidates(
    router: SemanticRouter,
) -> None:
    subtask = Subtask(id="s", description="replace the worn pump seal in my dishwasher")
    with pytest.raises(NoCapableAgent, match="close enough") as caught:
        router.route(subtask, by_id(FLEET))
    assert "nearest:" in caught.value.message
    assert len(caught.value.details["nearest"]) == 3


def test_unknown_tier_and_unknown_weight_are_config_errors(router: SemanticRouter) -> None:
    with pytest.raises(ConfigError, match="unknown tier"):
        route(router, "translate", tier="moon")
    with pytest.raises(ConfigError, match="unknown routing weight"):
        route(router, "translate", weights={"speed": 1})


def test_weights_per_subtask_shift_the_ranking(router: SemanticRouter) -> None:
    text = "translate this short note into French"
    assert route(router, text)[0] == "translator"
    # Make cost dominate: the free on-device translator wins.
    assert route(router, text, weights={"cost": 50.0})[0] == "device-translator"


def test_past_failures_on_similar_subtasks_lower_an_agents_rank() -> None:
    twins = [
        profile("twin-a", "Summarises long reports into a few bullet points."),
        profile("twin-b", "Summarises long reports into a few bullet points."),
    ]
    router = SemanticRouter(weights=RoutingWeights(success=1.0), min_similarity=0.0)
    router.agents_changed(added=twins)
    subtask = Subtask(id="s", description="boil this 40-page audit report down to key points")
    router.prepare([subtask])
    first = router.route(subtask, by_id(twins)).candidates[0]
    for _ in range(3):
        router.observe(subtask, first, ok=False)

    assert router.route(subtask, by_id(twins)).candidates[0] != first


async def test_version_update_while_a_task_runs_changes_where_new_subtasks_go() -> None:
    release = asyncio.Event()

    @agent(id="writer", description="Writes marketing copy for product launches.")
    async def writer() -> str:
        await release.wait()
        return "copy"

    @agent(id="poet", description="Writes short rhyming poems.")
    async def poet() -> str:
        return "poem v1"

    fleet = Fleet([writer, poet])
    graph = TaskGraph("launch")
    graph.add_subtask("copy", description="write the launch announcement for our new bike")
    async with fleet:
        handle = fleet.submit(graph)
        async for event in handle.events():
            if event.kind == "subtask_started":
                break

        @agent(id="poet", description="Diagnoses failing database backups and restores them.")
        async def poet_v2() -> str:
            return "restored"

        fleet.add(poet_v2)  # same id, changed profile: becomes version 2 and is re-indexed
        assert fleet.agent("poet").profile.version == 2
        await handle.add_subtask("backup", description="last night's database backup failed")
        release.set()
        result = await handle.result()

    assert result.outputs == {"copy": "copy", "backup": "restored"}
    assert isinstance(fleet.router, SemanticRouter)
    assert fleet.router.index.version_of("poet") == 2
    routed = [e for e in result.graph.log if e.kind == "subtask_routed"]
    assert routed[-1].candidates[0]["agent_id"] == "poet"


async def test_removing_an_agent_mid_run_reroutes_its_waiting_subtasks() -> None:
    hog_started = asyncio.Event()
    release = asyncio.Event()

    @agent(id="busy-cook", description="Plans weekly dinner menus.", max_concurrency=1)
    async def busy_cook() -> str:
        hog_started.set()
        await release.wait()
        return "busy"

    @agent(id="spare-cook", description="Plans dinner menus for the week ahead.", cost_per_call=5)
    async def spare_cook() -> str:
        return "spare"

    fleet = Fleet([busy_cook, spare_cook])
    graph = TaskGraph("menus")
    graph.add_subtask("first", agent="busy-cook")
    async with fleet:
        handle = fleet.submit(graph)
        await hog_started.wait()
        # Routed while busy-cook is full: it prefers the free, pricier spare cook only when the
        # busy one is excluded for lack of slots, so the free-slot rule must be what decides.
        await handle.add_subtask("second", description="plan next week's dinners")
        fleet.remove("busy-cook")
        release.set()
        result = await handle.result()

    assert result.outputs["second"] == "spare"


def test_bad_profiles_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="name"):
        Skill(name="")
    with pytest.raises(ValueError, match="cost_per_call"):
        AgentProfile(id="a", cost_per_call=-1)
    with pytest.raises(AgentError, match="skill"):
        agent(id="x", skills=[""])(_noop)

    @agent(id="same")
    async def one() -> None: ...

    @agent(id="same")
    async def two() -> None: ...

    with pytest.raises(AgentError, match="share the id 'same'"):
        Fleet([one, two])


async def _noop() -> None:
    return None


def test_index_replaces_only_changed_profiles_and_searches_by_tier() -> None:
    index = CapabilityIndex(MiniLMEmbedder())
    assert sorted(index.upsert(FLEET)) == sorted(p.id for p in FLEET)
    assert index.upsert(FLEET) == []  # unchanged: nothing re-embedded
    changed = FLEET[0].model_copy(update={"description": "Files tax returns.", "version": 2})
    assert index.upsert([changed]) == ["invoice-clerk"]
    assert index.version_of("invoice-clerk") == 2

    matches = index.search("translate a letter", k=3, tiers=["device"])
    device_agents = {p.id for p in FLEET if p.tier == "device"}
    assert {m.agent_id for m in matches} <= device_agents
    assert matches[0].agent_id == "device-translator"
    assert index.remove("device-translator")
    assert "device-translator" not in index
    assert all(m.agent_id != "device-translator" for m in index.search("translate", k=10))


def test_hnsw_shards_agree_with_exact_search() -> None:
    exact = CapabilityIndex(MiniLMEmbedder(), exact_below=10**9)
    ann = CapabilityIndex(MiniLMEmbedder(), exact_below=2)  # every shard becomes HNSW
    exact.upsert(FLEET)
    ann.upsert(FLEET)
    assert any(shard.hnsw is not None for shard in ann._shards.values())
    for text in ("translate a letter", "why did the build fail", "rain sensor"):
        assert [m.agent_id for m in ann.search(text, k=3)] == [
            m.agent_id for m in exact.search(text, k=3)
        ]


def test_index_and_embedding_cache_survive_a_restart(tmp_path: Path) -> None:
    first = SemanticRouter(data_dir=tmp_path)
    first.agents_changed(added=FLEET)
    top = route(first, "the CI build keeps failing, read its logs and tell me why")[0]
    first.save()
    assert (tmp_path / "capability-index" / "index.json").exists()
    assert (tmp_path / "embeddings.db").exists()

    second = SemanticRouter(data_dir=tmp_path)
    second.agents_changed(added=FLEET)
    assert isinstance(second.embedder, CachedEmbedder)
    assert route(second, "the CI build keeps failing, read its logs and tell me why")[0] == top
    # Nothing was embedded again: the profiles' vectors came from the saved index (unchanged
    # digests) and the query from the cache.
    assert second.embedder.misses == 0
    assert second.index.vector_count == first.index.vector_count


def test_cached_embedder_returns_the_same_vectors(tmp_path: Path) -> None:
    cache = CachedEmbedder(MiniLMEmbedder(), tmp_path / "cache.db")
    first = cache.embed(["alpha", "beta"])
    again = cache.embed(["beta", "alpha"])
    assert cache.misses == 2 and cache.hits == 2
    np.testing.assert_allclose(again[::-1], first)
    assert first.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    cache.close()


async def test_success_rates_are_learned_from_the_stores_past_tasks(tmp_path: Path) -> None:
    from fleetmind import SubtaskFailed

    @agent(id="twin-a", description="Summarises long reports into a few bullet points.")
    async def twin_a() -> str:
        raise SubtaskFailed("cannot read scanned pages", retryable=False)

    @agent(id="twin-b", description="Summarises long reports into a few bullet points.")
    async def twin_b() -> str:
        return "summary"

    def router() -> SemanticRouter:
        return SemanticRouter(weights=RoutingWeights(success=1.0), min_similarity=0.0)

    store = tmp_path / "tasks.db"
    graph = TaskGraph("past")
    for i in range(3):
        graph.add_subtask(f"s{i}", description=f"summarise quarterly audit report number {i}")
    first = Fleet([twin_a, twin_b], router=router(), store=store)
    result = await first.run(graph)
    assert result.ok
    # Which twin went first was a coin toss between equals; only twin-a can have failed.
    failed = {e.agent for e in result.graph.log if e.kind == "subtask_reassigned"}
    assert failed <= {"twin-a"}

    later = Fleet([twin_a, twin_b], router=router(), store=store)
    decision = later.route(Subtask(id="q", description="summarise the annual audit report"))
    assert decision.candidates[0] == "twin-b"
    assert decision.scores[0].success_rate > decision.scores[1].success_rate

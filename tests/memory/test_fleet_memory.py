"""The fleet's memory in use: finished tasks become episodes, what recurs becomes a fact, agents
remember and recall through ``ctx.memory``, the planner and LLM agents are shown what happened
before, and a LangGraph graph shares the same memory through its store API.

Everything is real: fleets of local agents, sentence embeddings (the light model), scripted
OpenAI-compatible servers on loopback for the planner and the LLM agent, SQLite files.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from fleetmind import Fleet, Planner, SubtaskFailed, TaskGraph, agent
from fleetmind.agents import (
    AgentProfile,
    LangGraphAgent,
    LLMAgent,
    ModelEndpoint,
    OpenAICompatibleClient,
    StepRecord,
    SubtaskContext,
)
from fleetmind.memory import (
    RECURRING_KIND,
    SHARED,
    EmbedFunction,
    FleetMemoryStore,
    MemoryStore,
    StoredItem,
    agent_namespace,
)
from fleetmind.orchestrator import SentenceEmbedder, SkillRouter, SQLiteStore
from fleetmind.testing import Reply, ScriptedLLMServer, request_text

pytestmark = pytest.mark.timeout(120)

SUMMARY = "Summarise the nightly build log of the greenhouse gateway"
ARCHIVE = "Archive the nightly build log to cold storage"
MEMORY_NOTE = "From the fleet's memory"
PLANNER_NOTE = "From the fleet's memory, how similar requests went before"


@pytest.fixture(scope="module")
def embed() -> EmbedFunction:
    return SentenceEmbedder("light").embed


@pytest.fixture
def memory(embed: EmbedFunction) -> Iterator[MemoryStore]:
    store = MemoryStore(None, embed)
    yield store
    store.close()


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


@pytest.fixture
async def model(server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    endpoint = ModelEndpoint(
        name="cloud",
        base_url=server.url,
        model="big",
        max_retries=0,
        prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    )
    async with OpenAICompatibleClient(endpoint) as client:
        yield client


# Agents -----------------------------------------------------------------------------------------


@agent(id="summariser", skills=["summarise"])
async def summariser(ctx: SubtaskContext, log: str) -> str:
    """Summarises build logs; reports one (paid) step, as an LLM agent would."""
    ctx.record_step(
        StepRecord(
            step=1,
            tier="cloud",
            model="big",
            prompt_tokens=120,
            completion_tokens=30,
            cost=0.25,
            latency_s=0.5,
        )
    )
    return f"{len(log.splitlines())} lines, no errors"


@agent(id="archiver", skills=["archive"])
async def archiver(path: str) -> str:
    """Archives files; its disk is full."""
    raise SubtaskFailed(f"disk full while writing {path}", retryable=False)


@agent(id="keeper", skills=["keep"])
async def keeper(ctx: SubtaskContext) -> dict[str, Any]:
    """Keeps notes: one of its own, one for the fleet, and an episode of its own."""
    own = await ctx.memory.remember("the staging database listens on port 5433", key="staging-db")
    shared = await ctx.memory.remember(
        "the greenhouse gateway reboots every night at 03:00", shared=True
    )
    episode = await ctx.memory.remember(
        "migrated the staging database to version 16", layer="episodic", outcome="done"
    )
    found = await ctx.memory.recall("which port does the staging database use?", limit=5)
    return {
        "stored": [own.metadata["namespace"], shared.metadata["namespace"]],
        "episode": [episode.metadata["layer"], episode.metadata["namespace"]],
        "recalled": [item.text for item in found],
    }


@agent(id="reader", skills=["read"])
async def reader(ctx: SubtaskContext, question: str) -> list[str]:
    """Recalls what it may see of the fleet's memory."""
    found = await ctx.memory.recall(question, limit=10)
    return [item.text for item in found]


def nightly(n: int = 1, *, archive: bool = True) -> TaskGraph:
    graph = TaskGraph("nightly")
    graph.add_subtask(
        "summary",
        description=SUMMARY,
        skill="summarise",
        inputs={"log": "\n".join(f"line {i}" for i in range(10 + n))},
    )
    if archive:
        graph.add_subtask(
            "archive",
            description=ARCHIVE,
            skill="archive",
            inputs={"path": "/var/log/build"},
        )
    return graph


def episodes(memory: MemoryStore, *, kind: str | None = None) -> list[StoredItem]:
    return sorted(
        (e for e in memory.items(layer="episodic") if kind is None or e.kind == kind),
        key=lambda e: (e.created_at, e.kind, e.text),
    )


def recurring(memory: MemoryStore) -> list[StoredItem]:
    return [
        f
        for f in memory.items(layer="semantic")
        if f.kind == RECURRING_KIND and f.superseded_by is None
    ]


# 1. A finished task becomes episodes -------------------------------------------------------------


async def test_a_finished_task_becomes_a_task_episode_and_one_per_subtask(
    memory: MemoryStore,
) -> None:
    fleet = Fleet([summariser, archiver], router=SkillRouter(), memory=memory)
    result = await fleet.run(nightly())
    assert result.status == "failed"
    assert result.errors["archive"]["message"] == "disk full while writing /var/log/build"

    assert {e.task_id for e in episodes(memory)} == {result.task_id}
    assert {e.namespace for e in episodes(memory)} == {SHARED}

    [task] = episodes(memory, kind="task")
    assert task.text == "task: nightly — failed (1 done, 1 failed); agents: summariser, archiver"
    assert task.outcome == "failed"
    assert task.cost == pytest.approx(0.25)  # the sum of its subtasks' costs
    assert task.metadata["subtasks"] == 2

    subtasks = {e.metadata["subtask"]: e for e in episodes(memory, kind="subtask")}
    assert set(subtasks) == {"summary", "archive"}
    done, failed = subtasks["summary"], subtasks["archive"]
    assert done.text == f"{SUMMARY} — summariser — done: 11 lines, no errors"
    assert (done.agent_id, done.outcome) == ("summariser", "done")
    assert done.cost == pytest.approx(0.25)
    assert done.duration_s == pytest.approx(result.graph.state("summary").duration_s)
    assert done.duration_s is not None and done.duration_s >= 0
    assert done.metadata["attempts"] == 1
    # A failed subtask is recorded as failed, with its error's message.
    assert failed.text == f"{ARCHIVE} — archiver — failed: disk full while writing /var/log/build"
    assert (failed.agent_id, failed.outcome) == ("archiver", "failed")
    assert failed.cost is None  # it spent nothing
    assert failed.duration_s is not None and failed.duration_s >= 0

    # The step the summariser reported is an episode too.
    [step] = episodes(memory, kind="step")
    assert step.text == "step 1 of summary on cloud big: answer"
    assert (step.outcome, step.cost, step.duration_s) == ("answer", 0.25, 0.5)
    assert step.metadata == {"subtask": "summary", "tier": "cloud"}

    # Recall finds the failure by meaning.
    found = memory.recall("why did archiving the build log fail?", layer="episodic", limit=1)
    assert found[0].item.id == failed.id


async def test_a_cancelled_task_is_not_recorded(memory: MemoryStore) -> None:
    started = []

    @agent(id="slow", skills=["slow"])
    async def slow(ctx: SubtaskContext) -> str:
        started.append(ctx.subtask.id)
        await asyncio.Event().wait()
        return "never"

    graph = TaskGraph("slow")
    graph.add_subtask("s", description="wait for ever", skill="slow")
    fleet = Fleet([slow], router=SkillRouter(), memory=memory)
    async with fleet:
        handle = fleet.submit(graph)
        async for event in handle.events():
            if event.kind == "subtask_started":
                break
        result = await handle.cancel()
    assert result.status == "cancelled" and started == ["s"]
    assert len(memory) == 0


async def test_the_task_episode_has_a_duration(memory: MemoryStore) -> None:
    fleet = Fleet([summariser], router=SkillRouter(), memory=memory)
    await fleet.run(nightly(archive=False))
    [task] = episodes(memory, kind="task")
    assert task.duration_s is not None


async def test_a_step_episode_names_its_agent(memory: MemoryStore) -> None:
    fleet = Fleet([summariser], router=SkillRouter(), memory=memory)
    await fleet.run(nightly(archive=False))
    [step] = episodes(memory, kind="step")
    assert step.agent_id == "summariser"


# 2. What recurs across tasks becomes a fact ------------------------------------------------------


async def test_similar_tasks_consolidate_into_recurring_facts_with_provenance(
    memory: MemoryStore,
) -> None:
    fleet = Fleet([summariser, archiver], router=SkillRouter(), memory=memory)
    first = await fleet.run(nightly(1))
    second = await fleet.run(nightly(2))
    assert recurring(memory) == []  # two tasks' worth is not yet a pattern (three episodes are)

    third = await fleet.run(nightly(3))
    tasks = {first.task_id, second.task_id, third.task_id}
    facts = {f.text.split("): ", 1)[1].split(" — ")[0]: f for f in recurring(memory)}
    assert set(facts) == {SUMMARY, ARCHIVE, "task: nightly"}

    archive = facts[ARCHIVE]
    assert archive.namespace == SHARED and archive.support == 3
    assert archive.text.startswith(
        "recurs in 3 subtask episodes over 3 tasks (3 failed; agents: archiver): "
    )
    archive_episodes = [
        e for e in episodes(memory, kind="subtask") if e.metadata["subtask"] == "archive"
    ]
    assert sorted(archive.metadata["episodes"]) == sorted(e.id for e in archive_episodes)
    assert {p["task"] for p in archive.provenance} == tasks
    assert {p["episode"] for p in archive.provenance} == {e.id for e in archive_episodes}
    assert {p["agent"] for p in archive.provenance} == {"archiver"}
    summary = facts[SUMMARY]
    assert "(3 done; agents: summariser)" in summary.text
    assert {p["task"] for p in summary.provenance} == tasks
    # Step episodes are not consolidated (only task and subtask episodes).
    step_ids = {e.id for e in episodes(memory, kind="step")}
    assert not any(step_ids & set(f.metadata["episodes"]) for f in recurring(memory))

    # A fourth similar task joins the groups: the facts are restated, their history kept.
    fourth = await fleet.run(nightly(4))
    restated = {f.key: f for f in recurring(memory)}
    assert set(restated) == {f.key for f in facts.values()}
    newer = restated[archive.key]
    assert newer.id != archive.id and newer.support == 4
    assert newer.text.startswith("recurs in 4 subtask episodes over 4 tasks (4 failed")
    assert {p["task"] for p in newer.provenance} == {*tasks, fourth.task_id}
    assert [f.id for f in memory.history(newer.id)] == [newer.id, archive.id]
    assert memory.get(archive.id).superseded_by == newer.id

    # Recall of a recurring problem finds the fact.
    found = memory.recall("does archiving the build log keep failing?", layer="semantic", limit=1)
    assert found[0].item.id == newer.id


async def test_an_unrelated_task_does_not_join_a_recurring_fact(memory: MemoryStore) -> None:
    @agent(id="rotator", skills=["rotate"])
    async def rotator() -> str:
        return "rotated"

    fleet = Fleet([summariser, rotator], router=SkillRouter(), memory=memory)
    for n in range(3):
        await fleet.run(nightly(n, archive=False))
    before = {f.key: f for f in recurring(memory)}
    assert before

    other = TaskGraph("certificates")
    other.add_subtask(
        "rotate", description="Rotate the TLS certificates of the MQTT broker", skill="rotate"
    )
    unrelated = await fleet.run(other)
    after = {f.key: f for f in recurring(memory)}
    assert {k: f.id for k, f in after.items()} == {k: f.id for k, f in before.items()}
    assert all(p["task"] != unrelated.task_id for f in after.values() for p in f.provenance)


async def test_episodes_of_tasks_that_finish_together_are_all_consolidated(
    embed: EmbedFunction,
) -> None:
    armed, embedding, release = threading.Event(), threading.Event(), threading.Event()

    def slow_embed(texts: Sequence[str]) -> np.ndarray:
        # A slow embedder (a big model, a small machine): the nightly task's episodes take a
        # while to embed, and the other task finishes meanwhile.
        if armed.is_set() and any(t.startswith(SUMMARY) for t in texts):
            armed.clear()
            embedding.set()
            release.wait(60)
        return embed(texts)

    go = asyncio.Event()

    @agent(id="rotator", skills=["rotate"])
    async def rotator() -> str:
        await go.wait()
        return "rotated"

    memory = MemoryStore(None, slow_embed)
    try:
        fleet = Fleet([summariser, rotator], router=SkillRouter(), memory=memory)
        await fleet.run(nightly(1, archive=False))
        await fleet.run(nightly(2, archive=False))
        assert recurring(memory) == []
        other = TaskGraph("certificates")
        other.add_subtask(
            "rotate", description="Rotate the TLS certificates of the MQTT broker", skill="rotate"
        )
        async with fleet:
            armed.set()
            third = fleet.submit(nightly(3, archive=False))
            rotation = fleet.submit(other)
            assert await asyncio.to_thread(embedding.wait, 60)  # the third is being recorded
            go.set()
            assert (await rotation.result()).ok  # recorded and consolidated meanwhile
            release.set()
            last = await third.result()
        assert last.ok
        summary = [f for f in recurring(memory) if SUMMARY in f.text]
        assert summary, "three similar subtasks over three tasks, and no recurring fact"
        assert last.task_id in {p["task"] for p in summary[0].provenance}
    finally:
        release.set()
        memory.close()


# 3. ctx.memory: an agent's namespace and the shared one ------------------------------------------


async def test_agents_remember_in_their_namespace_or_the_shared_one(memory: MemoryStore) -> None:
    memory.add_fact("the vault code is 4711", namespace=agent_namespace("vault"))
    graph = TaskGraph("notes")
    graph.add_subtask("keep", skill="keep")
    graph.add_subtask(
        "read",
        skill="read",
        inputs={"question": "which port does the staging database use?"},
        depends_on=["keep"],
    )
    fleet = Fleet([keeper, reader], router=SkillRouter(), memory=memory)
    result = await fleet.run(graph)
    assert result.ok, result.errors

    kept = result.outputs["keep"]
    assert kept["stored"] == [agent_namespace("keeper"), SHARED]
    assert kept["episode"] == ["episodic", agent_namespace("keeper")]
    # The keeper recalls its own notes and the shared one, not another agent's.
    assert kept["recalled"][0] == "the staging database listens on port 5433"
    assert "the greenhouse gateway reboots every night at 03:00" in kept["recalled"]
    assert "the vault code is 4711" not in kept["recalled"]

    # Writes landed where the API says, with who and which task wrote them.
    own = memory.get_key(agent_namespace("keeper"), "staging-db")
    assert own is not None and own.layer == "semantic"
    assert (own.agent_id, own.task_id) == ("keeper", result.task_id)
    assert own.provenance[0]["agent"] == "keeper"
    [shared] = [
        f for f in memory.items(layer="semantic", namespace=SHARED) if f.kind != RECURRING_KIND
    ]
    assert shared.text == "the greenhouse gateway reboots every night at 03:00"
    assert (shared.agent_id, shared.task_id) == ("keeper", result.task_id)
    [note] = memory.items(layer="episodic", namespace=agent_namespace("keeper"))
    assert (note.text, note.kind, note.outcome) == (
        "migrated the staging database to version 16",
        "note",
        "done",
    )

    # The reader sees the shared namespace, never the keeper's (nor the vault's).
    seen = result.outputs["read"]
    assert "the greenhouse gateway reboots every night at 03:00" in seen
    assert "the staging database listens on port 5433" not in seen
    assert "migrated the staging database to version 16" not in seen
    assert "the vault code is 4711" not in seen


async def test_a_later_note_with_the_same_key_supersedes_the_earlier(memory: MemoryStore) -> None:
    @agent(id="porter", skills=["port"])
    async def porter(ctx: SubtaskContext, port: int) -> dict[str, Any]:
        item = await ctx.memory.remember(
            f"the staging database listens on port {port}", key="staging-db"
        )
        found = await ctx.memory.recall("staging database port", layer="semantic", limit=5)
        return {"id": item.metadata["id"], "recalled": [f.text for f in found]}

    fleet = Fleet([porter], router=SkillRouter(), memory=memory)
    ids = []
    for port in (5432, 5433):
        graph = TaskGraph("port")
        graph.add_subtask("p", skill="port", inputs={"port": port})
        result = await fleet.run(graph)
        assert result.ok, result.errors
        # Only the current note is recalled: the one it superseded is history.
        assert result.outputs["p"]["recalled"] == [f"the staging database listens on port {port}"]
        ids.append(result.outputs["p"]["id"])
    current = memory.get_key(agent_namespace("porter"), "staging-db")
    assert current is not None and current.id == ids[1]
    assert [f.text for f in memory.history(current.id)] == [
        "the staging database listens on port 5433",
        "the staging database listens on port 5432",
    ]


# 4. The planner is shown how similar requests went -----------------------------------------------


@agent(id="counter", skills=[{"name": "code-metrics", "tags": ["lines-of-code"]}])
async def counter(path: str) -> dict[str, int]:
    """Counts lines of code."""
    return {"lines": 120}


@agent(id="todo-finder", skills=["todo-scan"])
async def todo_finder(path: str) -> list[str]:
    """Finds TODO markers."""
    raise SubtaskFailed("permission denied reading ./vendor", retryable=False)


def plan_json(*subtasks: dict[str, Any]) -> str:
    return json.dumps({"name": "audit", "subtasks": list(subtasks)})


AUDIT_PLAN = plan_json(
    {
        "id": "loc",
        "description": "count lines of code",
        "agent": "counter",
        "inputs": {"path": "."},
    },
    {
        "id": "todos",
        "description": "find TODO markers",
        "skill": "todo-scan",
        "inputs": {"path": "."},
    },
)


async def test_the_planner_is_offered_the_episodes_of_a_similar_request(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, memory: MemoryStore
) -> None:
    fleet = Fleet(
        [counter, todo_finder], router=SkillRouter(), planner=Planner(model), memory=memory
    )
    server.push(Reply.text(AUDIT_PLAN))
    first = await fleet.run("audit the code of this repository", replan=False)
    assert first.status == "failed"
    assert len(server.requests) == 1
    assert PLANNER_NOTE not in request_text(server.requests[0])  # nothing to remember yet

    [task] = episodes(memory, kind="task")
    failed = next(e for e in episodes(memory, kind="subtask") if e.outcome == "failed")
    assert task.text.startswith("task: audit the code of this repository — failed")
    assert (
        failed.text
        == "find TODO markers — todo-finder — failed: permission denied reading ./vendor"
    )

    server.push(Reply.text(AUDIT_PLAN))
    plan = await fleet.plan("audit the code of that repository")
    assert plan.graph.request == "audit the code of that repository"
    asked = server.requests[-1]["messages"]
    [user] = [m for m in asked if m["role"] == "user"]
    assert user["content"].startswith(f"audit the code of that repository\n\n{PLANNER_NOTE}")
    note = user["content"].split(PLANNER_NOTE, 1)[1]
    # What happened before, including what failed and why.
    assert f"- {task.text}" in note
    assert f"- {failed.text}" in note
    assert "- count lines of code — counter — done" in note


async def test_a_planner_without_memory_gets_no_note(
    server: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    fleet = Fleet([counter, todo_finder], router=SkillRouter(), planner=Planner(model))
    server.push(Reply.text(AUDIT_PLAN), Reply.text(AUDIT_PLAN))
    await fleet.run("audit the code of this repository", replan=False)
    await fleet.plan("audit the code of that repository")
    assert all(PLANNER_NOTE not in request_text(r) for r in server.requests)


# 5. An LLM agent recalls what is relevant to its subtask -----------------------------------------


def llm_task(description: str) -> TaskGraph:
    graph = TaskGraph("llm")
    graph.add_subtask("check", description=description, skill="triage")
    return graph


TRIAGE = AgentProfile(id="triager", description="Triages failures", skills=[{"name": "triage"}])


async def test_an_llm_agent_sees_the_episodes_of_a_similar_past_subtask(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, memory: MemoryStore
) -> None:
    triager = LLMAgent(TRIAGE, model=model)
    fleet = Fleet([triager], router=SkillRouter(), memory=memory)

    server.push(
        Reply.text(
            "the disk of pi-3 is full", usage={"prompt_tokens": 100, "completion_tokens": 10}
        )
    )
    first = await fleet.run(llm_task("Why did the nightly backup on pi-3 fail?"))
    assert first.ok, first.errors
    assert MEMORY_NOTE not in request_text(server.requests[0])  # nothing remembered yet

    # The LLM agent's run is in memory: its subtask (with what it cost) and its step.
    [past] = episodes(memory, kind="subtask")
    assert (
        past.text
        == "Why did the nightly backup on pi-3 fail? — triager — done: the disk of pi-3 is full"
    )
    assert past.agent_id == "triager"
    assert past.cost == pytest.approx((100 * 1 + 10 * 2) / 1e6)
    [step] = episodes(memory, kind="step")
    assert step.text.startswith("step 1 of check on cloud scripted-model: answer")
    assert step.cost == pytest.approx(past.cost)

    server.push(Reply.text("probably the disk again"))
    second = await fleet.run(llm_task("Why did the nightly backup on pi-3 fail again?"))
    assert second.ok, second.errors
    messages = server.requests[1]["messages"]
    notes = [m for m in messages if m["role"] == "user" and MEMORY_NOTE in m["content"]]
    assert len(notes) == 1
    lines = notes[0]["content"].splitlines()
    assert lines[0] == "From the fleet's memory (may help, may not):"
    assert f"- {past.text}" in lines
    assert len(lines) == 1 + 3  # the agent's recall limit (3 by default)
    # The note comes after the subtask itself, before the model's first step.
    assert messages.index(notes[0]) > next(
        i for i, m in enumerate(messages) if "Why did the nightly backup" in (m["content"] or "")
    )
    assert len(server.requests) == 2


async def test_an_llm_agent_with_recall_zero_gets_no_note(
    server: ScriptedLLMServer, model: OpenAICompatibleClient, memory: MemoryStore
) -> None:
    memory.add_episode(
        "Why did the nightly backup on pi-3 fail? — triager — done: the disk is full",
        kind="subtask",
        agent_id="triager",
        outcome="done",
    )
    fleet = Fleet([LLMAgent(TRIAGE, model=model, recall=0)], router=SkillRouter(), memory=memory)
    server.push(Reply.text("no idea"))
    result = await fleet.run(llm_task("Why did the nightly backup on pi-3 fail?"))
    assert result.ok, result.errors
    assert MEMORY_NOTE not in request_text(server.requests[0])


# 6. A LangGraph graph shares the fleet's memory through its store --------------------------------


class Notes(TypedDict, total=False):
    mode: str
    found: list[str]


async def librarian_node(state: Notes, runtime: Runtime[None]) -> Notes:
    store = runtime.store
    assert store is not None
    if state["mode"] == "write":
        await store.aput(
            (SHARED,), "boiler", {"text": "the boiler was serviced in March", "by": "Ada"}
        )
        await store.aput(
            (agent_namespace("librarian"),), "shelf", {"text": "the manuals are on shelf 4"}
        )
        return {"found": []}
    hits = await store.asearch((SHARED,), query="when was the boiler serviced?", limit=3)
    own = await store.aget((agent_namespace("librarian"),), "shelf")
    texts = [h.value["text"] for h in hits]
    return {"found": [*texts, *([own.value["text"]] if own else [])]}


def librarian(memory: MemoryStore) -> LangGraphAgent:
    builder = StateGraph(Notes)
    builder.add_node("work", librarian_node)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    graph = builder.compile(store=FleetMemoryStore(memory))
    profile = AgentProfile(id="librarian", skills=[{"name": "library"}])
    return LangGraphAgent(graph, profile, output="found")


def library_task(mode: str) -> TaskGraph:
    graph = TaskGraph("library")
    graph.add_subtask(
        "lib", description=f"{mode} the library notes", skill="library", inputs={"mode": mode}
    )
    return graph


async def test_a_langgraph_graph_writes_and_reads_the_fleet_memory(memory: MemoryStore) -> None:
    fleet = Fleet([librarian(memory), reader], router=SkillRouter(), memory=memory)
    wrote = await fleet.run(library_task("write"))
    assert wrote.ok, wrote.errors

    # The graph's put is an item of the fleet's memory, where its namespace says.
    item = memory.get_key(SHARED, "boiler")
    assert item is not None
    assert (item.text, item.kind, item.layer) == (
        "the boiler was serviced in March",
        "langgraph",
        "semantic",
    )
    assert item.metadata["value"] == {"text": "the boiler was serviced in March", "by": "Ada"}
    private = memory.get_key(agent_namespace("librarian"), "shelf")
    assert private is not None and private.text == "the manuals are on shelf 4"
    found = memory.recall("boiler service date", namespaces=[SHARED], layer="semantic", limit=1)
    assert found[0].item.id == item.id

    # Another fleet agent reads the shared item through ctx.memory, not the graph's own one.
    ask = TaskGraph("ask")
    ask.add_subtask("read", skill="read", inputs={"question": "when was the boiler serviced?"})
    seen = (await fleet.run(ask)).outputs["read"]
    assert seen[0] == "the boiler was serviced in March"
    assert "the manuals are on shelf 4" not in seen

    # A second run of the graph reads both back through the store API.
    read = await fleet.run(library_task("read"))
    assert read.ok, read.errors
    assert read.outputs["lib"][0] == "the boiler was serviced in March"
    assert read.outputs["lib"][-1] == "the manuals are on shelf 4"


async def test_a_langgraph_graph_reads_what_fleet_agents_remembered(memory: MemoryStore) -> None:
    @agent(id="noter", skills=["note"])
    async def noter(ctx: SubtaskContext) -> str:
        item = await ctx.memory.remember("the boiler was serviced in October", shared=True)
        return item.metadata["id"]

    fleet = Fleet([noter, librarian(memory)], router=SkillRouter(), memory=memory)
    graph = TaskGraph("note")
    graph.add_subtask("n", skill="note")
    noted = await fleet.run(graph)
    assert noted.ok, noted.errors
    fact_id = noted.outputs["n"]

    read = await fleet.run(library_task("read"))
    assert read.ok, read.errors
    assert read.outputs["lib"][0] == "the boiler was serviced in October"
    # The fleet's fact is visible to the graph under its id.
    store = FleetMemoryStore(memory)
    got = await store.aget((SHARED,), fact_id)
    assert got is not None and got.value == {"text": "the boiler was serviced in October"}


# 7. Fleet(memory=True) keeps its memory beside the task store ------------------------------------


@agent(id="recaller", skills=["recall"])
async def recaller(ctx: SubtaskContext, question: str) -> list[str]:
    return [item.text for item in await ctx.memory.recall(question, limit=5, layer="episodic")]


async def test_memory_true_lives_beside_the_task_store_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    tasks = tmp_path / "fleet" / "tasks.db"
    first = Fleet([summariser, archiver], router=SkillRouter(), store=tasks, memory=True)
    try:
        assert first.memory is not None
        assert first.memory.path == tmp_path / "fleet" / "tasks.memory.db"
        ran = await first.run(nightly())
        assert ran.status == "failed"
        assert first.memory.path.exists()
        remembered = {e.id: e.text for e in episodes(first.memory)}
        assert len(remembered) == 4  # the task, two subtasks, one step
    finally:
        if first.memory is not None:
            first.memory.close()
        first.store.close()

    again = Fleet([recaller], router=SkillRouter(), store=SQLiteStore(tasks), memory=True)
    try:
        assert again.memory is not None
        assert again.memory.path == tmp_path / "fleet" / "tasks.memory.db"
        assert {e.id: e.text for e in episodes(again.memory)} == remembered
        graph = TaskGraph("recall")
        graph.add_subtask(
            "r", skill="recall", inputs={"question": "why did archiving the build log fail?"}
        )
        result = await again.run(graph)
        assert result.ok, result.errors
        assert result.outputs["r"][0] == (
            f"{ARCHIVE} — archiver — failed: disk full while writing /var/log/build"
        )
    finally:
        if again.memory is not None:
            again.memory.close()
        again.store.close()


def test_memory_true_without_a_task_file_is_in_memory() -> None:
    fleet = Fleet([summariser], router=SkillRouter(), memory=True)
    assert fleet.memory is not None and fleet.memory.path is None
    fleet.memory.close()
    assert Fleet([summariser], router=SkillRouter()).memory is None

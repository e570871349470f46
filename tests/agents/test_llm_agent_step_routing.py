"""An LLM agent switching between a device and a cloud model step by step, over real HTTP to
two scripted OpenAI-compatible servers, with every step recorded in a SQLite task store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, TaskGraph, tool
from fleetmind._task_log import SubtaskProgressed
from fleetmind.agents import (
    STRUCTURAL_FEATURES,
    AgentProfile,
    AlwaysCloud,
    AlwaysDevice,
    CascadeRouter,
    LLMAgent,
    ModelEndpoint,
    OpenAICompatibleClient,
    RulesRouter,
    StepChoice,
    StepState,
    cloud_for_tools,
    keep_local_data,
    within_budget,
)
from fleetmind.cli._view import llm_line
from fleetmind.orchestrator import SkillRouter, SQLiteStore, TaskResult, recorded_step_rows
from fleetmind.testing import Reply, ScriptedLLMServer

DEVICE_PRICES = {"input_per_mtok": 0.1, "output_per_mtok": 0.2}
CLOUD_PRICES = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
QUESTION = "Tom has 9 boxes with 2 apples in each box. How many apples does he have?"


def device_price(prompt: int, completion: int) -> float:
    return (prompt * 0.1 + completion * 0.2) / 1e6


def cloud_price(prompt: int, completion: int) -> float:
    return (prompt * 1.0 + completion * 2.0) / 1e6


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion}


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@pytest.fixture
def cloud_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def device_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


def client(server: ScriptedLLMServer, tier: str) -> OpenAICompatibleClient:
    prices = CLOUD_PRICES if tier == "cloud" else DEVICE_PRICES
    model = "big" if tier == "cloud" else "small"
    endpoint = ModelEndpoint(
        name=tier, base_url=server.url, model=model, max_retries=0, prices=prices
    )
    return OpenAICompatibleClient(endpoint)


@pytest.fixture
async def models(
    device_server: ScriptedLLMServer, cloud_server: ScriptedLLMServer
) -> AsyncIterator[dict[str, OpenAICompatibleClient]]:
    async with client(device_server, "device") as device, client(cloud_server, "cloud") as cloud:
        yield {"device": device, "cloud": cloud}


def profile(**fields: Any) -> AgentProfile:
    return AgentProfile(
        **{"id": "solver", "description": "Solves word problems", "skills": [{"name": "w"}]}
        | fields
    )


def one_subtask(description: str = QUESTION, **fields: Any) -> TaskGraph:
    graph = TaskGraph("steps")
    graph.add_subtask("solve", description=description, skill="w", **fields)
    return graph


async def run(
    agent: LLMAgent, graph: TaskGraph, db: Path, **fleet: Any
) -> tuple[TaskResult, list[dict[str, Any]]]:
    """Run a task on one agent; its result and the step records of its log in the store."""
    result = await Fleet([agent], store=db, **fleet).run(graph)
    store = SQLiteStore(db)
    try:
        _, entries = store.load(result.task_id)
    finally:
        store.close()
    steps = [e.step for e in entries if isinstance(e, SubtaskProgressed) and e.step]
    return result, steps


class DeviceThenCloud:
    """Step 1 on the device, every later step on the cloud."""

    def __init__(self) -> None:
        self.seen: list[StepState] = []

    async def choose(self, state: StepState) -> StepChoice:
        self.seen.append(state)
        if state.step == 1:
            return StepChoice("device", "first look on the device")
        return StepChoice("cloud", "the cloud finishes")


# Switching mid-task ---------------------------------------------------------------------------


async def test_device_step_then_cloud_step_over_http(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    device_server.push(Reply.tool("word_count", {"text": "nine two"}, usage=usage(100, 10)))
    cloud_server.push(Reply.text("18 apples", usage=usage(200, 5)))
    router = DeviceThenCloud()
    agent = LLMAgent(profile(), model=models, tools=[word_count], step_router=router)
    result, steps = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert result.ok and result.outputs["solve"] == "18 apples"
    # The device model was asked first, the cloud model second, with the device's tool call and
    # its result in the conversation.
    assert len(device_server.requests) == 1 and len(cloud_server.requests) == 1
    assert device_server.requests[0]["model"] == "small"
    assert cloud_server.requests[0]["model"] == "big"
    seen = cloud_server.requests[0]["messages"]
    assert [m["role"] for m in seen] == ["system", "user", "assistant", "tool"]
    assert seen[-1]["content"] == "2"
    assert [s.step for s in router.seen] == [1, 2]
    assert [s.cloud_steps for s in router.seen] == [0, 0]

    first, second = steps
    assert (first["tier"], first["reason"], first["outcome"]) == (
        "device",
        "first look on the device",
        "tool_calls",
    )
    assert (second["tier"], second["reason"], second["outcome"]) == (
        "cloud",
        "the cloud finishes",
        "answer",
    )
    for record in steps:
        assert set(record["features"]) == set(STRUCTURAL_FEATURES)
        assert record["text_buckets"] and all(isinstance(b, int) for b in record["text_buckets"])
        assert record["agreement"] is None
    assert (first["features"]["step"], second["features"]["step"]) == (1.0, 2.0)
    assert (first["features"]["tool_results"], second["features"]["tool_results"]) == (0.0, 1.0)
    # The device step: paid at the device's prices, and what it would have cost on the cloud.
    assert first["cost"] == pytest.approx(device_price(100, 10))
    assert first["cloud_cost"] == pytest.approx(cloud_price(100, 10))
    assert second["cost"] == pytest.approx(cloud_price(200, 5))
    assert second["cloud_cost"] == pytest.approx(cloud_price(200, 5))

    state = result.graph.state("solve")
    assert (state.steps, state.cloud_steps, state.tokens) == (2, 1, 315)
    assert state.cost == pytest.approx(device_price(100, 10) + cloud_price(200, 5))
    assert state.cloud_cost == pytest.approx(cloud_price(100, 10) + cloud_price(200, 5))
    saved = result.graph.to_dict()["state"]["solve"]
    assert saved["cloud_steps"] == 1 and saved["all_cloud_cost"] == pytest.approx(state.cloud_cost)
    # The summary line: the cloud's share and the all-cloud cost beside the real one.
    assert llm_line(result.graph) == (
        f"LLM: 2 steps (1 on the cloud, 50%), 315 tokens, cost {state.cost:.4g} "
        f"(all on the cloud: {state.cloud_cost:.4g})"
    )


async def test_an_all_cloud_run_shows_no_all_cloud_comparison(
    tmp_path: Path, cloud_server: ScriptedLLMServer, models: dict[str, OpenAICompatibleClient]
) -> None:
    cloud_server.push(Reply.text("18", usage=usage(50, 2)))
    agent = LLMAgent(profile(), model=models, step_router=AlwaysCloud())
    result, _ = await run(agent, one_subtask(), tmp_path / "fleet.db")
    line = llm_line(result.graph)
    assert line.startswith("LLM: 1 step (1 on the cloud, 100%), 52 tokens")
    assert "all on the cloud" not in line


# Cascade ----------------------------------------------------------------------------------------


async def test_a_cascade_keeps_a_good_device_draft(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    device_server.push(Reply.text("9 * 2 = 18 apples.\n#### 18", usage=usage(80, 12)))
    agent = LLMAgent(profile(), model=models, step_router=CascadeRouter())
    result, steps = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert result.outputs["solve"] == "9 * 2 = 18 apples.\n#### 18"
    assert len(device_server.requests) == 1 and not cloud_server.requests
    [record] = steps
    assert (record["tier"], record["outcome"]) == ("device", "answer")
    assert record["reason"].startswith("cascade: draft kept")
    state = result.graph.state("solve")
    assert (state.steps, state.cloud_steps) == (1, 0)
    assert state.cost == pytest.approx(device_price(80, 12))


async def test_a_cascade_escalates_a_bad_draft(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    device_server.push(Reply.text("9 * 2 = 20 apples.\n#### 20", usage=usage(80, 12)))
    cloud_server.push(Reply.text("9 * 2 = 18.\n#### 18", usage=usage(90, 8)))
    agent = LLMAgent(profile(), model=models, step_router=CascadeRouter())
    result, steps = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert result.outputs["solve"] == "9 * 2 = 18.\n#### 18"
    assert len(device_server.requests) == 1 and len(cloud_server.requests) == 1
    # The cloud answers the same conversation the device drafted for (not the draft).
    assert cloud_server.requests[0]["messages"] == device_server.requests[0]["messages"]
    escalated, answer = steps
    assert (escalated["step"], escalated["tier"], escalated["outcome"]) == (
        1,
        "device",
        "escalated",
    )
    assert escalated["reason"] == "cascade: device drafts first"
    assert (answer["step"], answer["tier"], answer["outcome"]) == (1, "cloud", "answer")
    assert "draft risk" in answer["reason"] and "escalated" in answer["reason"]
    assert escalated["features"] == answer["features"]
    # One step, on the cloud; both calls paid.
    state = result.graph.state("solve")
    assert (state.steps, state.cloud_steps, state.tokens) == (1, 1, 190)
    assert state.cost == pytest.approx(device_price(80, 12) + cloud_price(90, 8))
    assert state.cloud_cost == pytest.approx(cloud_price(90, 8))


# Shadow steps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_answer", "cloud_answer", "agree"),
    [
        ("The answer is 18.", "the answer is 18", True),
        ("So he has 18 apples", "#### 18", True),  # the same last number
        ("The answer is 20.", "The answer is 18.", False),
    ],
    ids=["same-words", "same-number", "different"],
)
async def test_shadow_steps_record_whether_the_models_agree(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
    device_answer: str,
    cloud_answer: str,
    agree: bool,
) -> None:
    device_server.push(Reply.text(device_answer, usage=usage(40, 4)))
    cloud_server.push(Reply.text(cloud_answer, usage=usage(40, 4)))
    agent = LLMAgent(profile(), model=models, step_router=AlwaysDevice(), shadow_rate=1.0)
    result, steps = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert result.outputs["solve"] == device_answer  # the shadow's answer is not used
    assert len(device_server.requests) == 1 and len(cloud_server.requests) == 1
    assert cloud_server.requests[0]["messages"] == device_server.requests[0]["messages"]
    shadow, record = steps  # the shadow answer is recorded first, then the step itself
    assert shadow["outcome"] == "shadow" and shadow["tier"] == "cloud"
    assert record["tier"] == "device" and record["agreement"] is agree
    state = result.graph.state("solve")
    assert (state.steps, state.cloud_steps) == (1, 0)


async def test_no_shadow_steps_by_default(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    device_server.push(Reply.text("18"))
    agent = LLMAgent(profile(), model=models, step_router=AlwaysDevice())
    _, [record] = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert record["agreement"] is None and not cloud_server.requests


async def test_a_shadow_call_is_counted_in_the_cost(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    """A shadow call is paid: its cost is in the task's cost (a ``shadow`` record)."""
    device_server.push(Reply.text("18", usage=usage(40, 4)))
    cloud_server.push(Reply.text("18", usage=usage(40, 4)))
    agent = LLMAgent(profile(), model=models, step_router=AlwaysDevice(), shadow_rate=1.0)
    result, _ = await run(agent, one_subtask(), tmp_path / "fleet.db")
    state = result.graph.state("solve")
    assert state.cost == pytest.approx(device_price(40, 4) + cloud_price(40, 4))


# Rules ------------------------------------------------------------------------------------------


def tool_steps_then(answer: str, tools_first: int) -> Callable[[dict[str, Any]], Reply]:
    """A scripted model that calls word_count until the conversation holds ``tools_first``
    tool results, then answers (so each step's reply does not depend on which server)."""

    def respond(request: dict[str, Any]) -> Reply:
        done = sum(m["role"] == "tool" for m in request["messages"])
        if done < tools_first:
            return Reply.tool("word_count", {"text": "a b c"}, usage=usage(30, 3))
        return Reply.text(answer, usage=usage(30, 3))

    return respond


async def test_a_cloud_budget_holds_over_a_four_step_subtask(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        device_server = stack.enter_context(ScriptedLLMServer(responder=tool_steps_then("d", 3)))
        cloud_server = stack.enter_context(ScriptedLLMServer(responder=tool_steps_then("c", 3)))
        device = await stack.enter_async_context(client(device_server, "device"))
        cloud = await stack.enter_async_context(client(cloud_server, "cloud"))
        router = RulesRouter([within_budget(cloud_share=0.5)], otherwise=AlwaysCloud())
        agent = LLMAgent(
            profile(),
            model={"device": device, "cloud": cloud},
            tools=[word_count],
            step_router=router,
        )
        result, steps = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert result.ok
    tiers = [s["tier"] for s in steps]
    assert tiers == ["cloud", "device", "device", "cloud"]
    assert len(cloud_server.requests) == 2 and len(device_server.requests) == 2
    assert result.outputs["solve"] == "c"
    assert "cloud budget 50% spent (1 of 1 steps)" in steps[1]["reason"]
    state = result.graph.state("solve")
    assert (state.steps, state.cloud_steps) == (4, 2)


async def test_data_that_must_stay_local_keeps_every_step_on_the_device(tmp_path: Path) -> None:
    graph = TaskGraph("local")
    graph.add_subtask(
        "notes",
        description="Summarise my phone notes",
        skill="w",
        constraints={"data": ["phone-notes"]},
    )
    graph.add_subtask("weather", description="What is the weather like in Oslo?", skill="w")
    async with AsyncExitStack() as stack:
        device_server = stack.enter_context(ScriptedLLMServer(responder=tool_steps_then("d", 1)))
        cloud_server = stack.enter_context(ScriptedLLMServer(responder=tool_steps_then("c", 1)))
        device = await stack.enter_async_context(client(device_server, "device"))
        cloud = await stack.enter_async_context(client(cloud_server, "cloud"))
        router = RulesRouter([keep_local_data()], otherwise=AlwaysCloud())
        # Only an agent that holds the notes may take a subtask whose data must stay local;
        # the other, cheaper one takes the rest.
        keeper, solver = (
            LLMAgent(
                profile(id=agent_id, **fields),
                model={"device": device, "cloud": cloud},
                tools=[word_count],
                step_router=router,
            )
            for agent_id, fields in (
                ("keeper", {"limits": {"local_data": ["phone-notes"]}, "cost_per_call": 0.01}),
                ("solver", {}),
            )
        )
        fleet = Fleet([keeper, solver], store=tmp_path / "fleet.db", router=SkillRouter())
        result = await fleet.run(graph)
    assert result.ok and result.outputs == {"notes": "d", "weather": "c"}
    assert len(device_server.requests) == 2 and len(cloud_server.requests) == 2
    for request in device_server.requests:
        assert "phone notes" in request["messages"][1]["content"]
    for request in cloud_server.requests:
        assert "Oslo" in request["messages"][1]["content"]
    notes, weather = result.graph.state("notes"), result.graph.state("weather")
    assert (notes.agent, weather.agent) == ("keeper", "solver")
    assert (notes.steps, notes.cloud_steps) == (2, 0)
    assert (weather.steps, weather.cloud_steps) == (2, 2)


async def test_cloud_for_tools_in_a_running_agent(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    """The step after a word_count result goes to the cloud (the tool's name is found through
    the call's id: the chat API's form of a tool message has no name)."""
    device_server.push(Reply.tool("word_count", {"text": "a b"}), Reply.text("device answer"))
    cloud_server.push(Reply.text("cloud answer"))
    router = RulesRouter([cloud_for_tools(["word_count"])], otherwise="device")
    agent = LLMAgent(profile(), model=models, tools=[word_count], step_router=router)
    result, steps = await run(agent, one_subtask(), tmp_path / "fleet.db")
    assert [s["tier"] for s in steps] == ["device", "cloud"]
    assert result.outputs["solve"] == "cloud answer"


# Training rows from the store --------------------------------------------------------------------


async def test_recorded_steps_become_labeled_training_rows(
    tmp_path: Path,
    device_server: ScriptedLLMServer,
    cloud_server: ScriptedLLMServer,
    models: dict[str, OpenAICompatibleClient],
) -> None:
    db = tmp_path / "fleet.db"
    # 1. A draft the cascade escalates: needed the cloud (the cloud's own step teaches nothing).
    device_server.push(Reply.text("9 * 2 = 20\n#### 20"))
    cloud_server.push(Reply.text("#### 18"))
    await run(LLMAgent(profile(), model=models, step_router=CascadeRouter()), one_subtask(), db)
    # 2. Two device steps of a subtask that finished done: the device did.
    device_server.push(Reply.tool("word_count", {"text": "a b"}), Reply.text("2"))
    device_only = LLMAgent(profile(), model=models, tools=[word_count], step_router=AlwaysDevice())
    await run(device_only, one_subtask("How many words are in 'a b'?"), db)
    # 3. A shadowed step where the two models disagreed: needed the cloud.
    device_server.push(Reply.text("20"))
    cloud_server.push(Reply.text("18"))
    shadowed = LLMAgent(profile(), model=models, step_router=AlwaysDevice(), shadow_rate=1.0)
    await run(shadowed, one_subtask(), db)
    # 4. A device step of a failed subtask: skipped.
    device_server.push(Reply.tool("word_count", {"text": "x"}))
    failing = LLMAgent(
        profile(), model=models, tools=[word_count], step_router=AlwaysDevice(), max_steps=1
    )
    failed, _ = await run(failing, one_subtask(), db)
    assert not failed.ok

    store = SQLiteStore(db)
    try:
        rows = recorded_step_rows(store)
    finally:
        store.close()
    assert sorted(rows.labels.tolist()) == [False, False, True, True]
    assert rows.numeric.shape == (4, len(STRUCTURAL_FEATURES)) and rows.text is not None
    assert rows.text.shape[0] == 4 and (rows.text.sum(axis=1) > 0).all()
    assert rows.text_kind == "hashed"
    # The two device steps of the done subtask: steps 1 and 2, both labeled False.
    step_column = rows.numeric[:, STRUCTURAL_FEATURES.index("step")]
    assert sorted(step_column[~rows.labels].tolist()) == [1.0, 2.0]


async def test_an_empty_store_gives_no_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "empty.db")
    try:
        rows = recorded_step_rows(store)
    finally:
        store.close()
    assert rows.labels.shape == (0,) and rows.numeric.shape == (0, len(STRUCTURAL_FEATURES))

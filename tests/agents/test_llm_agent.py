"""LLMAgent: the LangGraph step loop against scripted OpenAI-compatible servers over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel

from fleetmind import Fleet, TaskGraph, tool
from fleetmind.agents import (
    AgentProfile,
    AlwaysDevice,
    LLMAgent,
    ModelEndpoint,
    OpenAICompatibleClient,
    StepChoice,
    StepState,
)
from fleetmind.orchestrator import SubtaskProgressEvent
from fleetmind.testing import Reply, ScriptedLLMServer


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@pytest.fixture
def cloud_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def device_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
async def cloud(cloud_server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    endpoint = ModelEndpoint(
        name="cloud",
        base_url=cloud_server.url,
        model="big",
        max_retries=0,
        prices={"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    )
    async with OpenAICompatibleClient(endpoint) as client:
        yield client


@pytest.fixture
async def device(device_server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    endpoint = ModelEndpoint(name="device", base_url=device_server.url, model="small")
    async with OpenAICompatibleClient(endpoint) as client:
        yield client


def profile(agent_id: str = "writer") -> AgentProfile:
    return AgentProfile(id=agent_id, description="Writes and counts words", skills=[{"name": "w"}])


def one_subtask(**inputs: object) -> TaskGraph:
    graph = TaskGraph("llm")
    graph.add_subtask(
        "count", description="How many words are in the text?", skill="w", inputs=inputs
    )
    return graph


async def test_reason_act_observe_answer_with_step_records(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(
        Reply(
            tool_calls=[
                {"name": "word_count", "arguments": {"text": "one two three"}},
                {"name": "shout", "arguments": {"text": "hi"}},
            ],
            usage={"prompt_tokens": 100, "completion_tokens": 10},
        ),
        Reply.text("three words", usage={"prompt_tokens": 150, "completion_tokens": 5}),
    )
    writer = LLMAgent(profile(), model=cloud, tools=[word_count, shout])
    fleet = Fleet([writer])
    async with fleet:
        handle = fleet.submit(one_subtask(text="one two three"))
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.ok and result.outputs["count"] == "three words"
    # The second request carries the tool results, answering each call by its id.
    second = cloud_server.requests[1]["messages"]
    tool_replies = [m for m in second if m["role"] == "tool"]
    assert [m["content"] for m in tool_replies] == ["3", "HI"]
    assert tool_replies[0]["tool_call_id"] == second[2]["tool_calls"][0]["id"]
    # The model saw the tools' schemas (and the give-up tool).
    names = [t["function"]["name"] for t in cloud_server.requests[0]["tools"]]
    assert names == ["word_count", "shout", "give_up"]
    # The inputs reach the model.
    assert "one two three" in cloud_server.requests[0]["messages"][1]["content"]
    steps = [e.step for e in events if isinstance(e, SubtaskProgressEvent) and e.step]
    assert [s["outcome"] for s in steps] == ["tool_calls", "answer"]
    assert steps[0]["tool_calls"] == [
        {"name": "word_count", "ok": True, "error": None},
        {"name": "shout", "ok": True, "error": None},
    ]
    assert steps[0]["prompt_tokens"] == 100 and steps[0]["tier"] == "cloud"
    assert steps[0]["model"] == "scripted-model"
    assert steps[0]["cost"] == pytest.approx((100 * 1 + 10 * 2) / 1e6)
    state = result.graph.state("count")
    assert (state.steps, state.tokens) == (2, 265)
    assert state.cost == pytest.approx((250 * 1 + 15 * 2) / 1e6)


async def test_tool_errors_are_observations_not_failures(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(
        Reply(tool_calls=[{"name": "word_count", "arguments": "{broken"}]),
        Reply.tool("no_such_tool", {}),
        Reply.tool("word_count", {"wrong": 1}),
        Reply.text("gave my best"),
    )
    writer = LLMAgent(profile(), model=cloud, tools=[word_count])
    result = await Fleet([writer]).run(one_subtask())
    assert result.outputs["count"] == "gave my best"
    observations = [
        m["content"] for m in cloud_server.requests[3]["messages"] if m["role"] == "tool"
    ]
    assert "not valid JSON" in observations[0]
    assert "unknown tool 'no_such_tool'" in observations[1]
    assert "bad arguments for tool 'word_count'" in observations[2]


async def test_fleet_tools_by_name(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(Reply.tool("shout", {"text": "a"}), Reply.text("A"))
    writer = LLMAgent(profile(), model=cloud, tools=["shout"])
    result = await Fleet([writer], tools=[shout, word_count]).run(one_subtask())
    assert result.ok
    assert [t["function"]["name"] for t in cloud_server.requests[0]["tools"]] == [
        "shout",
        "give_up",
    ]


async def test_a_missing_fleet_tool_fails_clearly(cloud: OpenAICompatibleClient) -> None:
    writer = LLMAgent(profile(), model=cloud, tools=["nope"])
    result = await Fleet([writer]).run(one_subtask())
    assert "needs tool(s) nope" in result.errors["count"]["message"]


async def test_step_budget(cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient) -> None:
    cloud_server.push(*[Reply.tool("word_count", {"text": "a"})] * 5)
    writer = LLMAgent(profile(), model=cloud, tools=[word_count], max_steps=2)
    result = await Fleet([writer]).run(one_subtask())
    error = result.errors["count"]
    assert error["type"] == "BudgetExhausted" and "used its 2 steps" in error["message"]
    assert len(cloud_server.requests) == 2  # not retried: the budget would run out again


async def test_token_budget(cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient) -> None:
    usage = {"prompt_tokens": 600, "completion_tokens": 10}
    cloud_server.push(*[Reply.tool("word_count", {"text": "a"}, usage=usage)] * 5)
    writer = LLMAgent(profile(), model=cloud, tools=[word_count], max_tokens=1000)
    result = await Fleet([writer]).run(one_subtask())
    assert "1220 of its 1000 tokens" in result.errors["count"]["message"]
    assert len(cloud_server.requests) == 2


async def test_give_up_fails_without_retry(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(Reply.tool("give_up", {"reason": "the file is not there"}))
    writer = LLMAgent(profile(), model=cloud)
    result = await Fleet([writer]).run(one_subtask())
    error = result.errors["count"]
    assert (
        error["type"] == "SubtaskFailed"
        and "cannot go on: the file is not there" in error["message"]
    )
    assert len(cloud_server.requests) == 1


class Verdict(BaseModel):
    words: int
    language: str


async def test_structured_answers_are_validated_and_repaired(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(
        Reply.text('Sure! {"words": "many"}'),
        Reply.text('Here you go:\n```json\n{"words": 3, "language": "en"}\n```'),
    )
    writer = LLMAgent(profile(), model=cloud, output_type=Verdict)
    result = await Fleet([writer]).run(one_subtask())
    assert result.outputs["count"] == {"words": 3, "language": "en"}
    repair = cloud_server.requests[1]["messages"][-1]["content"]
    assert "not valid" in repair and "words" in repair
    assert "JSON Schema" in cloud_server.requests[0]["messages"][0]["content"]


def wait_for_request(server: ScriptedLLMServer, deadline_s: float = 30.0) -> None:
    """Block until the server has received a request (runs in a worker thread)."""
    import time

    end = time.monotonic() + deadline_s
    while not server.requests and time.monotonic() < end:
        time.sleep(0.01)
    assert server.requests, "the model was never asked"


class Alternate:
    """Device for odd steps, cloud for even ones: a router that changes its mind mid-task."""

    def __init__(self) -> None:
        self.seen: list[StepState] = []

    async def choose(self, state: StepState) -> StepChoice:
        self.seen.append(state)
        tier = "device" if state.step % 2 else "cloud"
        return StepChoice(tier, f"step {state.step} is {'odd' if state.step % 2 else 'even'}")


async def test_the_step_router_switches_models_mid_task(
    cloud_server: ScriptedLLMServer,
    device_server: ScriptedLLMServer,
    cloud: OpenAICompatibleClient,
    device: OpenAICompatibleClient,
) -> None:
    device_server.push(
        Reply.tool("word_count", {"text": "a b"}), Reply.text("two, says the device")
    )
    cloud_server.push(Reply.tool("shout", {"text": "x"}))
    router = Alternate()
    writer = LLMAgent(
        profile(),
        model={"device": device, "cloud": cloud},
        tools=[word_count, shout],
        step_router=router,
        max_steps=5,
    )
    fleet = Fleet([writer])
    async with fleet:
        handle = fleet.submit(one_subtask())
        events = [e async for e in handle.events()]
    steps = [e.step for e in events if isinstance(e, SubtaskProgressEvent) and e.step]
    assert [s["tier"] for s in steps] == ["device", "cloud", "device"]
    assert steps[1]["reason"] == "step 2 is even"
    assert len(device_server.requests) == 2 and len(cloud_server.requests) == 1
    # The cloud saw the device's tool call and its result: one conversation across models.
    assert any(m["role"] == "tool" for m in cloud_server.requests[0]["messages"])
    assert [s.step for s in router.seen] == [1, 2, 3]
    assert router.seen[0].tiers == ("device", "cloud") and router.seen[0].steps_left == 5
    assert (await handle.result()).graph.state("count").cloud_steps == 1


async def test_fixed_policies(
    cloud_server: ScriptedLLMServer,
    device_server: ScriptedLLMServer,
    cloud: OpenAICompatibleClient,
    device: OpenAICompatibleClient,
) -> None:
    device_server.push(Reply.text("small answer"))
    both = {"device": device, "cloud": cloud}
    result = await Fleet([LLMAgent(profile(), model=both, step_router=AlwaysDevice())]).run(
        one_subtask()
    )
    assert result.outputs["count"] == "small answer" and not cloud_server.requests
    cloud_server.push(Reply.text("big answer"))
    result = await Fleet([LLMAgent(profile(), model=both)]).run(one_subtask())  # default: cloud
    assert result.outputs["count"] == "big answer"


async def test_a_model_that_stays_down_fails_the_step_and_retries_from_the_checkpoint(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    """An attempt that fails mid-loop is retried from its last finished step, not from scratch."""
    cloud_server.push(
        Reply.tool("word_count", {"text": "a b c"}),
        Reply.error(503, "down"),
        Reply.text("3"),
    )
    writer = LLMAgent(profile(), model=cloud, tools=[word_count])
    graph = one_subtask()
    graph.update_subtask("count", retry={"max_attempts": 2, "initial_backoff_s": 0})
    fleet = Fleet([writer])
    async with fleet:
        handle = fleet.submit(graph)
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.outputs["count"] == "3"
    assert len(cloud_server.requests) == 3  # step 1 was not asked again
    steps = [e.step for e in events if isinstance(e, SubtaskProgressEvent) and e.step]
    assert [s["outcome"] for s in steps] == ["tool_calls", "error", "answer"]
    assert "503" in steps[1]["error"]


async def test_cancellation_reaches_the_model_call(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(Reply.text("too late", delay_s=1.0))
    writer = LLMAgent(profile(), model=cloud)
    fleet = Fleet([writer])
    async with fleet:
        handle = fleet.submit(one_subtask())
        async for event in handle.events():
            if event.kind == "subtask_started":
                break
        await asyncio.to_thread(wait_for_request, cloud_server)
        result = await handle.cancel()
    assert result.status == "cancelled"


async def test_without_checkpoints(
    cloud_server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    cloud_server.push(Reply.tool("word_count", {"text": "a b"}), Reply.text("2"))
    writer = LLMAgent(profile(), model=cloud, tools=[word_count], checkpoint=False)
    result = await Fleet([writer]).run(one_subtask())
    assert result.outputs["count"] == "2"

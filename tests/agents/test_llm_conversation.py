"""An LLM agent's working memory: long tool outputs summarised with a pointer, older turns
folded into a compressed note, optionally summarised by the small model (scripted
OpenAI-compatible servers over real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fleetmind import Fleet, TaskGraph, tool
from fleetmind.agents import AgentProfile, LLMAgent, ModelEndpoint, OpenAICompatibleClient
from fleetmind.agents._conversation import NOTE_HEADER, Conversation
from fleetmind.errors import AgentError
from fleetmind.memory import default_tokenizer
from fleetmind.testing import Reply, Rule, ScriptedLLMServer

BUILD_LOG = "\n".join(
    [f"compiling module_{i}.c ok ({i % 7} warnings)" for i in range(400)]
    + ["ERROR: undefined reference to `sensor_init' in main.c:88"]
    + [f"linking object_{i}.o" for i in range(200)]
)


@tool
def build_log() -> str:
    """The nightly build's log."""
    return BUILD_LOG


@tool
def probe(host: str) -> str:
    """Probe a host."""
    if host == "pi-3":
        raise RuntimeError("disk full on pi-3 (/var at 100%)")
    return f"{host}: " + " ".join(f"metric_{i}={i * 3}" for i in range(60))


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as scripted:
        yield scripted


@pytest.fixture
def small_server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as scripted:
        yield scripted


async def client(server: ScriptedLLMServer, name: str) -> OpenAICompatibleClient:
    endpoint = ModelEndpoint(name=name, base_url=server.url, model=name, max_retries=0)
    return OpenAICompatibleClient(endpoint)


@pytest.fixture
async def cloud(server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    async with await client(server, "cloud") as opened:
        yield opened


@pytest.fixture
async def device(small_server: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    async with await client(small_server, "device") as opened:
        yield opened


def profile() -> AgentProfile:
    return AgentProfile(id="ops", description="Looks after the fleet", skills=[{"name": "ops"}])


def task(description: str) -> TaskGraph:
    graph = TaskGraph("ops")
    graph.add_subtask("look", description=description, skill="ops")
    return graph


async def run(agent: LLMAgent, description: str) -> Any:
    async with Fleet([agent]) as fleet:
        return await fleet.run(task(description))


def tokens(messages: list[dict[str, Any]]) -> int:
    return Conversation(10**6, tool_output_tokens=10**6).tokens(messages)


def assert_valid_protocol(messages: list[dict[str, Any]]) -> None:
    """Every tool reply answers a call of the assistant message before it."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            open_calls = {c["id"] for c in message.get("tool_calls") or ()}
        elif message["role"] == "tool":
            assert message["tool_call_id"] in open_calls
        else:
            open_calls = set()


async def test_a_long_tool_output_reaches_the_model_summarised_with_a_pointer(
    server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    server.push(
        Reply(tool_calls=[{"name": "build_log", "arguments": {}}]),
        Reply(tool_calls=[{"name": "read_output", "arguments": {"pointer": "tool-output:1"}}]),
        Reply(
            tool_calls=[
                {
                    "name": "read_output",
                    "arguments": {"pointer": "tool-output:1", "first_line": 400},
                }
            ]
        ),
        Reply(tool_calls=[{"name": "read_output", "arguments": {"pointer": "tool-output:9"}}]),
        Reply.text("main.c:88 has an undefined reference to sensor_init"),
    )
    agent = LLMAgent(profile(), model=cloud, tools=[build_log], tool_output_tokens=200)
    result = await run(agent, "Why did the nightly build fail?")
    assert result.ok, result.error
    shown = server.requests[1]["messages"][-1]
    assert shown["role"] == "tool"
    assert "read_output(pointer='tool-output:1')" in shown["content"]
    assert "undefined reference to `sensor_init' in main.c:88" in shown["content"]  # pinned
    assert default_tokenizer().count(shown["content"]) < 300 < default_tokenizer().count(BUILD_LOG)
    # Once an output was summarised, the model is offered read_output, which pages the text.
    names = [t["function"]["name"] for t in server.requests[1]["tools"]]
    assert "read_output" in names and "read_output" not in [
        t["function"]["name"] for t in server.requests[0]["tools"]
    ]
    first_page = server.requests[2]["messages"][-1]["content"]
    assert first_page.startswith("compiling module_0.c ok")
    assert "[lines 1-80 of 601; next: first_line=81]" in first_page
    later_page = server.requests[3]["messages"][-1]["content"]
    assert "ERROR: undefined reference" in later_page
    assert (
        "error: no full text under 'tool-output:9'" in server.requests[4]["messages"][-1]["content"]
    )
    for request in server.requests:
        assert BUILD_LOG not in str(request["messages"])


async def test_older_turns_fold_into_a_note_that_keeps_the_errors(
    server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    hosts = ["pi-1", "pi-2", "pi-3", "pi-4", "pi-5", "pi-6", "pi-7", "pi-8"]
    server.push(
        *[Reply(tool_calls=[{"name": "probe", "arguments": {"host": h}}]) for h in hosts],
        Reply.text("pi-3 is out of disk"),
    )
    agent = LLMAgent(
        profile(),
        model=cloud,
        tools=[probe],
        context_tokens=1200,
        tool_output_tokens=300,
        max_steps=12,
    )
    result = await run(agent, "Probe every host and say which one is unhealthy")
    assert result.ok, result.error
    last = server.requests[-1]["messages"]
    notes = [m for m in last if m["role"] == "user" and m["content"].startswith(NOTE_HEADER)]
    assert len(notes) == 1
    assert last[0]["role"] == "system" and "Probe every host" in last[1]["content"]
    assert "disk full on pi-3" in notes[0]["content"]  # an error survives folding
    assert last[-1]["role"] == "tool" and "pi-8" in last[-1]["content"]  # the latest turn whole
    assert_valid_protocol(last)
    for request in server.requests:
        assert tokens(request["messages"]) <= 1200 + 200  # the budget, give or take the answer
    # Without a limit the same run sends the whole conversation every time.
    assert tokens(server.requests[-1]["messages"]) < tokens(
        [m for r in server.requests[1:] for m in r["messages"][-1:]]
    )


async def test_without_a_context_limit_nothing_is_folded(
    server: ScriptedLLMServer, cloud: OpenAICompatibleClient
) -> None:
    server.push(
        *[Reply(tool_calls=[{"name": "probe", "arguments": {"host": f"pi-{i}"}}]) for i in (1, 2)],
        Reply.text("fine"),
    )
    agent = LLMAgent(profile(), model=cloud, tools=[probe], context_tokens=None)
    assert (await run(agent, "Probe two hosts")).ok
    last = server.requests[-1]["messages"]
    assert not any(str(m.get("content", "")).startswith(NOTE_HEADER) for m in last)
    assert len(last) == 6


async def test_the_small_model_can_summarise_the_folded_turns(
    server: ScriptedLLMServer,
    small_server: ScriptedLLMServer,
    cloud: OpenAICompatibleClient,
    device: OpenAICompatibleClient,
) -> None:
    hosts = [f"pi-{i}" for i in range(1, 7)]
    server.push(
        *[Reply(tool_calls=[{"name": "probe", "arguments": {"host": h}}]) for h in hosts],
        Reply.text("pi-3 is out of disk"),
    )
    small_server.add_rule(
        Rule(
            "Summarise these earlier steps",
            Reply.text(
                "Probed pi-1 to pi-5; pi-3 failed: disk full.",
                usage={"prompt_tokens": 500, "completion_tokens": 20},
            ),
        )
    )
    agent = LLMAgent(
        profile(),
        model={"device": device, "cloud": cloud},
        tools=[probe],
        context_tokens=1200,
        tool_output_tokens=300,
        summarize_context=True,
    )
    result = await run(agent, "Probe every host and say which one is unhealthy")
    assert result.ok, result.error
    assert small_server.requests, "the small model was asked for a summary"
    assert "Probe every host" in small_server.requests[0]["messages"][0]["content"]
    last = server.requests[-1]["messages"]
    note = next(m for m in last if str(m.get("content", "")).startswith(NOTE_HEADER))
    assert "Probed pi-1 to pi-5; pi-3 failed: disk full." in note["content"]
    # The summaries' tokens count in the subtask's (the cloud replies carry no usage: their
    # tokens are counted from the text, far fewer than the 520 of each summary).
    assert result.graph.state("look").tokens >= 520 * len(small_server.requests)


def test_context_must_leave_room_for_tool_outputs() -> None:
    with pytest.raises(AgentError, match="at least four times"):
        LLMAgent(profile(), model="cloud", context_tokens=1000, tool_output_tokens=400)


async def test_folding_keeps_whole_turns_and_a_single_note() -> None:
    conversation = Conversation(300, tool_output_tokens=60)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Check the hosts."},
    ]
    for i in range(12):
        call = {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "probe", "arguments": f'{{"host": "pi-{i}"}}'},
        }
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        messages.append(
            {"role": "tool", "tool_call_id": f"c{i}", "name": "probe", "content": f"pi-{i} ok " * 8}
        )
        messages = await conversation.fit(messages, "Check the hosts.")
        assert_valid_protocol(messages)
        assert sum(str(m.get("content", "")).startswith(NOTE_HEADER) for m in messages) <= 1
    assert conversation.tokens(messages) <= 300
    assert messages[-1]["tool_call_id"] == "c11"

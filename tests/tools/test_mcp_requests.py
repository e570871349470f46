"""What an MCP server asks fleetmind while it serves a call: a model's answer (sampling), the
user's answer (elicitation), and a look at its changed tool list.

The server is tests/fixtures/mcp_asking_server.py, a real process speaking MCP over stdio
through the official SDK; the model is the scripted OpenAI-compatible server on loopback.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from repo_paths import FIXTURES

from fleetmind import Agent, Fleet, SubtaskContext, TaskGraph, agent
from fleetmind.agents import ModelEndpoint, OpenAICompatibleClient
from fleetmind.orchestrator import ANSWER_SKILL
from fleetmind.protocols import ElicitationReply, ElicitationRequest
from fleetmind.testing import Reply, ScriptedLLMServer
from fleetmind.tools import MCPServerConfig, MCPToolSource, ToolRegistry, ToolResult

pytestmark = pytest.mark.timeout(120)

SERVER = FIXTURES / "mcp_asking_server.py"


def asking_server() -> MCPServerConfig:
    return MCPServerConfig(name="asking", command=sys.executable, args=[str(SERVER)])


async def call_asking(
    tool: str, arguments: dict[str, Any], agents: Sequence[Agent] = (), **options: Any
) -> ToolResult:
    """One call of the asking server's ``tool`` from a fleet of ``agents`` (built with
    ``options``), closed after the call."""
    fleet = Fleet(list(agents), mcp_servers=[asking_server()], **options)
    try:
        return await fleet.tools.call(tool, arguments)
    finally:
        await fleet.aclose()


@pytest.fixture
def llm() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
async def model(llm: ScriptedLLMServer) -> AsyncIterator[OpenAICompatibleClient]:
    client = OpenAICompatibleClient(
        ModelEndpoint(name="cloud", base_url=llm.url, model="poet-large")
    )
    try:
        yield client
    finally:
        await client.aclose()


async def until(condition: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    """Wait for ``condition`` (the server's notification travels on its own)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


# Sampling ----------------------------------------------------------------------------------


async def test_a_sampling_request_is_answered_by_the_fleets_model(
    llm: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    llm.push(Reply.text("The sea is wide,\nthe sea is deep."))
    result = await call_asking("write_poem", {"topic": "the sea"}, sampling_model=model)
    assert result.ok, result.error
    assert result.value == {"result": "scripted-model wrote: The sea is wide,\nthe sea is deep."}
    (request,) = llm.requests
    assert request["model"] == "poet-large"
    assert request["messages"] == [
        {"role": "system", "content": "Write a two-line poem about what the user names."},
        {"role": "user", "content": "the sea"},
    ]
    assert request["max_tokens"] == 64
    assert request["stop"] == ["THE END"]


async def test_the_servers_hints_pick_among_the_configured_models(
    llm: ScriptedLLMServer,
) -> None:
    llm.push(Reply.text("a small poem"))
    models = {
        "device": OpenAICompatibleClient(
            ModelEndpoint(name="device", base_url=llm.url, model="tiny")
        ),
        "cloud": OpenAICompatibleClient(
            ModelEndpoint(name="cloud", base_url=llm.url, model="poet-large")
        ),
    }
    try:
        result = await call_asking("write_poem", {"topic": "rain"}, sampling_model=models)
    finally:
        for client in models.values():
            await client.aclose()
    assert result.ok, result.error
    # The server's hint "poet" names the cloud model, though the device model comes first.
    assert [r["model"] for r in llm.requests] == ["poet-large"]


async def test_a_server_may_offer_the_model_tools_and_send_back_their_results(
    llm: ScriptedLLMServer, model: OpenAICompatibleClient
) -> None:
    llm.push(Reply.tool("lookup", {"word": "pup"}), Reply.text("A pup is a young dog."))
    result = await call_asking("define", {"word": "pup"}, sampling_model=model)
    assert result.ok, result.error
    assert result.value == {"result": "toolUse lookup(pup); then endTurn: A pup is a young dog."}
    first, second = llm.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup"]
    assert first["tool_choice"] == "auto"
    call = second["messages"][1]["tool_calls"][0]
    assert call["function"]["name"] == "lookup"
    assert second["messages"][2] == {
        "role": "tool",
        "content": "pup: a young dog",
        "tool_call_id": call["id"],
    }


async def test_without_a_model_the_server_hears_that_sampling_is_not_offered() -> None:
    result = await call_asking("write_poem", {"topic": "the sea"})
    assert not result.ok
    assert "sampling" in (result.error or "").lower()


async def test_a_model_that_fails_gives_the_server_an_error_not_a_hang(
    llm: ScriptedLLMServer,
) -> None:
    llm.push(*[Reply.error(500, "model down")] * 10)
    client = OpenAICompatibleClient(
        ModelEndpoint(name="cloud", base_url=llm.url, model="poet-large", max_retries=0)
    )
    try:
        result = await call_asking("write_poem", {"topic": "the sea"}, sampling_model=client)
    finally:
        await client.aclose()
    assert not result.ok
    assert "sampling failed" in (result.error or "")


# Elicitation -------------------------------------------------------------------------------


async def test_an_answering_agent_answers_a_question_during_a_subtasks_tool_call() -> None:
    asked: list[dict[str, Any]] = []

    @agent(skills=[ANSWER_SKILL])
    async def answerer(message: str, schema: dict[str, Any], server: str) -> dict[str, Any]:
        asked.append({"message": message, "schema": schema, "server": server})
        return {"name": "Ada", "age": 36, "colour": "green"}

    @agent(skills=["profile"])
    async def caller(ctx: SubtaskContext) -> Any:
        result = await ctx.tools.call("ask_profile", {"reason": "for the report"})
        return result.value if result.ok else result.error

    fleet = Fleet([answerer, caller], mcp_servers=[asking_server()])
    graph = TaskGraph("asks")
    graph.add_subtask("who", agent="caller")
    try:
        result = await fleet.run(graph)
    finally:
        await fleet.aclose()
    assert result.outputs["who"] == {"result": "accepted: Ada, 36, green"}
    (question,) = asked
    assert question["server"] == "asking"
    assert question["message"] == "Who are you? (for the report)"
    assert set(question["schema"]["properties"]) == {"name", "age", "colour"}
    assert question["schema"]["properties"]["colour"]["enum"] == ["red", "green", "blue"]


async def test_an_agents_answer_that_breaks_the_schema_is_declined() -> None:
    @agent(skills=[ANSWER_SKILL])
    async def answerer(message: str, schema: dict[str, Any], server: str) -> dict[str, Any]:
        return {"name": "Ada", "age": "thirty-six", "colour": "green"}

    result = await call_asking("ask_profile", {"reason": "checking"}, [answerer])
    assert result.ok, result.error
    assert result.value == {"result": "decline"}


async def test_an_agent_may_refuse_and_one_that_fails_declines_too() -> None:
    @agent(skills=[ANSWER_SKILL])
    async def refuser(message: str, schema: dict[str, Any], server: str) -> None:
        return None

    @agent(skills=[ANSWER_SKILL])
    async def breaker(message: str, schema: dict[str, Any], server: str) -> dict[str, Any]:
        raise RuntimeError("cannot think today")

    for answerer in (refuser, breaker):
        result = await call_asking("ask_profile", {"reason": "once"}, [answerer])
        assert result.ok, result.error
        assert result.value == {"result": "decline"}, answerer.id


async def test_with_nobody_to_answer_the_question_is_declined_not_an_error() -> None:
    @agent(skills=["profile"])
    async def bystander(ctx: SubtaskContext) -> str:
        return "not an answerer"

    result = await call_asking("ask_profile", {"reason": "nobody here"}, [bystander])
    assert result.ok, result.error
    assert result.value == {"result": "decline"}


async def test_the_user_is_asked_first_when_someone_set_ask_user() -> None:
    questions: list[ElicitationRequest] = []

    async def ask_user(request: ElicitationRequest) -> ElicitationReply:
        questions.append(request)
        return ElicitationReply("accept", {"name": "Bo", "age": 7, "colour": "blue"})

    @agent(skills=[ANSWER_SKILL])
    async def answerer(message: str, schema: dict[str, Any], server: str) -> dict[str, Any]:
        raise AssertionError("the user answers first")

    fleet = Fleet([answerer], mcp_servers=[asking_server()])
    fleet.mcp_requests.ask_user = ask_user
    try:
        result = await fleet.tools.call("ask_profile", {"reason": "user"})
    finally:
        await fleet.aclose()
    assert result.value == {"result": "accepted: Bo, 7, blue"}
    assert [q.mode for q in questions] == ["form"]


async def test_a_link_is_declined_when_no_user_is_there() -> None:
    fleet = Fleet()
    reply = await fleet.mcp_requests.elicit(
        ElicitationRequest(server="s", message="sign in", mode="url", url="https://x.example")
    )
    assert reply.action == "decline"


# Tool list changes -------------------------------------------------------------------------


async def test_the_registry_follows_the_servers_tool_list_without_a_restart() -> None:
    source = MCPToolSource(asking_server())
    registry = ToolRegistry()
    registry.add_source(source)
    try:
        await registry.load()
        assert "greet" not in registry

        added = await registry.call("add_tool", {"name": "greet", "takes_name": False})
        assert added.ok, added.error
        await until(lambda: "greet" in registry, "the added tool is listed")
        called = await registry.call("greet", {})
        assert called.value == {"result": "hello from an added tool"}

        changed = await registry.call("add_tool", {"name": "greet", "takes_name": True})
        assert changed.ok, changed.error

        def takes_who() -> bool:
            spec = registry.get("greet")
            return spec is not None and "who" in spec.input_schema.get("properties", {})

        await until(takes_who, "the changed schema is used")
        bad = await registry.call("greet", {})
        assert not bad.ok and "who" in (bad.error or "")  # checked against the new schema
        called = await registry.call("greet", {"who": "Ada"})
        assert called.value == {"result": "hello Ada, from a changed tool"}

        removed = await registry.call("remove_tool", {"name": "greet"})
        assert removed.ok, removed.error
        await until(lambda: "greet" not in registry, "the removed tool is gone")
        gone = await registry.call("greet", {"who": "Ada"})
        assert not gone.ok and "unknown tool 'greet'" in (gone.error or "")

        assert source.connection.restarts == 0
    finally:
        await registry.aclose()


async def test_a_prefixed_source_keeps_its_prefix_after_a_change() -> None:
    source = MCPToolSource(asking_server(), prefix="ask_")
    registry = ToolRegistry()
    registry.add_source(source)
    try:
        await registry.load()
        added = await registry.call("ask_add_tool", {"name": "extra", "takes_name": False})
        assert added.ok, added.error
        await until(lambda: "ask_extra" in registry, "the added tool is listed, prefixed")
        assert "extra" not in registry
    finally:
        await registry.aclose()

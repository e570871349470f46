"""Any compiled LangGraph graph as a fleet agent."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from fleetmind import Fleet, TaskGraph
from fleetmind.agents import AgentProfile
from fleetmind.agents._langgraph_agent import LangGraphAgent
from fleetmind.errors import AgentError
from fleetmind.orchestrator import SubtaskProgressEvent
from fleetmind.testing import Reply, ScriptedLLMServer


class Words(TypedDict, total=False):
    text: str
    words: int
    summary: str


async def count(state: Words) -> Words:
    return {"words": len(state["text"].split())}


async def summarise(state: Words) -> Words:
    return {"summary": f"{state['words']} words"}


def words_graph(checkpointer: object = None) -> object:
    builder = StateGraph(Words)
    builder.add_node("count", count)
    builder.add_node("summarise", summarise)
    builder.add_edge(START, "count")
    builder.add_edge("count", "summarise")
    builder.add_edge("summarise", END)
    return builder.compile(checkpointer=checkpointer)


def task(**inputs: object) -> TaskGraph:
    graph = TaskGraph("lg")
    graph.add_subtask("s", description="Summarise the text", skill="words", inputs=inputs)
    return graph


PROFILE = AgentProfile(id="words", skills=[{"name": "words"}])


async def test_inputs_to_state_final_state_to_output_nodes_to_progress() -> None:
    agent = LangGraphAgent(words_graph(), PROFILE)
    fleet = Fleet([agent])
    async with fleet:
        handle = fleet.submit(task(text="a b c d", unrelated="dropped"))
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.outputs["s"] == {"text": "a b c d", "words": 4, "summary": "4 words"}
    progress = [e.message for e in events if isinstance(e, SubtaskProgressEvent)]
    assert progress == ["count done", "summarise done"]


async def test_output_key_and_mappers() -> None:
    keyed = LangGraphAgent(words_graph(), PROFILE, output="summary")
    assert (await Fleet([keyed]).run(task(text="x y"))).outputs["s"] == "2 words"
    mapped = LangGraphAgent(
        words_graph(),
        PROFILE,
        input=lambda subtask, inputs: {"text": inputs["body"].strip()},
        output=lambda state: state["words"] * 10,
    )
    assert (await Fleet([mapped]).run(task(body="  p q r  "))).outputs["s"] == 30


async def test_a_graph_with_a_checkpointer_gets_a_thread_per_subtask() -> None:
    saver = InMemorySaver()
    agent = LangGraphAgent(words_graph(saver), PROFILE, output="summary")
    result = await Fleet([agent]).run(task(text="one"), task_id="t-check")
    assert result.outputs["s"] == "1 words"
    threads = {c.config["configurable"]["thread_id"] async for c in saver.alist(None)}
    assert threads == {"t-check/s/words"}


async def test_cancelling_the_task_cancels_the_running_node() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def slow(state: Words) -> Words:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return {}

    builder = StateGraph(Words)
    builder.add_node("slow", slow)
    builder.add_edge(START, "slow")
    agent = LangGraphAgent(builder.compile(), PROFILE)
    fleet = Fleet([agent])
    async with fleet:
        handle = fleet.submit(task(text="x"))
        await asyncio.wait_for(started.wait(), 30)
        result = await handle.cancel()
    assert result.status == "cancelled" and seen == ["cancelled"]


async def test_an_interrupt_asks_for_input() -> None:
    async def ask(state: Words) -> Words:
        answer = interrupt("which language?")
        return {"summary": answer}

    builder = StateGraph(Words)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    agent = LangGraphAgent(builder.compile(checkpointer=InMemorySaver()), PROFILE)
    result = await Fleet([agent]).run(task(text="x"))
    error = result.errors["s"]
    assert error["type"] == "InputRequired" and error["details"]["question"] == "which language?"


def test_an_uncompiled_graph_is_refused() -> None:
    with pytest.raises(AgentError, match="compile"):
        LangGraphAgent(StateGraph(Words), PROFILE)


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as running:
        yield running


async def test_langgraphs_prebuilt_react_agent_runs_in_the_fleet(server: ScriptedLLMServer) -> None:
    """LangGraph's own ReAct agent, on a LangChain chat model, wrapped as a fleet agent."""
    from langchain_core.tools import tool as lc_tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    @lc_tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    server.push(Reply.tool("add", {"a": 2, "b": 3}), Reply.text("2 + 3 = 5"))
    model = ChatOpenAI(base_url=server.url, api_key="unused", model="m", max_retries=0)
    with warnings.catch_warnings():  # moved to langchain.agents in LangGraph 1.0; still shipped
        warnings.simplefilter("ignore")
        react = create_react_agent(model, [add])
    agent = LangGraphAgent(react, AgentProfile(id="calc", skills=[{"name": "words"}]))
    fleet = Fleet([agent])
    try:
        async with fleet:
            handle = fleet.submit(task(question="what is 2 + 3?"))
            events = [e async for e in handle.events()]
            result = await handle.result()
    finally:
        await model.root_async_client.close()  # its HTTP connections, in this event loop
    assert result.outputs["s"] == "2 + 3 = 5"
    assert "what is 2 + 3?" in server.requests[0]["messages"][0]["content"]
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "5"
    assert [e.message for e in events if isinstance(e, SubtaskProgressEvent)] == [
        "agent done",
        "tools done",
        "agent done",
    ]

"""An LLM agent served from a device: its model calls run there, its step records reach the
orchestrator's log through the broker (real Mosquitto or the embedded broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmind import Fleet, TaskGraph, tool
from fleetmind.agents import AgentProfile, LLMAgent, ModelEndpoint, OpenAICompatibleClient
from fleetmind.agents.remote import DeviceRuntime
from fleetmind.orchestrator import SubtaskProgressEvent
from fleetmind.protocols import BrokerAddress
from fleetmind.serve import MqttFleetLink
from fleetmind.testing import Reply, ScriptedLLMServer, start_test_broker

pytestmark = pytest.mark.timeout(120)


@tool
def measure(thing: str) -> int:
    """Measure a thing."""
    return len(thing)


@pytest.fixture
def model() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer() as server:
        yield server


async def test_an_llm_agent_on_a_device_records_its_steps(
    tmp_path: Path, model: ScriptedLLMServer
) -> None:
    model.push(Reply.tool("measure", {"thing": "table"}), Reply.text("the table is 5 long"))
    broker, port, credentials = start_test_broker(tmp_path, {"pi": ["measurer"]})
    with broker:
        endpoint = ModelEndpoint(name="device", base_url=model.url, model="small")
        async with OpenAICompatibleClient(endpoint) as client:
            measurer = LLMAgent(
                AgentProfile(id="measurer", skills=[{"name": "measure"}]),
                model=client,
                tools=[measure],
            )
            device = DeviceRuntime(
                "pi",
                [measurer],
                BrokerAddress("127.0.0.1", port, username="pi", password=credentials["pi"]),
                fleet="test",
                heartbeat_s=0.5,
            )
            orchestrator = BrokerAddress(
                "127.0.0.1", port, username="orchestrator", password=credentials["orchestrator"]
            )
            fleet = Fleet([], store=None)
            async with asyncio.TaskGroup() as tasks:
                serving = tasks.create_task(device.run())
                await asyncio.wait_for(device.ready.wait(), 60)
                async with MqttFleetLink(fleet, orchestrator, fleet_name="test") as link:
                    await link.wait_for_agents("measurer", timeout_s=60)
                    graph = TaskGraph("remote-llm")
                    graph.add_subtask("m", description="How long is the table?", skill="measure")
                    async with fleet:
                        handle = fleet.submit(graph)
                        events = [e async for e in handle.events()]
                        result = await handle.result()
                serving.cancel()
    assert result.ok and result.outputs["m"] == "the table is 5 long"
    steps = [e.step for e in events if isinstance(e, SubtaskProgressEvent) and e.step]
    assert [s["outcome"] for s in steps] == ["tool_calls", "answer"]
    assert steps[0]["tier"] == "device" and steps[0]["tool_calls"][0]["name"] == "measure"
    assert result.graph.state("m").steps == 2

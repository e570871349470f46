"""A device's agent edits the task graph as a local one does: the follow-ups it asks for through
its context and those it returns in a SubtaskResult reach the orchestrator, in that order, and run
(real Mosquitto, the device runtime in this process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_harness import MOSQUITTO, Mosquitto

from fleetmind import Fleet, SubtaskResult, TaskGraph, agent
from fleetmind._task_log import AddSubtask
from fleetmind.agents import SubtaskContext
from fleetmind.agents.remote import DeviceRuntime
from fleetmind.orchestrator import Subtask
from fleetmind.protocols._mqtt import BrokerAddress
from fleetmind.serve import MqttFleetLink

pytestmark = [
    pytest.mark.skipif(MOSQUITTO is None, reason="needs Mosquitto"),
    pytest.mark.timeout(60),
]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path, persistent=False)
    try:
        yield mosquitto
    finally:
        mosquitto.close()


@agent(id="planner-agent", skills=["plan"])
async def plans(ctx: SubtaskContext) -> SubtaskResult:
    ctx.add_subtask("first", skill="echo", inputs={"text": "asked through ctx"})
    second = AddSubtask(
        subtask=Subtask(id="second", skill="echo", inputs={"text": "returned"}),
    )
    return SubtaskResult("planned", (second,))


@agent(id="echo-agent", skills=["echo"])
async def echo(text: str) -> str:
    return text


async def test_edits_from_a_device_agent_reach_the_graph_and_run(broker: Mosquitto) -> None:
    address = BrokerAddress("127.0.0.1", broker.port)
    device = DeviceRuntime("pi-edits", [plans, echo], address, heartbeat_s=0.5)
    fleet = Fleet()
    graph = TaskGraph("edits")
    graph.add_subtask("plan", skill="plan")
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        async with MqttFleetLink(fleet, address) as link:
            await link.wait_for_agents("planner-agent@pi-edits", "echo-agent@pi-edits")
            result = await fleet.run(graph)
        serving.cancel()

    assert result.outputs == {"plan": "planned", "first": "asked through ctx", "second": "returned"}
    added = [e.subtask.id for e in result.graph.log if isinstance(e, AddSubtask)]
    assert added == ["plan", "first", "second"]  # the context's edits come first

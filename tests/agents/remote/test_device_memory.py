"""Device agents use the fleet's memory over a real Mosquitto: remember and recall in their own
namespace and the shared one, refused outside them, and offline writes are not lost."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.agents.remote import DeviceMemoryChannel, DeviceRuntime, MemoryUnavailable
from fleetmind.memory import SHARED, MemoryStore
from fleetmind.orchestrator import SentenceEmbedder
from fleetmind.protocols import BrokerAddress, MqttConnection, Topics
from fleetmind.protocols._envelope import MemoryRequestPayload, encode, parse_envelope
from fleetmind.serve import MqttFleetLink

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="Mosquitto is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerAddress]:
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    assert MOSQUITTO is not None
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "no mosquitto"
                time.sleep(0.02)
        yield BrokerAddress("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def embed() -> Any:
    return SentenceEmbedder("light").embed


@agent(id="notes", description="Keeps notes about the house")
async def notes(ctx: SubtaskContext, fact: str, question: str) -> dict[str, Any]:
    await ctx.memory.remember(fact, key="boiler")
    await ctx.memory.remember("the fleet restarts every night at 3", shared=True)
    found = await ctx.memory.recall(question, limit=3)
    return {"found": [item.text for item in found]}


async def test_a_device_agent_remembers_and_recalls_through_the_broker(
    broker: BrokerAddress, embed: Any
) -> None:
    memory = MemoryStore(None, embed)
    memory.add_fact("the garage door code changed last week", namespace="agent:someone-else")
    device = DeviceRuntime("pi-1", [notes], broker, heartbeat_s=0.5)
    fleet = Fleet(memory=memory)
    graph = TaskGraph("memory")
    graph.add_subtask(
        "n",
        agent="notes",
        inputs={
            "fact": "the boiler was serviced in March",
            "question": "when was the boiler serviced?",
        },
    )
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        async with MqttFleetLink(fleet, broker) as link:
            await link.wait_for_agents("notes", timeout_s=60)
            result = await fleet.run(graph)
        serving.cancel()
    assert result.ok, result.errors
    found = result.outputs["n"]["found"]
    assert found[0] == "the boiler was serviced in March"
    assert "the garage door code changed last week" not in found  # another agent's namespace
    own = [i for i in memory.items(namespace="agent:notes")]
    assert [i.text for i in own] == ["the boiler was serviced in March"]
    assert own[0].agent_id == "notes@pi-1" and own[0].key == "boiler"
    shared = [i.text for i in memory.items(namespace=SHARED, layer="semantic")]
    assert shared == ["the fleet restarts every night at 3"]


async def test_a_device_is_refused_memory_of_agents_it_does_not_host(
    broker: BrokerAddress, embed: Any
) -> None:
    memory = MemoryStore(None, embed)
    memory.add_fact("the safe code is 4711", namespace="agent:vault")
    topics = Topics()
    device = DeviceRuntime("pi-1", [notes], broker, heartbeat_s=0.5)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        async with (
            MqttFleetLink(Fleet(memory=memory), broker) as link,
            MqttConnection(broker, "fm-pi-1-probe") as probe,
        ):
            await link.wait_for_agents("notes", timeout_s=60)
            await probe.subscribe(topics.device_inbox("pi-1"))
            asks = [
                MemoryRequestPayload(op="recall", agent="vault", query="safe code"),
                MemoryRequestPayload(op="remember", agent="vault", text="overwrite it"),
            ]
            for number, ask in enumerate(asks):
                await probe.publish(
                    topics.device_out("pi-1"),
                    encode("memory_request", "pi-1", ask, message_id=f"probe-{number}"),
                )
            answers = {}
            async with asyncio.timeout(60):
                async for message in probe.messages():
                    envelope, payload = parse_envelope(message.payload)
                    if envelope.kind == "memory_response":
                        answers[envelope.correlation_id] = payload
                        if len(answers) == 2:
                            break
        serving.cancel()
    for answer in answers.values():
        assert not answer.ok and not answer.items
        assert "does not host agent 'vault'" in answer.error["message"]
    assert [i.text for i in memory.items(namespace="agent:vault")] == ["the safe code is 4711"]


async def test_offline_writes_wait_and_offline_reads_fail_clearly() -> None:
    sent: list[tuple[str, MemoryRequestPayload, str | None]] = []
    channel = DeviceMemoryChannel(
        lambda message_id, request, replica: sent.append((message_id, request, replica)),
        lambda: False,
    )
    memory = channel.for_agent("notes@pi-1", "task-1", "replica-a")
    item = await memory.remember("written while offline")
    assert item.metadata.get("queued") is True
    assert (
        len(sent) == 1 and sent[0][1].text == "written while offline" and sent[0][2] == "replica-a"
    )
    with pytest.raises(MemoryUnavailable, match="offline"):
        await memory.recall("anything")
    assert len(sent) == 1  # a read is not queued

"""A device run that answers several dispatches of one subtask talks to the newest asker.

When a replica takes a task over, it dispatches the running subtask again (a new epoch, replies
to itself); a device still running it for the old owner attaches the new dispatch to that run.
From then on the run's progress, streamed chunks and memory requests go to the new owner
(under the new dispatch's id, so it takes them), the result to both; if the newest asker
cancels, they go back to the one before.

Real Mosquitto with the fleet's ACL, a real device runtime, and replicas' links in this process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, agent
from fleetmind.agents import ArtifactChunk, SubtaskContext
from fleetmind.agents.remote import DeviceRuntime, dispatch_id
from fleetmind.errors import FleetStateError
from fleetmind.memory import MemoryStore
from fleetmind.orchestrator import SentenceEmbedder, Subtask
from fleetmind.protocols import (
    BrokerAddress,
    Message,
    MqttConnection,
    PresencePayload,
    Topics,
    mosquitto_installed,
    parse_envelope,
)
from fleetmind.serve import MqttFleetLink
from fleetmind.testing import start_test_broker

if not mosquitto_installed():
    if os.environ.get("CI") == "true":
        raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
    pytest.skip("needs Mosquitto (the fleet's ACL)", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)
FLEET = "farm"
DEADLINE_S = 60.0
TASK = "t-shared"
OLD, NEW = dispatch_id(TASK, "count", 1), dispatch_id(TASK, "count", 2)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    handle, port, credentials = start_test_broker(
        tmp_path, devices={"pi-1": ["counter"]}, fleet=FLEET, embedded=False
    )
    with handle:
        yield port, credentials


@pytest.fixture(scope="module")
def embed() -> Any:
    embedder = SentenceEmbedder("light")
    embedder.load()  # before any test's clock runs: the model loads once, slowly
    return embedder.embed


def login(port: int, credentials: dict[str, str], user: str) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", port, username=user, password=credentials[user])


class Gate:
    """Holds the agent until the test lets it report, and counts its runs."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()
        self.runs = 0


GATE = Gate()


@pytest.fixture(autouse=True)
def fresh_gate() -> None:
    global GATE
    GATE = Gate()


@agent(id="counter", skills=["count, reporting and taking notes as it goes"])
async def counter(ctx: SubtaskContext, n: int) -> dict[str, Any]:
    GATE.runs += 1
    GATE.started.set()
    await GATE.go.wait()
    ctx.progress("halfway", 0.5)
    ctx.stream_artifact("counted so far", artifact_id="tally")
    await ctx.memory.remember(f"counted to {n}", key="count")
    found = await ctx.memory.recall("how far was counted?", limit=1)
    return {"n": n, "found": [item.text for item in found]}


SUBTASK = Subtask(id="count", agent="counter", inputs={"n": 5})


@dataclass
class Attempt:
    """What an orchestrator's side of one dispatch heard while it was out."""

    progress: list[str] = field(default_factory=list)
    chunks: list[ArtifactChunk] = field(default_factory=list)

    def context(self, epoch: int) -> SubtaskContext:
        return SubtaskContext(
            task_id=TASK,
            subtask=SUBTASK,
            inputs={"n": 5},
            agent_id="counter@pi-1",
            epoch=epoch,
            _progress=lambda message, *_: self.progress.append(message),
            _artifacts=self.chunks.append,
        )


class Watch:
    """Everything the device sends on each replica's topic, and what it says it holds."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[str, str | None]]] = {"a": [], "b": []}
        self.held: set[str] = set()

    def heard(self, message: Message) -> None:
        envelope, payload = parse_envelope(message.payload)
        if isinstance(payload, PresencePayload):
            self.held = set(payload.running)
            return
        replica = message.topic.rsplit("/", 1)[1]
        self.sent[replica].append((envelope.kind, envelope.correlation_id))

    def kinds(self, replica: str) -> list[str]:
        return [kind for kind, _ in self.sent[replica]]


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def shared_device(port: int, credentials: dict[str, str]) -> DeviceRuntime:
    """The device: its presence (what it holds) refreshed every second; nothing it waits
    for, nor its replicas' patience with it, is measured in heartbeats, so that a loaded
    machine makes it slow, never dead."""
    device = DeviceRuntime(
        "pi-1",
        [counter],
        login(port, credentials, "pi-1"),
        fleet=FLEET,
        heartbeat_s=1.0,
        claim_timeout_s=DEADLINE_S,
    )
    device.memory.timeout_s = DEADLINE_S  # a loaded machine answers slowly, not never
    return device


def replica_link(fleet: Fleet, address: BrokerAddress, name: str) -> MqttFleetLink:
    return MqttFleetLink(
        fleet,
        address,
        fleet_name=FLEET,
        client_id=f"fm-orch-{name}",
        replica_id=name,
        dead_after_s=DEADLINE_S,
    )


async def watching(address: BrokerAddress, watch: Watch) -> MqttConnection:
    connection = MqttConnection(address, "fm-watch", session_expiry_s=0)
    await connection.__aenter__()
    connection.handle_messages(watch.heard)
    topics = Topics(FLEET)
    await connection.subscribe(
        topics.device_out("pi-1", "a"), topics.device_out("pi-1", "b"), qos=1
    )
    await connection.subscribe(topics.presence("pi-1"), qos=0)
    return connection


async def test_a_run_taken_over_reports_to_the_new_owner_and_answers_both(
    broker: tuple[int, dict[str, str]], embed: Any
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = shared_device(port, credentials)
    memory = MemoryStore(None, embed)
    watch, new = Watch(), Attempt()
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        watcher = await watching(orchestrator, watch)
        try:
            # The old owner dispatches the first attempt, then goes away while it runs.
            async with replica_link(Fleet(), orchestrator, "a") as link_a:
                old_attempt = asyncio.create_task(
                    link_a.dispatches.dispatch(
                        "pi-1", "counter@pi-1", SUBTASK, Attempt().context(1)
                    )
                )
                await GATE.started.wait()
            with pytest.raises(FleetStateError):
                await old_attempt
            # The new owner dispatches it again; only then does the agent report.
            async with replica_link(Fleet(memory=memory), orchestrator, "b") as link_b:
                await link_b.wait_for_agents("counter@pi-1", timeout_s=DEADLINE_S)
                new_attempt = asyncio.create_task(
                    link_b.dispatches.dispatch("pi-1", "counter@pi-1", SUBTASK, new.context(2))
                )
                await until(lambda: {OLD, NEW} <= watch.held, "the device holds both dispatches")
                GATE.go.set()
                answer = await new_attempt
                await until(lambda: "result" in watch.kinds("a"), "the old owner's answer sent")
            # The old owner, back under its name, finds its answer kept for it.
            async with replica_link(Fleet(), orchestrator, "a") as link_a:
                await until(
                    lambda: (
                        link_a.dispatches.recovered(TASK, "count", "counter@pi-1", range(1, 2))
                        is not None
                    ),
                    "the old owner's answer waited in its session",
                )
        finally:
            await watcher.__aexit__(None, None, None)
        serving.cancel()

    assert answer.output == {"n": 5, "found": ["counted to 5"]}
    assert GATE.runs == 1
    assert new.progress == ["halfway"]
    assert [chunk.artifact_id for chunk in new.chunks] == ["tally"]
    assert [(i.text, i.agent_id) for i in memory.items(namespace="agent:counter")] == [
        ("counted to 5", "counter@pi-1")
    ]
    to_b = watch.sent["b"]
    assert ("progress", NEW) in to_b and ("artifact", NEW) in to_b and ("result", NEW) in to_b
    assert watch.kinds("b").count("memory_request") == 2
    assert watch.sent["a"] == [("result", OLD)]  # nothing but the answer to the old owner


async def test_when_the_newest_asker_cancels_the_run_reports_to_the_one_before(
    broker: tuple[int, dict[str, str]], embed: Any
) -> None:
    port, credentials = broker
    orchestrator = login(port, credentials, "orchestrator")
    device = shared_device(port, credentials)
    memory = MemoryStore(None, embed)
    watch, old = Watch(), Attempt()
    async with asyncio.TaskGroup() as background:
        serving = background.create_task(device.run())
        await device.ready.wait()
        watcher = await watching(orchestrator, watch)
        try:
            async with (
                replica_link(Fleet(memory=memory), orchestrator, "a") as link_a,
                replica_link(Fleet(), orchestrator, "b") as link_b,
            ):
                await link_a.wait_for_agents("counter@pi-1", timeout_s=DEADLINE_S)
                old_attempt = asyncio.create_task(
                    link_a.dispatches.dispatch("pi-1", "counter@pi-1", SUBTASK, old.context(1))
                )
                await GATE.started.wait()
                new_attempt = asyncio.create_task(
                    link_b.dispatches.dispatch(
                        "pi-1", "counter@pi-1", SUBTASK, Attempt().context(2)
                    )
                )
                await until(lambda: {OLD, NEW} <= watch.held, "the device holds both dispatches")
                new_attempt.cancel()  # the newest asker gives up: the device is told so
                with pytest.raises(asyncio.CancelledError):
                    await new_attempt
                await until(lambda: NEW not in watch.held, "the device dropped the new dispatch")
                assert OLD in watch.held
                GATE.go.set()
                answer = await old_attempt
                await until(lambda: "result" in watch.kinds("a"), "the answer on a's topic")
        finally:
            await watcher.__aexit__(None, None, None)
        serving.cancel()

    assert answer.output == {"n": 5, "found": ["counted to 5"]}
    assert GATE.runs == 1
    assert old.progress == ["halfway"]
    assert [chunk.artifact_id for chunk in old.chunks] == ["tally"]
    to_a = watch.sent["a"]
    assert ("progress", OLD) in to_a and ("artifact", OLD) in to_a and ("result", OLD) in to_a
    assert watch.kinds("a").count("memory_request") == 2
    assert watch.sent["b"] == []

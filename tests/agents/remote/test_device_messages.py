"""The agent-facing message API across the MQTT wire: a device agent (`fleetmind agent serve`,
its own process) sees the task's incoming message, answers with a reply of its choosing, and a
rejection on a device is neither retried nor given to the other device; the chunks a device agent
streams reach the orchestrator's task events in order, as a local agent's do."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleet_harness import FLEETMIND, MOSQUITTO, Mosquitto

from fleetmind import Fleet, TaskGraph
from fleetmind.agents import DataPart, FilePart, IncomingMessage, TextPart, as_reply
from fleetmind.orchestrator import SubtaskArtifactEvent
from fleetmind.protocols._mqtt import BrokerAddress
from fleetmind.serve import MqttFleetLink
from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(90)

AGENTS = """
import os
from fleetmind import DataPart, FilePart, Reply, TaskRejected, agent

DEVICE = os.environ["FM_DEVICE"]

@agent(id=f"reader-{DEVICE}", skills=["read"])
async def reader(ctx) -> Reply:
    m = ctx.message
    seen = None if m is None else {
        "message_id": m.message_id,
        "metadata": dict(m.metadata),
        "files": [f.name for f in m.files],
    }
    return Reply.message(DataPart(seen), FilePart(content=b"from " + DEVICE.encode(), name="d.txt"))

@agent(id=f"refuser-{DEVICE}", skills=["refuse"])
async def refuser() -> str:
    with open(os.environ["FM_LOG"], "a") as log:
        log.write(DEVICE + "\\n")
    raise TaskRejected(f"{DEVICE} will not")

@agent(id=f"streamer-{DEVICE}", skills=["stream"])
async def streamer(ctx) -> str:
    ctx.stream_artifact(["one"], artifact_id="story", name="Story")
    ctx.stream_artifact([DataPart({"n": 2})], artifact_id="story", name="Story")
    ctx.stream_artifact(
        [FilePart(content=b"three", name="3.txt", media_type="text/plain")],
        artifact_id="story",
        name="Story",
        last=True,
    )
    return "told"

@agent(id=f"flood-{DEVICE}", skills=["flood"])
async def flood(ctx) -> str:
    ctx.stream_artifact(["x" * (2 << 20)], artifact_id="huge")
    return "unreachable"
"""

MESSAGE = IncomingMessage(
    parts=(TextPart("read this"), FilePart(content=b"abc", name="a.txt", media_type="text/plain")),
    message_id="m-7",
    task_id="a2a-1",
    context_id="c-1",
    metadata={"trace": "x"},
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerAddress]:
    """Mosquitto on a free port (the embedded development broker where it is not installed)."""
    if MOSQUITTO is None:
        from fleetmind.protocols._broker import serve_embedded

        with serve_embedded([free_port()], log_file=tmp_path / "embedded.log") as embedded:
            yield BrokerAddress("127.0.0.1", embedded.listeners[0].port)
        return
    mosquitto = Mosquitto(tmp_path, persistent=False)
    try:
        yield BrokerAddress("127.0.0.1", mosquitto.port)
    finally:
        mosquitto.close()


@pytest.fixture
def device(tmp_path: Path, broker: BrokerAddress) -> Iterator[Callable[[str], None]]:
    """Starts `fleetmind agent serve` devices; stops them all at the end."""
    (tmp_path / "agents.py").write_text(AGENTS)
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> None:
        env = {**os.environ, "FM_DEVICE": name, "FM_LOG": str(tmp_path / "refusals.log")}
        processes.append(
            subprocess.Popen(
                [
                    *(FLEETMIND, "agent", "serve", str(tmp_path / "agents.py")),
                    *("--broker", f"mqtt://127.0.0.1:{broker.port}", "--device-id", name),
                    *("--heartbeat", "0.5"),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def test_a_device_agent_sees_the_message_and_its_reply_comes_back_whole(
    broker: BrokerAddress, device: Callable[[str], None]
) -> None:
    device("pi")
    fleet = Fleet()
    graph = TaskGraph("read")
    graph.add_subtask("r", agent="reader-pi")
    async with MqttFleetLink(fleet, broker, dead_after_s=5) as link:
        await link.wait_for_agents("reader-pi")
        async with fleet:
            result = await fleet.submit(graph, message=MESSAGE).result()
    assert result.status == "done", result.errors
    reply = as_reply(result.outputs["r"])
    assert reply is not None and reply.as_message
    assert reply.parts == (
        DataPart({"message_id": "m-7", "metadata": {"trace": "x"}, "files": ["a.txt"]}),
        FilePart(content=b"from pi", name="d.txt"),
    )


async def test_a_rejection_on_a_device_goes_to_no_other_device(
    tmp_path: Path, broker: BrokerAddress, device: Callable[[str], None]
) -> None:
    device("pi-1")
    device("pi-2")
    fleet = Fleet()
    graph = TaskGraph("refuse")
    graph.add_subtask("r", skill="refuse")
    async with MqttFleetLink(fleet, broker, dead_after_s=5) as link:
        await link.wait_for_agents("refuser-pi-1", "refuser-pi-2")
        result = await fleet.run(graph)
    assert result.status == "failed"
    assert result.errors["r"]["type"] == "TaskRejected"
    refusals = (tmp_path / "refusals.log").read_text().split()
    assert len(refusals) == 1, refusals


async def test_chunks_a_device_agent_streams_reach_the_task_events_in_order(
    broker: BrokerAddress, device: Callable[[str], None]
) -> None:
    device("pi")
    fleet = Fleet()
    graph = TaskGraph("stream")
    graph.add_subtask("s", agent="streamer-pi")
    async with MqttFleetLink(fleet, broker, dead_after_s=5) as link:
        await link.wait_for_agents("streamer-pi")
        async with fleet:
            handle = fleet.submit(graph)
            events = [e async for e in handle.events()]
            result = await handle.result()
    assert result.status == "done", result.errors
    assert result.outputs["s"] == "told"
    chunks = [e for e in events if isinstance(e, SubtaskArtifactEvent)]
    assert [(c.subtask_id, c.artifact_id, c.name, c.append, c.last) for c in chunks] == [
        ("s", "story", "Story", False, False),
        ("s", "story", "Story", True, False),
        ("s", "story", "Story", True, True),
    ]
    assert [c.parts for c in chunks] == [
        ({"kind": "text", "text": "one"},),
        ({"kind": "data", "data": {"n": 2}},),
        ({"kind": "file", "base64": "dGhyZWU=", "name": "3.txt", "media_type": "text/plain"},),
    ]
    # Every chunk arrives before the subtask ends.
    kinds = [e.kind for e in events]
    assert kinds.index("subtask_done") > max(i for i, e in enumerate(events) if e in chunks)


async def test_a_chunk_over_the_message_limit_fails_the_subtask_in_one_line(
    broker: BrokerAddress, device: Callable[[str], None]
) -> None:
    device("pi")
    fleet = Fleet()
    graph = TaskGraph("flood")
    graph.add_subtask("f", agent="flood-pi", retry={"max_attempts": 1})
    async with MqttFleetLink(fleet, broker, dead_after_s=5) as link:
        await link.wait_for_agents("flood-pi")
        result = await fleet.run(graph)
    assert result.status == "failed"
    error = result.errors["f"]
    assert error["type"] == "MessageTooLarge", error
    assert "over the message limit" in error["message"]
    assert "\n" not in error["message"]

"""A device link opens once: a failure while opening undoes every step, and a used link
refuses to open again with one clear error (a real Mosquitto)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetmind import Fleet, agent
from fleetmind.agents.remote import AgentDict, DeviceLink, DeviceRuntime
from fleetmind.errors import FleetStateError
from fleetmind.protocols import BrokerAddress, SubmitPayload, Topics
from fleetmind.serve import MqttFleetLink
from fleetmind.testing import start_test_broker

pytestmark = pytest.mark.timeout(120)


@dataclass
class Broker:
    address: BrokerAddress
    log_file: Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    handle, port, credentials = start_test_broker(tmp_path, fleet="links", embedded=False)
    with handle:
        address = BrokerAddress(
            "127.0.0.1", port, username="orchestrator", password=credentials["orchestrator"]
        )
        yield Broker(address, Path(handle.log_file))


class _BadIntake:
    """An intake whose topic filter no MQTT client may subscribe to."""

    def topic_filter(self, topics: Topics, protocol: str) -> str:
        return f"{topics.prefix}/#/submit"

    def submitted(self, link: DeviceLink, sender: str, task: SubmitPayload) -> None:
        raise AssertionError("no task can arrive on a filter that was never subscribed")


async def _broker_says(log_file: Path, line: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while line not in await asyncio.to_thread(log_file.read_text, errors="replace"):
        assert time.monotonic() < deadline, f"the broker never logged {line!r}"
        await asyncio.sleep(0.05)


async def test_a_failed_subscribe_closes_the_connection_and_detaches_the_dispatches(
    broker: Broker,
) -> None:
    link = DeviceLink(
        AgentDict(),
        broker.address,
        fleet_name="links",
        client_id="fm-bad-intake",
        intake=_BadIntake(),
    )
    assert link.state == "new"
    with pytest.raises(ValueError, match="subscription filter"):
        async with link:
            raise AssertionError("the link opened on a filter it cannot subscribe to")
    assert link.state == "closed"
    assert not link.dispatches.attached
    await _broker_says(broker.log_file, "Client fm-bad-intake disconnected")
    with pytest.raises(FleetStateError, match="device link is closed"):
        _ = link.connection
    with pytest.raises(FleetStateError, match="a link opens once, make a new one"):
        async with link:
            raise AssertionError("a closed link opened again")


async def test_a_closed_link_refuses_to_open_again_and_a_new_one_refuses_to_close(
    broker: Broker,
) -> None:
    fleet = Fleet()
    link = MqttFleetLink(fleet, broker.address, fleet_name="links", client_id="fm-twice")
    with pytest.raises(FleetStateError, match="device link is new, not open"):
        await link.__aexit__(None, None, None)
    async with link:
        assert link.state == "open"
        assert link.dispatches.attached
        assert link.dispatches in fleet.result_sources
        assert link.connection.is_connected
    assert link.state == "closed"
    assert not link.dispatches.attached
    assert link.dispatches not in fleet.result_sources
    await _broker_says(broker.log_file, "Client fm-twice disconnected")
    with pytest.raises(FleetStateError, match="a link opens once, make a new one"):
        async with link:
            raise AssertionError("a closed link opened again")


@agent(id="echo", skills=["echo"])
async def echo(text: str) -> str:
    return text


async def test_devices_agents_join_a_plain_pool_and_leave_it_with_the_device(
    broker: Broker,
) -> None:
    pool = AgentDict()
    link = DeviceLink(pool, broker.address, fleet_name="links", dead_after_s=1.0)
    async with link, asyncio.TaskGroup() as tasks:
        device = DeviceRuntime("pi-1", [echo], broker.address, fleet="links", heartbeat_s=0.3)
        running = tasks.create_task(device.run())
        await link.wait_for_agents("echo@pi-1")
        assert link.profiles["echo@pi-1"].device == "pi-1"
        assert pool.agent("echo@pi-1") is not None
        running.cancel()
        deadline = time.monotonic() + 30
        while pool.agent("echo@pi-1") is not None:
            assert time.monotonic() < deadline, "the silent device's agent never left"
            await asyncio.sleep(0.05)
    assert "echo@pi-1" not in pool

"""Remote recall in benchmarks/memory.py: a device agent's ``ctx.memory.recall`` over MQTT beside
the same recall on the orchestrator, and a bare MQTT round trip."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _memory_logs import Devices, Mosquitto
from _memory_recall import WARMUP, K, _ms

# ---------------------------------------------------------------------------------------------
# Remote recall: a device agent's ctx.memory.recall over MQTT vs the same recall on the
# orchestrator, and a bare MQTT round trip
# ---------------------------------------------------------------------------------------------

RESPONDER = """\
import asyncio, sys
from fleetmind.protocols import BrokerAddress, MqttConnection

async def main(port, size):
    reply = b"r" * size
    async with MqttConnection(BrokerAddress("127.0.0.1", port), "bench-responder",
                              session_expiry_s=0) as mqtt:
        await mqtt.subscribe("bench/ping")
        mqtt.handle_messages(lambda m: mqtt.publish_nowait("bench/pong", reply, qos=1))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


@dataclass
class RemoteResult:
    memories: int
    queries: int
    model: str
    request_bytes: int
    response_bytes: int
    local_store_p50_ms: float
    local_store_p99_ms: float
    local_agent_p50_ms: float
    local_agent_p99_ms: float
    local_service_p50_ms: float
    local_service_p99_ms: float
    remote_p50_ms: float
    remote_p99_ms: float
    mqtt_rtt_p50_ms: float
    mqtt_rtt_p99_ms: float
    paired_difference_p50_ms: float
    """Median over queries of (remote time - mean of the two local store times)."""
    same_answers: int
    device_startup_s: float


def _wire_sizes(store: Any, query: str) -> tuple[int, int]:
    """Bytes of one recall request and its answer as they cross the broker."""
    from fleetmind.protocols._envelope import MemoryRequestPayload, encode
    from fleetmind.serve import DeviceMemoryService

    request = MemoryRequestPayload(
        op="recall", agent="recaller", task_id="task-0", query=query, limit=K, layer="semantic"
    )
    service = DeviceMemoryService(store, lambda device, agent: True)
    response = asyncio.run(service.answer("pi-1", request))
    message_id = "mem-" + "0" * 20
    return (
        len(encode("memory_request", "pi-1", request, message_id=message_id)),
        len(encode("memory_response", "orchestrator", response, correlation_id=message_id)),
    )


async def _bare_round_trips(port: int, count: int, sizes: tuple[int, int]) -> list[float]:
    """``MqttConnection`` ping-pong: a pinger here, a responder in its own process."""
    from fleetmind.protocols import BrokerAddress, MqttConnection

    responder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RESPONDER,
        str(port),
        str(sizes[1]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert responder.stdout is not None and responder.stdin is not None
        async with asyncio.timeout(60):
            ready = await responder.stdout.readline()
        if ready.strip() != b"ready":
            raise RuntimeError("the MQTT responder did not start")
        payload = b"p" * sizes[0]
        times = []
        address = BrokerAddress("127.0.0.1", port)
        async with MqttConnection(address, "bench-pinger", session_expiry_s=0) as mqtt:
            await mqtt.subscribe("bench/pong")
            incoming = mqtt.messages()
            for n in range(count + WARMUP):
                start = time.perf_counter()
                mqtt.publish_nowait("bench/ping", payload, qos=1)
                async with asyncio.timeout(10):
                    await anext(incoming)
                if n >= WARMUP:
                    times.append(time.perf_counter() - start)
        responder.stdin.close()
        async with asyncio.timeout(20):
            await responder.wait()
    finally:
        if responder.returncode is None:
            responder.kill()
            await responder.wait()
    return times


@dataclass
class _LocalPass:
    agent: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)


async def _local_recalls(store: Any, queries: list[str]) -> _LocalPass:
    """The same recalls on the orchestrator: through ``AgentMemory`` (``ctx.memory`` of an
    in-process agent: a worker thread), straight on the store, and through the service that
    answers devices (``DeviceMemoryService.answer``: what the orchestrator does for each
    device request, without MQTT)."""
    from fleetmind.memory import SHARED, AgentMemory
    from fleetmind.protocols._envelope import MemoryRequestPayload
    from fleetmind.serve import DeviceMemoryService

    view = AgentMemory(store, "recaller")
    namespaces = (view.namespace, SHARED)
    service = DeviceMemoryService(store, lambda device, agent: True)
    for query in queries[:5]:
        await view.recall(query, limit=K, layer="semantic")
    done = _LocalPass()
    clock = time.perf_counter
    for query in queries:
        start = clock()
        found = await view.recall(query, limit=K, layer="semantic")
        done.agent.append(clock() - start)
        start = clock()
        store.recall(query, layer="semantic", namespaces=namespaces, limit=K)
        done.store.append(clock() - start)
        request = MemoryRequestPayload(
            op="recall", agent="recaller", query=query, limit=K, layer="semantic"
        )
        start = clock()
        await service.answer("pi-1", request)
        done.service.append(clock() - start)
        done.answers.append([item.text for item in found])
    return done


async def measure_remote(store: Any, queries: list[str], model: str, workdir: Path) -> RemoteResult:
    """The device agent ``recaller`` (a ``fleetmind agent serve`` process) times its own
    recalls; the orchestrator's local recalls run on the same store, with the same queries,
    before and after the remote ones (embedding speed drifts on a shared machine)."""
    from fleetmind import Fleet, TaskGraph
    from fleetmind.orchestrator import SkillRouter
    from fleetmind.protocols import BrokerAddress
    from fleetmind.serve import MqttFleetLink

    before = await _local_recalls(store, queries)
    broker = Mosquitto()
    devices = Devices(workdir, broker.url, {})
    try:
        broker.start()
        fleet = Fleet(router=SkillRouter(), memory=store)
        async with MqttFleetLink(fleet, BrokerAddress("127.0.0.1", broker.port)) as link:
            started = time.monotonic()
            devices.start("pi-1", heartbeat_s=1.0)
            await link.wait_for_agents("recaller", timeout_s=120)
            startup = time.monotonic() - started
            graph = TaskGraph("remote-recall")
            graph.add_subtask(
                "r",
                agent="recaller",
                inputs={"queries": queries, "limit": K, "warmup": 5, "layer": "semantic"},
            )
            async with asyncio.timeout(600):
                result = await fleet.run(graph)
            if not result.ok:
                raise RuntimeError(f"the remote recall task failed: {result.errors}")
            remote = result.outputs["r"]
            devices.close()
        sizes = await asyncio.to_thread(_wire_sizes, store, queries[0])
        rtt = await _bare_round_trips(broker.port, len(queries), sizes)
    finally:
        devices.close()
        broker.stop()
    after = await _local_recalls(store, queries)
    local_store = before.store + after.store
    local_agent = before.agent + after.agent
    local_service = before.service + after.service
    paired = [
        r - (a + b) / 2
        for r, a, b in zip(remote["seconds"], before.store, after.store, strict=True)
    ]
    same = sum(
        mine == theirs for mine, theirs in zip(before.answers, remote["answers"], strict=True)
    )
    request_bytes, response_bytes = sizes
    return RemoteResult(
        memories=len(list(store.items())),
        queries=len(queries),
        model=model,
        request_bytes=request_bytes,
        response_bytes=response_bytes,
        local_store_p50_ms=_ms(local_store)[0],
        local_store_p99_ms=_ms(local_store)[1],
        local_agent_p50_ms=_ms(local_agent)[0],
        local_agent_p99_ms=_ms(local_agent)[1],
        local_service_p50_ms=_ms(local_service)[0],
        local_service_p99_ms=_ms(local_service)[1],
        remote_p50_ms=_ms(remote["seconds"])[0],
        remote_p99_ms=_ms(remote["seconds"])[1],
        mqtt_rtt_p50_ms=_ms(rtt)[0],
        mqtt_rtt_p99_ms=_ms(rtt)[1],
        paired_difference_p50_ms=_ms(paired)[0],
        same_answers=same,
        device_startup_s=round(startup, 1),
    )

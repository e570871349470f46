"""The fleet's memory as an agent on a device sees it: requests over the fleet's MQTT topics.

An agent on a device calls ``ctx.memory.remember(...)`` / ``recall(...)`` exactly as a local
agent does. Each call is a ``memory_request`` on the device's ``out`` topic; the orchestrator
checks that the device hosts the agent, does the work in the agent's namespace (or the shared
one) and answers on the device's inbox.

Offline, nothing is lost: a write is handed to the MQTT client, which keeps it (QoS 1) and
sends it when the connection is back; the call returns at once, marked ``queued``. A read
cannot wait for a broker that is gone: it fails at once with :class:`MemoryUnavailable`, and
so does one the orchestrator does not answer in time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from fleetmind.errors import MemoryRefused as MemoryRefused
from fleetmind.errors import MemoryUnavailable as MemoryUnavailable
from fleetmind.memory import MemoryItem
from fleetmind.protocols import (
    MemoryRequestPayload,
    MemoryResponsePayload,
)

Send = Callable[[str, MemoryRequestPayload, str | None], None]
"""Publish a request under a message id to the orchestrator replica named (None: any), with
QoS 1 (the client keeps it while offline)."""

Route = str | None | Callable[[], str | None]
"""The replica that answers a run's memory requests, or how to find it at each request (the
replica driving the task may change while the run goes on)."""


class DeviceMemoryChannel:
    """Memory requests in flight from one device, and their answers."""

    def __init__(
        self, send: Send, connected: Callable[[], bool], *, timeout_s: float = 10.0
    ) -> None:
        self._send = send
        self._connected = connected
        self.timeout_s = timeout_s
        self._waiting: dict[str, asyncio.Future[MemoryResponsePayload]] = {}

    def answered(self, correlation_id: str | None, response: MemoryResponsePayload) -> None:
        """A ``memory_response`` arrived (unknown or late ones are dropped)."""
        future = self._waiting.pop(correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(response)

    async def ask(
        self, request: MemoryRequestPayload, *, wait: bool, replica: str | None = None
    ) -> MemoryResponsePayload:
        """Send a request (to the replica running the task, when known); wait for its answer
        when ``wait`` (else: an answer, or queued)."""
        message_id = f"mem-{uuid.uuid4().hex[:20]}"
        online = self._connected()
        if wait and not online:
            raise MemoryUnavailable(
                "the fleet's memory cannot be reached: this device is offline from the broker"
            )
        future: asyncio.Future[MemoryResponsePayload] = asyncio.get_running_loop().create_future()
        if online:
            self._waiting[message_id] = future
        self._send(message_id, request, replica)
        if not online:
            return MemoryResponsePayload(ok=True, items=({"queued": True},))
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await future
        except TimeoutError:
            if not wait:  # sent with QoS 1: the broker holds it even if the answer is late
                return MemoryResponsePayload(ok=True, items=({"queued": True},))
            raise MemoryUnavailable(
                f"the fleet's memory did not answer within {self.timeout_s:g} s"
            ) from None
        finally:
            self._waiting.pop(message_id, None)
        if not response.ok:
            error = response.error or {}
            raise MemoryRefused(str(error.get("message") or "the memory request was refused"))
        return response

    def for_agent(self, agent_id: str, task_id: str | None, replica: Route = None) -> DeviceMemory:
        """``ctx.memory`` for one agent's run (answered by the replica that drives its task)."""
        return DeviceMemory(self, agent_id.split("@", 1)[0], task_id, replica)


class DeviceMemory:
    """``ctx.memory`` on a device: the same calls as :class:`fleetmind.memory.AgentMemory`."""

    def __init__(
        self,
        channel: DeviceMemoryChannel,
        agent: str,
        task_id: str | None,
        replica: Route = None,
    ) -> None:
        self.channel = channel
        self.agent = agent
        self.task_id = task_id
        self._replica = replica

    @property
    def replica(self) -> str | None:
        """Where the next request goes (None: any replica)."""
        return self._replica() if callable(self._replica) else self._replica

    async def remember(
        self,
        item: MemoryItem | str,
        *,
        layer: str = "semantic",
        key: str | None = None,
        shared: bool = False,
        outcome: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MemoryItem:
        """Keep a fact or an episode in the fleet's memory (queued while offline)."""
        text = item.text if isinstance(item, MemoryItem) else item
        request = MemoryRequestPayload(
            op="remember",
            agent=self.agent,
            task_id=self.task_id,
            shared=shared,
            layer=layer,
            text=text,
            key=key,
            outcome=outcome,
            metadata=dict(metadata or {}),
        )
        response = await self.channel.ask(request, wait=False, replica=self.replica)
        stored = response.items[0] if response.items else {}
        return MemoryItem(
            text=text,
            kind=str(stored.get("kind", "fact" if layer == "semantic" else "note")),
            task_id=self.task_id,
            agent_id=self.agent,
            created_at=float(stored.get("created_at") or 0.0),
            metadata={k: v for k, v in stored.items() if k not in ("text", "kind")},
        )

    async def recall(
        self,
        query: str,
        *,
        limit: int = 5,
        layer: str | None = None,
        outcome: str | None = None,
    ) -> Sequence[MemoryItem]:
        """What the agent's namespace and the shared one hold that is most like ``query``.

        Raises:
            MemoryUnavailable: offline, or the orchestrator did not answer in time.
        """
        request = MemoryRequestPayload(
            op="recall",
            agent=self.agent,
            task_id=self.task_id,
            query=query,
            limit=limit,
            layer=layer,
            outcome=outcome,
        )
        response = await self.channel.ask(request, wait=True, replica=self.replica)
        return [
            MemoryItem(
                text=str(found.get("text", "")),
                kind=str(found.get("kind", "note")),
                task_id=found.get("task_id"),
                agent_id=found.get("agent_id"),
                created_at=float(found.get("created_at") or 0.0),
                metadata={
                    k: v
                    for k, v in found.items()
                    if k not in ("text", "kind", "task_id", "agent_id", "created_at")
                },
            )
            for found in response.items
        ]

"""The fleet's memory, served to device agents over MQTT (the orchestrator's side).

A device sends ``memory_request`` on its own ``out`` topic (the broker's ACL lets a device
publish only there, so the sender is who it says). The service decides the namespace itself —
never from the request: the agent's own (``agent:<name>``) only for an agent the sending device
announced with a card, or the shared one when the request says ``shared`` and the fleet allows
devices to use it. The answer goes to the device's inbox with the request's id as correlation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

from fleetmind.errors import FleetmindError
from fleetmind.errors import MemoryAccessDenied as MemoryAccessDenied
from fleetmind.memory import SHARED, MemoryStore, StoredItem, agent_namespace
from fleetmind.protocols import MemoryRequestPayload, MemoryResponsePayload

log = logging.getLogger("fleetmind.memory_service")

SharedAccess = Literal["read-write", "read", "none"]


class DeviceMemoryService:
    """Answers device agents' memory requests against the fleet's :class:`MemoryStore`.

    Args:
        memory: The fleet's memory (None: every request is refused, saying so).
        hosts: ``(device, agent name) -> bool``: whether the device announced that agent.
        shared: What devices may do in the shared namespace.
    """

    def __init__(
        self,
        memory: MemoryStore | None,
        hosts: Callable[[str, str], bool],
        *,
        shared: SharedAccess = "read-write",
    ) -> None:
        self.memory = memory
        self.hosts = hosts
        self.shared = shared

    async def answer(self, device: str, request: MemoryRequestPayload) -> MemoryResponsePayload:
        """Do what the request asks if the device may; never raises."""
        try:
            items = await self._do(device, request)
        except FleetmindError as exc:
            log.info("memory request from %s refused: %s", device, exc.message)
            return MemoryResponsePayload(ok=False, error=exc.to_dict())
        return MemoryResponsePayload(ok=True, items=tuple(items))

    async def _do(self, device: str, request: MemoryRequestPayload) -> list[dict[str, object]]:
        if self.memory is None:
            raise MemoryAccessDenied("this fleet keeps no memory")
        if not self.hosts(device, request.agent):
            raise MemoryAccessDenied(
                f"device {device} does not host agent {request.agent!r}: it may use only "
                "its own agents' memory"
            )
        own = agent_namespace(request.agent)
        memory = self.memory
        if request.op == "remember":
            if request.text is None:
                raise MemoryAccessDenied("remember needs text")
            namespace = own
            if request.shared:
                if self.shared != "read-write":
                    raise MemoryAccessDenied("devices may not write the fleet's shared memory")
                namespace = SHARED
            agent = f"{request.agent}@{device}"
            if (request.layer or "semantic") == "semantic":
                stored = await asyncio.to_thread(
                    memory.add_fact,
                    request.text,
                    namespace=namespace,
                    key=request.key,
                    agent_id=agent,
                    task_id=request.task_id,
                    metadata=request.metadata,
                )
            else:
                stored = await asyncio.to_thread(
                    memory.add_episode,
                    request.text,
                    namespace=namespace,
                    kind="note",
                    agent_id=agent,
                    task_id=request.task_id,
                    outcome=request.outcome,
                    metadata=request.metadata,
                )
            return [_wire(stored)]
        if request.query is None:
            raise MemoryAccessDenied("recall needs a query")
        namespaces = [own] + ([SHARED] if self.shared != "none" else [])
        found = await asyncio.to_thread(
            memory.recall,
            request.query,
            layer=request.layer,
            namespaces=namespaces,
            outcome=request.outcome,
            limit=request.limit,
        )
        return [{**_wire(r.item), "score": round(r.score, 4)} for r in found]


def _wire(item: StoredItem) -> dict[str, object]:
    """An item as it goes back to a device (bounded: long texts are cut)."""
    return {
        "id": item.id,
        "layer": item.layer,
        "namespace": item.namespace,
        "kind": item.kind,
        "text": item.text[:4000],
        "key": item.key,
        "agent_id": item.agent_id,
        "task_id": item.task_id,
        "outcome": item.outcome,
        "created_at": item.created_at,
        "support": item.support,
    }

"""The seam between the orchestrator and a message fabric (in-process now, MQTT next)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """Publishes messages to topics and delivers the messages of subscribed topics."""

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Send one message."""
        ...

    def subscribe(self, topic_filter: str) -> AsyncIterator[tuple[str, bytes]]:
        """Messages whose topic matches ``topic_filter``, as ``(topic, payload)``."""
        ...

"""What an agent can ask of a memory layer: remember something, recall what is relevant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class MemoryItem:
    """One remembered thing, with where it came from."""

    text: str
    kind: str = "note"
    task_id: str | None = None
    agent_id: str | None = None
    created_at: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Memory(Protocol):
    """A memory layer (working, episodic or semantic)."""

    async def remember(self, item: MemoryItem) -> None:
        """Store an item."""
        ...

    async def recall(self, query: str, *, limit: int = 5) -> Sequence[MemoryItem]:
        """The items most relevant to ``query``, best first."""
        ...

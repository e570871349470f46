"""What the memory store holds: items, their layers and namespaces, and its errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from fleetmind.errors import ItemTooLarge as ItemTooLarge
from fleetmind.errors import MemoryStoreError as MemoryStoreError

Layer = Literal["episodic", "semantic"]
LAYERS: tuple[Layer, ...] = ("episodic", "semantic")
SHARED = "shared"
MAX_TEXT_CHARS = 20_000
"""The longest text one item may hold (a longer one is refused, not cut)."""

EmbedFunction = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class StoredItem:
    """One episode or fact, as stored."""

    id: str
    layer: Layer
    namespace: str
    text: str
    kind: str = "note"
    key: str | None = None
    """Facts: what the fact is about; a newer fact with the same key supersedes it."""
    agent_id: str | None = None
    task_id: str | None = None
    outcome: str | None = None
    """Episodes: ``done``, ``failed`` or another word for how it ended."""
    duration_s: float | None = None
    cost: float | None = None
    created_at: float = 0.0
    support: int = 1
    """Facts: how many times the fact was stated (merged near-duplicates)."""
    provenance: tuple[dict[str, Any], ...] = ()
    """Where the item came from: episode ids, agents, tasks, times."""
    superseded_by: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["provenance"] = list(self.provenance)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredItem:
        if not isinstance(data, dict):
            raise MemoryStoreError(f"expected a JSON object, not {type(data).__name__}")
        if not isinstance(data.get("text"), str):
            raise MemoryStoreError("its text is not a string")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["provenance"] = tuple(known.get("provenance") or ())
        if known.get("layer") not in LAYERS:
            raise MemoryStoreError(f"unknown memory layer {known.get('layer')!r}")
        return cls(**known)


@dataclass(frozen=True)
class Recalled:
    """An item found by recall, with why it ranked where it did."""

    item: StoredItem
    score: float
    similarity: float


@dataclass(frozen=True)
class NewEpisode:
    """An episode to record with :meth:`MemoryStore.add_episodes` (the fields of
    :meth:`MemoryStore.add_episode`)."""

    text: str
    namespace: str = SHARED
    kind: str = "episode"
    agent_id: str | None = None
    task_id: str | None = None
    outcome: str | None = None
    duration_s: float | None = None
    cost: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None

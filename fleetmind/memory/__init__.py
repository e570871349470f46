"""Memory for agents and the fleet: working memory per agent and task (token-bounded,
compressed when full), and episodic and semantic memory in a store the fleet shares.

Agents depend on the :class:`Memory` interface; the orchestrator gives each running agent a
view of the fleet's store bound to the agent's own namespace and the shared one.
"""

from typing import TYPE_CHECKING

from fleetmind._extras import require
from fleetmind._lazy import load

if TYPE_CHECKING:
    from fleetmind.memory._agent_memory import AgentMemory, agent_namespace
    from fleetmind.memory._compress import Compressed, collapse, compress, strip_timestamp, truncate
    from fleetmind.memory._consolidate import RECURRING_KIND
    from fleetmind.memory._interface import Memory, MemoryItem
    from fleetmind.memory._items import (
        LAYERS,
        MAX_TEXT_CHARS,
        SHARED,
        EmbedFunction,
        ItemTooLarge,
        Layer,
        MemoryStoreError,
        NewEpisode,
        Recalled,
        StoredItem,
    )
    from fleetmind.memory._langgraph_store import FleetMemoryStore
    from fleetmind.memory._store import MemoryStore, same_specifics
    from fleetmind.memory._tokens import Tokenizer, default_tokenizer
    from fleetmind.memory._working import WorkingEntry, WorkingMemory

_EXPORTS: dict[str, str] = {
    name: module
    for module, names in {
        "fleetmind.memory._agent_memory": ("AgentMemory", "agent_namespace"),
        "fleetmind.memory._compress": (
            "Compressed",
            "collapse",
            "compress",
            "strip_timestamp",
            "truncate",
        ),
        "fleetmind.memory._consolidate": ("RECURRING_KIND",),
        "fleetmind.memory._interface": ("Memory", "MemoryItem"),
        "fleetmind.memory._items": (
            "LAYERS",
            "MAX_TEXT_CHARS",
            "SHARED",
            "EmbedFunction",
            "ItemTooLarge",
            "Layer",
            "MemoryStoreError",
            "NewEpisode",
            "Recalled",
            "StoredItem",
        ),
        "fleetmind.memory._store": ("MemoryStore", "same_specifics"),
        "fleetmind.memory._tokens": ("Tokenizer", "default_tokenizer"),
        "fleetmind.memory._working": ("WorkingEntry", "WorkingMemory"),
        "fleetmind.memory._langgraph_store": ("FleetMemoryStore",),
    }.items()
    for name in names
}
"""Where each public name lives: its module loads on the first use of the name."""


def __getattr__(name: str) -> object:
    if name == "FleetMemoryStore":
        require("langgraph.store.base", "llm", "the LangGraph store (FleetMemoryStore)")
    return load(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "LAYERS",
    "MAX_TEXT_CHARS",
    "RECURRING_KIND",
    "SHARED",
    "AgentMemory",
    "Compressed",
    "EmbedFunction",
    "FleetMemoryStore",
    "ItemTooLarge",
    "Layer",
    "Memory",
    "MemoryItem",
    "MemoryStore",
    "MemoryStoreError",
    "NewEpisode",
    "Recalled",
    "StoredItem",
    "Tokenizer",
    "WorkingEntry",
    "WorkingMemory",
    "agent_namespace",
    "collapse",
    "compress",
    "default_tokenizer",
    "same_specifics",
    "strip_timestamp",
    "truncate",
]

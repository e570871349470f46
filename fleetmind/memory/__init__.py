"""Memory for agents and the fleet: working memory per agent and task (token-bounded,
compressed when full), and episodic and semantic memory in a store the fleet shares.

Agents depend on the :class:`Memory` interface; the orchestrator gives each running agent a
view of the fleet's store bound to the agent's own namespace and the shared one.
"""

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
from fleetmind.memory._store import MemoryStore, same_specifics
from fleetmind.memory._tokens import Tokenizer, default_tokenizer
from fleetmind.memory._working import WorkingEntry, WorkingMemory


def __getattr__(name: str) -> object:
    # LangGraph loads only when its store is asked for, so `import fleetmind` stays light.
    if name == "FleetMemoryStore":
        from fleetmind.memory._langgraph_store import FleetMemoryStore

        return FleetMemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

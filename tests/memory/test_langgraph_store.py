"""FleetMemoryStore: the fleet's memory through LangGraph's BaseStore API (real embeddings)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetmind.memory import SHARED, EmbedFunction, FleetMemoryStore, MemoryStore
from fleetmind.orchestrator import SentenceEmbedder


@pytest.fixture(scope="module")
def embed() -> EmbedFunction:
    return SentenceEmbedder("light").embed


@pytest.fixture
def memory(embed: EmbedFunction) -> Iterator[MemoryStore]:
    store = MemoryStore(None, embed)
    yield store
    store.close()


def test_put_get_and_overwrite(memory: MemoryStore) -> None:
    store = FleetMemoryStore(memory)
    store.put(("agent:noter",), "boiler", {"text": "the boiler was serviced in March"})
    item = store.get(("agent:noter",), "boiler")
    assert item is not None
    assert item.value == {"text": "the boiler was serviced in March"}
    assert item.namespace == ("agent:noter",) and item.key == "boiler"
    store.put(("agent:noter",), "boiler", {"text": "serviced again in October", "by": "Ada"})
    again = store.get(("agent:noter",), "boiler")
    assert again is not None and again.value["by"] == "Ada"
    assert [i.text for i in memory.items(namespace="agent:noter")] == ["serviced again in October"]


def test_get_of_a_missing_key_is_none(memory: MemoryStore) -> None:
    store = FleetMemoryStore(memory)
    assert store.get(("shared",), "nothing here") is None


def test_the_fleet_facts_appear_under_their_ids(memory: MemoryStore) -> None:
    fact = memory.add_fact("the greenhouse gateway runs firmware 2.3", namespace=SHARED)
    store = FleetMemoryStore(memory)
    item = store.get(("shared",), fact.id)
    assert item is not None and item.value == {"text": fact.text}
    assert store.get(("agent:other",), fact.id) is None  # not in that namespace


def test_delete_removes_the_key(memory: MemoryStore) -> None:
    store = FleetMemoryStore(memory)
    store.put(("shared",), "k", {"text": "temporary"})
    store.delete(("shared",), "k")
    assert store.get(("shared",), "k") is None
    assert len(memory) == 0


def test_search_by_meaning_with_a_prefix_and_a_filter(memory: MemoryStore) -> None:
    store = FleetMemoryStore(memory)
    store.put(
        ("shared", "house"), "a", {"text": "the boiler restarts at 3 every night", "room": "cellar"}
    )
    store.put(
        ("shared", "house"), "b", {"text": "the kitchen lights are on a timer", "room": "kitchen"}
    )
    store.put(("agent:x",), "c", {"text": "the boiler pressure is 1.5 bar"})
    found = store.search(("shared",), query="when does the boiler restart?", limit=2)
    assert found[0].key == "a"
    assert all(f.namespace[0] == "shared" for f in found)
    assert found[0].score is not None
    filtered = store.search(("shared",), filter={"room": "kitchen"})
    assert [f.key for f in filtered] == ["b"]


def test_list_namespaces(memory: MemoryStore) -> None:
    store = FleetMemoryStore(memory)
    store.put(("shared", "house"), "a", {"text": "one"})
    store.put(("agent:x",), "b", {"text": "two"})
    assert store.list_namespaces() == [("agent:x",), ("shared", "house")]
    assert store.list_namespaces(prefix=("shared",)) == [("shared", "house")]
    assert store.list_namespaces(max_depth=1) == [("agent:x",), ("shared",)]


async def test_the_async_api(memory: MemoryStore) -> None:
    store = FleetMemoryStore(memory)
    await store.aput(("shared",), "k", {"content": "written asynchronously"})
    item = await store.aget(("shared",), "k")
    assert item is not None and item.value == {"content": "written asynchronously"}
    found = await store.asearch(("shared",), query="asynchronously written")
    assert [f.key for f in found] == ["k"]

"""Fact merging that respects specifics, keyed lookups, batches, and consolidation of
recurring episodes into facts (real sentence embeddings, the light model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmind.memory import (
    RECURRING_KIND,
    SHARED,
    EmbedFunction,
    MemoryStore,
    MemoryStoreError,
    NewEpisode,
    same_specifics,
)
from fleetmind.orchestrator import SentenceEmbedder


@pytest.fixture(scope="module")
def embed() -> EmbedFunction:
    return SentenceEmbedder("light").embed


@pytest.fixture(params=["memory", "file"])
def store(
    request: pytest.FixtureRequest, embed: EmbedFunction, tmp_path: Path
) -> Iterator[MemoryStore]:
    path = None if request.param == "memory" else tmp_path / "memory.db"
    opened = MemoryStore(path, embed)
    yield opened
    opened.close()


# Merging asks for the same specifics ----------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("disk 91% full on pi-2", "disk 91% full on pi-2.", True),
        ("disk 91% full on pi-2", "disk 19% full on pi-2", False),
        ("disk 91% full on pi-2", "disk 91% full on pi-7", False),
        ("TLS is enabled on the broker", "TLS is not enabled on the broker", False),
        ("the nightly build uses /opt/gcc-12", "the nightly build uses /opt/gcc-13", False),
        ("the broker restarted", "the broker was restarted", True),
    ],
)
def test_same_specifics(a: str, b: str, same: bool) -> None:
    assert same_specifics(a, b) is same


def test_facts_that_differ_in_a_number_do_not_merge(store: MemoryStore) -> None:
    first = store.add_fact("Setting up libssl3 version 3.0.11 on the gateway")
    second = store.add_fact("Setting up libssl3 version 3.0.13 on the gateway")
    assert first.id != second.id
    assert len(list(store.items(layer="semantic"))) == 2


def test_facts_that_differ_in_negation_do_not_merge(store: MemoryStore) -> None:
    first = store.add_fact("Persistence is enabled on the broker")
    second = store.add_fact("Persistence is not enabled on the broker")
    assert first.id != second.id


def test_the_same_fact_said_again_still_merges(store: MemoryStore) -> None:
    first = store.add_fact("The greenhouse gateway runs firmware 2.3", agent_id="a")
    again = store.add_fact("The greenhouse gateway runs firmware 2.3.", agent_id="b")
    assert again.id == first.id
    assert again.support == 2
    assert [p["agent"] for p in again.provenance] == ["a", "b"]


# Keys and history ------------------------------------------------------------------------------


def test_keys_and_history_survive_reopening(embed: EmbedFunction, tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, embed)
    texts = ["firmware 2.1 on pi-4", "firmware 2.2 on pi-4", "firmware 2.3 on pi-4"]
    facts = [store.add_fact(t, key="pi-4 firmware") for t in texts]
    store.close()
    reopened = MemoryStore(path, embed)
    try:
        current = reopened.get_key(SHARED, "pi-4 firmware")
        assert current is not None and current.id == facts[-1].id
        assert [f.text for f in reopened.history(current.id)] == list(reversed(texts))
        newer = reopened.add_fact("firmware 2.4 on pi-4", key="pi-4 firmware")
        assert reopened.get_key(SHARED, "pi-4 firmware") == newer
        assert len(reopened.history(newer.id)) == 4
    finally:
        reopened.close()


def test_forgetting_the_current_item_frees_its_key(store: MemoryStore) -> None:
    fact = store.add_fact("the broker listens on 8883", key="broker port")
    store.forget(ids=[fact.id])
    assert store.get_key(SHARED, "broker port") is None


def test_put_replaces_the_whole_history_of_a_key(store: MemoryStore) -> None:
    store.add_fact("old address 10.0.0.1", key="gateway", namespace="ns")
    store.add_fact("new address 10.0.0.2", key="gateway", namespace="ns")
    item = store.put("ns", "gateway", "address 10.0.0.3")
    assert [i.text for i in store.items(namespace="ns")] == ["address 10.0.0.3"]
    assert store.get_key("ns", "gateway") == item


def test_import_keeps_the_current_version_of_each_key(embed: EmbedFunction, tmp_path: Path) -> None:
    source = MemoryStore(None, embed)
    for version in ("1.0", "1.1", "1.2"):
        source.add_fact(f"the agent runtime is at version {version}", key="runtime")
    source.export(tmp_path / "out.jsonl")
    source.close()
    target = MemoryStore(None, embed)
    try:
        assert target.import_(tmp_path / "out.jsonl") == 3
        current = target.get_key(SHARED, "runtime")
        assert current is not None and current.text.endswith("1.2")
        assert len(target.history(current.id)) == 3
    finally:
        target.close()


# Batches ---------------------------------------------------------------------------------------


def test_add_episodes_writes_a_batch(store: MemoryStore) -> None:
    items = store.add_episodes(
        [NewEpisode("deployed the dashboard", task_id="t1"), NewEpisode("rotated certificates")]
    )
    assert [i.text for i in items] == ["deployed the dashboard", "rotated certificates"]
    assert {i.id for i in store.items(layer="episodic")} == {i.id for i in items}
    assert store.recall("certificates", limit=1)[0].item.id == items[1].id


def test_a_batch_with_one_bad_episode_writes_nothing(store: MemoryStore) -> None:
    with pytest.raises(MemoryStoreError):
        store.add_episodes([NewEpisode("fine"), NewEpisode("   ")])
    assert len(store) == 0


# Consolidation ---------------------------------------------------------------------------------


def summarise(task: str, outcome: str = "done", agent: str = "pi-2") -> NewEpisode:
    return NewEpisode(
        f"summarise the nightly build log — {agent} — {outcome}: 3 warnings, no errors",
        kind="subtask",
        agent_id=agent,
        task_id=task,
        outcome=outcome,
    )


def test_recurring_episodes_become_a_fact_with_provenance(store: MemoryStore) -> None:
    episodes = store.add_episodes([summarise("t1"), summarise("t2"), summarise("t3", "failed")])
    store.add_episodes([NewEpisode("calibrated the humidity sensor", kind="subtask", task_id="t4")])
    facts = store.consolidate()
    assert len(facts) == 1
    fact = facts[0]
    assert fact.kind == RECURRING_KIND and fact.layer == "semantic"
    assert fact.support == 3
    assert {p["episode"] for p in fact.provenance} == {e.id for e in episodes}
    assert {p["task"] for p in fact.provenance} == {"t1", "t2", "t3"}
    assert "recurs in 3 subtask episodes over 3 tasks" in fact.text
    assert "2 done, 1 failed" in fact.text and "pi-2" in fact.text
    found = store.recall("who summarises the nightly build log?", layer="semantic", limit=1)
    assert found[0].item.id == fact.id


def test_a_new_alike_episode_restates_the_fact_and_keeps_history(store: MemoryStore) -> None:
    store.add_episodes([summarise("t1"), summarise("t2"), summarise("t3")])
    (first,) = store.consolidate()
    assert store.consolidate() == []  # nothing new: nothing written
    store.add_episodes([summarise("t4", agent="pi-2")])
    (second,) = store.consolidate()
    assert second.key == first.key and second.support == 4
    assert [f.id for f in store.history(second.id)] == [second.id, first.id]
    assert store.get(first.id).superseded_by == second.id
    current = [
        f for f in store.items(layer="semantic") if f.kind == RECURRING_KIND and not f.superseded_by
    ]
    assert current == [second]


def test_episodes_of_one_task_alone_do_not_make_a_fact(store: MemoryStore) -> None:
    store.add_episodes([summarise("t1"), summarise("t1"), summarise("t1")])
    assert store.consolidate() == []


def test_too_few_alike_episodes_make_no_fact(store: MemoryStore) -> None:
    store.add_episodes([summarise("t1"), summarise("t2")])
    assert store.consolidate() == []
    assert store.consolidate(min_episodes=2, full=True) != []


def test_steps_are_not_consolidated_by_default(store: MemoryStore) -> None:
    store.add_episodes(
        [NewEpisode("step 1 on device: done", kind="step", task_id=f"t{i}") for i in range(4)]
    )
    assert store.consolidate() == []
    assert len(store.consolidate(kinds=("step",), full=True)) == 1


def test_consolidation_resumes_after_reopening(embed: EmbedFunction, tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, embed)
    store.add_episodes([summarise("t1"), summarise("t2"), summarise("t3")])
    assert len(store.consolidate()) == 1
    store.close()
    reopened = MemoryStore(path, embed)
    try:
        assert reopened.consolidate() == []  # already looked at
        reopened.add_episodes([summarise("t5")])
        (restated,) = reopened.consolidate()
        assert restated.support == 4
    finally:
        reopened.close()

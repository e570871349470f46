"""The episodic and semantic store, with real sentence embeddings (the light model)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmind.memory import (
    MAX_TEXT_CHARS,
    SHARED,
    EmbedFunction,
    ItemTooLarge,
    MemoryStore,
    MemoryStoreError,
    StoredItem,
)
from fleetmind.orchestrator import SentenceEmbedder

DAY = 24 * 3600.0

BUILD_FAILURE = "The firmware build failed: gcc reported an undefined reference in main.c"
EPISODES = [
    "Deployed version 2.3 of the dashboard to the greenhouse gateway",
    BUILD_FAILURE,
    "Rotated the TLS certificates of the MQTT broker",
    "Calibrated the humidity sensor on pi-4 against a reference hygrometer",
]


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


def file_bytes(path: Path) -> bytes:
    """The database file and whatever SQLite left beside it (WAL, journal)."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            data += part.read_bytes()
    return data


# Adding ----------------------------------------------------------------------------------------


def test_add_episode_returns_the_stored_item(store: MemoryStore) -> None:
    before = time.time()
    item = store.add_episode(
        BUILD_FAILURE,
        namespace="agent:builder",
        agent_id="builder",
        task_id="t-1",
        outcome="failed",
        duration_s=12.5,
        cost=0.01,
        metadata={"step": 3},
    )
    assert item.id.startswith("ep-")
    assert item.layer == "episodic"
    assert item.namespace == "agent:builder"
    assert item.text == BUILD_FAILURE
    assert item.kind == "episode"
    assert (item.agent_id, item.task_id, item.outcome) == ("builder", "t-1", "failed")
    assert (item.duration_s, item.cost, item.metadata) == (12.5, 0.01, {"step": 3})
    assert before <= item.created_at <= time.time()
    assert store.get(item.id) == item
    assert len(store) == 1


def test_add_fact_returns_the_stored_item(store: MemoryStore) -> None:
    fact = store.add_fact(
        "The broker listens on port 1883", agent_id="ops", task_id="t-2", episode_id="ep-x"
    )
    assert fact.id.startswith("fact-")
    assert fact.layer == "semantic"
    assert fact.kind == "fact"
    assert fact.namespace == SHARED
    assert fact.support == 1
    assert len(fact.provenance) == 1
    source = fact.provenance[0]
    assert (source["agent"], source["task"], source["episode"]) == ("ops", "t-2", "ep-x")
    assert source["at"] == fact.created_at
    assert store.get(fact.id) == fact


def test_ids_are_unique(store: MemoryStore) -> None:
    ids = {store.add_episode(f"episode {i} happened").id for i in range(5)}
    assert len(ids) == 5


def test_unknown_id_is_a_store_error(store: MemoryStore) -> None:
    with pytest.raises(MemoryStoreError, match="no memory item 'ep-nope'"):
        store.get("ep-nope")


def test_oversized_text_is_refused_with_a_one_line_message(embed: EmbedFunction) -> None:
    store = MemoryStore(None, embed)
    with pytest.raises(ItemTooLarge) as caught:
        store.add_episode("x" * (MAX_TEXT_CHARS + 1))
    message = str(caught.value)
    assert "\n" not in message
    assert "20,000" in message
    assert "20,001" in message
    assert len(store) == 0

    small = MemoryStore(None, embed, max_text_chars=100)
    assert small.add_fact("y" * 100).text == "y" * 100
    with pytest.raises(ItemTooLarge, match="over the limit of 100") as caught:
        small.add_fact("The deploy target is server A. " * 10)
    assert isinstance(caught.value, MemoryStoreError)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(store: MemoryStore, text: str) -> None:
    with pytest.raises(MemoryStoreError, match="needs some text"):
        store.add_episode(text)
    with pytest.raises(MemoryStoreError, match="needs some text"):
        store.add_fact(text)
    assert len(store) == 0


# Recall ----------------------------------------------------------------------------------------


def test_recall_ranks_by_similarity(store: MemoryStore) -> None:
    added = {text: store.add_episode(text) for text in EPISODES}
    found = store.recall("why did the compilation fail?", recency=0)
    assert found[0].item.id == added[BUILD_FAILURE].id
    assert len(found) == len(EPISODES)
    scores = [r.score for r in found]
    assert scores == sorted(scores, reverse=True)
    assert found[0].similarity > found[1].similarity + 0.1
    assert all(r.score == r.similarity for r in found)  # recency off
    humidity = store.recall("hygrometer humidity calibration", limit=1)
    assert [r.item.text for r in humidity] == [EPISODES[3]]


def test_recall_limit(store: MemoryStore) -> None:
    for text in EPISODES:
        store.add_episode(text)
    assert len(store.recall("anything", limit=2)) == 2
    assert store.recall("anything", limit=0) == []


def test_recall_on_an_empty_store(store: MemoryStore) -> None:
    assert store.recall("anything") == []


def test_recall_filters(store: MemoryStore) -> None:
    failed = store.add_episode(
        BUILD_FAILURE, namespace="agent:builder", agent_id="builder", outcome="failed"
    )
    done = store.add_episode(
        "The firmware build succeeded after fixing main.c",
        namespace="agent:builder",
        agent_id="builder",
        outcome="done",
    )
    other = store.add_episode(
        "The firmware build of the camera node failed", agent_id="camera", outcome="failed"
    )
    fact = store.add_fact("Firmware builds need gcc 13", namespace="agent:builder")
    query = "firmware build"

    def ids(**filters: object) -> set[str]:
        return {r.item.id for r in store.recall(query, **filters)}  # type: ignore[arg-type]

    assert ids() == {failed.id, done.id, other.id, fact.id}
    assert ids(layer="semantic") == {fact.id}
    assert ids(layer="episodic") == {failed.id, done.id, other.id}
    assert ids(namespaces=["agent:builder"]) == {failed.id, done.id, fact.id}
    assert ids(namespaces=[SHARED]) == {other.id}
    assert ids(namespaces=["agent:builder", SHARED]) == {failed.id, done.id, other.id, fact.id}
    assert ids(namespaces=[]) == set()
    assert ids(agent_id="builder") == {failed.id, done.id}
    assert ids(outcome="failed") == {failed.id, other.id}
    assert ids(outcome="failed", agent_id="builder") == {failed.id}
    assert ids(layer="semantic", outcome="failed") == set()


def test_recall_filters_find_items_beyond_the_first_candidates(store: MemoryStore) -> None:
    for i in range(30):
        store.add_episode(f"The firmware build number {i} failed with a linker error")
    wanted = store.add_episode("Watered the tomatoes", agent_id="gardener")
    found = store.recall("firmware build failed", agent_id="gardener", limit=1)
    assert [r.item.id for r in found] == [wanted.id]


def test_recency_raises_the_newer_of_two_equally_similar_episodes(store: MemoryStore) -> None:
    text = "Restarted the MQTT broker after a memory leak"
    old = store.add_episode(text, created_at=time.time() - 30 * DAY)
    new = store.add_episode(text)
    found = store.recall("broker restart", recency=0.5)
    assert [r.item.id for r in found] == [new.id, old.id]
    assert found[0].similarity == pytest.approx(found[1].similarity, abs=1e-5)
    assert found[0].score > found[1].score
    # 30 days is about 4.3 half-lives: the old one's weight is ~0.05, the new one's ~1.
    assert found[0].score - found[0].similarity == pytest.approx(0.5, abs=0.01)
    assert found[1].score - found[1].similarity == pytest.approx(0.5 * 0.5 ** (30 / 7), abs=0.01)
    flat = store.recall("broker restart", recency=0)
    assert flat[0].score == pytest.approx(flat[1].score, abs=1e-5)


def test_recency_does_not_apply_to_facts(store: MemoryStore) -> None:
    store.add_fact("The broker runs on gateway-1", created_at=time.time())
    [found] = store.recall("where does the broker run", recency=1.0)
    assert found.score == found.similarity


# Facts: merging and superseding ----------------------------------------------------------------


def test_near_duplicate_facts_merge(store: MemoryStore) -> None:
    first = store.add_fact("The deploy target is server A", agent_id="a", task_id="t1")
    again = store.add_fact("The deploy target is server A.", agent_id="b", task_id="t2")
    assert again.id == first.id
    assert again.text == "The deploy target is server A"
    assert again.support == 2
    assert [p["agent"] for p in again.provenance] == ["a", "b"]
    assert [p["task"] for p in again.provenance] == ["t1", "t2"]
    assert store.get(first.id) == again
    assert len(store) == 1


def test_different_facts_do_not_merge(store: MemoryStore) -> None:
    a = store.add_fact("The deploy target is server A")
    b = store.add_fact("Backups run every night at two")
    assert a.id != b.id
    assert len(store) == 2
    assert store.get(a.id).support == 1


def test_facts_in_other_namespaces_do_not_merge(store: MemoryStore) -> None:
    a = store.add_fact("The deploy target is server A", namespace="agent:a")
    b = store.add_fact("The deploy target is server A", namespace="agent:b")
    assert a.id != b.id
    assert (store.get(a.id).support, store.get(b.id).support) == (1, 1)


def test_a_fact_with_the_same_key_supersedes_the_old_one(store: MemoryStore) -> None:
    now = time.time()
    old = store.add_fact("The broker listens on port 1883", key="broker.port", created_at=now - 2)
    new = store.add_fact("The broker listens on port 8883", key="broker.port", created_at=now - 1)
    assert new.id != old.id
    assert new.superseded_by is None
    assert store.get(old.id).superseded_by == new.id
    assert store.get(old.id).text == old.text  # kept as history, not deleted

    found = store.recall("which port does the broker listen on", layer="semantic")
    assert [r.item.id for r in found] == [new.id]
    everything = store.recall(
        "which port does the broker listen on", layer="semantic", include_superseded=True
    )
    assert {r.item.id for r in everything} == {old.id, new.id}

    newest = store.add_fact("The broker listens on port 8884", key="broker.port", created_at=now)
    assert [i.id for i in store.history(newest.id)] == [newest.id, new.id, old.id]
    assert [i.text for i in store.history(newest.id)] == [
        "The broker listens on port 8884",
        "The broker listens on port 8883",
        "The broker listens on port 1883",
    ]
    assert [i.id for i in store.history(old.id)] == [old.id]
    assert store.stats()["superseded"] == 2


def test_same_key_same_text_merges(store: MemoryStore) -> None:
    first = store.add_fact("Backups run at 02:00", key="backup.time", agent_id="a")
    again = store.add_fact("Backups run at 02:00 ", key="backup.time", agent_id="b")
    assert again.id == first.id
    assert again.support == 2
    assert again.superseded_by is None
    assert [p["agent"] for p in again.provenance] == ["a", "b"]
    assert len(store) == 1


def test_the_same_key_in_another_namespace_does_not_supersede(store: MemoryStore) -> None:
    a = store.add_fact("Port is 1883", key="port", namespace="agent:a")
    b = store.add_fact("Port is 8883", key="port", namespace="agent:b")
    assert store.get(a.id).superseded_by is None
    assert store.get(b.id).superseded_by is None


# Forgetting ------------------------------------------------------------------------------------

SECRET = "The vault passphrase is zebra-umbrella-4711"


def test_forget_by_match_deletes_rows_and_vectors(embed: EmbedFunction, tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = MemoryStore(path, embed)
    secret = store.add_episode(SECRET, agent_id="ops")
    kept = [store.add_episode(text) for text in EPISODES]
    store.close()
    assert b"zebra-umbrella-4711" in file_bytes(path)  # the check below can fail

    store = MemoryStore(path, embed)
    assert store.recall("vault passphrase", limit=1)[0].item.id == secret.id
    assert store.forget(match="ZEBRA-umbrella") == 1  # case-insensitive
    assert len(store) == len(EPISODES)
    found = store.recall("vault passphrase", limit=50, include_superseded=True)
    assert {r.item.id for r in found} == {k.id for k in kept}
    with pytest.raises(MemoryStoreError):
        store.get(secret.id)
    store.close()

    store = MemoryStore(path, embed)
    assert len(store) == len(EPISODES)
    assert {r.item.id for r in store.recall("vault passphrase", limit=50)} == {k.id for k in kept}
    store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id FROM items").fetchall()
    assert {row[0] for row in rows} == {k.id for k in kept}
    raw = file_bytes(path)
    assert b"zebra-umbrella-4711" not in raw
    assert b"vault passphrase" not in raw
    assert BUILD_FAILURE.encode() in raw


def test_forget_by_date(store: MemoryStore) -> None:
    now = time.time()
    old = store.add_episode("Replaced the router in the barn", created_at=now - 10 * DAY)
    older = store.add_fact("The barn router is a TP-Link", created_at=now - 20 * DAY)
    new = store.add_episode("Replaced the router in the office", created_at=now)
    assert store.forget(before=now - DAY) == 2
    assert [i.id for i in store.items()] == [new.id]
    found = store.recall("router", limit=10, recency=0)
    assert [r.item.id for r in found] == [new.id]
    assert old.id not in {r.item.id for r in found}
    assert older.id not in {r.item.id for r in found}


def test_forget_by_namespace(store: MemoryStore) -> None:
    mine = store.add_episode("Agent a fixed the build", namespace="agent:a")
    fact = store.add_fact("Agent a prefers clang", namespace="agent:a")
    shared = store.add_episode("The team fixed the build", namespace=SHARED)
    assert store.forget(namespace="agent:a") == 2
    assert store.namespaces() == [SHARED]
    found = store.recall("who fixed the build", limit=10)
    assert [r.item.id for r in found] == [shared.id]
    assert {mine.id, fact.id}.isdisjoint(i.id for i in store.items())


def test_forget_by_ids(store: MemoryStore) -> None:
    items = [store.add_episode(text) for text in EPISODES]
    assert store.forget(ids=[items[1].id, items[3].id, "ep-unknown"]) == 2
    assert [i.id for i in store.items()] == [items[0].id, items[2].id]
    found = store.recall(BUILD_FAILURE, limit=10)
    assert {r.item.id for r in found} == {items[0].id, items[2].id}


def test_forget_nothing_matching_deletes_nothing(store: MemoryStore) -> None:
    store.add_episode(BUILD_FAILURE)
    assert store.forget(match="no such text anywhere") == 0
    assert store.forget(ids=["ep-unknown"]) == 0
    assert len(store) == 1


def test_forget_needs_criteria(store: MemoryStore) -> None:
    store.add_episode(BUILD_FAILURE)
    with pytest.raises(MemoryStoreError, match="say what to forget"):
        store.forget()
    with pytest.raises(MemoryStoreError, match="say what to forget"):
        store.forget(ids=[])
    assert len(store) == 1


# Export and import -----------------------------------------------------------------------------


def populate(store: MemoryStore) -> None:
    now = time.time()
    store.add_episode(
        BUILD_FAILURE,
        namespace="agent:builder",
        agent_id="builder",
        task_id="t-1",
        outcome="failed",
        duration_s=12.25,
        cost=0.0031,
        metadata={"steps": [1, 2], "model": "light", "ok": False},
        created_at=now - 3 * DAY,
    )
    store.add_episode("Deployed the dashboard — ünïcödé ✓", outcome="done", created_at=now - DAY)
    store.add_fact("The deploy target is server A", agent_id="a", created_at=now - 2 * DAY)
    store.add_fact("The deploy target is server A.", agent_id="b", created_at=now - DAY)
    store.add_fact("Port is 1883", key="port", created_at=now - 2 * DAY)
    store.add_fact("Port is 8883", key="port", namespace=SHARED, created_at=now)


def test_export_import_export_is_byte_identical(embed: EmbedFunction, tmp_path: Path) -> None:
    source = MemoryStore(tmp_path / "source.db", embed)
    populate(source)
    first = tmp_path / "first.jsonl"
    assert source.export(first) == len(source) == 5

    copy = MemoryStore(None, embed)
    assert copy.import_(first) == 5
    second = tmp_path / "second.jsonl"
    assert copy.export(second) == 5
    assert second.read_bytes() == first.read_bytes()

    for item in source.items():
        assert copy.get(item.id) == item
    assert copy.recall("compile error", limit=1)[0].item.text == BUILD_FAILURE
    # Importing again changes nothing: the ids are kept.
    assert copy.import_(first) == 5
    assert len(copy) == 5
    third = tmp_path / "third.jsonl"
    copy.export(third)
    assert third.read_bytes() == first.read_bytes()
    source.close()
    copy.close()


def test_export_is_oldest_first_json_lines(store: MemoryStore, tmp_path: Path) -> None:
    populate(store)
    target = tmp_path / "out.jsonl"
    store.export(target)
    rows = [json.loads(line) for line in target.read_text("utf-8").splitlines()]
    assert len(rows) == 5
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)
    assert [StoredItem.from_json(r) for r in rows] == [store.get(r["id"]) for r in rows]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("this is not json", "not a memory item"),
        ('{"id": "x", "layer": "procedural", "namespace": "shared", "text": "t"}', "layer"),
        ('{"id": "x", "layer": "episodic"}', "not a memory item"),
        ('{"id": "x", "layer": "episodic", "namespace": "shared", "text": ""}', "some text"),
    ],
)
def test_import_of_a_malformed_line_names_file_and_line(
    embed: EmbedFunction, tmp_path: Path, bad: str, reason: str
) -> None:
    good = MemoryStore(None, embed)
    good.add_episode(BUILD_FAILURE)
    source = tmp_path / "dump.jsonl"
    good.export(source)
    source.write_text(source.read_text("utf-8") + "\n" + bad + "\n", encoding="utf-8")
    fresh = MemoryStore(None, embed)
    with pytest.raises(MemoryStoreError, match=reason) as caught:
        fresh.import_(source)
    # Line 2 is blank (skipped), the bad one is line 3.
    assert str(caught.value).startswith(f"{source}:3: not a memory item")
    assert "\n" not in str(caught.value)
    assert len(fresh) == 0  # nothing half-imported


def test_import_of_a_json_line_that_is_not_an_object_names_file_and_line(
    embed: EmbedFunction, tmp_path: Path
) -> None:
    """A line that is valid JSON but not an object, or an object whose text is not a
    string, is refused naming the file and line (no traceback)."""
    source = tmp_path / "dump.jsonl"
    source.write_text('["a", "list"]\n', encoding="utf-8")
    with pytest.raises(MemoryStoreError, match=r"dump\.jsonl:1: not a memory item"):
        MemoryStore(None, embed).import_(source)


def test_import_of_a_missing_file_is_a_store_error(embed: EmbedFunction, tmp_path: Path) -> None:
    with pytest.raises(MemoryStoreError, match="cannot read"):
        MemoryStore(None, embed).import_(tmp_path / "absent.jsonl")


# Reopening and stats ---------------------------------------------------------------------------


def test_reopening_a_file_restores_items_and_recall(embed: EmbedFunction, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "memory.db"
    store = MemoryStore(path, embed)
    populate(store)
    for text in EPISODES:
        if text != BUILD_FAILURE:
            store.add_episode(text)
    items = {i.id: i for i in store.items()}
    store.close()

    reopened = MemoryStore(path, embed)
    assert {i.id: i for i in reopened.items()} == items
    assert reopened.recall("why did the compilation fail?", limit=1)[0].item.text == BUILD_FAILURE
    # Superseding and merging survive the reopen.
    current = reopened.recall("which port", layer="semantic", limit=10)
    assert "Port is 1883" not in {r.item.text for r in current}
    merged = [i for i in reopened.items() if i.text == "The deploy target is server A"]
    assert [i.support for i in merged] == [2]
    # New facts still merge into restored ones.
    again = reopened.add_fact("The deploy target is server A", agent_id="c")
    assert again.id == merged[0].id
    assert again.support == 3
    reopened.close()


def test_stats_counts_per_layer_and_namespace(store: MemoryStore) -> None:
    store.add_episode("one", namespace=SHARED)
    store.add_episode("The firmware build failed", namespace=SHARED)
    store.add_episode("agent a did something", namespace="agent:a")
    store.add_fact("The deploy target is server A", namespace=SHARED)
    store.add_fact("Port is 1883", key="port", namespace="agent:a")
    store.add_fact("Port is 8883", key="port", namespace="agent:a")
    stats = store.stats()
    assert stats["items"] == 6
    assert stats["layers"] == {
        "episodic": {SHARED: 2, "agent:a": 1},
        "semantic": {SHARED: 1, "agent:a": 2},
    }
    assert stats["superseded"] == 1
    if store.path is None:
        assert stats["bytes"] == 0
    else:
        assert stats["bytes"] == store.path.stat().st_size > 0
    assert store.namespaces() == ["agent:a", SHARED]


def test_a_file_that_cannot_be_opened_is_a_store_error(
    embed: EmbedFunction, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just bytes " * 200)
    with pytest.raises(MemoryStoreError, match=r"cannot open the memory store .*junk\.db"):
        MemoryStore(junk, embed)
    with pytest.raises(MemoryStoreError, match="cannot open the memory store"):
        MemoryStore(tmp_path, embed)  # a directory


def test_put_replaces_the_item_under_a_key(store: MemoryStore) -> None:
    first = store.put("agent:a", "profile", "Agent a builds firmware")
    assert store.get_key("agent:a", "profile") == first
    second = store.put("agent:a", "profile", "Agent a builds and flashes firmware")
    assert second.id != first.id
    assert second.created_at == first.created_at
    assert store.get_key("agent:a", "profile") == second
    assert store.get_key("agent:b", "profile") is None
    assert [i.id for i in store.items()] == [second.id]  # replaced, not kept as history
    with pytest.raises(MemoryStoreError):
        store.get(first.id)

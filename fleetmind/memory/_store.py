"""Episodic and semantic memory in one SQLite file, searchable by meaning.

- **Episodes** are what happened: a task, a subtask, an LLM step — request, agent, actions,
  outcome, duration, cost. Recall ranks them by similarity to the query, recency and (when
  asked) outcome.
- **Facts** are what is known: short statements with provenance (the episode, agent and time
  they came from). A fact nearly identical to a known one is merged into it (its support
  grows, both provenances are kept); a fact with the same ``key`` as an older one supersedes
  it — the old fact stays in the history, marked superseded, and is no longer recalled.
  Near-duplicates merge only when their specifics agree (numbers, ids, paths, negation).
- **Consolidation** (``consolidate``) states what recurs across episodes of several tasks as
  a fact whose provenance lists every episode (``_consolidate``).

Every item lives in a namespace: an agent's own (``agent:<id>``) or the fleet's shared one
(``shared``). Texts are embedded by the embedder the store is given (the orchestrator passes
its sentence embedder); the vectors sit in the same file, and an in-memory index over them is
rebuilt on open. ``forget`` deletes rows and their vectors; ``export``/``import_`` round-trip
every field exactly (JSON lines, vectors excluded: they are recomputed).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fleetmind.errors import FleetmindError
from fleetmind.memory._consolidate import (
    RECURRING_KIND,
    Group,
    central,
    group_recurring,
    recurring_text,
)
from fleetmind.memory._items import (
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
from fleetmind.memory._vectors import VectorIndex

MERGE_SIMILARITY = 0.92
"""Facts at least this similar are the same fact said twice (when their specifics agree)."""
_EDGES = ".,;:!?()[]{}<>\"'`"
_NEGATIONS = frozenset({"not", "no", "never", "none", "without", "cannot", "can't", "isn't"})


def _source(episode: StoredItem) -> dict[str, Any]:
    """A provenance entry pointing at ``episode``."""
    return {
        "agent": episode.agent_id,
        "task": episode.task_id,
        "episode": episode.id,
        "at": episode.created_at,
    }


def same_specifics(a: str, b: str) -> bool:
    """Whether two statements carry the same words with numbers or paths in them (versions,
    sizes, device ids, files) and agree on negation.

    Sentence embeddings put "disk 91% full on pi-2" next to "disk 19% full on pi-7" and
    "X is enabled" next to "X is not enabled"; such pairs are different facts, whatever their
    similarity, so a merge asks for this as well.
    """
    return _specifics(a) == _specifics(b)


def _specifics(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """The words of ``text`` that carry a number or a path, and its negations."""
    words = [w.strip(_EDGES) for w in text.split()]
    specific = frozenset(w for w in words if any(c.isdigit() for c in w) or "/" in w)
    negated = frozenset(w.lower() for w in words if w.lower() in _NEGATIONS)
    return specific, negated


class MemoryStore:
    """Episodic and semantic memory in a SQLite file (``None``: in memory).

    Args:
        path: The file, or None for a memory that lives as long as the object.
        embed: Texts -> unit vectors, one row per text.
        max_text_chars: The largest item accepted.
        recency_half_life_s: How fast an episode's recency weight halves.
        exact_below: Search exactly below this many items, through an HNSW graph above.
    """

    def __init__(
        self,
        path: str | Path | None,
        embed: EmbedFunction,
        *,
        max_text_chars: int = MAX_TEXT_CHARS,
        recency_half_life_s: float = 7 * 24 * 3600,
        exact_below: int = 4096,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._embed = embed
        self.max_text_chars = max_text_chars
        self.half_life = recency_half_life_s
        self._lock = threading.RLock()
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, layer TEXT NOT NULL, "
                "namespace TEXT NOT NULL, created_at REAL NOT NULL, data TEXT NOT NULL, "
                "vector BLOB NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS items_ns ON items (namespace, layer)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            # Episodes recorded since consolidation last looked (by id, not by time: episodes
            # of tasks that finish together, or imported ones, are stamped out of order).
            self._db.execute("CREATE TABLE IF NOT EXISTS unconsolidated (id TEXT PRIMARY KEY)")
        except sqlite3.Error as exc:
            raise MemoryStoreError(f"cannot open the memory store {target}: {exc}") from exc
        self._index = VectorIndex(exact_below=exact_below)
        self._items: dict[str, StoredItem] = {}
        self._current: dict[tuple[str, str], str] = {}
        """(namespace, key) -> the id of the item that holds the key now (not superseded)."""
        self._older: dict[str, str] = {}
        """A fact's id -> the id of the fact it superseded (history, newest to oldest)."""
        self._load()

    # Reading the file ------------------------------------------------------------------------

    def _load(self) -> None:
        rows = self._db.execute("SELECT data, vector FROM items ORDER BY created_at").fetchall()
        ids, vectors = [], []
        for data, blob in rows:
            item = StoredItem.from_json(json.loads(data))
            self._remember(item)
            ids.append(item.id)
            vectors.append(np.frombuffer(blob, dtype=np.float32))
        if ids:
            self._index.add(ids, np.stack(vectors))

    def _remember(self, item: StoredItem) -> None:
        """Keep ``item`` in the in-memory maps (items by id, current item by key)."""
        self._items[item.id] = item
        if item.superseded_by is not None:
            self._older[item.superseded_by] = item.id
        if item.key is not None:
            slot = (item.namespace, item.key)
            if item.superseded_by is None:
                self._current[slot] = item.id
            elif self._current.get(slot) == item.id:
                del self._current[slot]

    def _drop(self, item_id: str) -> None:
        item = self._items.pop(item_id)
        if item.superseded_by is not None and self._older.get(item.superseded_by) == item_id:
            del self._older[item.superseded_by]
        if item.key is not None and self._current.get((item.namespace, item.key)) == item_id:
            del self._current[(item.namespace, item.key)]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> StoredItem:
        try:
            return self._items[item_id]
        except KeyError:
            raise MemoryStoreError(f"no memory item {item_id!r}") from None

    def find(self, item_id: str) -> StoredItem | None:
        """The item with this id, or None (``get`` raises instead)."""
        return self._items.get(item_id)

    def items(
        self, *, layer: Layer | None = None, namespace: str | None = None
    ) -> Iterator[StoredItem]:
        for item in self._items.values():
            if (layer is None or item.layer == layer) and (
                namespace is None or item.namespace == namespace
            ):
                yield item

    # Writing ---------------------------------------------------------------------------------

    def _check(self, text: str) -> None:
        if not text or not text.strip():
            raise MemoryStoreError("a memory item needs some text")
        if len(text) > self.max_text_chars:
            raise ItemTooLarge(
                f"a memory item of {len(text):,} characters is over the limit of "
                f"{self.max_text_chars:,}: store a summary, or raise max_text_chars"
            )

    def _insert(self, item: StoredItem, vector: np.ndarray) -> StoredItem:
        self._insert_many([item], np.asarray(vector, dtype=np.float32)[None, :])
        return item

    def _insert_many(self, items: Sequence[StoredItem], vectors: np.ndarray) -> None:
        """Write items and their vectors in one transaction and one index update."""
        if not items:
            return
        matrix = np.asarray(vectors, dtype=np.float32)
        rows = [
            (
                item.id,
                item.layer,
                item.namespace,
                item.created_at,
                json.dumps(item.to_json()),
                matrix[row].tobytes(),
            )
            for row, item in enumerate(items)
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.executemany(
                    "INSERT OR IGNORE INTO unconsolidated VALUES (?)",
                    [(item.id,) for item in items if item.layer == "episodic"],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._index.add([item.id for item in items], matrix)
            for item in items:
                self._remember(item)

    def _update(self, item: StoredItem) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE items SET data = ? WHERE id = ?", (json.dumps(item.to_json()), item.id)
            )
            self._remember(item)

    def add_episode(
        self,
        text: str,
        *,
        namespace: str = SHARED,
        kind: str = "episode",
        agent_id: str | None = None,
        task_id: str | None = None,
        outcome: str | None = None,
        duration_s: float | None = None,
        cost: float | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: float | None = None,
    ) -> StoredItem:
        """Record something that happened."""
        episode = NewEpisode(
            text,
            namespace=namespace,
            kind=kind,
            agent_id=agent_id,
            task_id=task_id,
            outcome=outcome,
            duration_s=duration_s,
            cost=cost,
            metadata=dict(metadata or {}),
            created_at=created_at,
        )
        return self.add_episodes([episode])[0]

    def add_episodes(self, episodes: Sequence[NewEpisode]) -> list[StoredItem]:
        """Record several episodes at once: one embedding batch, one transaction (a finished
        task's episodes arrive together). All are checked before any is written."""
        for episode in episodes:
            self._check(episode.text)
        now = time.time()
        items = [
            StoredItem(
                id=f"ep-{uuid.uuid4().hex[:16]}",
                layer="episodic",
                namespace=e.namespace,
                text=e.text,
                kind=e.kind,
                agent_id=e.agent_id,
                task_id=e.task_id,
                outcome=e.outcome,
                duration_s=e.duration_s,
                cost=e.cost,
                created_at=e.created_at if e.created_at is not None else now,
                metadata=dict(e.metadata),
            )
            for e in episodes
        ]
        if items:
            self._insert_many(items, self._embed([i.text for i in items]))
        return items

    def add_fact(
        self,
        text: str,
        *,
        namespace: str = SHARED,
        key: str | None = None,
        agent_id: str | None = None,
        task_id: str | None = None,
        episode_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: float | None = None,
    ) -> StoredItem:
        """State a fact; merged into a near-identical one, or superseding one with its key.

        Returns the fact as it is now stored (the merged one, or the new one).
        """
        self._check(text)
        now = created_at if created_at is not None else time.time()
        source = {"agent": agent_id, "task": task_id, "episode": episode_id, "at": now}
        vector = self._embed([text])[0]
        with self._lock:
            if key is None:
                twin = self._nearest_fact(vector, namespace, text)
                if twin is not None:
                    merged = replace(
                        twin, support=twin.support + 1, provenance=(*twin.provenance, source)
                    )
                    self._update(merged)
                    return merged
            fact = StoredItem(
                id=f"fact-{uuid.uuid4().hex[:16]}",
                layer="semantic",
                namespace=namespace,
                text=text,
                kind="fact",
                key=key,
                agent_id=agent_id,
                task_id=task_id,
                created_at=now,
                provenance=(source,),
                metadata=dict(metadata or {}),
            )
            old = self.get_key(namespace, key) if key is not None else None
            if old is not None and old.layer == "semantic":
                if old.text.strip() == text.strip():
                    merged = replace(
                        old, support=old.support + 1, provenance=(*old.provenance, source)
                    )
                    self._update(merged)
                    return merged
                self._update(replace(old, superseded_by=fact.id))
            return self._insert(fact, vector)

    def _nearest_fact(self, vector: np.ndarray, namespace: str, text: str) -> StoredItem | None:
        """A current fact in ``namespace`` that says what ``text`` says (a merge target)."""
        for item_id, similarity in self._index.search(vector, 32):
            if similarity < MERGE_SIMILARITY:
                break
            item = self._items[item_id]
            if (
                item.layer == "semantic"
                and item.namespace == namespace
                and not item.superseded_by
                and same_specifics(item.text, text)
            ):
                return item
        return None

    def put(
        self,
        namespace: str,
        key: str,
        text: str,
        *,
        kind: str = "record",
        metadata: dict[str, Any] | None = None,
    ) -> StoredItem:
        """Set the item under ``key`` in ``namespace`` (a key-value write: whatever was there
        is replaced and deleted, unlike a fact, whose older versions stay as history)."""
        self._check(text)
        vector = self._embed([text])[0]
        with self._lock:
            current = self.get_key(namespace, key)
            created = current.created_at if current is not None else time.time()
            old = [i.id for i in self.history(current.id)] if current is not None else []
            if old:
                self.forget(ids=old)
            item = StoredItem(
                id=f"kv-{uuid.uuid4().hex[:16]}",
                layer="semantic",
                namespace=namespace,
                text=text,
                kind=kind,
                key=key,
                created_at=created,
                metadata={**(metadata or {}), "updated_at": time.time()},
            )
            return self._insert(item, vector)

    def get_key(self, namespace: str, key: str) -> StoredItem | None:
        """The current item under ``key`` in ``namespace``, if any."""
        item_id = self._current.get((namespace, key))
        return None if item_id is None else self._items[item_id]

    def consolidate(
        self,
        *,
        kinds: Sequence[str] = ("task", "subtask"),
        min_episodes: int = 3,
        similarity: float = 0.85,
        full: bool = False,
    ) -> list[StoredItem]:
        """Promote what recurs across episodes into facts; the facts written or restated.

        Episodes of ``kinds`` at least ``similarity`` alike, in one namespace, from two tasks
        or more, ``min_episodes`` or more of them, become one recurring fact (see
        ``_consolidate``). Only episodes recorded since the last call are looked at (their
        neighbours may be older), unless ``full``.
        """
        wanted = set(kinds)
        with self._lock:
            new = {row[0] for row in self._db.execute("SELECT id FROM unconsolidated")}
            groups = {
                fact.key: Group(fact.key, list(fact.metadata.get("episodes", [])))
                for fact in self.items(layer="semantic")
                if fact.kind == RECURRING_KIND and fact.key and not fact.superseded_by
            }
            pending = sorted(
                (
                    e
                    for e in self.items(layer="episodic")
                    if e.kind in wanted and (full or e.id in new)
                ),
                key=lambda e: e.created_at,
            )

            def neighbours(episode: StoredItem) -> list[StoredItem]:
                near = []
                for item_id, alike in self._index.search(self._index.vector(episode.id), 32):
                    if alike < similarity:
                        break
                    other = self._items[item_id]
                    if (
                        other.id != episode.id
                        and other.layer == "episodic"
                        and other.kind == episode.kind
                        and other.namespace == episode.namespace
                    ):
                        near.append(other)
                return near

            changed = group_recurring(pending, neighbours, groups, min_episodes=min_episodes)
            written = []
            for key in sorted(changed):
                episodes = [self._items[i] for i in groups[key].episode_ids if i in self._items]
                vectors = np.stack([self._index.vector(e.id) for e in episodes])
                representative = central(episodes, vectors)
                fact = StoredItem(
                    id=f"fact-{uuid.uuid4().hex[:16]}",
                    layer="semantic",
                    namespace=representative.namespace,
                    text=recurring_text(episodes, representative),
                    kind=RECURRING_KIND,
                    key=key,
                    created_at=time.time(),
                    support=len(episodes),
                    provenance=tuple(_source(e) for e in episodes),
                    metadata={"episodes": [e.id for e in episodes]},
                )
                old = self.get_key(fact.namespace, key)
                if old is not None:
                    self._update(replace(old, superseded_by=fact.id))
                written.append(self._insert(fact, self._embed([fact.text])[0]))
            self._db.executemany("DELETE FROM unconsolidated WHERE id = ?", [(i,) for i in new])
        return written

    def namespaces(self) -> list[str]:
        """Every namespace that holds an item."""
        return sorted({i.namespace for i in self._items.values()})

    def history(self, fact_id: str) -> list[StoredItem]:
        """A fact and every fact it superseded, newest first."""
        chain = [self.get(fact_id)]
        while (older := self._older.get(chain[-1].id)) is not None and older in self._items:
            chain.append(self._items[older])
        return chain

    # Recall ----------------------------------------------------------------------------------

    def recall(
        self,
        query: str,
        *,
        layer: Layer | None = None,
        namespaces: Iterable[str] | None = None,
        agent_id: str | None = None,
        outcome: str | None = None,
        limit: int = 10,
        recency: float = 0.1,
        include_superseded: bool = False,
    ) -> list[Recalled]:
        """Items most like ``query``: similarity, plus ``recency`` x a recency weight for
        episodes (1 now, 0.5 after a half-life)."""
        if limit < 1:
            return []
        wanted = None if namespaces is None else set(namespaces)
        vector = self._embed([query])[0]
        return self._ranked(
            vector, limit, layer, wanted, agent_id, outcome, recency, include_superseded
        )

    def _ranked(
        self,
        vector: np.ndarray,
        limit: int,
        layer: Layer | None,
        wanted: set[str] | None,
        agent_id: str | None,
        outcome: str | None,
        recency: float,
        include_superseded: bool,
    ) -> list[Recalled]:
        """Candidates from the index, widened until enough pass the filters."""
        now = time.time()
        total = len(self._index)
        breadth = 4 * limit
        while True:
            with self._lock:
                hits = self._index.search(vector, min(breadth, total))
                out: list[Recalled] = []
                for item_id, similarity in hits:
                    item = self._items.get(item_id)
                    if item is None:
                        continue
                    if layer is not None and item.layer != layer:
                        continue
                    if wanted is not None and item.namespace not in wanted:
                        continue
                    if agent_id is not None and item.agent_id != agent_id:
                        continue
                    if outcome is not None and item.outcome != outcome:
                        continue
                    if item.superseded_by and not include_superseded:
                        continue
                    score = similarity
                    if item.layer == "episodic" and recency:
                        age = max(0.0, now - item.created_at)
                        score += recency * math.pow(0.5, age / self.half_life)
                    out.append(Recalled(item, score, similarity))
            if len(out) >= limit or breadth >= total:
                break
            breadth *= 8
        out.sort(key=lambda r: -r.score)
        return out[:limit]

    # Forgetting, export, import -------------------------------------------------------------

    def forget(
        self,
        *,
        match: str | None = None,
        before: float | None = None,
        namespace: str | None = None,
        ids: Iterable[str] = (),
    ) -> int:
        """Delete items (rows and vectors): those whose text contains ``match``, created
        before ``before``, in ``namespace``, or with these ids. The number deleted."""
        chosen = set(ids)
        if match is None and before is None and namespace is None and not chosen:
            raise MemoryStoreError(
                "say what to forget: a text to match, a date, a namespace or ids"
            )
        with self._lock:
            for item in list(self._items.values()):
                if chosen and item.id in chosen:
                    continue
                if match is None and before is None and namespace is None:
                    continue
                if match is not None and match.lower() not in item.text.lower():
                    continue
                if before is not None and item.created_at >= before:
                    continue
                if namespace is not None and item.namespace != namespace:
                    continue
                chosen.add(item.id)
            chosen &= set(self._items)
            if not chosen:
                return 0
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in chosen])
            self._db.executemany("DELETE FROM unconsolidated WHERE id = ?", [(i,) for i in chosen])
            self._db.execute("COMMIT")
            self._index.remove(chosen)
            for item_id in chosen:
                self._drop(item_id)
            if self.path is not None:
                self._db.execute("VACUUM")  # deleted text must not linger in free pages
        return len(chosen)

    def export(self, path: str | Path) -> int:
        """Every item as JSON lines, oldest first; the number written."""
        target = Path(path)
        with self._lock, target.open("w", encoding="utf-8") as out:
            items = sorted(self._items.values(), key=lambda i: (i.created_at, i.id))
            for item in items:
                out.write(json.dumps(item.to_json(), sort_keys=True) + "\n")
        return len(items)

    def import_(self, path: str | Path) -> int:
        """Items from ``export``'s JSON lines (ids kept: importing twice changes nothing)."""
        source = Path(path)
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise MemoryStoreError(f"cannot read {source}: {exc}") from exc
        items = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = StoredItem.from_json(json.loads(line))
                self._check(item.text)
            except (json.JSONDecodeError, TypeError, MemoryStoreError) as exc:
                message = exc.message if isinstance(exc, FleetmindError) else str(exc)
                raise MemoryStoreError(
                    f"{source}:{number}: not a memory item ({message})"
                ) from None
            items.append(item)
        # Superseded versions first, so the current one of each key ends up current.
        items.sort(key=lambda i: i.superseded_by is None)
        for start in range(0, len(items), 512):
            batch = items[start : start + 512]
            self._insert_many(batch, self._embed([i.text for i in batch]))
        return len(items)

    def stats(self) -> dict[str, Any]:
        """Counts per layer and namespace, and the file's size."""
        counts: dict[str, dict[str, int]] = {}
        for item in self._items.values():
            layer = counts.setdefault(item.layer, {})
            layer[item.namespace] = layer.get(item.namespace, 0) + 1
        superseded = sum(1 for i in self._items.values() if i.superseded_by)
        size = self.path.stat().st_size if self.path is not None and self.path.exists() else 0
        return {
            "items": len(self._items),
            "layers": counts,
            "superseded": superseded,
            "bytes": size,
        }

"""Versioned Capability Vectors and the index that searches them.

An agent's profile becomes several texts — one for the agent as a whole, one per skill, one per
skill example — and each text one vector. Matching a subtask against every vector and keeping
each agent's best match lets a broad agent's narrow skill be found, which one averaged vector per
agent would blur away. A profile's version and the hash of its texts travel with its vectors: a
changed profile replaces exactly its own vectors, and an unchanged one is never embedded again.

The index is sharded by tier, so a tier constraint narrows the search before the nearest-neighbour
step. A shard is searched exactly (numpy) while it is small and through an HNSW graph (hnswlib)
once it grows past ``exact_below`` vectors. Every public method holds one lock, so agents may
join, change and leave while tasks are being routed from other threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleetmind._extras import require
from fleetmind.agents import AgentProfile, Tier
from fleetmind.errors import StoreError
from fleetmind.orchestrator._embedding import Embedder


def capability_texts(profile: AgentProfile) -> list[tuple[str, str]]:
    """The texts an agent is matched by, as ``(what, text)``: agent, each skill, each example."""
    skill_names = ", ".join(s.name for s in profile.skills)
    head = f"{profile.display_name}. {profile.description}".strip()
    texts = [("agent", f"{head} Skills: {skill_names}." if skill_names else head)]
    for skill in profile.skills:
        tags = f" ({', '.join(skill.tags)})" if skill.tags else ""
        texts.append((f"skill:{skill.name}", f"{skill.name}: {skill.description}{tags}".strip()))
        for example in skill.examples:
            texts.append((f"example:{skill.name}", example))
    return texts


def texts_hash(texts: Sequence[tuple[str, str]]) -> str:
    """A fingerprint of an agent's capability texts (what decides whether to re-embed)."""
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CapabilityMatch:
    """How well one agent matches a query: its best similarity, which text gave it, and the
    second-best similarity among its texts (``support``).

    Support is what tells a focused agent from a lucky one: a subtask that matches two of an
    agent's skills or examples is more likely that agent's than one that brushes a single
    example of it. An agent with one text supports itself; at HNSW scale an agent's second
    text may be outside the fetched neighbours, and then it also counts the best once more.
    """

    agent_id: str
    similarity: float
    via: str
    support: float = 0.0


@dataclass
class _AgentEntry:
    version: int
    tier: str
    digest: str
    labels: list[int]
    kinds: list[str]


class _Shard:
    """The vectors of one tier: exact search while small, HNSW beyond ``exact_below``."""

    def __init__(self, dimension: int, exact_below: int, ef: int, m: int, ef_construction: int):
        self.dimension = dimension
        self.exact_below = exact_below
        self.ef, self.m, self.ef_construction = ef, m, ef_construction
        self.vectors = np.zeros((0, dimension), dtype=np.float32)
        self.labels = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self.size = 0  # rows used in vectors/labels/alive
        self.live = 0
        self.row_of: dict[int, int] = {}
        self.hnsw: Any = None

    def add(self, labels: Sequence[int], vectors: np.ndarray) -> None:
        needed = self.size + len(labels)
        if needed > len(self.vectors):
            capacity = max(needed, 2 * len(self.vectors), 64)
            self.vectors = _grow(self.vectors, capacity)
            self.labels = _grow(self.labels, capacity)
            self.alive = _grow(self.alive, capacity)
        rows = range(self.size, needed)
        self.vectors[self.size : needed] = vectors
        self.labels[self.size : needed] = labels
        self.alive[self.size : needed] = True
        for row, label in zip(rows, labels, strict=True):
            self.row_of[label] = row
        self.size = needed
        self.live += len(labels)
        if self.hnsw is not None:
            self._hnsw_add(np.asarray(labels), vectors)
        elif self.live >= self.exact_below:
            self._build_hnsw()

    def remove(self, labels: Iterable[int]) -> None:
        for label in labels:
            row = self.row_of.pop(label, None)
            if row is None:
                continue
            self.alive[row] = False
            self.live -= 1
            if self.hnsw is not None:
                self.hnsw.mark_deleted(label)

    def _build_hnsw(self) -> None:
        # Only shards that outgrow exact search need the graph library.
        require("hnswlib", "orchestrator", "a capability index this large (an HNSW graph)")
        import hnswlib

        live_rows = np.flatnonzero(self.alive[: self.size])
        index = hnswlib.Index(space="ip", dim=self.dimension)
        index.init_index(
            max_elements=max(2 * len(live_rows), 1024),
            M=self.m,
            ef_construction=self.ef_construction,
            allow_replace_deleted=False,
        )
        index.set_ef(self.ef)
        if len(live_rows):
            index.add_items(self.vectors[live_rows], self.labels[live_rows])
        self.hnsw = index

    def _hnsw_add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        index = self.hnsw
        if index.get_current_count() + len(labels) > index.get_max_elements():
            index.resize_index(
                max(2 * index.get_max_elements(), index.get_current_count() + len(labels))
            )
        index.add_items(vectors, labels)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and similarities of the ``k`` nearest live vectors."""
        k = min(k, self.live)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.hnsw is not None:
            self.hnsw.set_ef(max(self.ef, k))
            labels, distances = self.hnsw.knn_query(query, k=k)
            return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)
        sims = self.vectors[: self.size] @ query
        sims = np.where(self.alive[: self.size], sims, -np.inf)
        top = np.argpartition(-sims, k - 1)[:k] if k < self.size else np.arange(self.size)
        top = top[np.argsort(-sims[top])]
        top = top[np.isfinite(sims[top])]
        return self.labels[top], sims[top].astype(np.float32)


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    shape = (capacity, *array.shape[1:])
    grown = np.zeros(shape, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class CapabilityIndex:
    """Searchable capability vectors of a fleet's agents, sharded by tier.

    Args:
        embedder: Turns capability texts and queries into vectors.
        exact_below: A shard is searched exactly until it holds this many vectors.
        ef: HNSW search breadth (higher: better recall, slower).
        m: HNSW graph degree.
        ef_construction: HNSW build breadth.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        exact_below: int = 4096,
        ef: int = 64,
        m: int = 16,
        ef_construction: int = 100,
    ) -> None:
        self.embedder = embedder
        self._params = (exact_below, ef, m, ef_construction)
        self._shards = {tier.value: self._new_shard() for tier in Tier}
        self._agents: dict[str, _AgentEntry] = {}
        self._owner: dict[int, tuple[str, str]] = {}  # label -> (agent id, which text)
        self._next_label = 0
        self._agents_per_tier: dict[str, int] = dict.fromkeys(self._shards, 0)
        self._lock = threading.RLock()

    def _new_shard(self) -> _Shard:
        return _Shard(self.embedder.dimension, *self._params)

    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    @property
    def vector_count(self) -> int:
        """Live vectors over every shard."""
        return sum(s.live for s in self._shards.values())

    def version_of(self, agent_id: str) -> int | None:
        """The profile version whose vectors the index holds for an agent."""
        entry = self._agents.get(agent_id)
        return entry.version if entry else None

    def upsert(self, profiles: Iterable[AgentProfile]) -> list[str]:
        """Add agents or replace changed ones; texts are embedded in one batch.

        Returns:
            The ids whose vectors were (re)computed; unchanged profiles are skipped.
        """
        pending: list[tuple[AgentProfile, list[tuple[str, str]], str]] = []
        with self._lock:
            for profile in profiles:
                texts = capability_texts(profile)
                digest = texts_hash(texts)
                entry = self._agents.get(profile.id)
                if entry is not None and entry.digest == digest and entry.tier == profile.tier:
                    entry.version = profile.version
                    continue
                pending.append((profile, texts, digest))
        if not pending:
            return []
        vectors = self.embedder.embed([text for _, texts, _ in pending for _, text in texts])
        with self._lock:
            offset = 0
            for profile, texts, digest in pending:
                rows = vectors[offset : offset + len(texts)]
                offset += len(texts)
                self._place(profile.id, profile.version, profile.tier.value, digest, texts, rows)
        return [p.id for p, _, _ in pending]

    def add_vectors(
        self, agent_id: str, tier: Tier | str, vectors: np.ndarray, *, version: int = 1
    ) -> None:
        """Index precomputed vectors for an agent (bulk loads and benchmarks)."""
        kinds = [f"vector:{i}" for i in range(len(vectors))]
        with self._lock:
            texts = list(zip(kinds, kinds, strict=True))
            self._place(agent_id, version, Tier(tier).value, "", texts, vectors)

    def add_many(self, agent_ids: Sequence[str], tier: Tier | str, vectors: np.ndarray) -> None:
        """Index one precomputed vector per agent, in bulk (one HNSW insert for all)."""
        tier_value = Tier(tier).value
        with self._lock:
            for agent_id in agent_ids:
                self._drop(agent_id)
            first = self._next_label
            labels = list(range(first, first + len(agent_ids)))
            self._next_label += len(agent_ids)
            for agent_id, label in zip(agent_ids, labels, strict=True):
                self._agents[agent_id] = _AgentEntry(1, tier_value, "", [label], ["agent"])
                self._owner[label] = (agent_id, "agent")
            self._agents_per_tier[tier_value] += len(agent_ids)
            self._shards[tier_value].add(labels, np.asarray(vectors, dtype=np.float32))

    def _place(
        self,
        agent_id: str,
        version: int,
        tier: str,
        digest: str,
        texts: Sequence[tuple[str, str]],
        vectors: np.ndarray,
    ) -> None:
        self._drop(agent_id)
        labels = list(range(self._next_label, self._next_label + len(texts)))
        self._next_label += len(texts)
        kinds = [kind for kind, _ in texts]
        self._agents[agent_id] = _AgentEntry(version, tier, digest, labels, kinds)
        self._agents_per_tier[tier] += 1
        for label, kind in zip(labels, kinds, strict=True):
            self._owner[label] = (agent_id, kind)
        self._shards[tier].add(labels, np.asarray(vectors, dtype=np.float32))

    def remove(self, agent_id: str) -> bool:
        """Remove an agent's vectors; False if it was not indexed."""
        with self._lock:
            return self._drop(agent_id)

    def _drop(self, agent_id: str) -> bool:
        entry = self._agents.pop(agent_id, None)
        if entry is None:
            return False
        self._agents_per_tier[entry.tier] -= 1
        self._shards[entry.tier].remove(entry.labels)
        for label in entry.labels:
            self._owner.pop(label, None)
        return True

    def embed_query(self, text: str) -> np.ndarray:
        """A query text as a vector."""
        vector: np.ndarray = self.embedder.embed([text])[0]
        return vector

    def search(
        self,
        query: np.ndarray | str,
        k: int = 10,
        *,
        tiers: Iterable[Tier | str] | None = None,
    ) -> list[CapabilityMatch]:
        """The ``k`` agents whose best capability vector is most similar to the query."""
        vector = self.embed_query(query) if isinstance(query, str) else query
        wanted = [Tier(t).value for t in tiers] if tiers is not None else list(self._shards)
        matches: list[CapabilityMatch] = []
        with self._lock:
            for tier in wanted:
                matches.extend(self._search_shard(tier, vector, k))
        return sorted(matches, key=lambda m: -m.similarity)[:k]

    def _search_shard(self, tier: str, vector: np.ndarray, k: int) -> list[CapabilityMatch]:
        """The ``k`` best agents of one tier, each with its best and second-best similarity."""
        shard = self._shards[tier]
        agents_here = self._agents_per_tier[tier]
        if not agents_here:
            return []
        # Several vectors may belong to one agent: fetch enough vectors for k agents.
        fetch = k * max(1, math.ceil(shard.live / agents_here))
        while True:
            best: dict[str, tuple[float, str]] = {}
            second: dict[str, float] = {}
            labels, sims = shard.search(vector, fetch)
            for label, sim in zip(labels.tolist(), sims.tolist(), strict=True):
                owner = self._owner.get(label)
                if owner is None:
                    continue
                agent_id, via = owner
                current = best.get(agent_id)
                if current is None:
                    best[agent_id] = (sim, via)
                elif sim > current[0]:
                    second[agent_id] = current[0]
                    best[agent_id] = (sim, via)
                elif sim > second.get(agent_id, -math.inf):
                    second[agent_id] = sim
            if len(best) >= k or fetch >= shard.live:
                break
            fetch *= 4
        return [
            CapabilityMatch(agent_id, float(sim), via, float(second.get(agent_id, sim)))
            for agent_id, (sim, via) in best.items()
        ]

    # Persistence -----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write the index beside the store: vectors per shard and the agent table."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with self._lock:
                meta = {
                    "model": self.embedder.name,
                    "dimension": self.embedder.dimension,
                    "next_label": self._next_label,
                    "agents": {
                        agent_id: {
                            "version": e.version,
                            "tier": e.tier,
                            "digest": e.digest,
                            "labels": e.labels,
                            "kinds": e.kinds,
                        }
                        for agent_id, e in self._agents.items()
                    },
                }
                for tier, shard in self._shards.items():
                    rows = np.flatnonzero(shard.alive[: shard.size])
                    np.save(directory / f"{tier}.vectors.npy", shard.vectors[rows])
                    np.save(directory / f"{tier}.labels.npy", shard.labels[rows])
                    hnsw_file = directory / f"{tier}.hnsw"
                    if shard.hnsw is not None:
                        shard.hnsw.save_index(str(hnsw_file))
                    elif hnsw_file.exists():
                        hnsw_file.unlink()
                (directory / "index.json").write_text(json.dumps(meta))
        except OSError as exc:
            raise StoreError(f"cannot save the capability index to {directory}: {exc}") from exc

    @classmethod
    def load(cls, directory: str | Path, embedder: Embedder, **params: Any) -> CapabilityIndex:
        """Read an index written by :meth:`save` (an empty index if there is none)."""
        directory = Path(directory)
        index = cls(embedder, **params)
        meta_file = directory / "index.json"
        if not meta_file.exists():
            return index
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("model") != embedder.name or meta.get("dimension") != embedder.dimension:
                return index  # made with another model: start again rather than mix vectors
            for agent_id, e in meta["agents"].items():
                index._agents[agent_id] = _AgentEntry(
                    e["version"], e["tier"], e["digest"], list(e["labels"]), list(e["kinds"])
                )
                index._agents_per_tier[e["tier"]] += 1
                for label, kind in zip(e["labels"], e["kinds"], strict=True):
                    index._owner[label] = (agent_id, kind)
            index._next_label = int(meta["next_label"])
            for tier, shard in index._shards.items():
                vectors = np.load(directory / f"{tier}.vectors.npy")
                labels = np.load(directory / f"{tier}.labels.npy")
                if len(labels):
                    # Take the vectors back without building a graph from them: a saved HNSW
                    # graph is loaded below exactly as it was.
                    shard.exact_below = max(shard.exact_below, len(labels) + 1)
                    shard.add(labels.tolist(), vectors)
                    shard.exact_below = index._params[0]
                hnsw_file = directory / f"{tier}.hnsw"
                if hnsw_file.exists():
                    require("hnswlib", "orchestrator", "loading a saved capability index")
                    import hnswlib

                    loaded = hnswlib.Index(space="ip", dim=embedder.dimension)
                    loaded.load_index(str(hnsw_file), max_elements=max(2 * len(labels), 1024))
                    loaded.set_ef(shard.ef)
                    shard.hnsw = loaded
                elif shard.live >= shard.exact_below:
                    shard._build_hnsw()
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"cannot load the capability index from {directory}: {exc}") from exc
        return index

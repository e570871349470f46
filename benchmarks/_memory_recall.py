"""Recall at scale in benchmarks/memory.py: ``MemoryStore.recall`` beside exact numpy search, on
synthetic clustered vectors and on real log lines."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from _clustered import SUBSPACE, ClusteredSpace
from _harness import _progress, _rss_mb
from _memory_facts import DPKG_PREFIX, FLEET_PREFIX, MOSQUITTO_PREFIX, POSTGRES_PREFIX
from _memory_logs import LogText

# ---------------------------------------------------------------------------------------------
# Recall at scale: MemoryStore.recall vs exact numpy search
# ---------------------------------------------------------------------------------------------

DIMENSION = 768
QUERY_SUBSPACE_SIGMA = 0.06
QUERY_ISOTROPIC_SIGMA = 0.006
K = 10
WARMUP = 20


class ClusteredVectors(ClusteredSpace):
    """Clustered, low-rank unit vectors shaped like sentence embeddings (the generator of
    routing_scale.py): a random 48-dimensional subspace of R^768, round(2 sqrt(n)) centres with
    log-normal popularity, Gaussian spread around them, small isotropic noise, normalised."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n, seed, DIMENSION)
        self.rng = np.random.default_rng([seed, n, 1])

    def draw(self, count: int) -> np.ndarray:
        return self._draw(count, self.rng)

    def perturb(self, vectors: np.ndarray) -> np.ndarray:
        """Copies moved a little, in the subspace and off it (cosine ~0.9 to the original)."""
        rng = self.rng
        count = len(vectors)
        moved = vectors + QUERY_SUBSPACE_SIGMA * (
            rng.standard_normal((count, SUBSPACE), dtype=np.float32) @ self.basis
        )
        moved += QUERY_ISOTROPIC_SIGMA * rng.standard_normal((count, DIMENSION), dtype=np.float32)
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        return moved


def _ms(samples_s: Sequence[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples_s, dtype=np.float64), [50, 99]) * 1e3
    return round(float(p50), 4), round(float(p99), 4)


def exact_top(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The baseline: every inner product, a partial sort, a sort of the k best (rows)."""
    sims = matrix @ query
    k = min(k, len(sims))
    top = np.argpartition(sims, len(sims) - k)[-k:]
    return top[np.argsort(-sims[top])]


@dataclass
class LayerResult:
    layer: str
    items: int
    recall_at_10: float
    store_p50_ms: float
    store_p99_ms: float
    exact_p50_ms: float
    exact_p99_ms: float
    query_top1_similarity: float
    query_top10_similarity: float
    embed_p50_ms: float | None = None


@dataclass
class ScaleResult:
    memories: int
    data: str
    index_mode: str
    insert_s: float
    insert_us_per_item: float
    stored: int
    facts_merged: int
    rss_growth_mb: float
    bytes_per_item: int
    queries: int
    layers: list[LayerResult]


class _Recorder:
    """An embedder that remembers what it returned (for the ground truth of real texts)."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.embed_texts = embed
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embed_texts(texts)
        for text, vector in zip(texts, vectors, strict=True):
            self.vectors[text] = vector
        return vectors


def _measure_layers(
    store: Any,
    vector_of: Callable[[str], np.ndarray],
    queries: dict[str, list[str]],
    query_vector: Callable[[str], np.ndarray],
    embed_one: Callable[[str], np.ndarray] | None = None,
) -> list[LayerResult]:
    """recall@10 and latency of ``store.recall`` per layer, beside exact numpy search."""
    results = []
    for layer, texts in queries.items():
        items = list(store.items(layer=layer))
        ids = [item.id for item in items]
        matrix = np.stack([vector_of(item.text) for item in items]).astype(np.float32)
        for text in texts[:WARMUP]:
            store.recall(text, layer=layer, limit=K)
        clock = time.perf_counter
        store_times, exact_times, hits, top1, top10 = [], [], 0, [], []
        for text in texts:
            start = clock()
            found = store.recall(text, layer=layer, limit=K)
            store_times.append(clock() - start)
            vector = query_vector(text)
            start = clock()
            rows = exact_top(matrix, vector, K)
            exact_times.append(clock() - start)
            truth = {ids[r] for r in rows}
            hits += len(truth & {r.item.id for r in found})
            sims = matrix[rows] @ vector
            top1.append(float(sims[0]))
            top10.append(float(sims[-1]))
        embed_p50 = None
        if embed_one is not None:
            embed_times = []
            for text in texts:
                start = clock()
                embed_one(text)
                embed_times.append(clock() - start)
            embed_p50 = _ms(embed_times)[0]
        results.append(
            LayerResult(
                layer=layer,
                items=len(items),
                recall_at_10=round(hits / (K * len(texts)), 4),
                store_p50_ms=_ms(store_times)[0],
                store_p99_ms=_ms(store_times)[1],
                exact_p50_ms=_ms(exact_times)[0],
                exact_p99_ms=_ms(exact_times)[1],
                query_top1_similarity=round(float(np.mean(top1)), 3),
                query_top10_similarity=round(float(np.mean(top10)), 3),
                embed_p50_ms=embed_p50,
            )
        )
    return results


def _index_mode(store: Any) -> str:
    index = getattr(store, "_index", None)  # private: only to say which mode was measured
    return str(getattr(index, "mode", "?"))


def measure_scale(n: int, queries: int, seed: int) -> ScaleResult:
    """``n`` memories (half episodes, half facts) with synthetic vectors, through MemoryStore."""
    from fleetmind.memory import MemoryStore

    data = ClusteredVectors(n, seed)
    vectors = data.draw(n)
    sources: dict[str, np.ndarray] = {"memory": vectors}

    def embed(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            kind, number = text.split()
            rows.append(sources[kind][int(number)])
        return np.stack(rows)

    gc.collect()
    rss_before = _rss_mb()
    store = MemoryStore(None, embed)
    start = time.perf_counter()
    # One time for every memory: recall's recency bonus is then the same for all episodes and
    # the ranking is by similarity alone, as the exact ground truth's is.
    created = time.time() - 3600
    for i in range(n):
        if i % 2 == 0:
            store.add_episode(f"memory {i}", created_at=created)
        else:
            store.add_fact(f"memory {i}", created_at=created)
        if n >= 50_000 and (i + 1) % 25_000 == 0:
            _progress(
                f"recall: {n:,} memories: {i + 1:,} stored, {time.perf_counter() - start:.0f} s"
            )
    insert_s = time.perf_counter() - start
    rss_growth = _rss_mb() - rss_before
    by_layer: dict[str, list[str]] = {}
    stored = 0
    for layer in ("episodic", "semantic"):
        texts = [item.text for item in store.items(layer=layer)]
        stored += len(texts)
        picks = data.rng.choice(len(texts), size=queries, replace=len(texts) < queries)
        sources[f"q{layer}"] = data.perturb(np.stack([embed([texts[p]])[0] for p in picks]))
        by_layer[layer] = [f"q{layer} {j}" for j in range(queries)]
    layers = _measure_layers(
        store, lambda text: embed([text])[0], by_layer, lambda text: embed([text])[0]
    )
    result = ScaleResult(
        memories=n,
        data=f"synthetic clustered {DIMENSION}-d ({data.clusters:,} clusters)",
        index_mode=_index_mode(store),
        insert_s=round(insert_s, 2),
        insert_us_per_item=round(insert_s / n * 1e6, 1),
        stored=stored,
        facts_merged=n - stored,
        rss_growth_mb=round(rss_growth, 1),
        bytes_per_item=round(max(rss_growth, 0.0) * 2**20 / n),
        queries=queries,
        layers=layers,
    )
    store.close()
    sources.clear()
    del store, vectors
    gc.collect()
    return result


def memory_texts(logs: list[LogText], count: int, seed: int) -> list[str]:
    """Distinct log lines (timestamps off) of 30-240 characters, shuffled: real operational
    text for the end-to-end row and the remote recall."""
    prefixes = (MOSQUITTO_PREFIX, DPKG_PREFIX, POSTGRES_PREFIX, FLEET_PREFIX)
    seen: dict[str, None] = {}
    for log in logs:
        for line in log.text.splitlines():
            text = line.strip()
            for prefix in prefixes:
                text = prefix.sub("", text, count=1)
            if 30 <= len(text) <= 240:
                seen.setdefault(text, None)
    texts = list(seen)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:count]]


def build_text_store(texts: list[str], embedder: Any) -> tuple[Any, _Recorder, float]:
    """A MemoryStore of real texts (alternately an episode and a fact) embedded by ``embedder``."""
    from fleetmind.memory import MemoryStore

    recorder = _Recorder(embedder.embed)
    store = MemoryStore(None, recorder)
    start = time.perf_counter()
    for i, text in enumerate(texts):
        if i % 2 == 0:
            store.add_episode(text)
        else:
            store.add_fact(text)
    return store, recorder, time.perf_counter() - start


def measure_text_store(
    store: Any, recorder: _Recorder, insert_s: float, requested: int, queries: list[str], model: str
) -> ScaleResult:
    """End-to-end recall on real texts: the query is embedded inside each timed call."""
    embed_one = recorder.embed_texts
    layers = _measure_layers(
        store,
        lambda text: recorder.vectors[text],
        {"episodic": queries, "semantic": queries},
        lambda text: recorder.vectors[text] if text in recorder.vectors else embed_one([text])[0],
        embed_one=lambda text: embed_one([text])[0],
    )
    stored = len(list(store.items()))
    return ScaleResult(
        memories=stored,
        data=f"real log lines, {model}",
        index_mode=_index_mode(store),
        insert_s=round(insert_s, 2),
        insert_us_per_item=round(insert_s / max(stored, 1) * 1e6, 1),
        stored=stored,
        facts_merged=requested - stored,
        rss_growth_mb=0.0,
        bytes_per_item=0,
        queries=len(queries),
        layers=layers,
    )

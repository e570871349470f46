"""The memory's vector index: exact search while it is small, an HNSW graph once it is not.

Exact search over a float32 matrix is the fastest there is for a few thousand vectors and is
always right; past ``exact_below`` vectors an hnswlib graph (the library the capability index
uses) answers in well under a millisecond at 100k. Deletions mark the graph's entries deleted
and drop the row from the matrix, so a forgotten item can never be returned.
"""

from __future__ import annotations

import threading

import numpy as np

from fleetmind._extras import require


class VectorIndex:
    """Unit vectors by string id; ``search`` returns the most similar (cosine) first.

    Args:
        exact_below: Use exact search while there are fewer vectors than this.
        ef: HNSW search breadth (at least the number asked for).
    """

    def __init__(self, *, exact_below: int = 4096, ef: int = 96) -> None:
        self.exact_below = exact_below
        self.ef = ef
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._buffer = np.zeros((0, 0), dtype=np.float32)
        """Rows ``[:len(self)]`` hold the vectors; the rest is room to grow (doubling)."""
        self._graph: object | None = None
        self._labels: dict[str, int] = {}
        self._by_label: dict[int, str] = {}
        self._next_label = 0

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def _matrix(self) -> np.ndarray:
        return self._buffer[: len(self._ids)]

    def _append_row(self, vector: np.ndarray) -> None:
        n = len(self._ids)
        if self._buffer.size == 0:
            self._buffer = np.zeros((64, vector.shape[0]), dtype=np.float32)
        elif n >= self._buffer.shape[0]:
            grown = np.zeros((2 * self._buffer.shape[0], self._buffer.shape[1]), dtype=np.float32)
            grown[:n] = self._buffer[:n]
            self._buffer = grown
        self._buffer[n] = vector

    @property
    def mode(self) -> str:
        """``exact`` or ``hnsw``: how the next search runs."""
        return "hnsw" if len(self._ids) >= self.exact_below else "exact"

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add (or replace) vectors."""
        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows[None, :]
        with self._lock:
            for item_id, vector in zip(ids, rows, strict=True):
                if item_id in self._row:
                    self._buffer[self._row[item_id]] = vector
                    if self._graph is not None:
                        self._graph_remove([item_id])
                        self._graph_add([item_id], vector[None, :])
                    continue
                self._append_row(vector)
                self._row[item_id] = len(self._ids)
                self._ids.append(item_id)
                if self._graph is not None:
                    self._graph_add([item_id], vector[None, :])

    def vector(self, item_id: str) -> np.ndarray:
        """The stored vector of ``item_id`` (a copy)."""
        with self._lock:
            row: np.ndarray = self._buffer[self._row[item_id]].copy()
            return row

    def remove(self, ids: set[str]) -> None:
        """Remove vectors for good."""
        with self._lock:
            gone = [i for i in ids if i in self._row]
            if not gone:
                return
            keep = [k for k, item_id in enumerate(self._ids) if item_id not in ids]
            kept = self._matrix[keep]
            self._buffer = kept.copy() if keep else np.zeros((0, 0), dtype=np.float32)
            self._ids = [self._ids[k] for k in keep]
            self._row = {item_id: k for k, item_id in enumerate(self._ids)}
            if self._graph is not None:
                self._graph_remove(gone)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` most similar ids with their cosine similarity, best first."""
        with self._lock:
            n = len(self._ids)
            if n == 0 or k <= 0:
                return []
            query = np.asarray(vector, dtype=np.float32)
            if n < self.exact_below:
                sims = self._matrix @ query
                top = np.argpartition(-sims, min(k, n) - 1)[: min(k, n)] if k < n else np.arange(n)
                top = top[np.argsort(-sims[top])]
                return [(self._ids[i], float(sims[i])) for i in top]
            graph = self._ensure_graph()
            wanted = min(k, n)
            graph.set_ef(max(self.ef, wanted))  # type: ignore[attr-defined]
            labels, distances = graph.knn_query(query, k=wanted)  # type: ignore[attr-defined]
            return [
                (self._by_label[int(label)], 1.0 - float(distance))
                for label, distance in zip(labels[0], distances[0], strict=True)
            ]

    def exact(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Exact search, whatever the size (the benchmark's baseline, recall's ground truth)."""
        with self._lock:
            if not self._ids:
                return []
            sims = self._matrix @ np.asarray(vector, dtype=np.float32)
            k = min(k, len(self._ids))
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top])]
            return [(self._ids[i], float(sims[i])) for i in top]

    # The graph -------------------------------------------------------------------------------

    def _ensure_graph(self) -> object:
        if self._graph is None:
            require("hnswlib", "orchestrator", "a memory this large (an HNSW graph)")
            import hnswlib

            dim = self._matrix.shape[1]
            graph = hnswlib.Index(space="cosine", dim=dim)
            graph.init_index(
                max_elements=max(2 * len(self._ids), 1024),
                M=16,
                ef_construction=100,
                allow_replace_deleted=True,
            )
            self._graph = graph
            self._labels, self._by_label, self._next_label = {}, {}, 0
            self._graph_add(list(self._ids), self._matrix)
        return self._graph

    def _graph_add(self, ids: list[str], vectors: np.ndarray) -> None:
        graph = self._graph
        assert graph is not None
        needed = self._next_label + len(ids)
        capacity = graph.get_max_elements()  # type: ignore[attr-defined]
        if needed > capacity:
            graph.resize_index(max(needed, 2 * capacity))  # type: ignore[attr-defined]
        labels = np.arange(self._next_label, self._next_label + len(ids))
        self._next_label += len(ids)
        for item_id, label in zip(ids, labels, strict=True):
            self._labels[item_id] = int(label)
            self._by_label[int(label)] = item_id
        graph.add_items(vectors, labels)  # type: ignore[attr-defined]

    def _graph_remove(self, ids: list[str]) -> None:
        graph = self._graph
        assert graph is not None
        for item_id in ids:
            label = self._labels.pop(item_id, None)
            if label is not None:
                graph.mark_deleted(label)  # type: ignore[attr-defined]
                self._by_label.pop(label, None)

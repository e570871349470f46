"""Text embeddings for capability routing, loaded lazily and cached on disk.

The model (all-mpnet-base-v2 by default, all-MiniLM-L6-v2 as the light option; see
``_embedding_models``) is loaded offline, once per process and model, on the first text that
needs an embedding: importing sentence-transformers costs seconds and hundreds of MB, so nothing
that does not embed (the device runtime, most CLI commands) ever pays for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fleetmind._extras import require
from fleetmind.errors import StoreError
from fleetmind.orchestrator._embedding_models import (
    LIGHT_MODEL,
    EmbeddingModel,
    embedding_model,
)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors (one row per text)."""

    name: str
    dimension: int
    refusal_similarity: float | None
    """The similarity below which routing refuses, calibrated for this model (None: unknown,
    the router's default applies)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as a ``float32`` array of shape ``(len(texts), dimension)``."""
        ...


_MODELS_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}
_LOAD_WATCHERS: list[Callable[[str], contextlib.AbstractContextManager[object]]] = []


def watch_model_loads(watcher: Callable[[str], contextlib.AbstractContextManager[object]]) -> None:
    """Have ``watcher(what)`` wrap every embedding-model load of this process from now on, in
    whichever thread it happens: a first load takes seconds to a minute, and the command line
    shows it while it waits."""
    if watcher not in _LOAD_WATCHERS:
        _LOAD_WATCHERS.append(watcher)


def _load_model(model: EmbeddingModel) -> Any:
    """The sentence-transformers model, loaded once per process (thread-safe)."""
    with _MODELS_LOCK:
        loaded = _LOADED.get(model.name)
        if loaded is not None:
            return loaded
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        what = (
            f"loading the {model.name} embedding model"
            if model.ready()
            else f"assembling the {model.name} embedding model (first use; kept for next time)"
        )
        with contextlib.ExitStack() as watching:
            for watcher in _LOAD_WATCHERS:
                watching.enter_context(watcher(what))
            # Importing sentence-transformers (and torch) is most of the wait.
            require("sentence_transformers", "orchestrator", "semantic routing and memory search")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            folder = model.locate()
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            loaded = SentenceTransformer(str(folder), device="cpu")
        _LOADED[model.name] = loaded
        return loaded


class SentenceEmbedder:
    """A packaged sentence-transformers model on the CPU, batched; it loads on the first call.

    Args:
        model: A model name or alias (``all-mpnet-base-v2``/``mpnet``,
            ``all-MiniLM-L6-v2``/``minilm``); default ``FLEETMIND_EMBEDDING_MODEL``, else
            all-mpnet-base-v2.
        batch_size: Texts per forward pass.
    """

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        self.model = embedding_model(model)
        self.name = self.model.name
        self.dimension = self.model.dimension
        self.refusal_similarity: float | None = self.model.refusal_similarity
        self._batch_size = batch_size

    @property
    def loaded(self) -> bool:
        """Whether this process has the model in memory already (embedding will not wait)."""
        return self.model.name in _LOADED

    def load(self) -> None:
        """Load the model now (assembling it into the cache the first time)."""
        _load_model(self.model)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = _load_model(self.model).encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class MiniLMEmbedder(SentenceEmbedder):
    """all-MiniLM-L6-v2: the light model (384 dimensions), for small machines."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__(LIGHT_MODEL, batch_size)


class CachedEmbedder:
    """Wraps an embedder with a SQLite cache keyed by a hash of the model name and the text.

    A fleet that restarts with unchanged agents embeds nothing again; only new or changed texts
    reach the model, in one batch.
    """

    def __init__(self, inner: Embedder, path: str | Path) -> None:
        self._inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.refusal_similarity = inner.refusal_similarity
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
                " WITHOUT ROWID"
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the embedding cache at {self.path}: {exc}") from exc
        self.hits = 0
        self.misses = 0

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = self._inner.embed([texts[i] for i in missing])
            rows = [(keys[i], fresh[j].astype(np.float32).tobytes()) for j, i in enumerate(missing)]
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            for j, i in enumerate(missing):
                found[keys[i]] = fresh[j]
        if not keys:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def close(self) -> None:
        """Close the cache file."""
        self._db.close()

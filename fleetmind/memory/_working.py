"""Working memory: what one agent keeps in mind for one task, within a token budget.

Entries arrive in order (the goal, messages, tool outputs, decisions, errors). When adding one
would pass the budget, the memory compresses itself: extractively by default (pinned entries —
the goal, errors, decisions, identifiers — survive; the rest is kept by relevance to the goal,
long entries are compressed line by line first), or with a summary from a model when one is
given. A long tool output enters as a compressed summary with a pointer to its full text, which
``full_text`` returns as long as the memory lives (and the episodic store keeps, when there is
one).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fleetmind.errors import ConfigError
from fleetmind.memory._compress import PIN_PATTERN, compress
from fleetmind.memory._tokens import Tokenizer, default_tokenizer

PINNED_KINDS = frozenset({"goal", "error", "decision"})
"""Kinds of entry that compression never drops."""

Summarizer = Callable[[str, str, int], Awaitable[str]]
"""``(text, goal, budget_tokens) -> summary``: an LLM summary, when a model is configured."""


@dataclass
class WorkingEntry:
    """One thing in working memory."""

    id: int
    kind: str
    text: str
    tokens: int
    pinned: bool
    pointer: str | None = None
    """Where the full text is, when ``text`` is a summary of it."""


@dataclass
class WorkingMemory:
    """A token-bounded working memory for one agent and one task.

    Args:
        budget_tokens: The most tokens the memory may hold.
        goal: What the agent is trying to do (pinned; relevance is measured against it).
        tool_output_tokens: Tool outputs longer than this enter as a compressed summary.
        tokenizer: Counts tokens (default: the packaged offline tokenizer).
        summarizer: Summarises with a model instead of extractively (``acompact``).
    """

    budget_tokens: int = 4000
    goal: str = ""
    tool_output_tokens: int = 400
    tokenizer: Tokenizer = field(default_factory=default_tokenizer)
    summarizer: Summarizer | None = None
    entries: list[WorkingEntry] = field(default_factory=list)
    _full: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if self.budget_tokens < 32:
            raise ConfigError(
                f"a working memory needs a budget of at least 32 tokens, not {self.budget_tokens}"
            )
        if self.goal:
            self._append("goal", self.goal, pinned=True)

    # Adding --------------------------------------------------------------------------------

    @property
    def tokens(self) -> int:
        """Tokens held now."""
        return sum(e.tokens for e in self.entries)

    def add(self, text: str, kind: str = "message", *, pin: bool | None = None) -> WorkingEntry:
        """Add an entry (compressing the memory first when it would not fit).

        ``pin``: keep it through compression (default: for goals, errors and decisions, and
        for text that names a failure).
        """
        pinned = (
            pin if pin is not None else (kind in PINNED_KINDS or bool(PIN_PATTERN.search(text)))
        )
        entry = self._append(kind, text, pinned=pinned)
        if self.tokens > self.budget_tokens:
            self.compact()
        return entry

    def add_tool_output(self, tool: str, output: str) -> WorkingEntry:
        """A tool's output: as it is when short, else a compressed summary with a pointer."""
        tokens = self.tokenizer.count(output)
        if tokens <= self.tool_output_tokens:
            return self.add(f"{tool}: {output}", "tool")
        pointer = f"tool-output:{len(self._full) + 1}"
        self._full[pointer] = output
        summary = compress(
            output, self.tool_output_tokens, goal=self.goal, count=self.tokenizer.count
        ).text
        entry = self.add(
            f"{tool} ({tokens} tokens, summarised; full text: {pointer}):\n{summary}", "tool"
        )
        entry.pointer = pointer
        return entry

    def full_text(self, pointer: str) -> str:
        """The full text a summary points to."""
        try:
            return self._full[pointer]
        except KeyError:
            raise KeyError(f"no full text kept under {pointer!r}") from None

    def context(self) -> str:
        """The memory as text for a prompt, oldest first."""
        return "\n\n".join(e.text for e in self.entries)

    # Compression ---------------------------------------------------------------------------

    def compact(self) -> int:
        """Fit the memory in its budget extractively; the number of tokens freed.

        Long unpinned entries are compressed line by line first; then unpinned entries go,
        least relevant to the goal first; pinned entries are compressed last, never dropped.
        """
        before = self.tokens
        if before <= self.budget_tokens:
            return 0
        share = self.budget_tokens / before
        for entry in sorted(self.entries, key=lambda e: -e.tokens):
            if self.tokens <= self.budget_tokens:
                break
            if entry.pinned or entry.tokens < 64:
                continue
            self._shrink(entry, max(32, int(entry.tokens * share)))
        for entry in sorted(
            (e for e in self.entries if not e.pinned), key=lambda e: (self._relevance(e), e.id)
        ):
            if self.tokens <= self.budget_tokens:
                break
            self.entries.remove(entry)
        for entry in sorted((e for e in self.entries if e.pinned), key=lambda e: -e.tokens):
            if self.tokens <= self.budget_tokens:
                break
            if entry.kind != "goal":
                room = self.budget_tokens - (self.tokens - entry.tokens)
                self._shrink(entry, max(16, min(entry.tokens // 2, room)))
        return before - self.tokens

    async def acompact(self) -> int:
        """Fit the memory in its budget with the summarizer (extractively without one): the
        unpinned entries become one summary entry."""
        if self.summarizer is None:
            return self.compact()
        before = self.tokens
        if before <= self.budget_tokens:
            return 0
        loose = [e for e in self.entries if not e.pinned]
        if not loose:
            return self.compact()
        room = self.budget_tokens - sum(e.tokens for e in self.entries if e.pinned)
        text = "\n\n".join(e.text for e in loose)
        summary = await self.summarizer(text, self.goal, max(32, room))
        self.entries = [e for e in self.entries if e.pinned]
        self._append("summary", summary, pinned=False)
        if self.tokens > self.budget_tokens:
            self.compact()
        return before - self.tokens

    def _shrink(self, entry: WorkingEntry, budget: int) -> None:
        header, body = "", entry.text
        if entry.pointer is not None:  # its first line says where the full text is: kept
            header, _, body = entry.text.partition("\n")
            budget -= self.tokenizer.count(header)
        result = compress(body, max(1, budget), goal=self.goal, count=self.tokenizer.count)
        text = f"{header}\n{result.text}" if header else result.text
        tokens = self.tokenizer.count(text)
        if result.text.strip() and tokens < entry.tokens:
            entry.text = text
            entry.tokens = tokens

    def _relevance(self, entry: WorkingEntry) -> float:
        if not self.goal:
            return 0.0
        goal = set(self.goal.lower().split())
        words = set(entry.text.lower().split())
        return len(goal & words) / (1 + len(goal))

    def _append(self, kind: str, text: str, *, pinned: bool) -> WorkingEntry:
        entry = WorkingEntry(next(self._ids), kind, text, self.tokenizer.count(text), pinned)
        self.entries.append(entry)
        return entry

"""An LLM agent's working memory: its conversation, kept within a token budget.

A step loop's conversation grows with every tool result; left alone it overflows the model's
context or pays for the same old tool output at every step. Two rules keep it bounded:

- A long tool output enters as an extractive summary (``compress``: errors and identifiers
  pinned, what matters to the goal kept) with a pointer; the full text stays in the loop's
  state, and the model can read it a page at a time with the ``read_output`` tool.
- Before a step whose conversation is over budget, the older turns become one note: the
  instructions, the request and the latest turn stay as they are, the turns between are put
  in a :class:`WorkingMemory` (errors and decisions pinned) and compacted to the room left,
  or summarised by a model when the agent is given one for that.

Messages are OpenAI chat dicts, as the loop's checkpointed state holds them. A turn (an
assistant message and the tool replies to its calls) is kept or folded whole, so every
tool reply still answers a call the model made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fleetmind.memory import Tokenizer, WorkingMemory, compress, default_tokenizer

READ_OUTPUT_TOOL = "read_output"
NOTE_HEADER = "Earlier steps, compressed to fit the context:"
_PAGE_LINES = 80

Summarize = Callable[[str, str, int], Awaitable[str]]
"""``(text, goal, budget_tokens) -> summary`` with a model."""

READ_OUTPUT_SCHEMA = {
    "type": "function",
    "function": {
        "name": READ_OUTPUT_TOOL,
        "description": (
            "Read the full text of a tool output that was shown summarised, a page of lines "
            "at a time."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "pointer": {"type": "string", "description": "e.g. tool-output:1"},
                "first_line": {"type": "integer", "minimum": 1, "default": 1},
            },
            "required": ["pointer"],
        },
    },
}


def message_tokens(message: dict[str, Any], tokenizer: Tokenizer) -> int:
    """A chat message's tokens: its text and its tool calls' names and arguments."""
    count = tokenizer.count(str(message.get("content") or "")) + 4
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        count += tokenizer.count(f"{function.get('name', '')} {function.get('arguments', '')}")
    return count


class Conversation:
    """Keeps an agent's conversation within ``budget_tokens``.

    Args:
        budget_tokens: The most tokens the conversation sent to the model may hold.
        tool_output_tokens: Tool outputs longer than this enter summarised.
        summarize: Summarises folded turns with a model (extractive without one).
        tokenizer: Counts tokens (the packaged offline tokenizer by default).
    """

    def __init__(
        self,
        budget_tokens: int,
        *,
        tool_output_tokens: int,
        summarize: Summarize | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        self.budget_tokens = budget_tokens
        self.tool_output_tokens = tool_output_tokens
        self.summarize = summarize
        self.tokenizer = tokenizer or default_tokenizer()

    def tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        return sum(message_tokens(m, self.tokenizer) for m in messages)

    # Tool outputs ------------------------------------------------------------------------

    def tool_output(
        self, tool: str, text: str, goal: str, outputs: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        """What the model sees of a tool's output, and the kept full texts (a long output is
        kept under a new pointer and shown summarised)."""
        size = self.tokenizer.count(text)
        if size <= self.tool_output_tokens:
            return text, outputs
        pointer = f"tool-output:{len(outputs) + 1}"
        summary = compress(
            text, self.tool_output_tokens, goal=goal, count=self.tokenizer.count
        ).text
        if not summary.strip():  # one long line (a JSON value, say): its beginning
            summary = self._head(text, self.tool_output_tokens) + " …"
        shown = (
            f"[{tool} returned {size} tokens, {len(text.splitlines())} lines; shown summarised. "
            f"Full text: {READ_OUTPUT_TOOL}(pointer={pointer!r})]\n{summary}"
        )
        return shown, {**outputs, pointer: text}

    def _head(self, text: str, budget: int) -> str:
        """The longest beginning of ``text`` within ``budget`` tokens."""
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if self.tokenizer.count(text[:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        return text[:low]

    @staticmethod
    def read_output(outputs: dict[str, str], arguments: dict[str, Any]) -> tuple[bool, str]:
        """A page of a kept full text (``read_output``'s answer): ok, text."""
        pointer = str(arguments.get("pointer", ""))
        if pointer not in outputs:
            known = ", ".join(outputs) or "none"
            return False, f"no full text under {pointer!r} (kept: {known})"
        try:
            first = max(1, int(arguments.get("first_line", 1)))
        except (TypeError, ValueError):
            return False, "first_line must be a whole number"
        lines = outputs[pointer].splitlines()
        page = lines[first - 1 : first - 1 + _PAGE_LINES]
        last = first - 1 + len(page)
        more = f"\n[lines {first}-{last} of {len(lines)}" + (
            f"; next: first_line={last + 1}]" if last < len(lines) else "; the end]"
        )
        return True, "\n".join(page) + more

    # Fitting the conversation ------------------------------------------------------------

    async def fit(self, messages: list[dict[str, Any]], goal: str) -> list[dict[str, Any]]:
        """``messages`` within the budget: the older turns folded into one note."""
        if self.tokens(messages) <= self.budget_tokens:
            return messages
        head_end = _head_end(messages)
        turns = _turns(messages[head_end:])
        if len(turns) < 2:
            return messages  # only the latest turn after the request: nothing to fold
        head, latest = messages[:head_end], turns[-1]
        folded = [m for turn in turns[:-1] for m in turn]
        if folded and _is_note(folded[0]):
            folded[0] = {**folded[0], "content": folded[0]["content"][len(NOTE_HEADER) + 1 :]}
        room = self.budget_tokens - self.tokens(head) - self.tokens(latest) - 16
        note = await self._note(folded, goal, max(64, room))
        return [*head, {"role": "user", "content": f"{NOTE_HEADER}\n{note}"}, *latest]

    async def _note(self, folded: list[dict[str, Any]], goal: str, room: int) -> str:
        memory = WorkingMemory(
            budget_tokens=10**9,  # gather first, then fit once
            tool_output_tokens=10**9,
            tokenizer=self.tokenizer,
            summarizer=self.summarize,
        )
        for message in folded:
            text, kind = _entry(message)
            if text:
                memory.add(text, kind)
        memory.goal = goal  # relevance is measured against it (the request holds it already)
        memory.budget_tokens = max(32, room)
        if self.summarize is not None:
            await memory.acompact()
        else:
            memory.compact()
        return memory.context()


def _head_end(messages: Sequence[dict[str, Any]]) -> int:
    """Where the fixed start ends: the instructions and the request (and recalled memory)."""
    end = 0
    while end < len(messages) and messages[end].get("role") in ("system", "user"):
        if end and _is_note(messages[end]):
            break
        end += 1
    return end


def _turns(messages: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Messages in turns: each starts at an assistant message or a user message."""
    turns: list[list[dict[str, Any]]] = []
    for message in messages:
        if message.get("role") == "tool" and turns:
            turns[-1].append(message)
        else:
            turns.append([message])
    return turns


def _is_note(message: dict[str, Any]) -> bool:
    return message.get("role") == "user" and str(message.get("content", "")).startswith(NOTE_HEADER)


def _entry(message: dict[str, Any]) -> tuple[str, str]:
    """A message as a working-memory entry: its text and its kind."""
    role = message.get("role")
    content = str(message.get("content") or "")
    if role == "tool":
        name = message.get("name") or "tool"
        kind = "error" if content.startswith("error:") else "tool"
        return f"{name} returned: {content}", kind
    if role == "assistant":
        calls = [
            f"{c.get('function', {}).get('name')}({c.get('function', {}).get('arguments', '')})"
            for c in message.get("tool_calls") or ()
        ]
        said = content.strip()
        text = "; ".join(filter(None, [said, f"called {', '.join(calls)}" if calls else ""]))
        return text, "step"
    return content, "message"

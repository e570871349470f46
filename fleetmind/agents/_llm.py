"""The seam for language models: what an LLM agent needs from a model, and nothing more.

Only the interface lives here. Implementations (an OpenAI-compatible HTTP client for device and
cloud models) and the step-level device/cloud router that chooses between two clients come with
the LLM layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation with a model."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None


@dataclass(frozen=True)
class Completion:
    """A model's answer, with what it cost."""

    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: tuple[dict[str, Any], ...] = field(default_factory=tuple)


@runtime_checkable
class LLMClient(Protocol):
    """A chat model reachable from an agent (device-sized or cloud-sized)."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[dict[str, Any]] = (),
        max_tokens: int | None = None,
    ) -> Completion:
        """Answer a conversation, optionally offering tools as JSON schemas."""
        ...

"""The seam for language models: what an agent or the planner needs from a chat model.

:class:`LLMClient` has one required method, :meth:`~LLMClient.complete`; streaming is a declared
method with a default (one chunk: the whole answer), so a user's own client (a test double, a
wrapper that records calls) needs to write only ``complete``. The OpenAI-compatible HTTP client
that speaks to llama.cpp, vLLM, Ollama and hosted APIs is :class:`OpenAICompatibleClient`.

Messages, tool calls and answers are plain frozen dataclasses; they turn into the
chat-completions JSON with :meth:`ChatMessage.to_openai`.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel

from fleetmind.errors import StructuredOutputError

OutputT = TypeVar("OutputT", bound=BaseModel)
Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call a model asked for: its id, the tool's name, and the arguments as JSON text.

    The arguments stay the text the model wrote, because models write invalid JSON at times;
    :meth:`parsed_arguments` tells what is wrong so the agent can show the model its mistake.
    """

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object.

        Raises:
            ValueError: they are not a JSON object; the message says why, in one line.
        """
        text = self.arguments.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments of {self.name} are not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments of {self.name} must be a JSON object")
        return value

    def to_openai(self) -> dict[str, Any]:
        """The call as the chat-completions API writes it."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation with a model."""

    role: Role
    content: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    """For an assistant message: the tools it asked to call."""
    tool_call_id: str | None = None
    """For a tool message: the call it answers."""

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> ChatMessage:
        """An assistant message, with the tool calls it made."""
        return cls("assistant", content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, call_id: str, content: str, name: str | None = None) -> ChatMessage:
        """A tool's answer to the call ``call_id``."""
        return cls("tool", content, name=name, tool_call_id=call_id)

    def to_openai(self) -> dict[str, Any]:
        """The message as the chat-completions API takes it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None and self.role != "tool":
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
            if not self.content:
                out["content"] = None
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> ChatMessage:
        """A message written in the chat-completions format (what :meth:`to_openai` writes)."""
        calls = tuple(
            ToolCall(
                id=str(c.get("id") or ""),
                name=str((c.get("function") or {}).get("name") or ""),
                arguments=str((c.get("function") or {}).get("arguments") or "{}"),
            )
            for c in data.get("tool_calls") or ()
        )
        return cls(
            role=data["role"],
            content=str(data.get("content") or ""),
            name=data.get("name"),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call used. ``estimated`` when the server did not say and they were counted
    from the text (about four characters a token)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )


@dataclass(frozen=True)
class Completion:
    """A model's answer, with what it cost and how long it took."""

    content: str
    model: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    """``stop``, ``length`` (cut off at max tokens), ``tool_calls``, or what the server said."""
    cost: float = 0.0
    """In the currency of the endpoint's configured prices."""
    latency_s: float = 0.0
    endpoint: str = ""
    """Which configured endpoint answered (``device``, ``edge``, ``cloud``, or a name)."""
    attempts: int = 1
    """HTTP attempts it took (more than one after retries)."""

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the conversation sent."""
        return self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        """Tokens of the answer."""
        return self.usage.completion_tokens

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut off at the token limit."""
        return self.finish_reason == "length"

    def message(self) -> ChatMessage:
        """The answer as an assistant message, to continue the conversation with."""
        return ChatMessage.assistant(self.content, self.tool_calls)


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One streamed piece of an answer: some text, or a piece of a tool call."""

    text: str = ""
    tool_index: int | None = None
    """Which tool call of the answer this piece belongs to (several may stream at once)."""
    tool_id: str | None = None
    tool_name: str | None = None
    tool_arguments: str = ""


class ChatStream(abc.ABC):
    """An answer arriving piece by piece: iterate for :class:`ChatDelta`, then read
    :attr:`completion` for the whole answer with its usage and cost."""

    streamed: bool = False
    """Whether the answer really arrived in pieces (some servers send it whole)."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[ChatDelta]: ...

    @property
    @abc.abstractmethod
    def completion(self) -> Completion:
        """The whole answer (raises ``ModelResponseInvalid`` before the stream has ended)."""


class _OneChunkStream(ChatStream):
    def __init__(self, completion: Completion) -> None:
        self._completion = completion

    async def __aiter__(self) -> AsyncIterator[ChatDelta]:
        if self._completion.content:
            yield ChatDelta(text=self._completion.content)
        for n, call in enumerate(self._completion.tool_calls):
            yield ChatDelta(
                tool_index=n, tool_id=call.id, tool_name=call.name, tool_arguments=call.arguments
            )

    @property
    def completion(self) -> Completion:
        return self._completion


class LLMClient(abc.ABC):
    """A chat model an agent or the planner can talk to.

    Implement :meth:`complete`. Override :meth:`stream` when the model can stream, and
    :meth:`aclose` when the client holds connections. ``name`` labels the client in step
    records (``device``, ``cloud``, ...); ``supports_json_schema`` says whether
    ``response_schema`` is enforced by the server (otherwise callers validate the answer).
    """

    name: str = "model"
    model_name: str = ""
    """The model's own name, when the client knows it before the first answer."""
    supports_json_schema: bool = False

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What a call with these tokens costs on this model (None: prices unknown)."""
        return None

    @abc.abstractmethod
    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] = (),
        response_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Answer a conversation.

        Args:
            messages: The conversation so far.
            tools: Tools the model may call, in the chat-completions ``tools`` format.
            tool_choice: ``auto``, ``none`` or ``required`` (the server's default when None).
            max_tokens: Longest answer, in tokens.
            temperature: Sampling temperature (the server's default when None).
            stop: Texts that end the answer.
            response_schema: A JSON Schema the answer must match, where the server can
                enforce one (see ``supports_json_schema``).

        Raises:
            ModelError: the model could not be reached, refused, or answered badly.
        """

    @asynccontextmanager
    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] = (),
    ) -> AsyncIterator[ChatStream]:
        """Answer a conversation piece by piece (``async with client.stream(...) as s``).

        Leaving the block, or cancelling the task, closes the stream. The default
        implementation has no real streaming: it yields the whole answer as one piece.
        """
        completion = await self.complete(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )
        yield _OneChunkStream(completion)

    async def structured(
        self,
        messages: Sequence[ChatMessage],
        output_type: type[OutputT],
        *,
        repair_rounds: int = 1,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> tuple[OutputT, list[Completion]]:
        """An answer parsed into ``output_type`` (a pydantic model), validated whatever the
        server does: the JSON Schema is sent as ``response_schema`` (enforced where the server
        can) and written into the conversation (for servers that cannot); an answer that does
        not validate is shown its errors and asked again, ``repair_rounds`` times.

        Returns:
            The value, and every completion it took (for their tokens and cost).

        Raises:
            StructuredOutputError: still invalid after the repair rounds.
            ModelError: the model could not be reached.
        """
        schema = output_type.model_json_schema()
        conversation = [
            *messages,
            ChatMessage.system(
                "Answer with one JSON object matching this JSON Schema, and nothing else: "
                + json.dumps(schema, separators=(",", ":"))
            ),
        ]
        completions: list[Completion] = []
        for _ in range(repair_rounds + 1):
            completion = await self.complete(
                conversation,
                max_tokens=max_tokens,
                temperature=temperature,
                response_schema=schema,
            )
            completions.append(completion)
            try:
                return output_type.model_validate(extract_json(completion.content)), completions
            except ValueError as exc:  # pydantic's ValidationError is a ValueError too
                problem = _one_line_problem(exc)
            conversation += [
                completion.message(),
                ChatMessage.user(f"That answer is not valid: {problem}. Answer again."),
            ]
        raise StructuredOutputError(
            f"the {self.name} model gave no valid {output_type.__name__} in "
            f"{repair_rounds + 1} answers; the last problem: {problem}"
        )

    async def aclose(self) -> None:  # noqa: B027 - optional, with a default that does nothing
        """Close connections the client holds (nothing by default)."""

    async def release_connections(self) -> None:  # noqa: B027 - optional, as above
        """Close open connections but stay usable, before the event loop that used them ends
        (a later ``asyncio.run`` reopens them). Nothing by default."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _one_line_problem(exc: ValueError) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        from fleetmind._validation import describe_validation_error

        return describe_validation_error(exc)
    return str(exc)


def extract_json(text: str) -> Any:
    """The JSON value in a model's answer, with prose or a code fence around it.

    Models asked for JSON add a sentence before it, wrap it in a Markdown fence, or stop half
    way. This finds the first complete JSON object or array in ``text``.

    Raises:
        ValueError: no JSON value is in the text, or it was cut off; the message says which.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for index, char in enumerate(stripped):
        if char not in "{[":
            continue
        try:
            value, _ = decoder.raw_decode(stripped, index)
        except json.JSONDecodeError:
            if _unbalanced(stripped[index:]):
                # The outermost value starts here and never ends: the answer was cut off. An
                # object nested inside it would parse, but it is not the answer.
                raise ValueError("the JSON in the answer is cut off before its end") from None
            continue  # braces in prose ("use {x} here"): the JSON comes later
        if isinstance(value, dict | list):
            return value
    if "{" in stripped or "[" in stripped:
        raise ValueError("the answer has a '{' but no valid JSON object")
    raise ValueError("the answer has no JSON object")


def _unbalanced(text: str) -> bool:
    """Whether more brackets open than close (outside strings): the text was cut off."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
    return depth > 0 or in_string

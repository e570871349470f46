"""What an MCP server may ask its client while it serves a call, in fleetmind's own terms.

A server may ask for a model's answer (``sampling/createMessage``) or for a person's answer
to a form or a link (``elicitation/create``), and may say that its tools changed
(``notifications/tools/list_changed``). :class:`~fleetmind.protocols.MCPConnection` takes
plain callbacks for these, written against the types here, so that the layers above (the
fleet's models, its agents, the terminal) answer without knowing the MCP SDK. This module
turns those callbacks into the SDK's and back, checks that a form answer fits the schema the
server asked for, and keeps a ``subscriptions/listen`` stream open on servers that deliver
list changes only that way.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mcp import Client

__all__ = [
    "ElicitationHandler",
    "ElicitationReply",
    "ElicitationRequest",
    "FormField",
    "SamplingHandler",
    "SamplingMessage",
    "SamplingReply",
    "SamplingRequest",
    "SamplingTool",
    "SamplingToolCall",
    "check_form_answer",
    "form_fields",
]

logger = logging.getLogger(__name__)

# JSON-RPC error codes (the MCP SDK's values).
_INVALID_PARAMS = -32602
_INTERNAL_ERROR = -32603

_TOOLS_CHANGED = "notifications/tools/list_changed"


@dataclass(frozen=True, slots=True)
class SamplingToolCall:
    """A tool call in a sampling conversation: the model's, which the server carries out."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class SamplingTool:
    """A tool the server offers the model during sampling (the server runs it, not fleetmind)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class SamplingMessage:
    """One turn of the conversation a server wants a model to continue.

    Attributes:
        role: Who speaks.
        text: What they say (may be empty beside tool calls or results).
        tool_calls: The calls an assistant turn made.
        tool_results: ``(call id, result text)`` pairs a user turn gives back.
    """

    role: Literal["user", "assistant"]
    text: str
    tool_calls: tuple[SamplingToolCall, ...] = ()
    tool_results: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SamplingRequest:
    """A server's request for a model's answer (``sampling/createMessage``).

    Attributes:
        server: The name of the server that asks.
        messages: The conversation, oldest first (text only).
        max_tokens: The longest answer the server wants.
        system_prompt: Instructions for the model, if the server gives any.
        temperature: Sampling temperature, if the server asks for one.
        stop_sequences: Texts that end the answer.
        model_hints: Model names (or parts of names) the server prefers, best first.
        cost_priority, speed_priority, intelligence_priority: How much the server cares
            about each, from 0 to 1, when no hint decides.
        tools: Tools the model may call (the server runs the calls and samples again).
        tool_choice: ``auto``, ``required`` or ``none`` (``auto`` when None).
    """

    server: str
    messages: tuple[SamplingMessage, ...]
    max_tokens: int
    system_prompt: str | None = None
    temperature: float | None = None
    stop_sequences: tuple[str, ...] = ()
    model_hints: tuple[str, ...] = ()
    cost_priority: float | None = None
    speed_priority: float | None = None
    intelligence_priority: float | None = None
    tools: tuple[SamplingTool, ...] = ()
    tool_choice: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingReply:
    """A model's answer to a :class:`SamplingRequest`.

    Attributes:
        text: The answer.
        model: The name of the model that gave it.
        stop_reason: ``endTurn``, ``stopSequence``, ``maxTokens`` or ``toolUse``, when known.
        tool_calls: The tools the model asks the server to call.
    """

    text: str
    model: str
    stop_reason: str | None = None
    tool_calls: tuple[SamplingToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ElicitationRequest:
    """A server's question for the user (``elicitation/create``).

    Attributes:
        server: The name of the server that asks.
        message: What it asks, in its own words.
        mode: ``form`` (answer the fields of ``schema``) or ``url`` (visit ``url``).
        schema: The requested JSON Schema: an object of flat primitive fields (form mode).
        url: Where the user should go (URL mode); the answer never passes through the client.
        elicitation_id: The server's id for a URL-mode question.
    """

    server: str
    message: str
    mode: Literal["form", "url"] = "form"
    schema: dict[str, Any] = field(default_factory=dict, hash=False)
    url: str | None = None
    elicitation_id: str | None = None


@dataclass(frozen=True, slots=True)
class ElicitationReply:
    """The answer to an :class:`ElicitationRequest`.

    Attributes:
        action: ``accept`` (the answer is in ``content``), ``decline`` (the question was
            refused) or ``cancel`` (it was dismissed without a choice).
        content: The fields' values, for an accepted form.
    """

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def decline(cls) -> ElicitationReply:
        """A refusal."""
        return cls("decline")


SamplingHandler = Callable[[SamplingRequest], Awaitable[SamplingReply]]
"""Answers a server's sampling request; an exception becomes a JSON-RPC error for the server."""

ElicitationHandler = Callable[[ElicitationRequest], Awaitable[ElicitationReply]]
"""Answers a server's question; an exception counts as ``cancel``."""


# Form schemas ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of an elicitation form, as a person or an agent fills it in.

    Attributes:
        name: The key in the answer.
        kind: ``string``, ``number``, ``integer``, ``boolean``, ``choice`` (one of
            ``options``) or ``choices`` (any number of ``options``).
        title: What to call it (the name when the schema gives no title).
        description: What it is for.
        required: Whether the answer must have it.
        default: The value the schema suggests, if any.
        options: ``(value, label)`` pairs for choices.
        format: A string's format (``email``, ``uri``, ``date``, ``date-time``).
    """

    name: str
    kind: Literal["string", "number", "integer", "boolean", "choice", "choices"]
    title: str
    description: str = ""
    required: bool = False
    default: Any = None
    options: tuple[tuple[str, str], ...] = ()
    format: str | None = None

    def parse(self, text: str) -> Any:
        """The value a typed answer stands for (a choice by its value, label or number).

        Raises:
            ValueError: The text is not a value of this field; the message says why.
        """
        text = text.strip()
        if self.kind == "string":
            return text
        if self.kind == "integer":
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a whole number") from None
        if self.kind == "number":
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
        if self.kind == "boolean":
            lowered = text.lower()
            if lowered in ("y", "yes", "true", "1"):
                return True
            if lowered in ("n", "no", "false", "0"):
                return False
            raise ValueError(f"{text!r} is not yes or no")
        if self.kind == "choice":
            return self._option(text)
        return [self._option(part) for part in text.split(",") if part.strip()]

    def _option(self, text: str) -> str:
        text = text.strip()
        for index, (value, label) in enumerate(self.options, start=1):
            if text in (value, label, str(index)):
                return value
        known = ", ".join(value for value, _ in self.options)
        raise ValueError(f"{text!r} is not one of: {known}")


def form_fields(schema: Mapping[str, Any]) -> list[FormField]:
    """The fields of a requested schema, in its order.

    Raises:
        ValueError: The schema is not an object of flat primitive fields, as MCP requires.
    """
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), Mapping):
        raise ValueError("the requested schema is not an object with properties")
    required = set(schema.get("required") or ())
    fields: list[FormField] = []
    for name, spec in schema["properties"].items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"field {name!r} has no schema")
        fields.append(_form_field(str(name), spec, name in required))
    return fields


def _form_field(name: str, spec: Mapping[str, Any], required: bool) -> FormField:
    kind = spec.get("type")
    common: dict[str, Any] = {
        "name": name,
        "title": str(spec.get("title") or name),
        "description": str(spec.get("description") or ""),
        "required": required,
        "default": spec.get("default"),
    }
    if kind == "string" and ("enum" in spec or "oneOf" in spec):
        return FormField(kind="choice", options=_options(spec, name), **common)
    if kind == "array":
        items = spec.get("items")
        if not isinstance(items, Mapping) or not ("enum" in items or "anyOf" in items):
            raise ValueError(f"field {name!r} is a list of something other than choices")
        return FormField(kind="choices", options=_options(items, name), **common)
    if kind in ("string", "number", "integer", "boolean"):
        fmt = spec.get("format") if kind == "string" else None
        return FormField(kind=kind, format=str(fmt) if fmt else None, **common)
    raise ValueError(f"field {name!r} is not a string, number, integer, boolean or choice")


def _options(spec: Mapping[str, Any], name: str) -> tuple[tuple[str, str], ...]:
    if "enum" in spec:
        values = [str(v) for v in spec["enum"]]
        names = spec.get("enumNames")
        labels = [str(n) for n in names] if isinstance(names, list) else values
        if len(labels) != len(values):
            labels = values
        return tuple(zip(values, labels, strict=True))
    listed = spec.get("oneOf", spec.get("anyOf"))
    if not isinstance(listed, list) or not all(isinstance(o, Mapping) for o in listed):
        raise ValueError(f"field {name!r} lists its choices in a form not understood")
    return tuple((str(o.get("const")), str(o.get("title") or o.get("const"))) for o in listed)


def check_form_answer(schema: Mapping[str, Any], content: Any) -> str | None:
    """``None`` when ``content`` answers the form of ``schema``, else one line saying why not."""
    import jsonschema

    try:
        fields = form_fields(schema)
    except ValueError as exc:
        return str(exc)
    if not isinstance(content, Mapping):
        return f"the answer is {type(content).__name__}, not an object of fields"
    known = {f.name for f in fields}
    extra = sorted(str(k) for k in content if k not in known)
    if extra:
        return f"the answer has fields the form does not ask for: {', '.join(extra)}"
    plain = dict(schema)
    validator_class = jsonschema.validators.validator_for(plain)
    try:
        validator_class.check_schema(plain)
    except jsonschema.SchemaError as exc:
        return f"the requested schema is invalid: {exc.message}"
    validator = validator_class(plain, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(dict(content)), key=lambda e: list(e.path))
    if not errors:
        return None
    first = errors[0]
    where = ".".join(str(p) for p in first.absolute_path)
    return f"field {where!r}: {first.message}" if where else first.message


# The SDK's side ----------------------------------------------------------------------------


def client_callbacks(
    server: str,
    *,
    sampling: SamplingHandler | None,
    elicitation: ElicitationHandler | None,
    on_tools_changed: Callable[[], None] | None,
) -> dict[str, Any]:
    """Keyword arguments for ``mcp.Client`` that route a server's requests to the handlers.

    A handler left out is not declared as a capability, so the server knows not to ask (and
    the SDK answers a server that asks anyway with a JSON-RPC error).
    """
    callbacks: dict[str, Any] = {}
    if sampling is not None:
        from mcp import types

        callbacks["sampling_callback"] = _sampling_callback(server, sampling)
        callbacks["sampling_capabilities"] = types.SamplingCapability(
            tools=types.SamplingToolsCapability()
        )
    if elicitation is not None:
        callbacks["elicitation_callback"] = _elicitation_callback(server, elicitation)
    if on_tools_changed is not None:
        callbacks["message_handler"] = _message_handler(server, on_tools_changed)
    return callbacks


async def listen_for_tool_changes(
    client: Client, stack: contextlib.AsyncExitStack, server: str
) -> None:
    """Keep a ``subscriptions/listen`` stream for tool-list changes open for the session.

    From protocol 2026-07-28 on, a server sends ``notifications/tools/list_changed`` only on
    such a stream; earlier servers send it on their own. The notifications reach the
    session's message handler either way. A server that refuses the stream is logged and
    otherwise left alone: its tools are then read once per session.
    """
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return
    tools = client.server_capabilities.tools
    if tools is None or not tools.list_changed:
        return
    try:
        await stack.enter_async_context(client.listen(tools_list_changed=True))
    except Exception as exc:  # the tools stay usable; only their changes go unnoticed
        logger.info("MCP server %r: not following its tool list: %s", server, _one_line(exc))


def _sampling_callback(server: str, handler: SamplingHandler) -> Any:
    from mcp import types

    async def callback(context: Any, params: types.CreateMessageRequestParams) -> Any:
        messages: list[SamplingMessage] = []
        for message in params.messages:
            try:
                messages.append(_sampling_message(message))
            except ValueError as exc:
                return types.ErrorData(code=_INVALID_PARAMS, message=str(exc))
        preferences = params.model_preferences
        hints = (preferences.hints if preferences else None) or []
        request = SamplingRequest(
            server=server,
            messages=tuple(messages),
            max_tokens=params.max_tokens,
            system_prompt=params.system_prompt,
            temperature=params.temperature,
            stop_sequences=tuple(params.stop_sequences or ()),
            model_hints=tuple(h.name for h in hints if h.name),
            cost_priority=preferences.cost_priority if preferences else None,
            speed_priority=preferences.speed_priority if preferences else None,
            intelligence_priority=preferences.intelligence_priority if preferences else None,
            tools=tuple(
                SamplingTool(t.name, t.description or "", dict(t.input_schema or {}))
                for t in params.tools or ()
            ),
            tool_choice=params.tool_choice.mode if params.tool_choice is not None else None,
        )
        try:
            reply = await handler(request)
        except Exception as exc:  # the server hears of it; this session goes on
            message_text = _one_line(exc)
            logger.warning("MCP server %r: sampling failed: %s", server, message_text)
            return types.ErrorData(code=_INTERNAL_ERROR, message=f"sampling failed: {message_text}")
        text = types.TextContent(type="text", text=reply.text)
        if not (params.tools or params.tool_choice is not None):
            return types.CreateMessageResult(
                role="assistant", content=text, model=reply.model, stop_reason=reply.stop_reason
            )
        blocks: list[Any] = [text] if reply.text or not reply.tool_calls else []
        blocks.extend(
            types.ToolUseContent(type="tool_use", id=c.id, name=c.name, input=dict(c.arguments))
            for c in reply.tool_calls
        )
        return types.CreateMessageResultWithTools(
            role="assistant",
            content=blocks,
            model=reply.model,
            stop_reason="toolUse" if reply.tool_calls else reply.stop_reason,
        )

    return callback


def _sampling_message(message: Any) -> SamplingMessage:
    """A sampling message in fleetmind's terms: text, tool calls and tool results only.

    Raises:
        ValueError: It holds an image, audio or another kind of content.
    """
    from mcp import types

    blocks = message.content if isinstance(message.content, list) else [message.content]
    texts: list[str] = []
    calls: list[SamplingToolCall] = []
    results: list[tuple[str, str]] = []
    for block in blocks:
        if isinstance(block, types.TextContent):
            texts.append(block.text)
        elif isinstance(block, types.ToolUseContent):
            calls.append(SamplingToolCall(block.id, block.name, dict(block.input)))
        elif isinstance(block, types.ToolResultContent):
            parts = [b.text for b in block.content if isinstance(b, types.TextContent)]
            if block.structured_content is not None and not parts:
                parts.append(json.dumps(block.structured_content))
            results.append((block.tool_use_id, "\n".join(parts)))
        else:
            raise ValueError(f"this client samples text and tool calls only, not {block.type}")
    return SamplingMessage(
        role=message.role,
        text="\n".join(texts),
        tool_calls=tuple(calls),
        tool_results=tuple(results),
    )


def _elicitation_callback(server: str, handler: ElicitationHandler) -> Any:
    from mcp import types

    async def callback(context: Any, params: types.ElicitRequestParams) -> Any:
        if isinstance(params, types.ElicitRequestURLParams):
            request = ElicitationRequest(
                server=server,
                message=params.message,
                mode="url",
                url=params.url,
                elicitation_id=params.elicitation_id,
            )
        else:
            schema = params.requested_schema
            request = ElicitationRequest(
                server=server,
                message=params.message,
                schema=schema if isinstance(schema, dict) else dict(schema),
            )
            try:
                form_fields(request.schema)
            except ValueError as exc:
                return types.ErrorData(code=_INVALID_PARAMS, message=str(exc))
        try:
            reply = await handler(request)
        except Exception as exc:  # nobody answered: the question was dismissed
            logger.warning("MCP server %r: a question went unanswered: %s", server, _one_line(exc))
            return types.ElicitResult(action="cancel")
        if reply.action != "accept":
            return types.ElicitResult(action=reply.action)
        if request.mode == "url":
            return types.ElicitResult(action="accept")
        problem = check_form_answer(request.schema, reply.content)
        if problem is not None:
            logger.warning(
                "MCP server %r: an answer that does not fit its form was declined: %s",
                server,
                problem,
            )
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content=dict(reply.content or {}))

    return callback


def _message_handler(server: str, on_tools_changed: Callable[[], None]) -> Any:
    async def handler(message: Any) -> None:
        if getattr(message, "method", None) != _TOOLS_CHANGED:
            return
        # Only noted here: the listener schedules its own work, since a request sent from
        # inside the session's message handler could wait on the handler itself.
        try:
            on_tools_changed()
        except Exception as exc:
            logger.warning("MCP server %r: tool list change not followed: %s", server, exc)

    return handler


def _one_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())

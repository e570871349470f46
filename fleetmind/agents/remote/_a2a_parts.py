"""A2A's parts and messages to fleetmind's (:mod:`fleetmind.agents._messages`) and back.

One mapping for both ends: the A2A server hands its agents the incoming message and sends
their replies with it; the A2A client turns a remote agent's answer into the same
:class:`~fleetmind.agents.Reply` a local agent would return.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from a2a.types import Message
from a2a.types import Part as A2APart
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict, ParseDict

from fleetmind.agents import DataPart, FilePart, IncomingMessage, Part, Reply, TextPart
from fleetmind.protocols import plain_json

JSON_MEDIA_TYPE = "application/json"


def part_from_a2a(part: A2APart) -> Part:
    """One A2A part as fleetmind's (a part with no content is an empty text part)."""
    metadata = _plain_dict(part.metadata) if part.HasField("metadata") else {}
    match part.WhichOneof("content"):
        case "raw":
            return FilePart(
                content=part.raw, name=part.filename, media_type=part.media_type, metadata=metadata
            )
        case "url":
            return FilePart(
                url=part.url, name=part.filename, media_type=part.media_type, metadata=metadata
            )
        case "data":
            return DataPart(plain_json(MessageToDict(part.data)), metadata=metadata)
        case _:
            return TextPart(part.text, metadata=metadata)


def part_to_a2a(part: Part) -> A2APart:
    """One fleetmind part as A2A's (data as JSON; what JSON cannot hold as its ``str``)."""
    out = A2APart()
    match part:
        case TextPart():
            out.text = part.text
        case FilePart():
            if part.content is not None:
                out.raw = part.content
            else:
                out.url = part.url or ""
            out.filename = part.name
            out.media_type = part.media_type
        case DataPart():
            out.data.CopyFrom(ParseDict(_jsonable(part.data), struct_pb2.Value()))
            out.media_type = JSON_MEDIA_TYPE
    if part.metadata:
        out.metadata.update(_jsonable(dict(part.metadata)))
    return out


def parts_from_a2a(parts: Iterable[A2APart]) -> tuple[Part, ...]:
    """A2A parts as fleetmind's."""
    return tuple(part_from_a2a(p) for p in parts)


def parts_to_a2a(parts: Iterable[Part]) -> list[A2APart]:
    """Fleetmind parts as A2A's."""
    return [part_to_a2a(p) for p in parts]


def message_from_a2a(message: Message) -> IncomingMessage:
    """An A2A message as its agents see it (``ctx.message``)."""
    return IncomingMessage(
        parts=parts_from_a2a(message.parts),
        message_id=message.message_id,
        task_id=message.task_id,
        context_id=message.context_id,
        metadata=_plain_dict(message.metadata) if message.HasField("metadata") else {},
        reference_task_ids=tuple(message.reference_task_ids),
        protocol="a2a",
    )


def reply_from_a2a(
    parts: Iterable[A2APart],
    *,
    as_message: bool = False,
    status: str | None = None,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Reply:
    """A remote agent's answer (an artifact's parts, or a direct message's) as a reply."""
    return Reply(parts_from_a2a(parts), as_message, status, name or None, dict(metadata or {}))


def _plain_dict(struct: Any) -> dict[str, Any]:
    value = plain_json(MessageToDict(struct))
    return value if isinstance(value, dict) else {}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

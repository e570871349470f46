"""Messages in and replies out, in words no protocol owns.

A task started from a protocol message (an A2A ``SendMessage``) hands its agents the message
as an :class:`IncomingMessage`: its ids, metadata and every part (text, files, data). An agent
answers with any output; to choose the parts the caller gets, whether they come as the task's
artifact or as a direct message (A2A: a ``Message``, no ``Task``), and the final status text,
it returns a :class:`Reply`.

Both cross the task's store and the MQTT wire to devices as plain JSON: a reply is kept in the
task's log as the subtask's output (``{"$type": "fleetmind.reply", ...}``), so a task resumed
after a crash, a device's answer and an output read back from the store are the same thing.
:func:`as_reply` recognises one, from a :class:`Reply` or its JSON.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fleetmind.errors import MalformedMessage

TYPE_KEY: Final = "$type"
"""The key that tags the JSON of a reply or a message."""
REPLY_TYPE: Final = "fleetmind.reply"
MESSAGE_TYPE: Final = "fleetmind.message"


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text for people (or a model)."""

    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["text"] = field(default="text", init=False)


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file: its bytes, or a URL where it can be fetched; with a name and a media type."""

    content: bytes | None = None
    url: str | None = None
    name: str = ""
    media_type: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["file"] = field(default="file", init=False)

    def __post_init__(self) -> None:
        if (self.content is None) == (self.url is None):
            raise MalformedMessage("a file part needs its content or a URL, and not both")


@dataclass(frozen=True, slots=True)
class DataPart:
    """Structured data: any JSON value."""

    data: Any
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["data"] = field(default="data", init=False)


Part = TextPart | FilePart | DataPart
"""One part of a message or an artifact."""


def part_to_json(part: Part) -> dict[str, Any]:
    """A part as plain JSON (a file's bytes as base64)."""
    out: dict[str, Any] = {"kind": part.kind}
    match part:
        case TextPart():
            out["text"] = part.text
        case FilePart():
            if part.content is not None:
                out["base64"] = base64.b64encode(part.content).decode("ascii")
            else:
                out["url"] = part.url
            out.update(
                {k: v for k, v in (("name", part.name), ("media_type", part.media_type)) if v}
            )
        case DataPart():
            out["data"] = part.data
    if part.metadata:
        out["metadata"] = dict(part.metadata)
    return out


def part_from_json(value: Any) -> Part:
    """A part from its JSON (:func:`part_to_json`); ``MalformedMessage`` when it is not one."""
    if not isinstance(value, Mapping):
        raise MalformedMessage(f"a part must be a JSON object, not {type(value).__name__}")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise MalformedMessage("a part's metadata must be a JSON object")
    match value.get("kind"):
        case "text":
            text = value.get("text")
            if not isinstance(text, str):
                raise MalformedMessage("a text part needs its text")
            return TextPart(text, metadata=dict(metadata))
        case "file":
            encoded, url = value.get("base64"), value.get("url")
            content = None
            if encoded is not None:
                try:
                    content = base64.b64decode(str(encoded), validate=True)
                except binascii.Error as exc:
                    raise MalformedMessage(f"a file part's base64 is invalid: {exc}") from None
            return FilePart(
                content=content,
                url=None if url is None else str(url),
                name=str(value.get("name") or ""),
                media_type=str(value.get("media_type") or ""),
                metadata=dict(metadata),
            )
        case "data":
            if "data" not in value:
                raise MalformedMessage("a data part needs its data")
            return DataPart(value["data"], metadata=dict(metadata))
        case other:
            raise MalformedMessage(f"unknown part kind {other!r} (text, file or data)")


def as_part(value: Part | str) -> Part:
    """A part from what an agent wrote: a part as it is, a string as a text part."""
    if isinstance(value, TextPart | FilePart | DataPart):
        return value
    if isinstance(value, str):
        return TextPart(value)
    raise TypeError(f"a part must be a TextPart, FilePart, DataPart or str, not {type(value)}")


def _parts_from_json(value: Any) -> tuple[Part, ...]:
    if not isinstance(value, list):
        raise MalformedMessage("parts must be a JSON list")
    return tuple(part_from_json(p) for p in value)


def _tagged(value: Any, tag: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or value.get(TYPE_KEY) != tag:
        raise MalformedMessage(f"not a {tag} (a JSON object with {TYPE_KEY!r}: {tag!r})")
    return value


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """The message a task was started from, as its agents see it (``ctx.message``).

    ``task_id`` and ``context_id`` are the protocol's (A2A's task and context ids), not
    fleetmind's task id; ``reference_task_ids`` are the earlier tasks the sender points at.
    """

    parts: tuple[Part, ...]
    message_id: str = ""
    task_id: str = ""
    context_id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reference_task_ids: tuple[str, ...] = ()
    protocol: str = "a2a"

    @property
    def text(self) -> str:
        """The text parts, one per line."""
        return "\n".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def files(self) -> tuple[FilePart, ...]:
        """The file parts."""
        return tuple(p for p in self.parts if isinstance(p, FilePart))

    @property
    def data(self) -> tuple[Any, ...]:
        """The values of the data parts."""
        return tuple(p.data for p in self.parts if isinstance(p, DataPart))

    def to_json(self) -> dict[str, Any]:
        """The message as plain JSON (kept with the task, sent to devices)."""
        return {
            TYPE_KEY: MESSAGE_TYPE,
            "protocol": self.protocol,
            "message_id": self.message_id,
            "task_id": self.task_id,
            "context_id": self.context_id,
            "metadata": dict(self.metadata),
            "reference_task_ids": list(self.reference_task_ids),
            "parts": [part_to_json(p) for p in self.parts],
        }

    @classmethod
    def from_json(cls, value: Any) -> IncomingMessage:
        """The message from :meth:`to_json`'s JSON; ``MalformedMessage`` when it is not one."""
        data = _tagged(value, MESSAGE_TYPE)
        metadata = data.get("metadata") or {}
        references = data.get("reference_task_ids") or []
        if not isinstance(metadata, Mapping) or not isinstance(references, list):
            raise MalformedMessage("a message's metadata must be an object, its references a list")
        return cls(
            parts=_parts_from_json(data.get("parts", [])),
            message_id=str(data.get("message_id") or ""),
            task_id=str(data.get("task_id") or ""),
            context_id=str(data.get("context_id") or ""),
            metadata=dict(metadata),
            reference_task_ids=tuple(str(r) for r in references),
            protocol=str(data.get("protocol") or "a2a"),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """What an agent answers when it chooses the parts: as the task's artifact, or as a
    direct message (``as_message``), with an optional final status text.

    Make one with :meth:`artifact` or :meth:`message`; strings become text parts::

        return Reply.artifact("the report", FilePart(content=pdf, name="report.pdf"))
        return Reply.message("hi there")  # A2A: a Message, no Task
    """

    parts: tuple[Part, ...]
    as_message: bool = False
    status: str | None = None
    """The text of the task's final status (A2A: the ``completed`` status message)."""
    name: str | None = None
    """The artifact's name (default: the protocol server's own)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def artifact(
        cls,
        *parts: Part | str,
        name: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A reply delivered as the task's artifact."""
        return cls(tuple(as_part(p) for p in parts), False, status, name, dict(metadata or {}))

    @classmethod
    def message(
        cls,
        *parts: Part | str,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A reply delivered as a direct message (where the task has not been reported as a
        task yet; else as its final status message)."""
        return cls(tuple(as_part(p) for p in parts), True, status, None, dict(metadata or {}))

    def to_json(self) -> dict[str, Any]:
        """The reply as plain JSON (how it is kept as a subtask's output)."""
        out: dict[str, Any] = {
            TYPE_KEY: REPLY_TYPE,
            "parts": [part_to_json(p) for p in self.parts],
            "as_message": self.as_message,
        }
        if self.status is not None:
            out["status"] = self.status
        if self.name is not None:
            out["name"] = self.name
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_json(cls, value: Any) -> Reply:
        """The reply from :meth:`to_json`'s JSON; ``MalformedMessage`` when it is not one."""
        data = _tagged(value, REPLY_TYPE)
        status, name, metadata = data.get("status"), data.get("name"), data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise MalformedMessage("a reply's metadata must be a JSON object")
        return cls(
            parts=_parts_from_json(data.get("parts", [])),
            as_message=bool(data.get("as_message", False)),
            status=None if status is None else str(status),
            name=None if name is None else str(name),
            metadata=dict(metadata),
        )


def as_reply(output: Any) -> Reply | None:
    """The reply an output is (a :class:`Reply`, or its JSON as stored), else None (an output
    that only looks like one, its parts malformed, is plain data)."""
    if isinstance(output, Reply):
        return output
    if isinstance(output, Mapping) and output.get(TYPE_KEY) == REPLY_TYPE:
        try:
            return Reply.from_json(output)
        except MalformedMessage:
            return None
    return None


@dataclass(frozen=True, slots=True)
class ArtifactChunk:
    """One chunk of an artifact an agent streams (:meth:`SubtaskContext.stream_artifact`).

    ``append``: the parts extend the artifact's earlier chunks (False for its first chunk).
    ``last``: no more chunks of it follow.
    """

    artifact_id: str
    parts: tuple[Part, ...]
    name: str | None = None
    append: bool = False
    last: bool = False

    def parts_json(self) -> tuple[dict[str, Any], ...]:
        """The parts as plain JSON (as events carry them)."""
        return tuple(part_to_json(p) for p in self.parts)


def parts_of(values: Iterable[Part | str]) -> tuple[Part, ...]:
    """Parts from what an agent wrote (strings become text parts)."""
    return tuple(as_part(v) for v in values)

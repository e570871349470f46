"""Values carried in A2A data parts, as the client and the server both read them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def plain_json(value: Any) -> Any:
    """Undo protobuf's numbers: a ``Value`` stores every number as a double, so ``3`` comes
    back as ``3.0``; whole numbers are made ints again, as the sender almost always meant."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    return value


def data_values(parts: Iterable[Any]) -> list[Any]:
    """The JSON values of the data parts among ``parts`` (A2A ``Part`` messages), in order."""
    from google.protobuf.json_format import MessageToDict

    return [plain_json(MessageToDict(p.data)) for p in parts if p.HasField("data")]

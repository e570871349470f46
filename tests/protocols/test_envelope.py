"""The wire envelope: round trips, and every kind of bad message rejected with a ProtocolError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmind.errors import (
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnknownKind,
    UnsupportedVersion,
    error_from_dict,
)
from fleetmind.protocols._envelope import (
    ArtifactPayload,
    DispatchPayload,
    ResultPayload,
    new_envelope,
    parse_envelope,
)


def dispatch_bytes(**overrides: object) -> bytes:
    envelope = new_envelope(
        "dispatch",
        "orchestrator",
        DispatchPayload(task_id="t1", agent="camera", subtask={"id": "snap"}, inputs={"n": 1}),
    )
    data = json.loads(envelope.to_bytes())
    data.update(overrides)
    return json.dumps(data).encode()


def test_round_trip_keeps_every_field() -> None:
    sent = new_envelope(
        "result",
        "pi-7",
        ResultPayload(task_id="t1", subtask_id="snap", status="done", output={"ok": True}),
        correlation_id="abc",
    )
    received, payload = parse_envelope(sent.to_bytes())
    assert received == sent
    assert isinstance(payload, ResultPayload)
    assert payload.output == {"ok": True}
    assert received.correlation_id == "abc"


def test_an_artifact_chunk_round_trips_and_needs_its_artifact_id() -> None:
    chunk = ArtifactPayload(
        task_id="t1",
        subtask_id="snap",
        artifact_id="photos",
        parts=({"kind": "text", "text": "first"},),
        append=True,
    )
    sent = new_envelope("artifact", "pi-7", chunk, correlation_id="d1")
    received, payload = parse_envelope(sent.to_bytes())
    assert payload == chunk and received.kind == "artifact"
    data = json.loads(sent.to_bytes())
    data["payload"]["artifact_id"] = ""
    with pytest.raises(MalformedMessage) as caught:
        parse_envelope(json.dumps(data).encode())
    assert "artifact_id" in caught.value.message


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"not json", MalformedMessage, "not JSON"),
        (b"\xff\xfe", MalformedMessage, "not JSON"),
        (b"[1, 2]", MalformedMessage, "not a JSON object"),
        (dispatch_bytes(v=2), UnsupportedVersion, "version 2"),
        (dispatch_bytes(kind="teleport"), UnknownKind, "'teleport'"),
        (dispatch_bytes(sender="a b"), MalformedMessage, "sender"),
        (dispatch_bytes(extra=1), MalformedMessage, "extra"),
        (dispatch_bytes(payload={"task_id": "t1"}), MalformedMessage, "payload"),
        (
            dispatch_bytes(payload={"task_id": "t 1", "agent": "a", "subtask": {}}),
            MalformedMessage,
            "task_id",
        ),
        (b"x" * 2048, MessageTooLarge, "2048 bytes"),
    ],
)
def test_bad_messages_are_rejected_with_one_line_naming_the_problem(
    data: bytes, error: type[ProtocolError], words: str
) -> None:
    with pytest.raises(error) as caught:
        parse_envelope(data, max_bytes=1024)
    assert words in caught.value.message
    assert "\n" not in caught.value.message


def test_rejections_carry_the_message_id_and_travel_as_errors() -> None:
    with pytest.raises(UnknownKind) as caught:
        parse_envelope(dispatch_bytes(kind="teleport", id="m-1"))
    assert caught.value.details == {"id": "m-1"}
    back = error_from_dict(caught.value.to_dict())
    assert isinstance(back, UnknownKind)
    assert back.message == caught.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_envelope(data)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2, "1", None]),
            "kind": st.sampled_from(["dispatch", "result", "card", "bogus", 3]),
            "id": st.text(max_size=70),
            "sender": st.text(max_size=70),
            "sent_at": json_values,
            "payload": json_values,
            "correlation_id": json_values,
        },
    )
)
def test_random_envelopes_never_raise_anything_but_protocol_errors(raw: dict) -> None:
    try:
        envelope, payload = parse_envelope(json.dumps(raw).encode())
    except ProtocolError:
        return
    assert envelope.kind == raw["kind"]
    assert payload is not None

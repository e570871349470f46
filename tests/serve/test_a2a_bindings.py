"""`fleetmind a2a serve` speaks all three A2A 1.0 bindings (JSON-RPC, HTTP+JSON, gRPC) by the same
rules: a round trip, the bearer token, the size limit and the media types, each checked with the
a2a-sdk's own client restricted to one binding, and plain HTTP where the rule is HTTP's (the card's
caching headers, the JSON-RPC error code)."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from a2a.client import A2AClientError, Client, ClientCallContext
from a2a.helpers import new_data_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import ContentTypeNotSupportedError
from a2a_harness import CARD, FLEETMIND, A2AServer, sdk_client, serving
from google.protobuf.json_format import MessageToDict
from repo_paths import FIXTURES

from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(120)

FLEET = str(FIXTURES / "a2a_fleet.py")
TOKEN = "binding-token"
BINDINGS = [TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[A2AServer]:
    """The fixture fleet behind a bearer token, on all three bindings."""
    home = tmp_path_factory.mktemp("guarded")
    (home / "token").write_text(TOKEN + "\n")
    (home / "token").chmod(0o600)
    with serving(FLEET, home, "--token-file", str(home / "token")) as server:
        yield server


def _auth(token: str | None) -> ClientCallContext:
    """The token as the SDK sends it on any binding: a header, or gRPC metadata."""
    parameters = {"authorization": f"Bearer {token}"} if token is not None else None
    return ClientCallContext(timeout=60, service_parameters=parameters)


def _request(*parts: Part, metadata: dict[str, Any] | None = None) -> SendMessageRequest:
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=list(parts),
        metadata=metadata or {},
    )
    return SendMessageRequest(message=message)


async def _stream(client: Client, request: SendMessageRequest, token: str | None) -> list[Any]:
    events: list[StreamResponse] = []
    async for event in client.send_message(request, context=_auth(token)):
        events.append(event)
    return [MessageToDict(e) for e in events]


# A round trip on each binding -----------------------------------------------------------------


@pytest.mark.parametrize("binding", BINDINGS)
async def test_each_binding_carries_a_task_from_message_to_result(
    guarded: A2AServer, binding: str
) -> None:
    async with sdk_client(guarded.url, binding, streaming=True) as client:
        request = _request(Part(text="over the wire"), metadata={"agent": "echo"})
        events = await _stream(client, request, TOKEN)
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "task" and kinds[-1] == "statusUpdate"
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    artifacts = [e["artifactUpdate"]["artifact"] for e in events if "artifactUpdate" in e]
    assert [a["artifactId"] for a in artifacts] == ["subtask-request", "result"]
    assert artifacts[-1]["parts"] == [{"text": "over the wire"}]
    # A2A JSON is camelCase, fleetmind's metadata keys too.
    assert artifacts[0]["metadata"] == {"subtaskId": "request", "agent": "echo"}
    assert set(artifacts[1]["metadata"]) == {"fleetmindTaskId"}
    assert artifacts[1]["metadata"]["fleetmindTaskId"].startswith("t")
    statuses = [e["statusUpdate"]["status"] for e in events if "statusUpdate" in e]
    details = [s["message"].get("metadata", {}) for s in statuses if "message" in s]
    assert any(d.get("subtaskId") == "request" for d in details), details
    assert not any("subtask_id" in d for d in details)


@pytest.mark.parametrize("binding", BINDINGS)
async def test_each_binding_cancels_and_gets_tasks(guarded: A2AServer, binding: str) -> None:
    request = _request(
        Part(text="count"), new_data_part({"hold": True}), metadata={"agent": "slow"}
    )
    task_id = ""
    cancelled: Task | None = None
    async with sdk_client(guarded.url, binding, streaming=True) as client:
        async for event in client.send_message(request, context=_auth(TOKEN)):
            task_id = task_id or event.task.id
            holding = event.HasField("status_update") and "holding" in str(event.status_update)
            if holding and cancelled is None:  # the slow agent holds until cancelled
                cancel = CancelTaskRequest(id=task_id)
                cancelled = await client.cancel_task(cancel, context=_auth(TOKEN))
        fetched = await client.get_task(GetTaskRequest(id=task_id), context=_auth(TOKEN))
    assert cancelled is not None
    assert fetched.status.state == TaskState.TASK_STATE_CANCELED


# The token, on every binding ------------------------------------------------------------------


@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["missing", "wrong"])
async def test_each_binding_refuses_a_missing_or_wrong_token(
    guarded: A2AServer, binding: str, token: str | None
) -> None:
    async with sdk_client(guarded.url, binding, streaming=True) as client:
        with pytest.raises(A2AClientError) as refused:
            await _stream(client, _request(Part(text="let me in")), token)
    cause = refused.value.__cause__
    if binding == TransportProtocol.GRPC:
        assert isinstance(cause, grpc.aio.AioRpcError)
        assert cause.code() == grpc.StatusCode.UNAUTHENTICATED
        reason = "missing" if token is None else "wrong"
        assert cause.details() == f"Unauthorized: {reason} bearer token"
    else:
        assert isinstance(cause, httpx.HTTPStatusError)
        assert cause.response.status_code == 401
        assert cause.response.headers["www-authenticate"].startswith('Bearer realm="a2a"')
        body = cause.response.json()
        if binding == TransportProtocol.HTTP_JSON:  # the binding's own error shape
            assert body["error"]["code"] == 401
            assert body["error"]["status"] == "UNAUTHENTICATED"
        else:
            assert body["error"]["code"] == -32000


async def test_the_http_bindings_refuse_a_body_over_the_size_limit(guarded: A2AServer) -> None:
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as http:
        rpc = await http.post(guarded.url + "/", content=huge, headers=headers)
        rest = await http.post(guarded.url + "/rest/message:send", content=huge, headers=headers)
    assert rpc.status_code == rest.status_code == 413
    assert rpc.json()["error"]["code"] == -32600
    assert rest.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert "the limit is 4194304 bytes" in rest.json()["error"]["message"]


async def test_the_grpc_binding_refuses_a_message_over_the_size_limit(guarded: A2AServer) -> None:
    async with sdk_client(guarded.url, TransportProtocol.GRPC, streaming=True) as client:
        huge = _request(Part(text="x" * (5 * 1024 * 1024)), metadata={"agent": "echo"})
        with pytest.raises(A2AClientError) as refused:
            await _stream(client, huge, TOKEN)
        cause = refused.value.__cause__
        assert isinstance(cause, grpc.aio.AioRpcError)
        assert cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server goes on.
        events = await _stream(
            client, _request(Part(text="small"), metadata={"agent": "echo"}), TOKEN
        )
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"


# Media types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("binding", BINDINGS)
async def test_each_binding_refuses_a_part_of_a_media_type_the_card_does_not_list(
    guarded: A2AServer, binding: str
) -> None:
    card = guarded.card()
    assert card["defaultInputModes"] == ["text/plain", "application/json"]
    png = Part(raw=b"\x89PNG\r\n\x1a\n", media_type="image/png", filename="dot.png")
    async with sdk_client(guarded.url, binding, streaming=True) as client:
        with pytest.raises(ContentTypeNotSupportedError, match="image/png"):
            await _stream(client, _request(Part(text="look"), png), TOKEN)
        # Declared types pass: JSON data, and text that states its type.
        typed = Part(text="typed", media_type="text/plain")
        events = await _stream(client, _request(typed, metadata={"agent": "echo"}), TOKEN)
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_an_unsupported_media_type_is_error_32005_over_json_rpc(guarded: A2AServer) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": "m-png",
                "role": "ROLE_USER",
                "parts": [{"raw": "iVBORw0KGgo=", "mediaType": "image/png"}],
            }
        },
    }
    headers = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0"}
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(guarded.url + "/", json=body, headers=headers)
        rest = await http.post(
            guarded.url + "/rest/message:send", json=body["params"], headers=headers
        )
    assert answer.status_code == 200
    error = answer.json()["error"]
    assert error["code"] == -32005
    assert "image/png" in error["message"]
    # HTTP+JSON maps it to 400 with the A2A reason.
    assert rest.status_code == 400
    assert "CONTENT_TYPE_NOT_SUPPORTED" in rest.text


# The card -------------------------------------------------------------------------------------


async def test_the_card_is_cacheable_and_revalidates_with_304(guarded: A2AServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.get(guarded.url + CARD)
        etag = first.headers["etag"]
        modified = first.headers["last-modified"]
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=300"
        built = parsedate_to_datetime(modified)
        assert built.tzinfo is not None
        by_etag = await http.get(guarded.url + CARD, headers={"If-None-Match": etag})
        weak = await http.get(guarded.url + CARD, headers={"If-None-Match": f'"x", W/{etag}'})
        by_date = await http.get(guarded.url + CARD, headers={"If-Modified-Since": modified})
        older = format_datetime(built.replace(year=built.year - 1), usegmt=True)
        stale = await http.get(guarded.url + CARD, headers={"If-Modified-Since": older})
        # If-None-Match decides when given, even with a current If-Modified-Since.
        other = await http.get(
            guarded.url + CARD, headers={"If-None-Match": '"other"', "If-Modified-Since": modified}
        )
        garbled = await http.get(guarded.url + CARD, headers={"If-Modified-Since": "yesterday"})
    for not_modified in (by_etag, weak, by_date):
        assert not_modified.status_code == 304
        assert not_modified.content == b""
        assert not_modified.headers["etag"] == etag
        assert not_modified.headers["last-modified"] == modified
        assert not_modified.headers["cache-control"] == "public, max-age=300"
    for full in (stale, other, garbled):
        assert full.status_code == 200
        assert full.json() == first.json()


# Options and the server's lifetime ------------------------------------------------------------


def test_grpc_port_chooses_the_port_or_turns_grpc_off(tmp_path: Path) -> None:
    port = free_port()
    with serving(FLEET, tmp_path / "on", "--grpc-port", str(port)) as server:
        assert server.interface("GRPC") == f"127.0.0.1:{port}"
        lines = server.log.read_text()
    assert f"gRPC 127.0.0.1:{port}" in lines and "HTTP+JSON " + server.url + "/rest" in lines
    with serving(FLEET, tmp_path / "off", "--grpc-port", "off") as server:
        bindings = [i["protocolBinding"] for i in server.card()["supportedInterfaces"]]
    assert bindings == ["JSONRPC", "HTTP+JSON"]
    for option, value, says in [
        ("--grpc-port", "nope", "'nope' is not a port"),
        ("--accept", "png", "'png' is not a media type"),
    ]:
        wrong = subprocess.run(
            [FLEETMIND, "a2a", "serve", "--fleet", FLEET, "--port", "0", option, value],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 2
        assert says in wrong.stderr and "Traceback" not in wrong.stderr


async def test_accept_widens_the_media_types_a_message_may_carry(tmp_path: Path) -> None:
    with serving(FLEET, tmp_path / "png", "--accept", "image/png", "--grpc-port", "off") as server:
        modes = server.card()["defaultInputModes"]
        png = Part(raw=b"\x89PNG\r\n\x1a\n", media_type="image/png", filename="dot.png")
        pdf = Part(raw=b"%PDF-1.7", media_type="application/pdf", filename="doc.pdf")
        async with sdk_client(server.url, TransportProtocol.JSONRPC, streaming=True) as client:
            events = await _stream(
                client, _request(Part(text="see"), png, metadata={"agent": "echo"}), None
            )
            with pytest.raises(ContentTypeNotSupportedError, match="application/pdf"):
                await _stream(client, _request(Part(text="read"), pdf), None)
    assert modes == ["text/plain", "application/json", "image/png"]
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"


def test_a_grpc_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with serving(FLEET, tmp_path / "first") as first:
        taken = first.interface("GRPC").rsplit(":", 1)[1]
        port = free_port()
        clash = subprocess.run(
            [
                *(FLEETMIND, "a2a", "serve", "--fleet", FLEET, "--port", str(port)),
                *("--grpc-port", taken, "--data-dir", str(tmp_path / "second")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert clash.returncode == 2
    # One line, fleetmind's: not gRPC's own log line beside it, and no traceback.
    assert clash.stderr.strip().splitlines() == [
        f"fleetmind: error: cannot listen for gRPC on 127.0.0.1:{taken}: Address already in use"
    ]


async def test_sigterm_ends_an_open_grpc_stream_and_the_server_cleanly(tmp_path: Path) -> None:
    request = _request(
        Part(text="count"), new_data_part({"hold": True}), metadata={"agent": "slow"}
    )
    states: list[int] = []
    with serving(FLEET, tmp_path / "stop") as server:
        async with sdk_client(server.url, TransportProtocol.GRPC, streaming=True) as client:
            try:
                async for event in client.send_message(request):
                    if not event.HasField("status_update"):
                        continue
                    states.append(event.status_update.status.state)
                    if "holding" in str(event.status_update) and server.process.poll() is None:
                        server.process.send_signal(signal.SIGTERM)  # while the stream is open
            except A2AClientError:
                pass  # the stream may be cut rather than ended
        assert server.process.wait(timeout=30) == 0, server.log.read_text()
        log = server.log.read_text()
    assert TaskState.TASK_STATE_WORKING in states
    assert "stopped" in log and "Traceback" not in log


def test_a_malformed_request_is_answered_and_logged_in_one_line(tmp_path: Path) -> None:
    with serving(FLEET, tmp_path / "bad", "--grpc-port", "off") as server:
        headers = {"A2A-Version": "1.0"}
        wrong_type = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": 5}}
        answers = [
            httpx.post(server.url + "/", json=body, headers=headers).json()
            for body in (wrong_type, [])
        ]
        still_serving = httpx.get(server.url + CARD).status_code
        server.stop()
        log = server.log.read_text()
    assert [a["error"]["code"] for a in answers] == [-32602, -32600]
    assert still_serving == 200
    assert "Failed to parse request params" in log
    assert "Failed to validate base JSON-RPC request" in log
    assert "Traceback" not in log

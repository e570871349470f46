"""Push notifications of `fleetmind a2a serve`: the SDK client gives webhooks, a real receiver
listens on loopback, and every update of a long task reaches it, in order and authenticated."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from a2a.client import Client
from a2a.helpers import new_data_part
from a2a.types import (
    AuthenticationInfo,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import A2AError, InvalidParamsError
from a2a_harness import CARD, A2AServer, sdk_client, serving
from google.protobuf.json_format import ParseDict
from repo_paths import FIXTURES
from webhook_receiver import DEADLINE_S, Call, Receiver

from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(120)

# The gate the agent waits on --------------------------------------------------------------


class Gate:
    """A URL the gated agent GETs; the answer is held until the test opens the gate."""

    def __init__(self) -> None:
        opened = self._opened = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                opened.wait(timeout=DEADLINE_S)
                body = b"open" if opened.is_set() else b"still closed"
                self.send_response(200 if opened.is_set() else 504)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/gate"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def open(self) -> None:
        self._opened.set()

    def __enter__(self) -> Gate:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.open()  # no request stays held
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _state(call: Call) -> TaskState | None:
    update = call.update
    if update.HasField("task"):
        return update.task.status.state
    if update.HasField("status_update"):
        return update.status_update.status.state
    return None


def _said(calls: list[Call], words: str) -> int | None:
    """The position among the status texts of the first one that has ``words``."""
    return next((i for i, t in enumerate(_status_texts(calls)) if words in t), None)


def _task_id(update: StreamResponse) -> str:
    """The task an update is about (it must be a task, a status or an artifact update)."""
    kind = update.WhichOneof("payload")
    assert kind in ("task", "status_update", "artifact_update"), update
    return update.task.id if kind == "task" else getattr(update, kind).task_id


def _completed(calls: list[Call]) -> bool:
    return any(_state(c) == TaskState.TASK_STATE_COMPLETED for c in calls)


def _status_texts(calls: list[Call]) -> list[str]:
    return [
        "".join(p.text for p in c.update.status_update.status.message.parts)
        for c in calls
        if c.update.HasField("status_update")
    ]


# The server and its client ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[A2AServer]:
    """`fleetmind a2a serve` of the gated agent, stopped (SIGTERM) at the end."""
    home = tmp_path_factory.mktemp("push")
    with serving(FIXTURES / "a2a_push_fleet.py", home, start_s=DEADLINE_S) as running:
        yield running


def _webhook(url: str, *, token: str, scheme: str, credentials: str, id: str = "") -> Any:
    return TaskPushNotificationConfig(
        id=id,
        url=url,
        token=token,
        authentication=AuthenticationInfo(scheme=scheme, credentials=credentials),
    )


async def _start_task(
    client: Client, gate: Gate, push: TaskPushNotificationConfig | None = None
) -> Task:
    """Send a message to the gated agent without waiting for its end."""
    configuration = SendMessageConfiguration(return_immediately=True)
    if push is not None:
        configuration.task_push_notification_config.CopyFrom(push)
    request = SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            parts=[Part(text="wait for the gate"), new_data_part({"gate": gate.url})],
        ),
        configuration=configuration,
    )
    responses = [r async for r in client.send_message(request)]
    assert len(responses) == 1 and responses[0].HasField("task"), responses
    return responses[0].task


async def _wait_task(client: Client, task_id: str, done: Callable[[Task], bool]) -> Task:
    """Poll GetTask until ``done`` holds (the server offers no other way to watch here)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        task = await client.get_task(GetTaskRequest(id=task_id))
        if done(task):
            return task
        assert time.monotonic() < deadline, f"task never got there: {task}"
        await asyncio.sleep(0.05)


def _waiting(task: Task) -> bool:
    return "waiting for the gate" in "".join(p.text for p in task.status.message.parts)


# Tests ------------------------------------------------------------------------------------


def test_the_card_declares_push_notifications(server: A2AServer) -> None:
    card = httpx.get(server.url + CARD).json()
    assert card["capabilities"]["pushNotifications"] is True


async def test_every_update_reaches_the_webhook_in_order_and_authenticated(
    server: A2AServer,
) -> None:
    with Gate() as gate, Receiver() as receiver:
        async with sdk_client(server.url) as client:
            push = _webhook(
                receiver.url + "/hook", token="tok-1", scheme="Bearer", credentials="hook-secret"
            )
            task = await _start_task(client, gate, push)
            await receiver.wait_for(lambda calls: _said(calls, "waiting for the gate") is not None)
            assert not _completed(receiver.calls)  # the task really is waiting
            gate.open()
            calls = await receiver.wait_for(_completed)
            finished = await client.get_task(GetTaskRequest(id=task.id))

    assert finished.status.state == TaskState.TASK_STATE_COMPLETED
    for call in calls:
        assert call.path == "/hook"
        assert call.headers["authorization"] == "Bearer hook-secret"
        assert call.headers["x-a2a-notification-token"] == "tok-1"
        assert call.headers["content-type"] == "application/json"
    updates = [c.update for c in calls]
    assert {_task_id(u) for u in updates} == {task.id}
    # In order: submitted first, working in between, completed last (and once).
    states = [s for s in map(_state, calls) if s is not None]
    assert states[0] == TaskState.TASK_STATE_SUBMITTED
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    assert states.count(TaskState.TASK_STATE_COMPLETED) == 1
    assert set(states[1:-1]) == {TaskState.TASK_STATE_WORKING}
    waited, opened = _said(calls, "waiting for the gate"), _said(calls, "the gate is open")
    assert waited is not None and opened is not None and waited < opened
    results = [i for i, u in enumerate(updates) if u.artifact_update.artifact.artifact_id]
    assert results and max(results) < len(calls) - 1  # artifacts before the end
    assert "passed the gate: open" in json.dumps(calls[max(results)].body)


@pytest.mark.parametrize(
    "binding", [TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON, TransportProtocol.GRPC]
)
async def test_configs_of_a_running_task_can_be_created_read_listed_and_deleted(
    server: A2AServer, binding: str
) -> None:
    with Gate() as gate, Receiver() as receiver:
        async with sdk_client(server.url, binding) as client:
            task = await _start_task(client, gate)
            await _wait_task(client, task.id, _waiting)
            kept = _webhook(
                receiver.url + "/a",
                token="tok-a",
                scheme="Basic",
                credentials="dXNlcjpwdw==",
                id="a",
            )
            kept.task_id = task.id
            dropped = _webhook(
                receiver.url + "/b", token="tok-b", scheme="Bearer", credentials="b", id="b"
            )
            dropped.task_id = task.id
            created = await client.create_task_push_notification_config(kept)
            assert (created.id, created.task_id, created.url) == ("a", task.id, kept.url)
            await client.create_task_push_notification_config(dropped)

            got = await client.get_task_push_notification_config(
                GetTaskPushNotificationConfigRequest(task_id=task.id, id="a")
            )
            assert got.url == kept.url and got.token == "tok-a"
            assert got.authentication.scheme == "Basic"
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            assert sorted(c.id for c in listed.configs) == ["a", "b"]

            await client.delete_task_push_notification_config(
                DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="b")
            )
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            assert [c.id for c in listed.configs] == ["a"]
            with pytest.raises(A2AError):
                await client.get_task_push_notification_config(
                    GetTaskPushNotificationConfigRequest(task_id=task.id, id="b")
                )

            gate.open()
            calls = await receiver.wait_for(_completed)

    assert {c.path for c in calls} == {"/a"}  # the deleted webhook got nothing
    assert all(c.headers["authorization"] == "Basic dXNlcjpwdw==" for c in calls)
    assert all(c.headers["x-a2a-notification-token"] == "tok-a" for c in calls)
    assert _said(calls, "the gate is open") is not None
    assert _state(calls[-1]) == TaskState.TASK_STATE_COMPLETED


async def test_a_webhook_that_fails_at_first_still_gets_every_update(server: A2AServer) -> None:
    with Gate() as gate, Receiver(refuse_first=2) as receiver:
        gate.open()  # no waiting: the task runs while the webhook refuses
        async with sdk_client(server.url) as client:
            push = _webhook(receiver.url + "/flaky", token="t", scheme="Bearer", credentials="c")
            task = await _start_task(client, gate, push)
            calls = await receiver.wait_for(_completed)
            finished = await client.get_task(GetTaskRequest(id=task.id))

    assert receiver.refused == 2
    assert finished.status.state == TaskState.TASK_STATE_COMPLETED
    states = [s for s in map(_state, calls) if s is not None]
    assert states[0] == TaskState.TASK_STATE_SUBMITTED  # the refused update came on a retry
    assert states[-1] == TaskState.TASK_STATE_COMPLETED


async def test_a_dead_webhook_neither_holds_the_task_nor_the_other_webhooks(
    server: A2AServer,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/gone"  # nothing listens there
    with Gate() as gate, Receiver() as receiver:
        async with sdk_client(server.url) as client:
            task = await _start_task(
                client,
                gate,
                _webhook(dead, token="t", scheme="Bearer", credentials="c", id="dead"),
            )
            alive = _webhook(receiver.url + "/alive", token="t", scheme="Bearer", credentials="c")
            alive.task_id, alive.id = task.id, "alive"
            await client.create_task_push_notification_config(alive)
            gate.open()
            await _wait_task(
                client, task.id, lambda t: t.status.state == TaskState.TASK_STATE_COMPLETED
            )
            calls = await receiver.wait_for(_completed)

    assert _said(calls, "the gate is open") is not None
    # Giving up on an update is one line in the server's log, naming the task and the webhook.
    line = f"push notification for task {task.id} to {dead} given up after 4 attempt(s)"
    deadline = time.monotonic() + DEADLINE_S
    while line not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        await asyncio.sleep(0.1)
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"url": "ftp://example.com/hook"}, "must be an http:// or https:// URL"),
        ({"url": "file:///etc/passwd"}, "must be an http:// or https:// URL"),
        ({"url": "no url at all"}, "must be an http:// or https:// URL"),
        ({"url": "http://[::1/hook"}, "is not valid"),
        (
            {"url": "http://127.0.0.1/h", "authentication": {"scheme": "Bearer"}},
            "has no credentials",
        ),
        (
            {
                "url": "http://127.0.0.1/h",
                "authentication": {"scheme": "Bad Scheme", "credentials": "x"},
            },
            "needs an HTTP scheme",
        ),
        ({"url": "http://127.0.0.1/h", "token": "a\r\nX-Evil: 1"}, "printable ASCII"),
    ],
)
async def test_an_undeliverable_webhook_is_refused_when_given(
    server: A2AServer, config: dict[str, Any], problem: str
) -> None:
    push = ParseDict(config, TaskPushNotificationConfig())
    with Gate() as gate:
        async with sdk_client(server.url) as client:
            # Inline in SendMessage: refused before any task starts.
            with pytest.raises(InvalidParamsError, match=problem):
                await _start_task(client, gate, push)
            # For a task that exists.
            task = await _start_task(client, gate)
            push.task_id = task.id
            with pytest.raises(InvalidParamsError, match=problem):
                await client.create_task_push_notification_config(push)
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            assert list(listed.configs) == []
            gate.open()
            await _wait_task(
                client, task.id, lambda t: t.status.state == TaskState.TASK_STATE_COMPLETED
            )

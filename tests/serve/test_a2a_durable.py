"""A2A task state lives in the fleet's store: `fleetmind a2a serve` restarted on the same data
directory answers for the tasks of its previous run, resumes those that were working, and takes
answers to those that were waiting for input; an answer continues the same task."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.helpers import new_data_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from google.protobuf.json_format import MessageToDict
from repo_paths import FIXTURES

from fleetmind._task_log import TaskCancelledEntry
from fleetmind.orchestrator import SQLiteStore
from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(180)
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
FLEET = str(FIXTURES / "a2a_durable_fleet.py")
CARD = "/.well-known/agent-card.json"
DEADLINE_S = 60.0

ASKING_GRAPH = {
    "name": "ask then finish",
    "subtasks": [
        {"id": "prepare", "agent": "prepare"},
        {"id": "confirm", "agent": "confirm"},
        {"id": "finish", "agent": "finish"},
    ],
    "dependencies": [
        {"source": "prepare", "target": "confirm", "kind": "data", "input": "ready"},
        {"source": "confirm", "target": "finish", "kind": "data", "input": "confirmed"},
    ],
}
HOLDING_GRAPH = {
    "name": "prepare then hold",
    "subtasks": [{"id": "prepare", "agent": "prepare"}, {"id": "hold", "agent": "hold"}],
    "dependencies": [{"source": "prepare", "target": "hold", "kind": "data", "input": "ready"}],
}


@dataclass
class Home:
    """One data directory, and the file where the fixture's agents note their runs."""

    path: Path

    @property
    def runs_file(self) -> Path:
        return self.path / "runs.txt"

    def runs(self) -> Counter[str]:
        if not self.runs_file.exists():
            return Counter()
        return Counter(self.runs_file.read_text().split())


class Server:
    """`fleetmind a2a serve` of the fixture fleet, in its own process."""

    def __init__(self, home: Home) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = home.path / f"server-{port}.log"
        env = {**os.environ, "FLEETMIND_TEST_RUNS": str(home.runs_file)}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    *(FLEETMIND, "a2a", "serve", "--fleet", FLEET, "--port", str(port)),
                    *("--data-dir", str(home.path / "data")),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        until(self._serves, "the server serves its card")

    def _serves(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited ({self.process.returncode}): {self.log.read_text()}")
        try:
            return httpx.get(self.url + CARD).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path)


@pytest.fixture
def servers(home: Home) -> Iterator[Callable[[], Server]]:
    """Starts servers on ``home``; every one still running is stopped at the end."""
    started: list[Server] = []

    def start() -> Server:
        started.append(Server(home))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


@asynccontextmanager
async def a2a_client(url: str) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(timeout=60) as http:
        config = ClientConfig(streaming=False, httpx_client=http)
        client = await create_client(url, client_config=config)
        try:
            yield client
        finally:
            await client.close()


def request(
    text: str = "",
    *,
    data: Any = None,
    task_id: str = "",
    context_id: str = "",
    metadata: dict[str, Any] | None = None,
    at_once: bool = False,
) -> SendMessageRequest:
    parts = [Part(text=text)] if text else []
    if data is not None:
        parts.append(new_data_part(data))
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=parts,
        task_id=task_id,
        context_id=context_id,
        metadata=metadata or {},
    )
    configuration = SendMessageConfiguration(return_immediately=at_once)
    return SendMessageRequest(message=message, configuration=configuration)


async def send(client: Client, message: SendMessageRequest) -> Task:
    responses = [r async for r in client.send_message(message)]
    assert len(responses) == 1 and responses[0].HasField("task")
    return responses[0].task


def text_of(parts: Any) -> str:
    return "".join(p.text for p in parts)


async def get_until_ended(client: Client, task_id: str) -> Task:
    """GetTask until the task is completed, failed or canceled."""
    ended = {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
    }
    deadline = time.monotonic() + DEADLINE_S
    while True:
        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state in ended:
            return task
        if time.monotonic() > deadline:
            pytest.fail(f"task {task_id} did not end: {TaskState.Name(task.status.state)}")
        await asyncio.sleep(0.05)


async def test_a_restarted_server_answers_for_old_tasks_and_resumes_a_working_one(
    home: Home, servers: Callable[[], Server]
) -> None:
    first = servers()
    async with a2a_client(first.url) as client:
        done = await send(client, request("kept", metadata={"agent": "echo"}))
        held = await send(client, request(data=HOLDING_GRAPH, at_once=True))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    until(lambda: home.runs()["hold"] == 1, "hold runs")
    first.stop(signal.SIGKILL)  # a crash: nothing is cancelled or reported
    (home.path / "release").touch()

    second = servers()
    async with a2a_client(second.url) as client:
        old = await client.get_task(GetTaskRequest(id=done.id))
        resumed = await get_until_ended(client, held.id)
        listed = await client.list_tasks(ListTasksRequest())

    assert old.status.state == TaskState.TASK_STATE_COMPLETED
    assert text_of(old.artifacts[-1].parts) == "kept"
    assert resumed.status.state == TaskState.TASK_STATE_COMPLETED, resumed.status
    assert resumed.context_id == held.context_id
    assert text_of(resumed.artifacts[-1].parts) == "held prepared"
    assert home.runs() == {"prepare": 1, "hold": 2}  # only what was running ran again
    assert {t.id for t in listed.tasks} == {done.id, held.id}


async def test_a_task_id_alone_continues_the_task_in_its_context_without_rerunning_work(
    home: Home, servers: Callable[[], Server]
) -> None:
    server = servers()
    async with a2a_client(server.url) as client:
        asked = await send(client, request(data=ASKING_GRAPH))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert text_of(asked.status.message.parts) == "Go ahead?"
        with pytest.raises(InvalidParamsError, match=f"does not match context {asked.context_id}"):
            await send(client, request("yes", task_id=asked.id, context_id="another-context"))
        still = await client.get_task(GetTaskRequest(id=asked.id))
        assert still.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

        done = await send(client, request("yes", task_id=asked.id))  # no context id

    assert (done.id, done.context_id) == (asked.id, asked.context_id)
    assert done.status.state == TaskState.TASK_STATE_COMPLETED, done.status
    # Everything said after the follow-up belongs to the task's context too.
    said = [done.status.message, *done.history]
    assert {m.context_id for m in said if m.role == Role.ROLE_AGENT} == {asked.context_id}
    assert text_of(done.artifacts[-1].parts) == "finished: prepared, yes"
    assert home.runs() == {"prepare": 1, "confirm": 2, "finish": 1}


async def test_a_question_outlives_the_server_that_asked_it(
    home: Home, servers: Callable[[], Server]
) -> None:
    first = servers()
    async with a2a_client(first.url) as client:
        asked = await send(client, request(data=ASKING_GRAPH))
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    first.stop()

    second = servers()
    async with a2a_client(second.url) as client:
        waiting = await client.get_task(GetTaskRequest(id=asked.id))
        assert waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        done = await send(client, request("go", task_id=asked.id, context_id=asked.context_id))

    assert done.status.state == TaskState.TASK_STATE_COMPLETED, done.status
    assert text_of(done.artifacts[-1].parts) == "finished: prepared, go"
    assert home.runs() == {"prepare": 1, "confirm": 2, "finish": 1}


async def test_a_task_id_alone_answers_a_question_the_previous_server_asked(
    home: Home, servers: Callable[[], Server]
) -> None:
    first = servers()
    async with a2a_client(first.url) as client:
        asked = await send(client, request(data=ASKING_GRAPH))
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    first.stop(signal.SIGKILL)

    second = servers()
    async with a2a_client(second.url) as client:
        done = await send(client, request("go", task_id=asked.id))  # no context id
        kept = await client.get_task(GetTaskRequest(id=asked.id))

    assert (done.id, done.context_id) == (asked.id, asked.context_id)
    assert done.status.state == TaskState.TASK_STATE_COMPLETED, done.status
    assert kept.status.state == TaskState.TASK_STATE_COMPLETED, kept.status
    said = [done.status.message, *done.history]
    assert {m.context_id for m in said} == {asked.context_id}
    assert text_of(done.artifacts[-1].parts) == "finished: prepared, go"  # confirm got "go"
    assert home.runs() == {"prepare": 1, "confirm": 2, "finish": 1}
    assert "Traceback" not in second.log.read_text()


async def test_the_asking_agent_sees_the_follow_up_with_its_file(
    servers: Callable[[], Server],
) -> None:
    server = servers()
    async with a2a_client(server.url) as client:
        graph = {"name": "ask for a file", "subtasks": [{"id": "ask", "agent": "ask-file"}]}
        asked = await send(client, request(data=graph))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        follow_up = Message(
            role=Role.ROLE_USER,
            message_id=str(uuid.uuid4()),
            task_id=asked.id,
            parts=[
                Part(text="this one"),
                Part(raw=b"a note", filename="notes.txt", media_type="text/plain"),
            ],
            metadata={"trace": "t-7"},
        )
        done = await send(client, SendMessageRequest(message=follow_up))

    assert done.status.state == TaskState.TASK_STATE_COMPLETED, done.status
    seen = MessageToDict(done.artifacts[-1].parts[0].data)
    assert seen == {
        "message_id": follow_up.message_id,  # the follow-up, not the message that asked
        "task_id": asked.id,
        "metadata": {"trace": "t-7"},
        "text": "this one",
        "files": [["notes.txt", "text/plain", "a note"]],
        "reply": "this one",
        "reply_files": [
            {
                "kind": "file",
                "base64": base64.b64encode(b"a note").decode(),
                "name": "notes.txt",
                "media_type": "text/plain",
            }
        ],
    }


async def test_a_message_on_a_working_task_is_refused_and_the_task_goes_on(
    home: Home, servers: Callable[[], Server]
) -> None:
    first = servers()
    async with a2a_client(first.url) as client:
        held = await send(client, request(data=HOLDING_GRAPH, at_once=True))
        until(lambda: home.runs()["hold"] == 1, "hold runs")
        with pytest.raises(UnsupportedOperationError, match="is not waiting for input"):
            await send(client, request("hello", task_id=held.id))
        working = await client.get_task(GetTaskRequest(id=held.id))
    assert working.status.state == TaskState.TASK_STATE_WORKING
    first.stop(signal.SIGKILL)

    second = servers()  # takes the task up again: still no place for a message
    until(lambda: home.runs()["hold"] == 2, "hold runs again after the restart")
    async with a2a_client(second.url) as client:
        with pytest.raises(UnsupportedOperationError, match="is not waiting for input"):
            await send(client, request("hello", task_id=held.id))
        (home.path / "release").touch()
        ended = await get_until_ended(client, held.id)

    assert ended.status.state == TaskState.TASK_STATE_COMPLETED, ended.status
    assert text_of(ended.artifacts[-1].parts) == "held prepared"
    assert home.runs() == {"prepare": 1, "hold": 2}
    for server in (first, second):
        assert "Traceback" not in server.log.read_text()


def cancel_reason(home: Home, a2a_task_id: str) -> str | None:
    """Why the fleetmind task behind an A2A task was cancelled (None: it was not), read from
    the store while the server runs."""
    store = SQLiteStore(home.path / "data" / "fleetmind.db")
    try:
        for record in store.tasks():
            if record.metadata.get("a2a_task_id") == a2a_task_id:
                entries = store.load(record.id)[1]
                return next((e.reason for e in entries if isinstance(e, TaskCancelledEntry)), None)
    finally:
        store.close()
    return None


async def test_a_task_taken_up_after_a_restart_is_cancelled_for_real(
    home: Home, servers: Callable[[], Server]
) -> None:
    first = servers()
    async with a2a_client(first.url) as client:
        held = await send(client, request(data=HOLDING_GRAPH, at_once=True))
    until(lambda: home.runs()["hold"] == 1, "hold runs")
    first.stop(signal.SIGKILL)

    second = servers()
    until(lambda: home.runs()["hold"] == 2, "hold runs again after the restart")
    async with a2a_client(second.url) as client:
        cancelled = await client.cancel_task(CancelTaskRequest(id=held.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        until(lambda: cancel_reason(home, held.id) is not None, "the fleetmind task is cancelled")
        ended = await client.get_task(GetTaskRequest(id=held.id))

    assert cancel_reason(home, held.id) == "cancelled by the A2A client"
    assert ended.status.state == TaskState.TASK_STATE_CANCELED
    assert home.runs() == {"prepare": 1, "hold": 2}

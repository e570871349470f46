"""The console of a fleet on a broker: a real Mosquitto, a real `fleetmind agent serve` device,
a real `fleetmind orchestrator serve` replica on a SQLite store, and `fleetmind console
--broker` reading that store. Devices come and go on the page; a task submitted from it runs
on the replica and the device, its events streamed from the broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    CONSOLE_FLEET,
    DEVICE,
    FLEET,
    FLEETMIND,
    EventReader,
    RunningConsole,
    login_args,
    process,
)

from fleetmind.testing import LocalBroker

Console = Callable[..., RunningConsole]
POST = {"X-Fleetmind-Console": "1"}
DEADLINE_S = 120.0

TASK = (
    "name: over-the-broker\n"
    "subtasks:\n"
    "  - {id: a, agent: quick, inputs: {text: hello}}\n"
    "  - {id: b, agent: flaky, inputs: {key: b, after: '${a}'}}\n"
)


def wait_until(read: Callable[[], Any], ready: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = read()
        if ready(value):
            return value
        assert time.monotonic() < deadline, f"{what} never happened: {value}"
        time.sleep(0.1)


@pytest.mark.timeout(400)
def test_devices_come_and_go_and_a_task_runs_on_the_replicas(
    broker: LocalBroker, console_factory: Console, tmp_path: Path
) -> None:
    url = f"mqtt://127.0.0.1:{broker.port}"
    store = tmp_path / "replicas.db"
    replica = [
        *(FLEETMIND, "orchestrator", "serve", "--broker", url, "--fleet-name", FLEET),
        *login_args(tmp_path, broker, "orchestrator"),
        *("--store", str(store), "--replica-id", "r1", "--data-dir", str(tmp_path / "r1")),
    ]
    device = [
        *(FLEETMIND, "agent", "serve", str(CONSOLE_FLEET), "--broker", url),
        *("--fleet-name", FLEET, "--heartbeat", "0.5", *login_args(tmp_path, broker, DEVICE)),
    ]
    with process(replica, tmp_path / "replica.log"):
        running = console_factory(
            *(
                "--broker",
                url,
                "--fleet-name",
                FLEET,
                *login_args(tmp_path, broker, "orchestrator"),
            ),
            *("--store", str(store)),
        )
        client = running.client()
        info = client.get("/api/info").json()
        assert (info["mode"], info["read_only"], info["fleet"]) == ("broker", False, FLEET)
        assert client.get("/api/devices").json() == {"devices": []}
        reader = EventReader(running)
        try:
            with process(device, tmp_path / "device.log") as served:
                online = reader.wait_for(
                    lambda e: (
                        e.event == "device" and e.data["id"] == DEVICE and bool(e.data["online"])
                    )
                )[-1]
                assert isinstance(online.data["last_seen_at"], float)
                devices = wait_until(
                    lambda: client.get("/api/devices").json()["devices"],
                    lambda d: d and len(d[0]["agents"]) == 4,
                    "the device's agents showing",
                )
                assert [(d["id"], d["online"]) for d in devices] == [(DEVICE, True)]
                assert devices[0]["agents"] == [
                    {"id": "expander@pi-1", "skills": ["expand"]},
                    {"id": "flaky@pi-1", "skills": ["flaky"]},
                    {"id": "quick@pi-1", "skills": ["echo"]},
                    {"id": "slow@pi-1", "skills": ["hold"]},
                ]

                task_id = _submit(client, TASK)
                seen = reader.wait_for(
                    lambda e: e.event == "task" and e.data == {"task_id": task_id, "status": "done"}
                )
                kinds = [
                    e.data["event"]["kind"]  # type: ignore[index]
                    for e in seen
                    if e.event == "graph" and e.data["task_id"] == task_id
                ]
                assert "subtask_started" in kinds and "subtask_retried" in kinds
                view = client.get(f"/api/tasks/{task_id}").json()
                assert view["status"] == "done"
                b = next(s for s in view["subtasks"] if s["id"] == "b")
                assert (b["agent"], b["status"], b["retries"]) == ("flaky@pi-1", "done", 1)
                row = client.get("/api/tasks").json()["tasks"][0]
                assert (row["id"], row["status"], row["owner"]) == (task_id, "done", "r1")

                cancel = client.post(f"/api/tasks/{task_id}/cancel", headers=POST)
                assert cancel.status_code == 409
                assert cancel.json()["error"] == f"task {task_id} has ended (done)"
                assert client.post(f"/api/tasks/{task_id}/resume", headers=POST).status_code == 501
                words = client.post("/api/tasks", json={"text": "say hi"}, headers=POST)
                assert words.status_code == 400

                # Without the store, a console knows what it saw on the broker.
                bare = console_factory(
                    *("--broker", url, "--fleet-name", FLEET),
                    *login_args(tmp_path, broker, "orchestrator"),
                ).client()
                other = _submit(bare, TASK.replace("key: b", "key: b2"))
                seen_bare = wait_until(
                    lambda: bare.get(f"/api/tasks/{other}").json(),
                    lambda v: v.get("status") == "done",
                    "the task submitted without a store ending",
                )
                states = {s["id"]: (s["status"], s["retries"]) for s in seen_bare["subtasks"]}
                assert states == {"a": ("done", 0), "b": ("done", 1)}
                assert seen_bare["edges"] == [
                    {"source": "a", "target": "b", "kind": "data", "condition": "success"}
                ]
                rows = bare.get("/api/tasks").json()["tasks"]
                assert [(r["id"], r["status"], r["owner"]) for r in rows] == [(other, "done", "r1")]
                assert {k: v for k, v in rows[0]["counts"].items() if v} == {"done": 2}
                served.terminate()  # the device says goodbye: offline
                served.wait(DEADLINE_S)
            offline = reader.wait_for(
                lambda e: e.event == "device" and e.data["id"] == DEVICE and not e.data["online"]
            )[-1]
            assert offline.data["online"] is False
        finally:
            reader.close()
        gone = client.get("/api/devices").json()["devices"]
        assert [(d["id"], d["online"]) for d in gone] == [(DEVICE, False)]
        assert "Traceback" not in running.log_text()


@pytest.mark.timeout(400)
def test_a_task_is_cancelled_on_its_replica_from_the_page(
    broker: LocalBroker, console_factory: Console, tmp_path: Path
) -> None:
    url = f"mqtt://127.0.0.1:{broker.port}"
    store = tmp_path / "replicas.db"
    replica = [
        *(FLEETMIND, "orchestrator", "serve", "--broker", url, "--fleet-name", FLEET),
        *login_args(tmp_path, broker, "orchestrator"),
        *("--store", str(store), "--replica-id", "r1", "--data-dir", str(tmp_path / "r1")),
    ]
    device = [  # no gate: the slow agent holds until it is cancelled
        *(FLEETMIND, "agent", "serve", str(CONSOLE_FLEET), "--broker", url),
        *("--fleet-name", FLEET, *login_args(tmp_path, broker, DEVICE)),
    ]
    with process(replica, tmp_path / "replica.log"), process(device, tmp_path / "device.log"):
        running = console_factory(
            *(
                "--broker",
                url,
                "--fleet-name",
                FLEET,
                *login_args(tmp_path, broker, "orchestrator"),
            ),
            *("--store", str(store)),
        )
        client = running.client()
        reader = EventReader(running)
        try:
            task_id = _submit(client, "name: held\nsubtasks:\n  - {id: s, agent: slow}\n")
            reader.wait_for(
                lambda e: (
                    e.event == "graph"
                    and e.data["task_id"] == task_id
                    and e.data["event"]["kind"] == "subtask_started"  # type: ignore[index]
                )
            )
            cancel = client.post(f"/api/tasks/{task_id}/cancel", headers=POST)
            assert (cancel.status_code, cancel.json()) == (200, {"status": "cancelling"})
            reader.wait_for(
                lambda e: (
                    e.event == "task" and e.data == {"task_id": task_id, "status": "cancelled"}
                )
            )
        finally:
            reader.close()
        view = client.get(f"/api/tasks/{task_id}").json()
        assert view["status"] == "cancelled"
        assert [(s["id"], s["status"]) for s in view["subtasks"]] == [("s", "cancelled")]
        again = client.post(f"/api/tasks/{task_id}/cancel", headers=POST)
        assert (again.status_code, again.json()["error"]) == (
            409,
            f"task {task_id} has ended (cancelled)",
        )
        assert client.post(f"/api/tasks/{task_id}/resume", headers=POST).status_code == 501
        assert client.post("/api/tasks/tnosuchtask/cancel", headers=POST).status_code == 404
        assert "Traceback" not in running.log_text()


def _submit(client: httpx.Client, content: str) -> str:
    answer = client.post(
        "/api/tasks", json={"file_name": "task.yaml", "content": content}, headers=POST
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])

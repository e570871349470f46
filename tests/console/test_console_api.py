"""The console's HTTP API, against real `fleetmind console` processes: the token and its
session, the CSRF header, every endpoint on a fleet running real tasks, the event stream,
submitting good and bad task files, cancel, resume after a restart, and the read-only store."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    CONSOLE_FLEET,
    FLEETMIND,
    EventReader,
    RunningConsole,
    SseEvent,
)

Console = Callable[..., RunningConsole]
POST = {"X-Fleetmind-Console": "1"}
DEADLINE_S = 90.0

RELAY = (
    "name: relay\n"
    "subtasks:\n"
    "  - {id: a, skill: echo, inputs: {text: hello}}\n"
    "  - {id: b, agent: flaky, inputs: {key: b, after: '${a}'}}\n"
    "  - {id: c, agent: quick, inputs: {text: bye, after: '${b}'}}\n"
)
"""``a`` is routed by skill, ``b`` fails once and is retried, ``c`` follows ``b``."""

HELD = (
    "name: held\n"
    "subtasks:\n"
    "  - {id: wait, agent: slow, inputs: {key: w}}\n"
    "  - {id: then, agent: quick, inputs: {after: '${wait}'}}\n"
)
"""``wait`` holds until the gate file exists."""


def submit(client: httpx.Client, content: str, name: str = "task.yaml") -> str:
    answer = client.post("/api/tasks", json={"file_name": name, "content": content}, headers=POST)
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["id"]
    assert isinstance(task_id, str)
    return task_id


def wait_task(
    client: httpx.Client, task_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The task's graph once ``ready`` says so (polled; fails after the deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        view = client.get(f"/api/tasks/{task_id}").json()
        if ready(view):
            return view
        assert time.monotonic() < deadline, f"task {task_id} never got there: {view}"
        time.sleep(0.1)


def subtask(view: dict[str, Any], subtask_id: str) -> dict[str, Any]:
    return next(s for s in view["subtasks"] if s["id"] == subtask_id)


# The token and the session ----------------------------------------------------------------


def test_the_token_is_traded_for_a_strict_http_only_cookie(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    anonymous = running.client(login=False)

    wrong = anonymous.get("/", params={"token": "not-the-token"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert "wrong or expired token" in wrong.text
    assert "set-cookie" not in wrong.headers
    assert anonymous.get("/").status_code == 401
    refused = anonymous.get("/api/info")
    assert (refused.status_code, refused.json()) == (
        401,
        {"error": "no console session: open the URL that `fleetmind console` printed"},
    )
    assert anonymous.get("/api/info", headers={"Authorization": "Bearer nope"}).status_code == 401

    traded = anonymous.get("/", params={"token": running.token}, follow_redirects=False)
    assert traded.status_code == 303
    assert traded.headers["location"] == "/"
    cookie = traded.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    session, *flags = [part.strip() for part in rest.split(";")]
    assert name == "fleetmind_console"
    assert session and session != running.token
    assert sorted(flags) == ["HttpOnly", "Path=/", "SameSite=Strict"]

    page = anonymous.get("/")  # the client now holds the cookie
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for answer in (page, traded, wrong, refused):  # no framing by other sites, no Referer
        assert answer.headers["x-frame-options"] == "DENY"
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert anonymous.get("/api/info").status_code == 200
    spent = httpx.get(running.login_url, follow_redirects=False)
    assert (spent.status_code, "set-cookie" in spent.headers) == (401, False)  # signs in once
    bearer = {"Authorization": f"Bearer {running.token}"}
    assert httpx.get(f"{running.base_url}/api/info", headers=bearer).status_code == 401
    unknown = anonymous.get("/api/nothing")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "no such endpoint: GET /api/nothing"},
    )
    limit = anonymous.get("/api/tasks", params={"limit": "many"})
    assert (limit.status_code, limit.json()) == (
        400,
        {"error": "limit must be a positive whole number, not 'many'"},
    )


def test_a_post_without_the_console_header_is_refused(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    body = {"file_name": "t.yaml", "content": RELAY}
    refused = client.post("/api/tasks", json=body)
    assert refused.status_code == 403
    assert refused.json() == {"error": "a console request must carry x-fleetmind-console: 1"}
    assert client.get("/api/tasks").json() == {"tasks": []}  # nothing was submitted
    wrong = client.post("/api/tasks", json=body, headers={"X-Fleetmind-Console": "yes"})
    assert wrong.status_code == 403


def test_odd_requests_get_one_line_refusals(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    limit = client.get("/api/tasks", params={"limit": "\u00b2"})  # a digit, but not 0-9
    assert (limit.status_code, limit.json()) == (
        400,
        {"error": "limit must be a positive whole number, not '\u00b2'"},
    )
    nested = client.post("/api/tasks", content=b"[" * 100_000 + b"]" * 100_000, headers=POST)
    assert (nested.status_code, nested.json()) == (
        400,
        {"error": "the request body is nested too deeply"},
    )
    deleted = client.delete("/api/tasks")  # no console header: the method is wrong first
    assert (deleted.status_code, deleted.json()) == (
        405,
        {"error": "DELETE is not allowed on /api/tasks"},
    )
    large = b'{"text": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    for body in (large, iter([large[i : i + 65536] for i in range(0, len(large), 65536)])):
        too_large = client.post("/api/tasks", content=body, headers=POST)
        assert too_large.status_code == 413
        assert too_large.json()["error"].startswith("the request body is too large")
    host, port = running.base_url.removeprefix("http://").rsplit(":", 1)
    for path in ("/static/../_console_app.py", "/static/%2e%2e/_console_app.py"):
        raw = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            raw.request("GET", path)  # sent as written: no client tidies the dots away
            answer = raw.getresponse()
            assert answer.status == 404, path
            assert b"import" not in answer.read()
        finally:
            raw.close()
    assert client.get("/api/tasks").json() == {"tasks": []}
    assert "Traceback" not in running.log_text()


# A fleet running here ----------------------------------------------------------------------


def test_a_task_runs_and_every_endpoint_shows_it(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    assert client.get("/api/info").json() == {
        "mode": "fleet",
        "read_only": False,
        "can_plan": False,
        "fleet": "console_fleet",
        "version": client.get("/api/info").json()["version"],
    }
    reader = EventReader(running)
    try:
        assert reader.status == 200
        assert reader.content_type.startswith("text/event-stream")
        task_id = submit(client, RELAY)
        seen = reader.wait_for(
            lambda e: e.event == "task" and e.data == {"task_id": task_id, "status": "done"}
        )
    finally:
        reader.close()
    graph_events = [e for e in seen if e.event == "graph"]
    kinds = [e.data["event"]["kind"] for e in graph_events]  # type: ignore[index]
    assert {"subtask_routed", "subtask_started", "subtask_retried", "subtask_done"} <= set(kinds)
    assert kinds[-1] == "task_finished"
    assert all(e.data["task_id"] == task_id for e in graph_events)
    ids = [int(e.id or 0) for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > 0

    view = client.get(f"/api/tasks/{task_id}").json()
    assert (view["id"], view["name"], view["status"]) == (task_id, "relay", "done")
    assert view["edges"] == [
        {"source": "a", "target": "b", "kind": "data", "condition": "success"},
        {"source": "b", "target": "c", "kind": "data", "condition": "success"},
    ]
    a, b, c = (subtask(view, sid) for sid in "abc")
    assert [s["status"] for s in (a, b, c)] == ["done", "done", "done"]
    assert a["agent"] == "quick"
    assert a["routing"]["candidates"] == [{"agent_id": "quick"}]
    assert a["routing"]["excluded"] == {
        "slow": "does not offer skill 'echo'",
        "flaky": "does not offer skill 'echo'",
        "expander": "does not offer skill 'echo'",
    }
    assert (b["attempts"], b["retries"], b["error"]) == (2, 1, None)
    assert (c["attempts"], c["retries"]) == (1, 0)
    for s in (a, b, c):
        assert s["started_at"] <= s["ended_at"]
        assert s["duration_s"] >= 0
        assert s["steps"] == []
    assert b["duration_s"] >= 0.2  # its retry waited for the backoff

    tasks = client.get("/api/tasks").json()["tasks"]
    assert [t["id"] for t in tasks] == [task_id]
    row = tasks[0]
    assert (row["name"], row["status"]) == ("relay", "done")
    assert row["owner"].endswith(f"-{running.process.pid}")  # leased by the console's process
    assert {k: v for k, v in row["counts"].items() if v} == {"done": 3}
    assert row["created_at"] <= row["updated_at"]
    assert client.get(f"/api/tasks/{task_id[:5]}").json()["id"] == task_id  # a prefix will do
    missing = client.get("/api/tasks/tnothere")
    assert (missing.status_code, missing.json()) == (404, {"error": "no task tnothere"})

    devices = client.get("/api/devices").json()["devices"]
    assert [(d["id"], d["online"]) for d in devices] == [("local", True)]
    assert devices[0]["agents"] == [
        {"id": "expander", "skills": ["expand"]},
        {"id": "flaky", "skills": ["flaky"]},
        {"id": "quick", "skills": ["echo"]},
        {"id": "slow", "skills": ["hold"]},
    ]


def test_a_page_that_leaves_mid_stream_is_forgotten_and_the_server_goes_on(
    console_factory: Console,
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    for _ in range(5):
        reader = EventReader(running)
        reader.close()  # gone without reading to the end
    client = running.client()
    reader = EventReader(running)
    try:
        task_id = submit(client, RELAY)
        reader.wait_for(lambda e: e.event == "task" and e.data.get("status") == "done")
    finally:
        reader.close()
    assert client.get(f"/api/tasks/{task_id}").json()["status"] == "done"
    assert "Traceback" not in running.log_text()


def test_a_malformed_task_file_gets_the_command_lines_own_line(
    console_factory: Console, tmp_path: Path
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    bad = "name: bad\nsubtasks:\n  - {id: a, agnet: quick}\n"
    (tmp_path / "bad.yaml").write_text(bad)
    cli = subprocess.run(
        [FLEETMIND, "run", "bad.yaml", "--fleet", str(CONSOLE_FLEET), "--no-live"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert cli.returncode == 2
    line = cli.stderr.strip().removeprefix("fleetmind: error: ")
    assert line == "bad.yaml: subtask 1 (id 'a'): unknown key 'agnet' (did you mean 'agent'?)"
    answer = client.post("/api/tasks", json={"file_name": "bad.yaml", "content": bad}, headers=POST)
    assert (answer.status_code, answer.json()) == (400, {"error": line})

    broken_yaml = client.post(
        "/api/tasks", json={"file_name": "t.yaml", "content": "subtasks: [\n"}, headers=POST
    )
    assert broken_yaml.status_code == 400
    assert broken_yaml.json()["error"].startswith("t.yaml:2: malformed YAML:")
    no_agent = client.post(
        "/api/tasks",
        json={"file_name": "t.yaml", "content": "subtasks:\n  - {id: a, skill: paint}\n"},
        headers=POST,
    )
    assert no_agent.status_code == 400
    assert "paint" in no_agent.json()["error"]
    not_json = client.post("/api/tasks", content=b"{nope", headers=POST)
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith("the request body is not JSON")
    empty = client.post("/api/tasks", json={}, headers=POST)
    assert empty.json() == {"error": "give content (a task file's text) or text (plain words)"}
    params = client.post(
        "/api/tasks",
        json={"file_name": "t.yaml", "content": RELAY, "params": {"x": 1}},
        headers=POST,
    )
    assert params.status_code == 400
    assert params.json()["error"].startswith("t.yaml: unknown parameter(s) x")
    assert client.get("/api/tasks").json() == {"tasks": []}
    assert "Traceback" not in running.log_text()


def test_plain_words_without_a_model_get_the_configure_line(
    console_factory: Console, tmp_path: Path
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    assert client.get("/api/info").json()["can_plan"] is False
    answer = client.post("/api/tasks", json={"text": "say hello"}, headers=POST)
    assert answer.status_code == 400
    cli = subprocess.run(
        [FLEETMIND, "plan", "say hello", "--fleet", str(CONSOLE_FLEET)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert cli.returncode == 2
    assert answer.json() == {"error": cli.stderr.strip().removeprefix("fleetmind: error: ")}


def test_cancel_stops_a_running_task(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    task_id = submit(client, HELD)
    wait_task(client, task_id, lambda v: subtask(v, "wait")["status"] == "running")
    answer = client.post(f"/api/tasks/{task_id}/cancel", headers=POST)
    assert (answer.status_code, answer.json()) == (200, {"status": "cancelled"})
    view = client.get(f"/api/tasks/{task_id}").json()
    assert view["status"] == "cancelled"
    assert [s["status"] for s in view["subtasks"]] == ["cancelled", "cancelled"]
    again = client.post(f"/api/tasks/{task_id}/cancel", headers=POST)
    assert again.status_code == 409
    assert again.json() == {"error": f"task {task_id} is not running here (it is cancelled)"}


@pytest.mark.timeout(300)
def test_a_task_interrupted_by_a_restart_is_resumed(console_factory: Console) -> None:
    first = console_factory("--fleet", str(CONSOLE_FLEET))
    client = first.client()
    task_id = submit(client, HELD)
    wait_task(client, task_id, lambda v: subtask(v, "wait")["status"] == "running")
    cookies = dict(client.cookies)
    assert first.stop() == 0

    second = console_factory("--fleet", str(CONSOLE_FLEET), data_dir=first.data_dir)
    assert second.token != first.token
    page = second.client(login=False)
    page.cookies.update(cookies)  # the page open before the restart keeps its session
    rows = page.get("/api/tasks").json()["tasks"]
    assert [(r["id"], r["status"]) for r in rows] == [(task_id, "interrupted")]
    stale = httpx.get(f"{second.base_url}/?token={first.token}", follow_redirects=False)
    assert stale.status_code == 401  # the old token is not

    second.gate.touch()
    answer = page.post(f"/api/tasks/{task_id}/resume", headers=POST)
    assert (answer.status_code, answer.json()) == (200, {"id": task_id})
    done = wait_task(page, task_id, lambda v: v["status"] == "done")
    assert [s["status"] for s in done["subtasks"]] == ["done", "done"]
    again = page.post(f"/api/tasks/{task_id}/resume", headers=POST)
    assert again.status_code == 409
    assert again.json() == {"error": f"task {task_id} has already ended (done); nothing to resume"}


@pytest.mark.timeout(300)
def test_a_task_from_the_page_also_resumes_from_the_command_line(
    console_factory: Console,
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    client = running.client()
    task_id = submit(client, HELD, name="held.yaml")
    wait_task(client, task_id, lambda v: subtask(v, "wait")["status"] == "running")
    assert running.stop() == 0
    running.gate.touch()
    resumed = subprocess.run(
        [FLEETMIND, "resume", task_id, "--no-live", "--json", "--data-dir", str(running.data_dir)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "FM_CONSOLE_GATE": str(running.gate)},
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert (result["task_id"], result["status"]) == (task_id, "done")
    assert result["outputs"]["wait"] == "w released"


# The store, read-only ------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_store_is_shown_read_only_and_tasks_run_elsewhere_are_streamed(
    console_factory: Console, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    store = data / "fleetmind.db"
    task = tmp_path / "relay.yaml"
    task.write_text(RELAY)

    def run_elsewhere() -> str:
        done = subprocess.run(
            [
                FLEETMIND,
                "run",
                str(task),
                "--fleet",
                str(CONSOLE_FLEET),
                "--no-live",
                "--json",
                "--data-dir",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["task_id"])

    earlier = run_elsewhere()
    running = console_factory("--store", str(store), data_dir=tmp_path / "console-data")
    client = running.client()
    info = client.get("/api/info").json()
    assert (info["mode"], info["read_only"], info["can_plan"]) == ("store", True, False)
    assert [t["id"] for t in client.get("/api/tasks").json()["tasks"]] == [earlier]
    view = client.get(f"/api/tasks/{earlier}").json()
    assert view["status"] == "done"
    assert subtask(view, "b")["retries"] == 1
    assert subtask(view, "a")["routing"]["candidates"] == [{"agent_id": "quick"}]
    assert client.get("/api/devices").json() == {"devices": []}

    for path in ("/api/tasks", f"/api/tasks/{earlier}/cancel", f"/api/tasks/{earlier}/resume"):
        refused = client.post(path, json={"file_name": "t.yaml", "content": RELAY}, headers=POST)
        assert refused.status_code == 405, path
        assert "only reads the store" in refused.json()["error"]

    reader = EventReader(running)
    try:
        later = run_elsewhere()
        seen = reader.wait_for(
            lambda e: e.event == "task" and e.data == {"task_id": later, "status": "done"}
        )
        if not any(_last_entry(e, later) for e in seen):  # the poll's entries follow its status
            seen += reader.wait_for(lambda e: _last_entry(e, later))
    finally:
        reader.close()
    entries = [e.data for e in seen if e.event == "graph" and e.data["task_id"] == later]
    versions = [int(str(e["version"])) for e in entries]
    assert versions == sorted(versions)
    assert [t["id"] for t in client.get("/api/tasks").json()["tasks"]] == [later, earlier]


def _last_entry(event: SseEvent, task_id: str) -> bool:
    """The log entry that ends the relay task: ``c`` finished."""
    if event.event != "graph" or event.data["task_id"] != task_id:
        return False
    entry = event.data["event"]
    assert isinstance(entry, dict)
    return entry.get("kind") == "subtask_finished" and entry.get("subtask_id") == "c"

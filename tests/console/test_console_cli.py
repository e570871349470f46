"""`fleetmind console` on the command line: what it says for each mistake (one line, exit 2),
the warning when it listens beyond this machine, and what it shows when given no source."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CONSOLE_FLEET, FLEETMIND, RunningConsole

Console = Callable[..., RunningConsole]


def console_fails(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [FLEETMIND, "console", *args, "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("--fleet", "f.py", "--broker", "mqtt://127.0.0.1:1"),
            "fleetmind: error: give --fleet (run tasks here) or --broker (the fleet's devices "
            "and replicas), not both",
            id="fleet-and-broker",
        ),
        pytest.param(
            ("--fleet", "missing.py"),
            "fleetmind: error: fleet file not found: missing.py",
            id="no-fleet-file",
        ),
    ],
)
def test_a_mistake_is_one_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    assert console_fails(tmp_path, *args) == expected


def test_a_store_it_cannot_open_is_one_line(tmp_path: Path) -> None:
    line = console_fails(tmp_path, "--store", "ftp://somewhere/db")
    assert line.startswith("fleetmind: error: --store ftp://somewhere/db")
    assert "'ftp'" in line


def test_a_broker_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    line = console_fails(tmp_path, "--broker", f"mqtt://127.0.0.1:{port}")
    assert line.startswith(
        f"fleetmind: error: cannot reach the MQTT broker at mqtt://127.0.0.1:{port}"
    )


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = console_fails(tmp_path, "--fleet", str(CONSOLE_FLEET), "--port", str(port))
    assert line == f"fleetmind: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_listening_beyond_this_machine_is_said_in_one_warning(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET), "--host", "0.0.0.0")
    warnings = [line for line in running.log_text().splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: the console listens on 0.0.0.0, not only on this machine: whoever reaches it "
        "with the token can see and run the fleet's tasks (plain HTTP)"
    ]
    assert running.output.read_text().count("?token=") == 1


def test_on_loopback_there_is_no_warning(console_factory: Console) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    assert "warning" not in running.log_text()
    assert running.base_url.startswith("http://127.0.0.1:")


def test_without_a_source_the_data_directory_store_is_read(console_factory: Console) -> None:
    running = console_factory()
    client = running.client()
    info = client.get("/api/info").json()
    assert (info["mode"], info["read_only"]) == ("store", True)
    assert client.get("/api/tasks").json() == {"tasks": []}
    assert (running.data_dir / "fleetmind.db").exists()
    assert "(read-only)" in running.log_text()


def test_forget_sessions_signs_out_the_pages_signed_in_before(console_factory: Console) -> None:
    first = console_factory("--fleet", str(CONSOLE_FLEET))
    session = first.sign_in()
    assert first.stop() == 0
    kept = console_factory("--fleet", str(CONSOLE_FLEET), data_dir=first.data_dir)
    page = kept.client(login=False)
    page.cookies.set("fleetmind_console", session)
    assert page.get("/api/info").status_code == 200  # kept across the restart
    assert kept.stop() == 0
    forgot = console_factory(
        "--fleet", str(CONSOLE_FLEET), "--forget-sessions", data_dir=first.data_dir
    )
    page = forgot.client(login=False)
    page.cookies.set("fleetmind_console", session)
    assert page.get("/api/info").status_code == 401
    assert forgot.client().get("/api/info").status_code == 200  # its own token still signs in

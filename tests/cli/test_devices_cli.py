"""`fleetmind devices` against a real Mosquitto and a real `fleetmind agent serve` device.

"Last seen" is the device's latest presence or heartbeat; when the device dies, the broker
publishes its last will (written when it connected), and "last seen" must not go back to then.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)
DEADLINE_S = 60.0

AGENTS = """
from fleetmind import agent


@agent(id="doubler", skills=["double"])
async def doubler(n: int) -> int:
    return 2 * n
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker_url(tmp_path: Path) -> Iterator[str]:
    """An anonymous Mosquitto on a free port, stopped at the end."""
    if MOSQUITTO is None:
        pytest.skip("Mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def device(tmp_path: Path, broker_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """`fleetmind agent serve` as device pi-1, heartbeating five times a second."""
    (tmp_path / "agents.py").write_text(AGENTS)
    process = subprocess.Popen(
        [
            FLEETMIND,
            "agent",
            "serve",
            str(tmp_path / "agents.py"),
            "--broker",
            broker_url,
            "--device-id",
            "pi-1",
            "--heartbeat",
            "0.2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def devices_json(broker_url: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [FLEETMIND, "devices", "--broker", broker_url, "--json"],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    return rows


def seen(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["last_seen"])


def test_last_seen_follows_heartbeats_and_stays_when_the_device_dies(
    broker_url: str, device: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    first: datetime | None = None
    while True:  # until a heartbeat later than the connection has been seen
        rows = devices_json(broker_url)
        if rows and rows[0]["online"]:
            (row,) = rows
            assert row == {
                "device": "pi-1",
                "online": True,
                "last_seen": row["last_seen"],
                "agents": [{"name": "doubler", "id": "doubler@pi-1", "version": 1}],
            }
            first = first or seen(row)
            if seen(row) > first:
                break
        assert time.monotonic() < deadline, rows
    heartbeat = seen(row)

    watcher = subprocess.Popen(
        [FLEETMIND, "devices", "--broker", broker_url, "--watch", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        (online,) = json.loads(watcher.stdout.readline())
        assert online["online"] and seen(online) >= heartbeat
        os.kill(device.pid, signal.SIGKILL)  # the broker publishes its last will
        line = watcher.stdout.readline()
        assert line, watcher.stderr.read() if watcher.stderr else ""
        (offline,) = json.loads(line)
        assert offline["device"] == "pi-1" and offline["online"] is False
        # The will was written at connect time, before the heartbeat seen above.
        assert seen(offline) >= seen(online) >= heartbeat > first
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=15)
        assert watcher.returncode == 0, err
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()

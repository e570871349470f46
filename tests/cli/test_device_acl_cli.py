"""A device whose agent the broker's ACL does not allow: `fleetmind agent serve` stops with one
line that names the agent and the likely cause, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleetmind.protocols._broker import mosquitto_installed
from fleetmind.testing import start_test_broker

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

pytestmark = pytest.mark.skipif(not mosquitto_installed(), reason="needs Mosquitto")


def test_an_agent_the_broker_does_not_allow_is_one_line_and_exit_2(tmp_path: Path) -> None:
    handle, port, credentials = start_test_broker(
        tmp_path, {"pi-1": ["squarer"]}, fleet="farm", embedded=False
    )
    try:
        (tmp_path / "agents.py").write_text(
            "from fleetmind import agent\n"
            "@agent(id='intruder', skills=['square a number'])\n"
            "async def intruder(n: int) -> int:\n"
            "    return n * n\n"
        )
        (tmp_path / "pi-1.pw").write_text(credentials["pi-1"])
        done = subprocess.run(
            [
                *(FLEETMIND, "agent", "serve", str(tmp_path / "agents.py")),
                *("--broker", f"mqtt://127.0.0.1:{port}", "--fleet-name", "farm"),
                *("--username", "pi-1", "--password-file", str(tmp_path / "pi-1.pw")),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        handle.stop()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refused the card of agent 'intruder' of device 'pi-1'" in lines[0]
    assert "devices file" in lines[0]

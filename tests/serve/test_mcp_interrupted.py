"""An interrupted task seen through `fleetmind mcp serve`: not finished, and resumable.

The task is stored the way an interrupted `fleetmind run` leaves it; the server runs as the real
console script over stdio, driven by the MCP SDK's own client.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from repo_paths import FIXTURES

from fleetmind.orchestrator import SQLiteStore, TaskGraph, TaskRecord

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TASK_ID = "t0000000abc"

pytestmark = pytest.mark.timeout(120)


def _interrupted_task(data_dir: Path) -> None:
    graph = TaskGraph("paused")
    graph.add_subtask("greet", skill="greeting", inputs={"name": "ada"})
    store = SQLiteStore(data_dir / "fleetmind.db")
    try:
        store.create_task(TaskRecord(id=TASK_ID, name="paused"), graph.log)
        assert store.interrupt(TASK_ID) == "interrupted"
    finally:
        store.close()


async def test_an_interrupted_task_reads_as_resumable_not_finished(tmp_path: Path) -> None:
    _interrupted_task(tmp_path)
    fleet = str(FIXTURES / "mcp_fleet.py")
    params = StdioServerParameters(
        command=FLEETMIND,
        args=["mcp", "serve", "--stdio", "--fleet", fleet, "--data-dir", str(tmp_path)],
        env={**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"},
        cwd=str(tmp_path),
    )
    async with Client(params) as client:
        state = (await client.call_tool("get_task", {"task_id": TASK_ID})).structured_content
        assert state is not None
        assert (state["status"], state["finished"], state["resumable"]) == (
            "interrupted",
            False,
            True,
        )

        result = await client.call_tool("get_result", {"task_id": TASK_ID, "timeout_s": 0})
        outcome = result.structured_content
        assert outcome is not None
        assert (outcome["status"], outcome["finished"], outcome["resumable"]) == (
            "interrupted",
            False,
            True,
        )

        refused = await client.call_tool("cancel_task", {"task_id": TASK_ID})
        assert refused.is_error
        assert refused.content[0].text == (
            f"Error executing tool cancel_task: task {TASK_ID} is interrupted, not running: "
            f"`fleetmind resume {TASK_ID}` continues it"
        )

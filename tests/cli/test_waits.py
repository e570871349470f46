"""Long waits say what they wait for, through the real console script: a spinner on a
terminal, one plain line on stderr off one; and `submit` with no orchestrator gives up with one
line and exit 2 instead of waiting for ever."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pty_terminal import Terminal

from fleetmind.testing import Reply, ScriptedLLMServer, start_test_broker

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TIMEOUT_S = 120

TASK = """
name: nobody-takes-it
subtasks:
  - {id: a, agent: nobody, inputs: {n: 1}}
"""

NO_ORCHESTRATOR = re.compile(
    r"fleetmind: error: no orchestrator of fleet 'farm' took task (t[0-9a-f]{10}) within 2 s; "
    r"start one with `fleetmind orchestrator serve` \(or wait longer: --orchestrator-timeout\)"
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[list[str]]:
    """A real broker with no orchestrator: the options that log in to it as one would."""
    handle, port, credentials = start_test_broker(tmp_path, fleet="farm")
    (tmp_path / "orchestrator.pw").write_text(credentials["orchestrator"])
    try:
        yield [
            *("--broker", f"mqtt://127.0.0.1:{port}", "--fleet-name", "farm"),
            *("--username", "orchestrator", "--password-file", str(tmp_path / "orchestrator.pw")),
        ]
    finally:
        handle.stop()


def test_submit_with_no_orchestrator_says_it_waits_then_gives_up_with_one_line(
    tmp_path: Path, broker: list[str]
) -> None:
    (tmp_path / "task.yaml").write_text(TASK)
    started = time.monotonic()
    proc = subprocess.run(
        [FLEETMIND, "submit", "task.yaml", *broker, "--orchestrator-timeout", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    print(f"\nsubmit with no orchestrator gave up after {time.monotonic() - started:.2f} s")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    *waits, error = proc.stderr.splitlines()
    found = NO_ORCHESTRATOR.fullmatch(error)
    assert found, proc.stderr
    task_id = found.group(1)
    # Off a terminal the wait is one plain line, printed once it had lasted a second.
    assert waits == [f"waiting for an orchestrator of fleet 'farm' to take task {task_id}…"]


def test_submit_on_a_terminal_shows_a_spinner_while_it_waits(
    tmp_path: Path, broker: list[str]
) -> None:
    (tmp_path / "task.yaml").write_text(TASK)
    env = {**os.environ, "TERM": "xterm-256color"}
    args = [FLEETMIND, "submit", "task.yaml", *broker, "--orchestrator-timeout", "2"]
    term = Terminal(args, env, tmp_path)
    try:
        code = term.wait(timeout=TIMEOUT_S)
    finally:
        term.close()
    assert code == 2, term.text
    assert "waiting for an orchestrator of fleet 'farm' to take task" in term.text
    assert NO_ORCHESTRATOR.search(term.text), term.text
    assert "Traceback" not in term.text


def test_a_slow_model_answer_off_a_terminal_gets_one_status_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETMIND_")}
    with ScriptedLLMServer() as server:
        server.push(Reply.text("OK", delay_s=2.5), Reply.text("OK"))
        env.update(
            HOME=str(tmp_path),
            FLEETMIND_HOME=str(tmp_path / "data"),
            FLEETMIND_CLOUD_BASE_URL=server.url,
            FLEETMIND_CLOUD_MODEL="planner-model",
        )
        proc = subprocess.run(
            [FLEETMIND, "llm", "check", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["endpoints"][0]["ok"]
    assert proc.stderr.splitlines() == ["asking the configured models…"]


AGENTS = """
from fleetmind import agent

@agent(id="translator", description="Translates short texts between English and German.")
async def translator(ctx) -> str:
    return "übersetzt: " + ctx.subtask.description


@agent(id="counter", description="Counts the lines of code in a repository.")
async def counter(ctx) -> int:
    return 0
"""

WORDS_TASK = """
name: by-meaning
fleet: agents.py
subtasks:
  - {id: note, description: translate my grocery note into German}
"""


@pytest.mark.timeout(300)
def test_a_run_off_a_terminal_says_when_it_loads_the_embedding_model(tmp_path: Path) -> None:
    (tmp_path / "agents.py").write_text(AGENTS)
    (tmp_path / "task.yaml").write_text(WORDS_TASK)
    proc = subprocess.run(
        [FLEETMIND, "run", "task.yaml", "--no-live", "--data-dir", str(tmp_path / "home")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    loads = [line for line in proc.stderr.splitlines() if "embedding model" in line]
    assert len(loads) == 1, proc.stderr
    assert re.fullmatch(r"(loading|assembling) the [\w.-]+ embedding model.*…", loads[0])
    assert proc.stderr.index(loads[0]) < proc.stderr.index("▶ note started on translator")

"""An MCP server's question during `fleetmind run`: asked at the terminal (each field checked,
the live table stopped meanwhile), declined off one. The real console script runs the task on
a pseudo-terminal; the server is tests/fixtures/mcp_asking_server.py in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pty_terminal import Terminal
from repo_paths import FIXTURES

pytestmark = pytest.mark.timeout(120)

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

AGENTS = f"""
import sys
from fleetmind import Fleet, agent


@agent(id="caller")
async def caller(ctx) -> object:
    result = await ctx.tools.call("ask_profile", {{"reason": "for the report"}})
    return result.value if result.ok else result.error


SERVER = {{
    "name": "asking",
    "command": sys.executable,
    "args": [{str(FIXTURES / "mcp_asking_server.py")!r}],
}}
fleet = Fleet([caller], mcp_servers=[SERVER])
"""

TASK = """
name: questions
fleet: agents.py
subtasks:
  - {id: who, agent: caller}
"""


def workspace(root: Path) -> dict[str, str]:
    (root / "agents.py").write_text(AGENTS)
    (root / "task.yaml").write_text(TASK)
    return {**os.environ, "HOME": str(root), "TERM": "xterm-256color"}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.02)


def test_the_user_answers_a_servers_form_at_the_terminal(tmp_path: Path) -> None:
    env = workspace(tmp_path)
    home = tmp_path / "home"
    term = Terminal([FLEETMIND, "run", "task.yaml", "--data-dir", str(home)], env, tmp_path)
    try:

        def answer(prompt: str, text: str) -> None:
            """Type ``text`` once ``prompt`` shows once more than it has been answered."""
            seen = answered.get(prompt, 0)
            wait_until(lambda: term.text.count(prompt) > seen, f"the prompt {prompt!r}")
            answered[prompt] = seen + 1
            term.type(text)

        answered: dict[str, int] = {}
        wait_until(lambda: "asks: Who are you? (for the report)" in term.text, "the question")
        answer("Answer it? [a]nswer, [d]ecline, [c]ancel: ", "a\n")
        answer("Name (Your name): ", "Ada\n")
        answer("Age (Your age in years) [a whole number]: ", "old\n")
        answer("Age (Your age in years) [a whole number]: ", "200\n")
        answer("Age (Your age in years) [a whole number]: ", "36\n")
        answer("Colour (Your favourite colour) [one of 1) red 2) green 3) blue]: ", "2\n")
        assert term.wait(timeout=60) == 0, term.text
    finally:
        term.close()
    text = term.text
    assert "'old' is not a whole number" in text
    assert "200 is greater than the maximum of 150" in text
    assert "accepted: Ada, 36, green" in text


def test_a_user_who_declines_at_the_terminal_is_heard(tmp_path: Path) -> None:
    env = workspace(tmp_path)
    home = tmp_path / "home"
    term = Terminal([FLEETMIND, "run", "task.yaml", "--data-dir", str(home)], env, tmp_path)
    try:
        wait_until(lambda: "[a]nswer, [d]ecline, [c]ancel" in term.text, "the question")
        term.type("d\n")
        assert term.wait(timeout=60) == 0, term.text
    finally:
        term.close()
    assert '"result": "decline"' in term.text


def test_off_a_terminal_nobody_is_asked_and_the_question_is_declined(tmp_path: Path) -> None:
    env = workspace(tmp_path)
    done = subprocess.run(
        [FLEETMIND, "run", "task.yaml", "--data-dir", str(tmp_path / "home"), "--json"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "asks:" not in done.stderr
    assert "decline" in done.stdout

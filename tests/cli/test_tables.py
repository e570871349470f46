"""Tables fit or cut with an ellipsis; they never break a word, on a terminal or off it.

Off a terminal (these tests read a pipe) a table is as wide as its rows unless ``COLUMNS`` says
otherwise, so scripts see whole identifiers. Run through the real console script.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

SKILLS = ("summarise-quarterly-reports", "translate-legal-documents", "classify-support-tickets")
AGENTS = f"""
from fleetmind import agent


@agent(id="an-agent-with-a-rather-long-identifier", skills={list(SKILLS)!r})
async def worker(n: int) -> int:
    return n
"""
LONG_DIR = "a-directory-whose-name-is-long-enough-to-push-the-source-column-past-eighty"
TASK = (
    "fleet: ../agents.py\nsubtasks:\n"
    "  - {id: one, agent: an-agent-with-a-rather-long-identifier, inputs: {n: 1}}\n"
)


def fleetmind(
    cwd: Path, *args: str, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    env["HOME"] = str(cwd / "home")
    env["FLEETMIND_HOME"] = str(cwd / "store")
    proc = subprocess.run(
        [FLEETMIND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def cells(stdout: str, column: int) -> list[str]:
    """The text of one column in every body row of a rich table (continuation lines too)."""
    found = []
    for line in stdout.splitlines():
        parts = line.split("│")
        if len(parts) > column + 1:
            found.append(parts[column + 1].strip())
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tables")
    (base / "agents.py").write_text(AGENTS)
    (base / LONG_DIR).mkdir()
    (base / LONG_DIR / "task.yaml").write_text(TASK)
    fleetmind(base, "run", f"{LONG_DIR}/task.yaml")
    return base


def test_off_a_terminal_rows_stay_whole(workdir: Path) -> None:
    source = str(workdir / LONG_DIR / "task.yaml")
    assert len(source) > 80
    out = fleetmind(workdir, "tasks").stdout
    (row,) = [line for line in out.splitlines() if source in line]
    assert re.search(r"\bt[0-9a-f]{10}\b", row)
    assert "…" not in out


def test_narrow_columns_cut_with_an_ellipsis_and_keep_the_width(workdir: Path) -> None:
    source = str(workdir / LONG_DIR / "task.yaml")
    out = fleetmind(workdir, "tasks", columns=50).stdout
    assert all(len(line) <= 50 for line in out.splitlines()), out
    assert re.search(r"\bt[0-9a-f]{10}\b", out), out  # the id column is not cut
    assert "…" in out
    # A folded cell would carry the rest of the path on the next line.
    assert source[-12:] not in out, out


@pytest.mark.parametrize("columns", [60, 90])
def test_words_wrap_whole_or_end_in_an_ellipsis(workdir: Path, columns: int) -> None:
    out = fleetmind(workdir, "agents", "--fleet", "agents.py", columns=columns).stdout
    assert all(len(line) <= columns for line in out.splitlines()), out
    pieces = [p for cell in cells(out, 6) for p in cell.replace(",", " ").split()]
    assert pieces, out
    for piece in pieces:
        whole = piece in SKILLS
        cut = piece.endswith("…") and any(s.startswith(piece[:-1]) for s in SKILLS)
        assert whole or cut, (piece, out)


def test_a_pipe_gets_every_skill_on_the_agent_row(workdir: Path) -> None:
    out = fleetmind(workdir, "agents", "--fleet", "agents.py").stdout
    (row,) = [line for line in out.splitlines() if "an-agent-with-a-rather-long-identifier" in line]
    for skill in SKILLS:
        assert skill in row, out


def test_show_on_a_narrow_terminal_width_fits(workdir: Path) -> None:
    task_id = re.search(r"\bt[0-9a-f]{10}\b", fleetmind(workdir, "tasks").stdout)
    assert task_id
    out = fleetmind(workdir, "show", task_id[0], columns=40).stdout
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 40 for line in table), out
    assert "one" in cells(out, 0), out
    # The source line is a path to copy: it is never broken, whatever the width.
    assert f"source: {workdir / LONG_DIR / 'task.yaml'}" in out.splitlines(), out

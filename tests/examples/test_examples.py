"""The examples in examples/ run as their comments say, through the real console script."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fleetmind.tools import count_lines

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TIMEOUT_S = 120

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# A small repository with known contents: every number in EXPECTED_REPORT follows from these.
FILES = {
    "app.py": (
        "# Entry point of the demo.\n"
        "import os\n"
        "\n"
        "\n"
        "def main() -> str:\n"
        "    # TODO: handle errors\n"
        "    return os.getcwd()  # FIXME(bob): slow\n"
    ),
    "pkg/util.py": (
        "def add(a, b):\n"
        "    return a + b\n"
        "\n"
        "\n"
        "# XXX: remove before release\n"
        "def sub(a, b):\n"
        "    return a - b\n"
    ),
    "README.md": (
        "# Demo\n\nThis file mentions TODO and FIXME markers in prose only.\n\n"
        "HACK: a real marker in Markdown\n"
    ),
    "pyproject.toml": (
        "[project]\n"
        'name = "demo"\n'
        "# runtime dependencies\n"
        'dependencies = ["requests>=2.31", "rich==13.7.0", "click"]\n'
    ),
    "requirements.txt": "httpx>=0.27,<1\nattrs~=23.1\n",
    ".gitignore": "ignored/\n",
    # Ignored by git: neither counted nor listed, although it is the biggest file by far.
    "ignored/huge.py": "x = 1\n" * 5000,
}
BINARY = {"logo.png": b"\x89PNG\r\n\x1a\n\0" + bytes(600)}

EXPECTED_REPORT = """\
# Repository audit of {root}

## Lines of code

| language | files | code | comment | blank |
|---|---:|---:|---:|---:|
| Python | 2 | 7 | 3 | 4 |
| Markdown | 1 | 3 | 0 | 2 |
| TOML | 1 | 3 | 1 | 0 |
| Text | 1 | 2 | 0 | 0 |
| **total** | 5 | 15 | 4 | 6 |

## Markers (4)

- FIXME: 1
- HACK: 1
- TODO: 1
- XXX: 1
- `README.md:5` HACK a real marker in Markdown
- `app.py:6` TODO handle errors
- `app.py:7` FIXME (bob): slow
- `pkg/util.py:5` XXX remove before release

## Largest files

- `logo.png` 609 bytes
- `app.py` 127 bytes, 7 lines
- `pyproject.toml` 106 bytes, 4 lines
- `README.md` 98 bytes, 5 lines
- `pkg/util.py` 95 bytes, 7 lines
- `requirements.txt` 27 bytes, 2 lines
- `.gitignore` 9 bytes, 1 line

## Declared dependencies

- `pyproject.toml` (PyPI): requests>=2.31, rich==13.7.0, click
- `requirements.txt` (PyPI): httpx>=0.27,<1, attrs~=23.1

## Dependency pinning

- exact: 1 — rich (pyproject.toml)
- bounded: 2 — attrs (requirements.txt), httpx (requirements.txt)
- floor: 1 — requests (pyproject.toml)
- unpinned: 1 — click (pyproject.toml)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    env["FLEETMIND_HOME"] = str(tmp_path / "store")
    return env


def _fleetmind(tmp_path: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLEETMIND, *args, "--data-dir", str(tmp_path / "store")],
        cwd=cwd,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _output_of(stdout: str, subtask_id: str) -> str:
    _, sep, tail = stdout.partition(f"\n── {subtask_id} ──\n")
    assert sep, stdout
    return tail


# --- repo_audit -----------------------------------------------------------------------------


@needs_git
def test_repo_audit_of_a_small_repository(tmp_path: Path) -> None:
    repo = tmp_path / "demo"
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for name, data in BINARY.items():
        (repo / name).write_bytes(data)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)

    proc = _fleetmind(tmp_path, "run", str(EXAMPLES / "repo_audit.yaml"), "--param", f"path={repo}")

    assert proc.returncode == 0, proc.stderr
    assert _output_of(proc.stdout, "report") == EXPECTED_REPORT.format(root=os.path.realpath(repo))
    # The pinning section above comes from `pin-check`, which `deps` added while the task ran.
    events = proc.stderr.splitlines()
    assert "+ graph edited by deps: added pin-check after deps" in events
    assert "+ graph edited by deps: pin-check -> report" in events
    assert "▶ pin-check started on pin-checker" in events
    assert events.index("▶ pin-check started on pin-checker") < events.index(
        "▶ report started on reporter"
    )
    assert re.search(r"^task t[0-9a-f]{10} done: 6 done$", proc.stdout, re.MULTILINE)


def _python_lines_of_this_repository() -> tuple[int, int, int, int]:
    """(files, code, comment, blank) of the repository's Python files, by the library's counter.

    That counter gives cloc's figures (tests/examples/test_line_counts.py checks it against cloc),
    so this only checks that the report shows what it counted.
    """
    rows = count_lines(str(REPO))["languages"]
    row = next(r for r in rows if r["language"] == "Python")
    return row["files"], row["code"], row["comment"], row["blank"]


@needs_git
def test_repo_audit_of_this_repository(tmp_path: Path) -> None:
    # Other people may be editing the repository meanwhile: count before and after the run.
    before = _python_lines_of_this_repository()
    proc = _fleetmind(tmp_path, "run", "examples/repo_audit.yaml")
    after = _python_lines_of_this_repository()

    assert proc.returncode == 0, proc.stderr
    report = _output_of(proc.stdout, "report")
    assert report.startswith(f"# Repository audit of {os.path.realpath(REPO)}\n")
    row = re.search(r"^\| Python \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", report, re.MULTILINE)
    assert row, report
    assert tuple(int(n) for n in row.groups()) in {before, after}, (row[0], before, after)
    # This repository declares dependencies, so the pinning check was added and ran.
    assert "## Dependency pinning" in report
    assert "+ graph edited by deps: added pin-check after deps" in proc.stderr


# --- sdk_quickstart -------------------------------------------------------------------------


def _word_totals() -> Counter[str]:
    """What the quickstart counts: words of 5+ letters in every examples/*.py, summed."""
    totals: Counter[str] = Counter()
    for path in sorted(EXAMPLES.glob("*.py")):
        totals.update(re.findall(r"[a-z]{5,}", path.read_text().lower()))
    return totals


def _assert_top_five(printed: list[tuple[str, int]], totals: Counter[str]) -> None:
    # Words with equal counts may come in any order; the counts and each word's total may not.
    assert [n for _, n in printed] == [n for _, n in totals.most_common(5)]
    assert len({w for w, _ in printed}) == 5
    for word, n in printed:
        assert totals[word] == n, (word, n, totals[word])


def test_sdk_quickstart_as_a_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "sdk_quickstart.py")],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "subtask_done merge" in [line.strip() for line in lines]
    assert lines[-2].startswith("task_finished")
    printed = ast.literal_eval(lines[-1])
    _assert_top_five(printed, _word_totals())


def test_sdk_quickstart_through_the_cli(tmp_path: Path) -> None:
    proc = _fleetmind(tmp_path, "run", str(EXAMPLES / "sdk_quickstart.py"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = [tuple(pair) for pair in json.loads(_output_of(proc.stdout, "merge"))]
    _assert_top_five(printed, _word_totals())
    assert "▶ merge started on merger" in proc.stderr.splitlines()


def test_mcp_notes_runs_two_agents_on_an_mcp_servers_tools(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Fleets route work.\nEvery fleet routes work to agents; agents work.\n")
    done = subprocess.run(
        [
            *(FLEETMIND, "run", str(EXAMPLES / "mcp_notes.yaml"), "--param", f"path={notes}"),
            *("--json", "--no-live", "--data-dir", str(tmp_path / "home")),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert outputs["stats"] == {"lines": 2, "words": 11, "top_words": ["work", "agents", "fleets"]}
    # The server's `headline` tool shortened the line to 80 characters.
    full = f"{notes}: 2 lines, 11 words; most used: work, agents, fleets"
    expected = full if len(full) <= 80 else full[:79].rstrip() + "…"
    assert outputs["summary"] == expected

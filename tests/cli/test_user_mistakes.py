"""Every mistake, and every service that cannot be reached, is one line on stderr and exit 2.

Exit 1 is kept for tasks that ran and failed. Names the user got slightly wrong (a task file's
key, an agent, a skill) come with a "did you mean". Run through the real console script.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")

AGENTS = """
from fleetmind import agent


@agent(id="doubler", skills=["double"])
async def doubler(n: int) -> int:
    return 2 * n


@agent(id="reporter", skills=["report-writing"])
async def reporter(n: int) -> str:
    return str(n)
"""

FILES = {
    "agents.py": AGENTS,
    "task.yaml": "fleet: agents.py\nsubtasks:\n  - {id: a, agent: doubler, inputs: {n: 1}}\n",
    "key_typo.yaml": (
        "fleet: agents.py\nsubtasks:\n"
        "  - {id: fetch, agent: doubler, inputs: {n: 1}}\n"
        "  - {id: report, agnet: reporter, inputs: {n: 2}}\n"
    ),
    "constraint_typo.yaml": (
        "fleet: agents.py\nsubtasks:\n"
        "  - {id: a, agent: doubler, inputs: {n: 1}, constraints: {max_cots: 1}}\n"
    ),
    "agent_typo.yaml": "fleet: agents.py\nsubtasks:\n  - {id: a, agent: doublr, inputs: {n: 1}}\n",
    "skill_typo.yaml": "fleet: agents.py\nsubtasks:\n  - {id: a, skill: dubble, inputs: {n: 1}}\n",
}


def free_port() -> int:
    """A port nothing listens on (so connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Mistake:
    """A command line that is wrong in one way, and what its error line must say."""

    id: str
    args: tuple[str, ...]
    needles: tuple[str, ...]


def mistakes(refused: str) -> list[Mistake]:
    broker = f"mqtt://127.0.0.1:{refused}"
    unreachable = (f"cannot reach the MQTT broker at {broker}: connection refused", "broker serve")
    return [
        Mistake("devices-refused", ("devices", "--broker", broker), unreachable),
        Mistake("submit-refused", ("submit", "task.yaml", "--broker", broker), unreachable),
        Mistake("run-refused", ("run", "task.yaml", "--broker", broker), unreachable),
        Mistake(
            "agent-serve-refused",
            ("agent", "serve", "agents.py", "--broker", broker, "--device-id", "pi-1"),
            unreachable,
        ),
        Mistake("orchestrator-refused", ("orchestrator", "serve", "--broker", broker), unreachable),
        Mistake(
            "unknown-host",
            ("devices", "--broker", "mqtt://no-such-host.invalid:1883"),
            ("mqtt://no-such-host.invalid:1883", "unknown host"),
        ),
        Mistake(
            "a2a-refused",
            ("a2a", "add", f"http://127.0.0.1:{refused}"),
            (f"http://127.0.0.1:{refused}", "cannot connect"),
        ),
        Mistake(
            "task-key-typo",
            ("run", "key_typo.yaml"),
            ("key_typo.yaml: subtask 2 (id 'report'): unknown key 'agnet'", "'agent'?"),
        ),
        Mistake(
            "constraint-key-typo",
            ("run", "constraint_typo.yaml"),
            ("subtask 1 (id 'a'): constraints: unknown key 'max_cots'", "'max_cost'?"),
        ),
        Mistake("agent-typo", ("run", "agent_typo.yaml"), ("'doublr'", "did you mean 'doubler'?")),
        Mistake("skill-typo", ("run", "skill_typo.yaml"), ("'dubble'", "did you mean 'double'?")),
        Mistake(
            "route-skill-typo",
            ("route", "double it", "--fleet", "agents.py", "--skill", "dubble"),
            ("skill 'dubble'", "did you mean 'double'?"),
        ),
        Mistake(
            "a2a-serve-agent-typo",
            ("a2a", "serve", "--fleet", "agents.py", "--port", "0", "--agent", "reportr"),
            ("no agent 'reportr'", "did you mean 'reporter'?"),
        ),
        Mistake(
            "password-file-missing",
            ("devices", "--broker", broker, "--password-file", "nosuch.pw"),
            ("nosuch.pw",),
        ),
        Mistake(
            "token-file-missing",
            ("a2a", "add", "http://127.0.0.1:1", "--token-file", "nosuch.token"),
            ("nosuch.token",),
        ),
        Mistake("models-file-missing", ("llm", "check", "--models", "nosuch.yaml"), ("nosuch",)),
        Mistake(
            "agent-file-missing",
            ("agent", "serve", "nosuch.py", "--broker", broker, "--device-id", "pi-1"),
            ("nosuch.py", "not found"),
        ),
        Mistake(
            "data-dir-cannot-be-made",
            ("tasks", "--data-dir", "a-file/store"),
            ("a-file/store",),
        ),
    ]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    (line,) = lines
    assert line.startswith("fleetmind: error: "), line
    assert "Error:" not in line and "Error " not in line, line  # no class names
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("mistakes")
    for name, text in FILES.items():
        (base / name).write_text(text)
    (base / "a-file").write_text("not a directory\n")
    return base


@pytest.fixture(scope="module")
def refused_port() -> Iterator[str]:
    yield str(free_port())


@pytest.fixture(scope="module")
def runs(workdir: Path, refused_port: str) -> dict[str, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env.pop("FLEETMIND_MQTT_PASSWORD", None)
    env["HOME"] = str(workdir / "home")
    env["FLEETMIND_HOME"] = str(workdir / "store")

    def run(mistake: Mistake) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLEETMIND, *mistake.args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    cases = mistakes(refused_port)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return {m.id: proc for m, proc in zip(cases, pool.map(run, cases), strict=True)}


@pytest.mark.parametrize("mistake", mistakes("{port}"), ids=lambda m: m.id)
def test_mistakes_are_one_line_errors_with_exit_2(
    runs: dict[str, subprocess.CompletedProcess[str]], refused_port: str, mistake: Mistake
) -> None:
    needles = (needle.replace("{port}", refused_port) for needle in mistake.needles)
    assert_one_line_error(runs[mistake.id], *needles)


def test_a_silent_broker_is_given_up_after_the_named_connect_timeout(workdir: Path) -> None:
    """A host that takes the connection and never answers (as a wrong port on a busy host
    might) ends in the connect timeout, which the message names."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads
        url = f"mqtt://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.run(
            [FLEETMIND, "devices", "--broker", url],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert_one_line_error(proc, url, "did not answer within the connect timeout (5 s)")

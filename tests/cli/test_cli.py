"""The `fleetmind` command line, run as a real console script in a subprocess.

Every call gets its own data directory (``--data-dir`` or ``FLEETMIND_HOME``) and a ``HOME`` in
the test's temporary directory, so nothing touches the user's ``~/.fleetmind``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import fleetmind

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TIMEOUT_S = 60
TASK_ID = re.compile(r"\bt[0-9a-f]{10}\b")

AGENTS = """
from fleetmind import SubtaskFailed, agent


@agent(id="doubler", skills=["double"])
async def doubler(n: int) -> int:
    return n * 2


@agent(id="joiner")
async def joiner(a: int, b: int, sep: str = "+") -> str:
    return f"{a}{sep}{b}={a + b}"


@agent(id="boom")
async def boom(n: int) -> int:
    raise SubtaskFailed("kaboom", retryable=False)
"""

TASK_YAML = """
name: small
fleet: agents.py
params: {n: 3, sep: " plus "}
subtasks:
  - {id: one, skill: double, inputs: {n: "${params.n}"}}
  - {id: two, agent: doubler, inputs: {n: 5}}
  - id: sum
    agent: joiner
    inputs: {a: "${one}", b: "${two}", sep: "${params.sep}"}
"""

FAILING_YAML = """
name: failing
fleet: agents.py
subtasks:
  - {id: a, agent: boom, inputs: {n: 1}}
  - {id: b, agent: doubler, inputs: {n: "${a}"}}
"""

TASK_JSON = {
    "name": "from-json",
    "fleet": "agents.py",
    "params": {"n": 1},
    "subtasks": [
        {"id": "one", "agent": "doubler", "inputs": {"n": "${params.n}"}},
        {"id": "two", "agent": "doubler", "inputs": {"n": "${one}"}},
    ],
}

PY_FUNCTION_TASK = """
from fleetmind import Fleet, TaskGraph, agent


@agent
async def shout(word: str) -> str:
    return word.upper() + "!"


fleet = Fleet([shout])


def task(word: str = "hi", times: int = 1) -> TaskGraph:
    graph = TaskGraph("py-function")
    graph.add_subtask("loud", agent="shout", inputs={"word": word * times})
    return graph
"""

PY_GRAPH_TASK = """
from fleetmind import Fleet, TaskGraph, agent


@agent
async def shout(word: str) -> str:
    return word.upper() + "!"


fleet = Fleet([shout])
task = TaskGraph("py-graph")
task.add_subtask("loud", agent="shout", inputs={"word": "hey"})
"""

LONG_ID = "a-subtask-with-a-long-identifier-so-that-event-lines-go-past-80"
LONG_ERROR = "a very long error message " * 4 + "end"
LONG_AGENTS = f"""
from fleetmind import SubtaskFailed, agent


@agent(id="long-winded-agent-name-for-testing")
async def wordy(n: int) -> int:
    raise SubtaskFailed({LONG_ERROR!r}, retryable=False)
"""


def _one_subtask(subtask: str, fleet: str = "agents.py") -> str:
    return f"fleet: {fleet}\nsubtasks:\n  - {subtask}\n"


# Task files with one mistake each, all using AGENTS: the CLI must report each in one line.
BAD_FILES = {
    "list.yaml": "- a\n- b\n",
    "malformed.yaml": (
        "name: t\nfleet: agents.py\nsubtasks:\n"
        "  - {id: a, agent: doubler, inputs: {n: 1}]\n"
        "  - {id: b, agent: doubler, inputs: {n: 2}}\n"
    ),
    "cycle.yaml": (
        "fleet: agents.py\nsubtasks:\n"
        "  - {id: a, agent: doubler, inputs: {n: 1}, depends_on: [b]}\n"
        "  - {id: b, agent: doubler, inputs: {n: 1}, depends_on: [a]}\n"
    ),
    "unknown_agent.yaml": _one_subtask("{id: a, agent: nobody, inputs: {n: 1}}"),
    "unknown_skill.yaml": _one_subtask("{id: a, skill: juggling, inputs: {n: 1}}"),
    "missing_input.yaml": _one_subtask("{id: a, agent: doubler}"),
    "unknown_ref.yaml": _one_subtask('{id: a, agent: doubler, inputs: {n: "${nosuch}"}}'),
    "unknown_depends_on.yaml": _one_subtask(
        "{id: a, agent: doubler, inputs: {n: 1}, depends_on: [ghost]}"
    ),
    "unknown_field.yaml": _one_subtask("{id: a, agnet: doubler, inputs: {n: 1}}"),
    "missing_fleet.yaml": _one_subtask("{id: a, agent: doubler, inputs: {n: 1}}", "nothere.py"),
    "broken_fleet.yaml": _one_subtask("{id: a, agent: doubler, inputs: {n: 1}}", "broken.py"),
    "broken.py": "import os\n\ndef f(:\n    pass\n",
}


@dataclass
class Fleetmind:
    """Runs the console script with a private HOME and data directory."""

    home: Path
    cwd: Path

    def __call__(self, *args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
        }
        env["HOME"] = str(self.home / "user-home")
        env["FLEETMIND_HOME"] = str(data_dir or self.home / "store")
        return subprocess.run(
            [FLEETMIND, *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2, nothing on stdout, exactly one ``fleetmind: error:`` line on stderr."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    (line,) = lines
    assert line.startswith("fleetmind: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@dataclass
class Workspace:
    """Task files and two finished runs (one done, one failed) in one store."""

    dir: Path
    store: Path
    run: Fleetmind
    done: subprocess.CompletedProcess
    done_id: str
    failed: subprocess.CompletedProcess
    failed_id: str


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    base = tmp_path_factory.mktemp("cli")
    (base / "agents.py").write_text(AGENTS)
    (base / "task.yaml").write_text(TASK_YAML)
    (base / "failing.yaml").write_text(FAILING_YAML)
    (base / "task.json").write_text(json.dumps(TASK_JSON, indent=2))
    (base / "py_function.py").write_text(PY_FUNCTION_TASK)
    (base / "py_graph.py").write_text(PY_GRAPH_TASK)
    (base / "long_agents.py").write_text(LONG_AGENTS)
    (base / "long.yaml").write_text(
        "fleet: long_agents.py\nsubtasks:\n"
        f"  - {{id: {LONG_ID}, agent: long-winded-agent-name-for-testing, inputs: {{n: 1}}}}\n"
    )
    for name, text in BAD_FILES.items():
        (base / name).write_text(text)
    (base / "a-file").write_text("not a directory\n")
    run = Fleetmind(home=base, cwd=base)
    store = base / "store"
    # The first run names the store with --data-dir, later calls find it through FLEETMIND_HOME.
    done = run("run", "task.yaml", "--data-dir", str(store), data_dir=base / "elsewhere")
    failed = run("run", "failing.yaml", "--json")
    return Workspace(
        dir=base,
        store=store,
        run=run,
        done=done,
        done_id=_started_id(done),
        failed=failed,
        failed_id=json.loads(failed.stdout)["task_id"],
    )


def _started_id(proc: subprocess.CompletedProcess) -> str:
    match = re.search(r"^task (t[0-9a-f]{10}) \(.*\) started$", proc.stderr, re.MULTILINE)
    assert match, proc.stderr
    return match[1]


def _final_output(stdout: str, subtask_id: str) -> str:
    _, sep, tail = stdout.partition(f"── {subtask_id} ──\n")
    assert sep, stdout
    return tail


# --- run ------------------------------------------------------------------------------------


def test_run_yaml_prints_the_sink_output_and_one_stderr_line_per_event(ws: Workspace) -> None:
    proc, task_id = ws.done, ws.done_id
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (ws.store / "fleetmind.db").is_file()
    assert not (ws.dir / "elsewhere").exists()
    assert not (ws.dir / "user-home" / ".fleetmind").exists()

    # stdout: the final table, the status line, and the sink's output as it is.
    assert f"task {task_id} done: 3 done" in proc.stdout
    assert _final_output(proc.stdout, "sum") == "6 plus 10=16\n"
    assert "── one ──" not in proc.stdout  # only subtasks nobody depends on
    assert "\x1b" not in proc.stdout + proc.stderr  # not a terminal: no live display, no colour

    lines = proc.stderr.splitlines()
    assert lines[0] == f"resume with: fleetmind resume {task_id}"
    assert lines[1] == f"task {task_id} (small) started"
    assert lines[-1] == f"■ task {task_id} done"
    events = lines[2:-1]
    assert len(events) == 6, events
    assert sorted(line for line in events if line.startswith("▶")) == [
        "▶ one started on doubler",
        "▶ sum started on joiner",
        "▶ two started on doubler",
    ]
    finished = [line for line in events if line.startswith("✓")]
    assert all(re.fullmatch(r"✓ (one|two|sum) done in \d+\.\d\ds", line) for line in finished)
    done_at = {line.split()[1]: i for i, line in enumerate(events) if line.startswith("✓")}
    assert set(done_at) == {"one", "two", "sum"}
    assert events.index("▶ sum started on joiner") > max(done_at["one"], done_at["two"])


def test_run_json_of_a_failing_task_exits_1_and_shows_the_errors(ws: Workspace) -> None:
    proc = ws.failed
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)  # stdout is nothing but the JSON object
    assert result["status"] == "failed"
    assert result["outputs"] == {}
    assert result["errors"]["a"]["type"] == "SubtaskFailed"
    assert result["errors"]["a"]["message"] == "kaboom"
    assert result["errors"]["b"]["type"] == "UpstreamFailed"
    assert result["counts"]["failed"] == 2
    assert "✗ a failed: kaboom" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr


def test_run_json_task_file_with_param_override(ws: Workspace, tmp_path: Path) -> None:
    proc = ws.run("run", "task.json", "--param", "n=10", "--json", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "done"
    # n=10 is read as the int 10 (a string would have doubled to "1010").
    assert result["outputs"] == {"one": 20, "two": 40}
    assert result["errors"] == {}
    assert result["counts"]["done"] == 2


def test_run_python_module_with_task_function_and_params(ws: Workspace, tmp_path: Path) -> None:
    proc = ws.run("run", "py_function.py", "-p", "word=ab", "-p", "times=3", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _final_output(proc.stdout, "loud") == "ABABAB!\n"
    assert "▶ loud started on shout" in proc.stderr.splitlines()


def test_run_python_module_with_task_graph(ws: Workspace, tmp_path: Path) -> None:
    proc = ws.run("run", "py_graph.py", "--json", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"] == {"loud": "HEY!"}


def test_event_lines_are_never_wrapped_when_not_on_a_terminal(
    ws: Workspace, tmp_path: Path
) -> None:
    """Regression: the log console used to hard-wrap event lines at 80 columns in a pipe."""
    proc = ws.run("run", "long.yaml", data_dir=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"▶ {LONG_ID} started on long-winded-agent-name-for-testing" in lines
    assert f"✗ {LONG_ID} failed: {LONG_ERROR}" in lines


def test_forced_live_display_ends_its_last_line(ws: Workspace, tmp_path: Path) -> None:
    """Regression: off a terminal, rich's Live left its last frame without a newline."""
    proc = ws.run("run", "task.yaml", "--live", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    task_id = TASK_ID.search(proc.stdout)
    assert task_id
    assert re.search(rf"^task {task_id[0]} done: 3 done$", proc.stdout, re.MULTILINE), proc.stdout


# --- tasks and show -------------------------------------------------------------------------


def test_tasks_lists_runs_newest_first(ws: Workspace) -> None:
    proc = ws.run("tasks")
    assert proc.returncode == 0, proc.stderr
    assert TASK_ID.findall(proc.stdout) == [ws.failed_id, ws.done_id]
    rows = [line for line in proc.stdout.splitlines() if TASK_ID.search(line)]
    assert "failing" in rows[0] and "failed" in rows[0]
    assert "small" in rows[1] and "done" in rows[1]


def test_tasks_on_an_empty_store_prints_a_hint(ws: Workspace, tmp_path: Path) -> None:
    proc = ws.run("tasks", data_dir=tmp_path / "empty")
    assert proc.returncode == 0, proc.stderr
    assert "no tasks yet" in proc.stdout
    assert "fleetmind run" in proc.stdout


def test_show_by_unique_prefix_prints_the_table(ws: Workspace) -> None:
    proc = ws.run("show", ws.done_id[:6])
    assert proc.returncode == 0, proc.stderr
    assert f"small · task {ws.done_id} · done" in proc.stdout
    for subtask, agent in [("one", "doubler"), ("two", "doubler"), ("sum", "joiner")]:
        assert re.search(rf"│ {subtask} +│ ✓ done +│ {agent} +│ +1 │", proc.stdout), proc.stdout
    # rich may fold a long path at the console width; the path itself must be there.
    assert f"source: {ws.dir / 'task.yaml'}" in proc.stdout.replace("\n", "")


def test_show_mermaid(ws: Workspace) -> None:
    proc = ws.run("show", ws.done_id, "--format", "mermaid")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = dict(re.findall(r'^\s+(n\d+)\["(\w+)<br/>done @ \w+"\]:::done$', proc.stdout, re.M))
    assert sorted(nodes.values()) == ["one", "sum", "two"]
    ids = {name: node for node, name in nodes.items()}
    assert f"    {ids['one']} -.->|a| {ids['sum']}" in lines
    assert f"    {ids['two']} -.->|b| {ids['sum']}" in lines


def test_show_dot(ws: Workspace) -> None:
    proc = ws.run("show", ws.done_id, "-f", "dot")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    assert text.startswith('digraph "small" {')
    assert text.endswith("}")
    assert '"one" -> "sum" [style=dashed, label="a"];' in text
    assert '"two" -> "sum" [style=dashed, label="b"];' in text


def test_show_json(ws: Workspace) -> None:
    proc = ws.run("show", ws.done_id, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["task"]["id"] == ws.done_id
    assert data["task"]["name"] == "small"
    assert data["task"]["status"] == "done"
    state = data["graph"]["state"]
    assert {sid: s["status"] for sid, s in state.items()} == {
        "one": "done",
        "two": "done",
        "sum": "done",
    }
    assert state["sum"]["output"] == "6 plus 10=16"
    assert state["one"]["agent"] == "doubler"


# --- mistakes: one line, exit code 2 ------------------------------------------------------


@dataclass(frozen=True)
class Mistake:
    """A command line that is wrong in one way, and what its error line must name."""

    id: str
    args: tuple[str, ...]
    needles: tuple[str, ...]  # what the error line must name; {done} is a finished task's id


MISTAKES = [
    Mistake("missing-file", ("run", "nosuch.yaml"), ("nosuch.yaml", "not found")),
    Mistake("malformed-yaml", ("run", "malformed.yaml"), ("malformed.yaml:4:", "malformed YAML")),
    Mistake("yaml-list", ("run", "list.yaml"), ("list.yaml", "mapping")),
    Mistake("cycle", ("run", "cycle.yaml"), ("cycle",)),
    Mistake("unknown-agent", ("run", "unknown_agent.yaml"), ("'nobody'",)),
    Mistake("unknown-skill", ("run", "unknown_skill.yaml"), ("'juggling'",)),
    Mistake("missing-input", ("run", "missing_input.yaml"), ("missing input", "'a'", "'doubler'")),
    Mistake("unknown-data-ref", ("run", "unknown_ref.yaml"), ("'nosuch'", "'a'")),
    Mistake("unknown-depends-on", ("run", "unknown_depends_on.yaml"), ("'ghost'",)),
    Mistake("unknown-subtask-field", ("run", "unknown_field.yaml"), ("agnet",)),
    Mistake("fleet-file-missing", ("run", "missing_fleet.yaml"), ("nothere.py", "not found")),
    Mistake("fleet-syntax-error", ("run", "broken_fleet.yaml"), ("broken.py:3", "syntax error")),
    Mistake("param-without-equals", ("run", "task.yaml", "--param", "oops"), ("key=value", "oops")),
    Mistake("unknown-param", ("run", "task.yaml", "-p", "zzz=1"), ("unknown parameter", "zzz")),
    Mistake("unknown-param-python", ("run", "py_function.py", "-p", "nope=1"), ("nope",)),
    Mistake("run-without-target", ("run",), ("Missing argument",)),
    Mistake("show-unknown-id", ("show", "tnope"), ("'tnope'",)),
    Mistake("resume-unknown-id", ("resume", "tnope"), ("'tnope'",)),
    Mistake("resume-finished", ("resume", "{done}"), ("{done}", "already ended", "(done)")),
    Mistake("show-unknown-format", ("show", "{done}", "-f", "xml"), ("'xml'",)),
    Mistake("data-dir-is-a-file", ("tasks", "--data-dir", "a-file"), ("a-file", "not a directory")),
    Mistake(
        "replica-id-with-a-space",
        ("orchestrator", "serve", "--broker", "mqtt://127.0.0.1:1", "--replica-id", "a b"),
        ("--replica-id", "'a b'"),
    ),
    Mistake(
        "submit-a-python-file",
        ("submit", "py_function.py", "--broker", "mqtt://127.0.0.1:1"),
        ("py_function.py", "task file"),
    ),
    Mistake("submit-missing-file", ("submit", "nosuch.yaml", "--broker", "mqtt://h"), ("nosuch",)),
    Mistake("a2a-add-not-a-url", ("a2a", "add", "notaurl"), ("'notaurl'", "URL")),
    Mistake("a2a-remove-unknown", ("a2a", "remove", "ghost"), ("'ghost'",)),
    Mistake("mcp-serve-no-transport", ("mcp", "serve", "--fleet", "agents.py"), ("--stdio",)),
]


@pytest.fixture(scope="module")
def mistakes(ws: Workspace) -> dict[str, subprocess.CompletedProcess]:
    """Every mistake's run, started a few at a time: each is a whole Python start-up."""
    fill = {"done": ws.done_id}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        procs = pool.map(lambda m: ws.run(*(a.format(**fill) for a in m.args)), MISTAKES)
        return {m.id: proc for m, proc in zip(MISTAKES, procs, strict=True)}


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_mistakes_are_one_line_errors(
    ws: Workspace, mistakes: dict[str, subprocess.CompletedProcess], mistake: Mistake
) -> None:
    needles = (needle.format(done=ws.done_id) for needle in mistake.needles)
    assert_one_line_error(mistakes[mistake.id], *needles)


def test_fleetmind_alone_prints_help(ws: Workspace) -> None:
    proc = ws.run()
    assert proc.returncode == 0, proc.stderr
    assert "Usage: fleetmind" in proc.stdout
    for command in ("run", "resume", "tasks", "show"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.MULTILINE), command
    assert proc.stderr == ""


def test_version(ws: Workspace) -> None:
    proc = ws.run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"fleetmind {fleetmind.__version__}\n"


def test_resuming_a_task_stored_without_its_log_is_a_clear_error(
    ws: Workspace, tmp_path: Path
) -> None:
    """Older versions created a task and wrote its graph in two transactions: a crash in
    between left a running task with an empty log, and `resume` waited for ever."""
    from fleetmind.orchestrator import SQLiteStore, TaskRecord

    data = tmp_path / "half"
    store = SQLiteStore(data / "fleetmind.db")
    store.create_task(TaskRecord(id="t00000000aa", name="half", source=str(ws.dir / "task.yaml")))
    store.close()
    proc = ws.run("resume", "t00000000aa", "--no-live", data_dir=data)
    assert proc.returncode == 2
    assert (
        proc.stderr == "fleetmind: error: task t00000000aa has no log entries: nothing to resume\n"
    )
    listed = ws.run("tasks", data_dir=data)
    assert "failed" in listed.stdout  # no longer shown as running for ever


def test_a_new_task_is_stored_with_its_graph_in_one_transaction(tmp_path: Path) -> None:
    from fleetmind.orchestrator import SQLiteStore, TaskRecord

    store = SQLiteStore(tmp_path / "s.db")
    graph = fleetmind.TaskGraph("one")
    graph.add_subtask("a", agent="x")
    store.create_task(TaskRecord(id="t1", name="one"), graph.log)
    record, entries = store.load("t1")
    assert record.status == "running" and [e.kind for e in entries] == ["add_subtask"]
    with pytest.raises(fleetmind.errors.StoreError):
        store.create_task(TaskRecord(id="t1", name="again"), graph.log)  # all or nothing
    assert store.load("t1")[0].name == "one"

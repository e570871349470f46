"""`fleetmind run --memory` and `fleetmind memory ...`, run as the real console script.

One module fixture runs the README's main example (``examples/repo_audit.yaml``, no network)
three times with ``--memory`` on a small repository made here; the tests read that memory, or
a copy of it when they change it. Every call that embeds (a run, ``search``, ``import``, a
``consolidate`` that writes) loads the embedding model, so the number of such calls is kept low.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "repo_audit.yaml"
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
TIMEOUT_S = 240  # a call that embeds loads the model: 15-60 s on a busy small machine
MEMORY_FILE = "fleetmind.memory.db"
RUNS = 3  # consolidation makes a fact of 3 alike episodes from 2 tasks or more

pytestmark = pytest.mark.timeout(900)  # the first test pays for the three runs

# What the audit will find in the demo repository, and so what its episodes say.
SECRET = "nightly build fails when the cache volume is full"
# Rich markup to a console that does not escape it: "[bold]" vanishes, "[/var/cache]" raises.
MARKUP = "[bold]see[/bold] [/var/cache]"
DEMO_FILES = {
    "app.py": f"def main() -> int:\n    # TODO: {SECRET} {MARKUP}\n    return 0\n",
    "pyproject.toml": '[project]\nname = "demo"\ndependencies = ["rich==13.7.0", "click"]\n',
}


def _env(data_dir: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    }
    env["HOME"] = str(home)  # nothing may reach the user's ~/.fleetmind
    env["FLEETMIND_HOME"] = str(data_dir)
    env.pop("FLEETMIND_MEMORY", None)
    return env


@dataclass(frozen=True)
class Fleetmind:
    """Runs the console script with a private HOME; each call names its data directory."""

    base: Path

    def __call__(self, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [FLEETMIND, *args],
            cwd=self.base,
            env=_env(data_dir, self.base / "user-home"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )

    def json(self, data_dir: Path, *args: str) -> Any:
        proc = self(data_dir, *args, "--json")
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        return json.loads(proc.stdout)  # stdout is nothing but the JSON


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The CLI's convention for a user mistake: exit code 2, nothing on stdout, one
    ``fleetmind: error:`` line on stderr naming the problem, no traceback."""
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


@dataclass(frozen=True)
class Audited:
    """A data directory whose memory holds the episodes of RUNS audits of the demo repo."""

    base: Path
    data: Path
    fm: Fleetmind
    task_ids: tuple[str, ...]

    def copy(self, name: str) -> Path:
        """A fresh data directory holding a copy of the memory (for tests that change it)."""
        assert not (self.data / f"{MEMORY_FILE}-wal").exists()  # every writer has closed it
        target = self.base / name
        target.mkdir()
        shutil.copy2(self.data / MEMORY_FILE, target / MEMORY_FILE)
        return target


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Audited:
    base = tmp_path_factory.mktemp("memory-cli")
    demo = base / "demo"
    for name, text in DEMO_FILES.items():
        (demo / name).parent.mkdir(parents=True, exist_ok=True)
        (demo / name).write_text(text)
    fm = Fleetmind(base)
    data = base / "data"
    task_ids = []
    for _ in range(RUNS):
        result = fm.json(data, "run", str(EXAMPLE), "--param", f"path={demo}", "--memory")
        assert result["status"] == "done", result
        task_ids.append(result["task_id"])
    assert len(set(task_ids)) == RUNS
    return Audited(base=base, data=data, fm=fm, task_ids=tuple(task_ids))


def _export(audited: Audited, data_dir: Path, out: Path) -> list[dict[str, Any]]:
    proc = audited.fm(data_dir, "memory", "export", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert proc.stdout.strip() == f"exported {len(items)} items to {out}"
    return items


def _parallel(calls: list[tuple[Path, tuple[str, ...]]], fm: Fleetmind) -> list[Any]:
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda call: fm(call[0], *call[1]), calls))


# --- run --memory, stats, search --------------------------------------------------------------


def test_run_with_memory_records_episodes_that_search_finds(audited: Audited) -> None:
    fm, data = audited.fm, audited.data
    assert (data / MEMORY_FILE).is_file()

    # Each run is 7 episodes (the task, its 5 subtasks and the pin-check `deps` added), all in
    # the shared namespace; the third run made what recurs into facts.
    stats = fm.json(data, "memory", "stats")
    assert stats["layers"]["episodic"] == {"shared": 7 * RUNS}, stats
    facts = stats["layers"].get("semantic", {}).get("shared", 0)
    assert facts >= 1, stats
    assert stats["items"] == 7 * RUNS + facts
    assert stats["superseded"] == 0
    assert stats["bytes"] == (data / MEMORY_FILE).stat().st_size

    searches = {
        "both": ("why did the nightly build fail", "--limit", "1000"),
        "episodic": ("why did the nightly build fail", "--layer", "episodic"),
        "semantic": ("what recurs when auditing a repository", "--layer", "semantic"),
        "agent": ("scan the code for markers", "--agent", "todo-finder", "--limit", "20"),
    }
    procs = _parallel(
        [(data, ("memory", "search", *args, "--json")) for args in searches.values()], fm
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for name, proc in zip(searches, procs, strict=True):
        assert proc.returncode == 0, (name, proc.stderr)
        assert "Traceback" not in proc.stderr
        found[name] = json.loads(proc.stdout)

    # The README's query finds the audit's TODO episode near the top, with every field.
    episodic = found["episodic"]
    assert episodic and all(r["layer"] == "episodic" for r in episodic)
    # First come the episodes that mention it: the TODO scan's and the report's, every run.
    top = episodic[: 2 * RUNS]
    assert all(SECRET in r["text"] for r in top), [r["text"][:80] for r in episodic]
    assert sorted(r["agent_id"] for r in top) == ["reporter"] * RUNS + ["todo-finder"] * RUNS
    hit = next(r for r in top if r["agent_id"] == "todo-finder")
    assert SECRET in hit["text"]
    assert hit["text"].startswith("Find TODO and FIXME markers — todo-finder — done: ")
    assert hit["kind"] == "subtask"
    assert hit["outcome"] == "done"
    assert hit["namespace"] == "shared"
    assert hit["task_id"] in audited.task_ids
    assert hit["metadata"] == {"subtask": "todos", "attempts": 1}
    assert hit["id"].startswith("ep-")
    assert isinstance(hit["duration_s"], float) and hit["duration_s"] >= 0
    assert 0 < hit["similarity"] <= 1 and hit["score"] >= hit["similarity"]
    scores = [r["score"] for r in episodic]
    assert scores == sorted(scores, reverse=True)

    # Without --layer both layers answer; with it, only the layer asked for.
    assert {r["layer"] for r in found["both"]} == {"episodic", "semantic"}
    semantic = found["semantic"]
    assert semantic and all(r["layer"] == "semantic" for r in semantic)
    assert len(semantic) == facts
    for fact in semantic:
        assert fact["kind"] == "recurring" and fact["id"].startswith("fact-")
        assert fact["text"].startswith(f"recurs in {RUNS} "), fact["text"]
        assert fact["support"] == RUNS
        assert {p["task"] for p in fact["provenance"]} == set(audited.task_ids)

    # --agent: only that agent's items (its episode from each run; facts name no agent).
    by_agent = found["agent"]
    assert [r["agent_id"] for r in by_agent] == ["todo-finder"] * RUNS
    assert {r["task_id"] for r in by_agent} == set(audited.task_ids)


# --- export / import ------------------------------------------------------------------------


def test_export_import_round_trips_exactly_and_importing_twice_changes_nothing(
    audited: Audited,
) -> None:
    fm, base = audited.fm, audited.base
    first = base / "first.jsonl"
    items = _export(audited, audited.data, first)
    stats = fm.json(audited.data, "memory", "stats")
    assert len(items) == stats["items"]
    assert {i["layer"] for i in items} == {"episodic", "semantic"}

    fresh = base / "imported"  # does not exist yet: import makes it
    proc = fm(fresh, "memory", "import", str(first))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"imported {len(items)} items from {first}"
    second = base / "second.jsonl"
    _export(audited, fresh, second)
    assert second.read_bytes() == first.read_bytes()
    once = fm.json(fresh, "memory", "stats")
    assert {k: v for k, v in once.items() if k != "bytes"} == {
        k: v for k, v in stats.items() if k != "bytes"
    }

    # The ids are kept, so the same file again replaces every item by itself.
    proc = fm(fresh, "memory", "import", str(first))
    assert proc.returncode == 0, proc.stderr
    twice = fm.json(fresh, "memory", "stats")
    assert {k: v for k, v in twice.items() if k != "bytes"} == {
        k: v for k, v in once.items() if k != "bytes"
    }
    third = base / "third.jsonl"
    _export(audited, fresh, third)
    assert third.read_bytes() == first.read_bytes()


# --- forget ---------------------------------------------------------------------------------


def _raw_bytes(data_dir: Path) -> bytes:
    """Everything SQLite keeps of the memory on disk: the file, its WAL and shared memory."""
    return b"".join(
        path.read_bytes()
        for path in sorted(data_dir.iterdir())
        if path.name.startswith(MEMORY_FILE) and path.is_file()
    )


def test_forget_match_deletes_the_text_from_search_and_from_the_file(audited: Audited) -> None:
    fm = audited.fm
    data = audited.copy("forget")
    needle = "cache volume"  # in the TODO episodes, the reports and the facts made of them
    holding = [
        i for i in _export(audited, data, data.parent / "before.jsonl") if needle in i["text"]
    ]
    assert len(holding) >= 2 * RUNS  # todo-finder's and reporter's episode of every run
    assert needle.encode() in _raw_bytes(data)  # so the check below means something
    before = fm.json(data, "memory", "stats")

    proc = fm(data, "memory", "forget", "--match", needle.upper())  # case does not matter
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"forgot {len(holding)} items"

    after = fm.json(data, "memory", "stats")
    assert after["items"] == before["items"] - len(holding)
    found = fm.json(data, "memory", "search", SECRET, "--limit", "1000")
    assert found, "the other items are still there"
    assert not [r["id"] for r in found if needle in r["text"]]
    # Gone from the bytes on disk as well: no old page, free page or WAL frame keeps it.
    raw = _raw_bytes(data)
    assert needle.encode() not in raw
    assert SECRET.split()[0].encode() not in raw  # "nightly" was only in those items
    left = _export(audited, data, data.parent / "after.jsonl")
    assert {i["id"] for i in left}.isdisjoint(i["id"] for i in holding)
    assert len(left) == after["items"]

    # --before and --namespace: nothing is older than 2000; everything is older than tomorrow.
    proc = fm(data, "memory", "forget", "--before", "2000-01-01")
    assert (proc.returncode, proc.stdout) == (0, "forgot 0 items\n"), proc.stderr
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    proc = fm(data, "memory", "forget", "--before", tomorrow, "--namespace", "shared")
    assert (proc.returncode, proc.stdout) == (0, f"forgot {len(left)} items\n"), proc.stderr
    assert fm.json(data, "memory", "stats")["items"] == 0
    assert b"todo-finder" not in _raw_bytes(data)


# --- mistakes: one line, exit code 2 ------------------------------------------------------


def test_mistakes_are_one_line_errors(audited: Audited) -> None:
    base = audited.base
    good = json.dumps({"id": "ep-1", "layer": "episodic", "namespace": "shared", "text": "ok"})
    (base / "malformed.jsonl").write_text(f"{good}\n{{not json\n")
    (base / "bad-layer.jsonl").write_text(
        json.dumps({"id": "x", "layer": "procedural", "namespace": "shared", "text": "t"}) + "\n"
    )
    empty = base / "no-memory"
    empty.mkdir()
    data = audited.data
    before = audited.fm.json(data, "memory", "stats")
    cases: list[tuple[str, Path, tuple[str, ...], tuple[str, ...]]] = [
        ("bad-date", data, ("forget", "--before", "last tuesday"), ("--before", "'last tuesday'")),
        ("bad-month", data, ("forget", "--before", "2024-13-01"), ("'2024-13-01'", "not a date")),
        ("bad-layer", data, ("search", "x", "--layer", "procedural"), ("'procedural'", "episodic")),
        ("forget-nothing", data, ("forget",), ("--match", "--before")),
        (
            "agent-typo",
            data,
            ("search", "todo", "--agent", "todo-findr"),
            ("--agent 'todo-findr'", "(did you mean 'todo-finder'?)"),
        ),
        ("import-missing", base / "m1", ("import", "nosuch.jsonl"), ("nosuch.jsonl",)),
        (
            "import-malformed",
            base / "m2",
            ("import", "malformed.jsonl"),
            ("malformed.jsonl:2:", "not a memory item"),
        ),
        (
            "import-bad-layer",
            base / "m3",
            ("import", "bad-layer.jsonl"),
            ("bad-layer.jsonl:1:", "'procedural'"),
        ),
        ("stats-no-memory", empty, ("stats",), ("no memory at", str(empty), "--memory")),
        ("search-no-memory", empty, ("search", "x", "--json"), ("no memory at",)),
        ("export-no-memory", empty, ("export", "--out", "out.jsonl"), ("no memory at",)),
        ("forget-no-memory", empty, ("forget", "--match", "x"), ("no memory at",)),
        ("consolidate-no-memory", empty, ("consolidate",), ("no memory at",)),
    ]
    procs = _parallel([(d, ("memory", *args)) for _, d, args, _ in cases], audited.fm)
    for (name, _, _, needles), proc in zip(cases, procs, strict=True):
        try:
            assert_one_line_error(proc, *needles)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc

    # Nothing was made or changed by a mistake.
    assert not (base / "out.jsonl").exists()
    assert not (base / "m1").exists()
    assert list(empty.iterdir()) == []
    assert audited.fm.json(data, "memory", "stats") == before  # the bad dates forgot nothing
    # A malformed line fails the whole import: nothing is kept, not even an empty memory.
    assert not (base / "m2" / MEMORY_FILE).exists()


# --- consolidate ----------------------------------------------------------------------------


def test_consolidate_states_what_recurs_and_search_finds_it(audited: Audited) -> None:
    fm = audited.fm
    data = audited.copy("consolidate")
    # Consolidation ran after every task, so nothing new recurs.
    proc = fm(data, "memory", "consolidate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0 recurring facts written or restated\n"

    # Forget the facts, then look at every episode again: the facts are stated anew.
    proc = fm(data, "memory", "forget", "--match", f"recurs in {RUNS} ")
    assert proc.returncode == 0, proc.stderr
    forgotten = int(proc.stdout.split()[1])
    assert forgotten >= 1
    assert "semantic" not in fm.json(data, "memory", "stats")["layers"]
    proc = fm(data, "memory", "consolidate", "--all")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    body, summary = proc.stdout.removesuffix("\n").rsplit("\n", 1)
    assert summary == f"{forgotten} recurring facts written or restated"
    # Each fact: its id, two spaces, its text as it is (a report's text has several lines).
    _, *pairs = re.split(r"^(fact-[0-9a-f]{16})  ", body + "\n", flags=re.MULTILINE)
    printed = {fact_id: text[:-1] for fact_id, text in zip(pairs[::2], pairs[1::2], strict=True)}
    assert len(printed) == forgotten
    for fact_id, text in printed.items():
        assert fact_id.startswith("fact-")
        assert text.startswith(f"recurs in {RUNS} "), text
        assert f"episodes over {RUNS} tasks ({RUNS} done" in text
    assert any(
        text.startswith(f"recurs in {RUNS} task episodes") and "task: repo-audit — done" in text
        for text in printed.values()
    ), printed
    assert any(
        f"{SECRET} {MARKUP}" in text and "agents: todo-finder" in text for text in printed.values()
    ), printed

    found = fm.json(
        data,
        "memory",
        "search",
        "which markers did the TODO scan find",
        "--layer",
        "semantic",
        "--limit",
        "100",
    )
    assert {r["id"]: r["text"] for r in found} == printed  # printed verbatim, markup and all
    assert all(r["layer"] == "semantic" and r["kind"] == "recurring" for r in found)
    assert SECRET in found[0]["text"]  # the TODO scan's fact ranks first
    assert {p["task"] for p in found[0]["provenance"]} == set(audited.task_ids)
    assert found[0]["support"] == RUNS

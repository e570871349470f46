"""``--store``: the commands that read tasks, and ``orchestrator serve``, on a store other than
the data directory's: a PostgreSQL database that replicas share, or a SQLite file.

Run through the real console script against a real PostgreSQL (the session's test cluster);
every store that cannot be used is one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.orchestrator import PostgresStore, Replica
from fleetmind.testing import LocalPostgres, free_port

pytestmark = pytest.mark.timeout(180)
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")


def fleetmind(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETMIND, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command (and that it is all it said)."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmind: error: "), done.stderr
    return lines[0]


def cells(line: str) -> list[str]:
    """The cells of one row of a table as printed (empty for its rules)."""
    parts = [part.strip() for part in line.replace("┃", "│").split("│")]
    return parts[1:-1] if len(parts) > 2 else []


@agent(id="echo", skills=["echo a word"])
async def echo(word: str) -> str:
    return word


def task(name: str, agent_id: str) -> TaskGraph:
    graph = TaskGraph(name)
    graph.add_subtask("say", agent=agent_id, inputs={"word": name})
    return graph


async def test_tasks_lists_every_replicas_tasks_of_a_postgresql_store(
    postgres_url: str, tmp_path: Path
) -> None:
    release = asyncio.Event()

    @agent(id="held", skills=["hold a word"])
    async def held(word: str) -> str:
        await release.wait()
        return word

    stores = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    try:
        first = Fleet([echo], store=stores[0], replica=Replica("r1", lease_s=30))
        second = Fleet([held], store=stores[1], replica=Replica("r2", lease_s=30))
        async with first, second:
            done = await first.run(task("finished", "echo"), task_id="t-finished")
            running = second.submit(task("running", "held"), task_id="t-running")
            # Both replicas' tasks, read by another process while r2 still runs its own.
            listed = await asyncio.to_thread(
                fleetmind, "tasks", "--store", postgres_url, "--json", cwd=tmp_path
            )
            table = await asyncio.to_thread(
                fleetmind, "tasks", "--store", postgres_url, cwd=tmp_path
            )
            release.set()
            await running.result()
    finally:
        for store in stores:
            store.close()

    assert done.ok
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"t-finished", "t-running"}
    assert rows["t-running"]["status"] == "running"
    assert rows["t-running"]["owner"] == "r2"
    assert rows["t-finished"]["status"] == "done"
    assert table.returncode == 0, table.stderr
    rows_shown = [cells(line) for line in table.stdout.splitlines() if cells(line)]
    assert rows_shown[0][:4] == ["id", "name", "status", "owner"]
    assert ["t-running", "running", "running", "r2"] in [row[:4] for row in rows_shown]
    # `show` reads the same store.
    shown = fleetmind("show", "t-finished", "--store", postgres_url, "-f", "json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["task"]["status"] == "done"


def test_a_role_that_may_only_read_lists_and_shows_tasks(
    pg_cluster: LocalPostgres, postgres_url: str, tmp_path: Path
) -> None:
    """Reading needs SELECT alone, and the URL's scheme may be written in any case."""
    owners = PostgresStore(postgres_url)  # the tables' owner makes them, and a task

    async def one_task() -> None:
        async with Fleet([echo], store=owners) as fleet:
            await fleet.run(task("kept", "echo"), task_id="t-kept")

    try:
        asyncio.run(one_task())
    finally:
        owners.close()
    role = f"reader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(
            "GRANT SELECT ON fleetmind_schema, fleetmind_tasks, fleetmind_log, "
            f'fleetmind_records TO "{role}"'
        )
    database = postgres_url.rsplit("/", 1)[1]
    reader = f"POSTGRESQL://{role}@127.0.0.1:{pg_cluster.port}/{database}"

    listed = fleetmind("tasks", "--store", reader, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [row["id"] for row in json.loads(listed.stdout)] == ["t-kept"]
    shown = fleetmind("show", "t-kept", "--store", reader, "-f", "json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["task"]["status"] == "done"


def test_a_sqlite_file_given_as_the_store_is_used_instead_of_the_data_directory(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "kept" / "tasks.db"

    async def one_task() -> None:
        async with Fleet([echo], store=elsewhere) as fleet:
            await fleet.run(task("filed", "echo"), task_id="t-filed")

    asyncio.run(one_task())
    listed = fleetmind(
        "tasks",
        "--store",
        str(elsewhere),
        "--data-dir",
        str(tmp_path / "home"),
        "--json",
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert [row["id"] for row in json.loads(listed.stdout)] == ["t-filed"]
    default = fleetmind("tasks", "--data-dir", str(tmp_path / "home"), "--json", cwd=tmp_path)
    assert json.loads(default.stdout) == []


def test_stores_that_cannot_be_used_are_one_line_each(tmp_path: Path) -> None:
    refused = f"postgresql://fleet:s3cret@127.0.0.1:{free_port()}/fleet"
    line = one_line_error(fleetmind("tasks", "--store", refused, cwd=tmp_path))
    assert "127.0.0.1" in line and "s3cret" not in line  # the password is never shown
    line = one_line_error(fleetmind("tasks", "--store", "mysql://db/fleet", cwd=tmp_path))
    assert "unknown scheme 'mysql'" in line
    line = one_line_error(fleetmind("show", "t1", "--store", str(tmp_path), cwd=tmp_path))
    assert "is a directory" in line
    line = one_line_error(
        fleetmind("tasks", "--store", "postgresql://127.0.0.1:notaport/fleet", cwd=tmp_path)
    )
    assert "--store" in line
    line = one_line_error(fleetmind("tasks", "--store", " ", cwd=tmp_path))
    assert "--store is empty" in line


def test_orchestrator_serve_with_a_store_it_cannot_reach_stops_in_one_line(
    tmp_path: Path,
) -> None:
    refused = f"postgresql://127.0.0.1:{free_port()}/fleet"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # never reached: the store is opened first
    args = ("orchestrator", "serve", "--broker", broker, "--data-dir", str(tmp_path))
    line = one_line_error(fleetmind(*args, "--store", refused, cwd=tmp_path))
    assert "--store" in line and "127.0.0.1" in line
    line = one_line_error(fleetmind(*args, "--store", "redis://cache/0", cwd=tmp_path))
    assert "unknown scheme 'redis'" in line


def test_without_psycopg_a_postgresql_store_names_the_extra_to_install(tmp_path: Path) -> None:
    # A psycopg that is not there: the import fails as it does where the extra is missing.
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    done = fleetmind("tasks", "--store", "postgresql://127.0.0.1/fleet", cwd=tmp_path, env=env)
    line = one_line_error(done)
    assert "fleetmind[postgres]" in line

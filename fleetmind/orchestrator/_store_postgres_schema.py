"""The PostgreSQL store's schema by version, and how a database is brought up to the newest.

The versions applied are rows of ``fleetmind_schema``. Every replica migrates on open, in one
transaction under an advisory lock, so that replicas started together neither race to create
the tables nor see them half made; a database migrated by a newer fleetmind is refused rather
than written in a shape this one does not know.

Ids and keys are compared byte by byte (``COLLATE "C"``), as in Python and SQLite, whatever
the database's own collation: prefix searches then use the primary keys' indexes.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors

from fleetmind.errors import StoreError
from fleetmind.orchestrator._store_postgres_target import (
    SCHEMA_TABLE,
    TABLES,
    Target,
    create_denied,
    failure,
    use_denied,
)

_LOCK_KEY = 0x666C_6565_746D_6E64
"""The advisory lock held while migrating (the bytes of ``fleetmnd``)."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: tasks with their leases, their logs, records.
    (
        """CREATE TABLE fleetmind_tasks (
            id text COLLATE "C" PRIMARY KEY,
            name text NOT NULL,
            status text NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            source text,
            metadata text NOT NULL DEFAULT '{}',
            owner text,
            lease_epoch integer NOT NULL DEFAULT 0,
            lease_expires_at timestamptz
        )""",
        "CREATE INDEX fleetmind_tasks_by_created ON fleetmind_tasks (created_at)",
        "CREATE INDEX fleetmind_tasks_by_lease ON fleetmind_tasks (lease_expires_at) "
        "WHERE status = 'running' AND lease_expires_at IS NOT NULL",
        "CREATE INDEX fleetmind_tasks_by_owner ON fleetmind_tasks (owner) "
        "WHERE status = 'running' AND lease_expires_at IS NOT NULL",
        """CREATE TABLE fleetmind_log (
            task_id text COLLATE "C" NOT NULL REFERENCES fleetmind_tasks (id),
            version integer NOT NULL,
            kind text NOT NULL,
            body text NOT NULL,
            PRIMARY KEY (task_id, version)
        )""",
        """CREATE TABLE fleetmind_records (
            namespace text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            body text NOT NULL,
            updated_at double precision NOT NULL,
            PRIMARY KEY (namespace, key)
        )""",
    ),
)
LATEST = len(MIGRATIONS)
"""The newest schema version this code knows."""

_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


async def migrate(
    conn: psycopg.AsyncConnection[Any], target: Target, *, read_only: bool = False
) -> int:
    """Bring the database to :data:`LATEST` and check that its user may use the tables.

    With ``read_only`` a database already at :data:`LATEST` is only checked for SELECT on
    its tables (a role that may only read can list tasks); an older one is migrated as usual.

    Returns:
        The version the database was at.

    Raises:
        StoreError: the database is newer than this code, or its user may not create or use
            the tables.
    """
    row = await (
        await conn.execute("SELECT current_user, current_schema(), current_database()")
    ).fetchone()
    assert row is not None
    user, schema, database = str(row[0]), row[1], str(row[2])
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            missing = await _missing_privileges(conn, ("SELECT",) if read_only else _PRIVILEGES)
            if missing:
                raise use_denied(user, missing, read_only=read_only)
            found = await schema_version(conn)
            if read_only and found < LATEST and (missing := await _missing_privileges(conn)):
                raise use_denied(user, missing)  # it is migrated, as for writing
            if found > LATEST:
                raise StoreError(
                    f"the store at {target.where} has schema version {found}; this fleetmind "
                    f"knows up to {LATEST}: upgrade fleetmind"
                )
            if found == 0:
                await conn.execute(
                    f"CREATE TABLE {SCHEMA_TABLE} (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
            for version in range(found + 1, LATEST + 1):
                for statement in MIGRATIONS[version - 1]:
                    await conn.execute(statement)
                await conn.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (%s)", (version,))
    except errors.InsufficientPrivilege as exc:
        raise create_denied(user, schema, database) from exc
    except errors.InvalidSchemaName as exc:
        raise create_denied(user, None, database) from exc
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise
        raise failure(target, exc, "set up") from exc
    return found


async def schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The newest schema version applied to the database (0: none, an empty database)."""
    row = await (
        await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (SCHEMA_TABLE,))
    ).fetchone()
    if row is None or not row[0]:
        return 0
    row = await (
        await conn.execute(f"SELECT COALESCE(max(version), 0) FROM {SCHEMA_TABLE}")
    ).fetchone()
    return int(row[0]) if row is not None else 0


async def _missing_privileges(
    conn: psycopg.AsyncConnection[Any], privileges: tuple[str, ...] = _PRIVILEGES
) -> list[str]:
    """The ``privileges`` the current user lacks on the tables there are, as ``table
    PRIVILEGE`` (the version table is only read)."""
    wanted = [(table, privilege) for table in TABLES for privilege in privileges]
    wanted.append((SCHEMA_TABLE, "SELECT"))
    cursor = await conn.execute(
        "SELECT t, p FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS w(t, p, n) "
        "WHERE CASE WHEN to_regclass(t) IS NULL THEN false "
        "ELSE NOT has_table_privilege(t, p) END ORDER BY n",
        ([table for table, _ in wanted], [privilege for _, privilege in wanted]),
    )
    return [f"{table} {privilege}" for table, privilege in await cursor.fetchall()]

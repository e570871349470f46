"""The SQLite store's schema by version, and how a file is brought up to the newest one.

The version lives in the file's ``PRAGMA user_version``. Files written before the schema was
versioned say 0 and hold version 1's tables (perhaps without ``records``, which came later):
version 1's statements create only what is missing, so such a file is migrated like any other.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fleetmind.errors import StoreError

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: tasks, their logs, records.
    (
        """CREATE TABLE IF NOT EXISTS tasks (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            source TEXT,
            metadata TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE IF NOT EXISTS log (
            task_id TEXT NOT NULL REFERENCES tasks(id),
            version INTEGER NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (task_id, version)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks(created_at)",
        """CREATE TABLE IF NOT EXISTS records (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            body TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID""",
    ),
    # 2: leases, for processes sharing the file. A task never leased has no expiry.
    (
        "ALTER TABLE tasks ADD COLUMN owner TEXT",
        "ALTER TABLE tasks ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN lease_expires_at REAL",
        "CREATE INDEX tasks_by_lease ON tasks(status, lease_expires_at) "
        "WHERE lease_expires_at IS NOT NULL",
        "CREATE INDEX tasks_by_owner ON tasks(owner) WHERE lease_expires_at IS NOT NULL",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The newest schema this release knows."""


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction, so that processes opening
    it together migrate it once and none sees it half done.

    Raises:
        StoreError: the file was written by a newer release (its schema is unknown here).
        sqlite3.Error: the file cannot be read or written.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {path} has schema version {version}; this fleetmind knows up "
                f"to {SCHEMA_VERSION}: upgrade fleetmind"
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                db.execute(statement)
        if version != SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise

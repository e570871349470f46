"""Where a PostgreSQL store lives, and what went wrong reaching or using it, in one line each.

libpq's messages span lines and carry its own prefixes (``connection failed: connection to
server at "…", port … failed: FATAL:  …``); a user needs the cause and what to do about it.
A password given in the URL never appears in a message.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from fleetmind.errors import StoreError, StoreUnavailable
from fleetmind.orchestrator._store_open import is_postgres_url, redact_url

TABLES = ("fleetmind_tasks", "fleetmind_log", "fleetmind_records")
"""The store's tables (prefixed: the database may well hold a ``tasks`` table of its own)."""
SCHEMA_TABLE = "fleetmind_schema"
"""The schema versions applied to the database."""


@dataclass(frozen=True)
class Target:
    """A database as a URL names it."""

    url: str
    host: str
    port: str
    database: str
    user: str
    has_connect_timeout: bool

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """How messages name the store: ``host:port/database``."""
        return f"{self.server}/{self.database}"


def parse_target(url: str) -> Target:
    """Read a ``postgresql://`` (or ``postgres://``, in any case) URL.

    Raises:
        StoreError: it is not such a URL, or libpq cannot read it.
    """
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    if not (isinstance(url, str) and is_postgres_url(url)):
        raise StoreError(f"not a PostgreSQL URL: {shown!r} (one starts with postgresql://)")
    scheme, rest = url.strip().split("://", 1)
    url = f"{scheme.lower()}://{rest}"  # libpq knows the schemes in lower case only
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = _first_line(exc).replace(url, shown)  # libpq quotes the URL, password and all
        raise StoreError(f"malformed PostgreSQL URL {shown!r}: {reason}") from exc
    ports = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    for port in ports.split(","):
        if port and not port.isdigit():
            raise StoreError(f"malformed PostgreSQL URL {shown!r}: port {port!r} is not a number")
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "postgres"
    user = str(params.get("user") or os.environ.get("PGUSER") or login)
    return Target(
        url=url,
        host=str(params.get("host") or os.environ.get("PGHOST") or "localhost"),
        port=ports,
        database=str(params.get("dbname") or os.environ.get("PGDATABASE") or user),
        user=user,
        has_connect_timeout="connect_timeout" in params,
    )


def connect_error(target: Target, exc: Exception, timeout: float) -> StoreError:
    """Why the first connection to ``target`` failed, and what to do about it."""
    reason = libpq_reason(exc)
    low = reason.lower()
    at = f"PostgreSQL at {target.server}"
    user = target.user
    if "connection refused" in low:
        return StoreError(f"cannot reach {at}: connection refused (is the server running?)")
    if "timeout expired" in low or "timed out" in low or "couldn't get a connection" in low:
        return StoreError(f"cannot reach {at}: no answer within {timeout:g} s")
    if "resolve host" in low or "translate host name" in low or "not known" in low:
        return StoreError(f"cannot reach {at}: unknown host {target.host!r}")
    if match := re.search(r'database "(.*)" does not exist', reason):
        name = match.group(1)
        return StoreError(f'{at} has no database {name!r} (create it: CREATE DATABASE "{name}")')
    if match := re.search(r'role "(.*)" does not exist', reason):
        name = match.group(1)
        return StoreError(
            f'{at} refused user {name!r}: no such role (create it: CREATE ROLE "{name}" LOGIN)'
        )
    if "password authentication failed" in low or "authentication failed" in low:
        return StoreError(f"{at} refused user {user!r}: authentication failed (wrong password?)")
    if "no password supplied" in low:
        return StoreError(
            f"{at} asks user {user!r} for a password: put it in the URL or in ~/.pgpass"
        )
    if "pg_hba.conf" in low:
        return StoreError(f"{at} does not let user {user!r} connect from here: {reason}")
    if "not permitted to log in" in low or "permission denied for database" in low:
        return StoreError(f"{at} refused user {user!r}: {reason}")
    return StoreError(f"cannot connect to {at} as {user!r}: {reason}")


def create_denied(user: str, schema: str | None, database: str) -> StoreError:
    """A role that may not create the store's tables: who lacks what, and the grant it needs."""
    if schema is None:
        return StoreError(
            f"PostgreSQL user {user!r} has no schema to create the store's tables in, in "
            f"database {database!r} (none of its search_path exists or is usable)"
        )
    return StoreError(
        f"PostgreSQL user {user!r} may not create the store's tables in schema {schema!r} of "
        f"database {database!r}: as the database's owner, run GRANT CREATE ON SCHEMA "
        f'"{schema}" TO "{user}" (or open the store once as the owner)'
    )


def use_denied(user: str, missing: list[str], *, read_only: bool = False) -> StoreError:
    """A role that may not read or write the store's tables (``missing``: ``table PRIVILEGE``;
    ``read_only``: reading is all it needs)."""
    tables = list(dict.fromkeys(item.split()[0] for item in missing))
    grants = []
    if SCHEMA_TABLE in tables:
        grants.append(f'GRANT SELECT ON {SCHEMA_TABLE} TO "{user}"')
    if used := [table for table in tables if table in TABLES]:
        needed = "SELECT" if read_only else "SELECT, INSERT, UPDATE, DELETE"
        grants.append(f'GRANT {needed} ON {", ".join(used)} TO "{user}"')
    return StoreError(
        f"PostgreSQL user {user!r} lacks {', '.join(missing)}: as the tables' owner, run "
        + "; ".join(grants)
    )


def failure(target: Target, exc: psycopg.Error, what: str) -> StoreError:
    """A statement the server refused, as one line (it will not succeed if tried again)."""
    reason = _primary(exc)
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreError(
            f"PostgreSQL user {target.user!r} may not {what} the store at {target.where}: "
            f"{reason}; as the tables' owner, run GRANT SELECT, INSERT, UPDATE, DELETE ON "
            f'{", ".join(TABLES)} TO "{target.user}"'
        )
    if isinstance(exc, errors.UndefinedTable):
        return StoreError(
            f"cannot {what} the store at {target.where}: {reason} (its tables were dropped "
            "while it was open?)"
        )
    return StoreError(f"cannot {what} the store at {target.where}: {reason}")


def lost(target: Target, exc: psycopg.Error, seconds: float, what: str) -> StoreUnavailable:
    """The server stayed out of reach for as long as the store waits for it (a write's
    outcome is then unknown: its commit may have landed before the connection went)."""
    unknown = "; whether the last write landed is unknown" if what == "write" else ""
    return StoreUnavailable(
        f"cannot {what} the store: PostgreSQL at {target.where} out of reach for "
        f"{seconds:g} s ({libpq_reason(exc)}){unknown}"
    )


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _primary(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) else None
    return primary or _first_line(exc)


def libpq_reason(exc: Exception) -> str:
    """The cause in libpq's message, without its prefixes."""
    reason = _first_line(exc)
    reason = re.sub(r"^connection failed:\s*", "", reason)
    reason = re.sub(r"^connection to server (at|on socket) .*? failed:\s*", "", reason)
    reason = re.sub(r"^(FATAL|ERROR):\s*", "", reason)
    return reason.strip() or type(exc).__name__

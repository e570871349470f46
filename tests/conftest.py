"""Settings every test shares."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmind.testing import LocalPostgres, postgres_missing, start_test_postgres


def pytest_configure(config: pytest.Config) -> None:
    # Tests give every fleet its own data directory; the embedding model is assembled into
    # one cache for the whole run (and kept for the next), not once per data directory.
    os.environ.setdefault(
        "FLEETMIND_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "fleetmind-test-models")
    )


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    """One PostgreSQL cluster for the session (each test gets its own database in it).

    Where PostgreSQL or psycopg is missing the tests that need it skip with the reason, and
    under CI (``CI=true``) they fail instead.
    """
    missing = postgres_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    cluster = start_test_postgres()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def postgres_url(pg_cluster: LocalPostgres) -> str:
    """The URL of a fresh, empty database of the session's cluster."""
    return pg_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")

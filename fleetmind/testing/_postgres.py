"""A real PostgreSQL cluster for tests and benchmarks: made in a fresh directory, on a free
loopback port, and removed with it (:meth:`LocalPostgres.close`).

Debian's ``postgresql`` package puts ``initdb`` and ``pg_ctl`` under
``/usr/lib/postgresql/<version>/bin``; neither runs as root, so as root the cluster belongs to
the ``postgres`` system user, in a directory of its own under the system's temporary
directory (a test's ``tmp_path`` is root's alone, and a server socket path must be short).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetmind.errors import ConfigError
from fleetmind.testing._broker import free_port

INSTALL_POSTGRES = "apt-get install postgresql"
CLUSTER_USER = "fleet"
"""The cluster's superuser (trust authentication on loopback: no password)."""


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def postgres_missing() -> str | None:
    """Why a test cluster cannot start here (None when it can)."""
    if postgres_bin() is None:
        return f"PostgreSQL is not installed ({INSTALL_POSTGRES})"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'fleetmind[postgres]')"
    return None


@dataclass
class LocalPostgres:
    """A cluster started by :func:`start_test_postgres`."""

    directory: Path
    port: int
    bin_dir: Path
    run_as: str | None
    """The system user the server runs as (``postgres`` when this process is root)."""

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL of one database of the cluster."""
        return f"postgresql://{CLUSTER_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ConfigError(f"{args[0]} failed: {(done.stderr or done.stdout).strip()}")
        return done

    def start(self) -> None:
        """Start the server (again, after :meth:`stop`); returns once it accepts connections."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: as a crash would)."""
        with contextlib.suppress(ConfigError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server and remove the cluster's files."""
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_test_postgres(*, attempts: int = 3) -> LocalPostgres:
    """Make a cluster in a fresh directory and start it on a free loopback port.

    Raises:
        ConfigError: PostgreSQL is not installed, or the cluster did not start.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise ConfigError(f"PostgreSQL is not installed ({INSTALL_POSTGRES})")
    directory = Path(tempfile.mkdtemp(prefix="fleetmind-pg-"))
    run_as: str | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse root: the cluster is postgres's
        run_as = "postgres"
        owner = pwd.getpwnam(run_as)
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = LocalPostgres(directory, 0, bin_dir, run_as)
    try:
        cluster._run("initdb", "-D", str(cluster.data_dir), "-A", "trust", "-U", CLUSTER_USER)
        error: ConfigError | None = None
        for _ in range(attempts):
            cluster.port = free_port()
            try:
                cluster.start()
                return cluster
            except ConfigError as exc:  # the port was taken meanwhile: try another
                error = exc
        assert error is not None
        raise error
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise

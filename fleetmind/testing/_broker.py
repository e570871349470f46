"""A real Mosquitto for tests and benchmarks, configured by fleetmind's own generator."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from fleetmind.errors import ConfigError
from fleetmind.protocols import (
    INSTALL_HINT,
    Account,
    BrokerProcess,
    DevicesFile,
    Listener,
    mosquitto_installed,
    serve_broker,
    write_broker_config,
)

ORCHESTRATOR = "orchestrator"
"""The orchestrator's username in a broker from :func:`start_test_broker`."""


class LocalBroker(NamedTuple):
    """A broker started by :func:`start_test_broker`; unpacks as ``handle, port, credentials``."""

    handle: BrokerProcess
    """The running broker: stop it with ``handle.stop()`` (or ``with handle:``)."""
    port: int
    """Its plain listener on 127.0.0.1."""
    credentials: dict[str, str]
    """Username -> password: ``"orchestrator"`` and every device id."""


def start_test_broker(
    tmp_dir: Path,
    devices: Mapping[str, Sequence[str]] | None = None,
    fleet: str = "test",
    *,
    attempts: int = 3,
    embedded: bool | None = None,
) -> LocalBroker:
    """Start Mosquitto on a free loopback port with a fleet's passwords and ACL.

    The configuration lives in ``tmp_dir/broker`` (restart it with
    ``serve_broker(handle.config.config_dir)``); passwords are random. Where Mosquitto is not
    installed the embedded development broker starts instead (``handle.embedded`` is then true:
    it accepts any login and enforces no ACL), except under CI (``CI=true``), where that is an
    error.

    Args:
        tmp_dir: a scratch directory (pytest's ``tmp_path``).
        devices: device id -> the agents it hosts (default: none; only the orchestrator).
        fleet: the fleet name, so topics are under ``fleetmind/<fleet>``.
        attempts: how many free ports to try if another process takes one in between.
        embedded: ``True`` for the embedded broker, ``False`` for Mosquitto only, ``None`` to
            choose as described above.

    Raises:
        ConfigError: Mosquitto is not installed (the message says how to install it), or it
            failed to start.
    """
    credentials = {ORCHESTRATOR: secrets.token_urlsafe(12)}
    credentials.update({d: secrets.token_urlsafe(12) for d in devices or {}})
    accounts = (
        Account(ORCHESTRATOR, credentials[ORCHESTRATOR], orchestrator=True),
        *(Account(d, credentials[d], agents=tuple(a)) for d, a in (devices or {}).items()),
    )
    if embedded is None and not mosquitto_installed():
        if os.environ.get("CI") == "true":
            raise ConfigError(f"Mosquitto is required under CI: {INSTALL_HINT}")
        embedded = True
    error: ConfigError | None = None
    for _ in range(max(1, attempts)):
        port = free_port()
        spec = DevicesFile(fleet=fleet, listeners=(Listener(port),), accounts=accounts)
        config = write_broker_config(spec, Path(tmp_dir) / "broker")
        try:
            handle = serve_broker(config.config_dir, embedded=bool(embedded))
            return LocalBroker(handle, port, credentials)
        except ConfigError as exc:
            # Another process may have taken the port since free_port(); anything else repeats.
            if "in use" not in exc.message and "Address already in use" not in exc.message:
                raise
            error = exc
    assert error is not None
    raise error


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

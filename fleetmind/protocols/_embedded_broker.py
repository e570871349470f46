"""A zero-install MQTT broker for development: amqtt, in its own process, on loopback only.

``fleetmind broker serve`` uses it when Mosquitto is not installed, so that a newcomer can try a
fleet across processes before installing anything. It is not a fleet broker, and says so:

- MQTT 3.1.1 only (fleetmind's clients fall back to it by themselves);
- anonymous: no passwords, no per-device ACL, no TLS;
- sessions, queued messages and retained cards live in memory: a restart forgets them;
- no shared subscriptions; slower than Mosquitto.

It runs in a child process (``python -m fleetmind.protocols._embedded_broker``) so that it can
be started, stopped and killed like Mosquitto, and so its event loop never competes with the
orchestrator's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import sys
from typing import Any

LIMITATIONS = (
    "MQTT 3.1.1 only, anonymous (no passwords, ACL or TLS), loopback only, nothing kept across "
    "restarts, no shared subscriptions"
)
"""What the embedded broker lacks next to Mosquitto, in one line for the user."""

LOOPBACK = "127.0.0.1"


def amqtt_version() -> str:
    """The installed amqtt's version, or ``"unknown"``."""
    try:
        return importlib.metadata.version("amqtt")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def broker_config(ports: list[int]) -> dict[str, Any]:
    """amqtt's configuration: one TCP listener per port on 127.0.0.1, anonymous logins.

    amqtt's own default listens on 0.0.0.0, which would expose an unauthenticated broker to the
    network; every listener here is bound to loopback explicitly.
    """
    listeners: dict[str, Any] = {
        "default": {"type": "tcp", "bind": f"{LOOPBACK}:{ports[0]}"},
    }
    for n, port in enumerate(ports[1:], start=1):
        listeners[f"tcp-{n}"] = {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}
    return {
        "listeners": listeners,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def run_broker(ports: list[int]) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    from amqtt.broker import Broker

    broker = Broker(broker_config(ports))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    where = ", ".join(f"{LOOPBACK}:{p}" for p in ports)
    print(f"amqtt {amqtt_version()} listening on {where}", flush=True)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fleetmind.protocols._embedded_broker",
        description="Run fleetmind's embedded development broker (amqtt) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, action="append", required=True, help="TCP port")
    args = parser.parse_args(argv)
    bad = [p for p in args.port if not 0 < p < 65536]
    if bad:
        parser.error(f"port {bad[0]} is out of range (1-65535)")
    # amqtt logs every connection at INFO, and a port probe (a connection without a packet) as
    # a warning; errors are what a development broker needs to show.
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s: %(message)s")
    try:
        asyncio.run(run_broker(args.port))
    except OSError as exc:
        print(f"error: cannot listen: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`fleetmind broker`: write a fleet's Mosquitto configuration and run it."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from fleetmind.cli._help import command_group, examples
from fleetmind.errors import ConfigError

broker_app = command_group(
    "Configure and run the fleet's MQTT broker.",
    "The broker is Mosquitto with passwords and per-device ACLs; without Mosquitto, "
    "`fleetmind broker serve --embedded` runs a development broker.",
)


@broker_app.command(
    epilog=examples("fleetmind broker config --devices devices.yaml --out /etc/fleetmind/broker")
)
def config(
    devices: Annotated[
        Path,
        typer.Option(
            "--devices",
            metavar="FILE",
            help="The devices file (YAML): the fleet's devices, their agents and users.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="The directory to write the configuration to."),
    ],
) -> None:
    """Write the broker's configuration.

    For the devices file given, that is mosquitto.conf, a password file (hashed) and the ACL
    that lets each device read and write only its own agents' topics.
    """
    from fleetmind.protocols import write_broker_config

    written = write_broker_config(devices, out)
    topics = written.topics
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"wrote {written.conf_file}")
    console.print(f"  fleet {written.fleet}: topics under {topics.prefix}/")
    for lst in written.listeners:
        console.print(f"  listener {lst.describe()}")
    console.print(f"  passwords (hashed) {written.password_file}")
    console.print(f"  acl {written.acl_file}")
    console.print(f"  persistence {written.data_dir}/")
    for user in written.orchestrators:
        console.print(f"  orchestrator {user}: read/write {topics.everything}")
    for device, agents in written.devices.items():
        names = ", ".join(agents) or "no agents"
        console.print(
            f"  device {device} ({names}): reads its agents' and its own inbox; "
            "writes its agents' cards, its presence and its output"
        )
    console.print(f"start it with: fleetmind broker serve --config {written.config_dir}")


@broker_app.command(
    "serve",
    epilog=examples(
        "fleetmind broker serve --config /etc/fleetmind/broker",
        "fleetmind broker serve --embedded --port 1883",
    ),
)
def serve_cmd(
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="DIR",
            help="A directory written by `fleetmind broker config`.",
            show_default=False,
        ),
    ] = None,
    embedded: Annotated[
        bool | None,
        typer.Option(
            "--embedded/--mosquitto",
            help="Force the embedded development broker, or insist on Mosquitto "
            "(default: Mosquitto when installed, else the embedded one).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            metavar="PORT",
            help="The embedded broker's port on 127.0.0.1 (without --config).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the broker until Ctrl-C.

    It runs in the foreground, and also ends if the broker exits by itself; its log says why.
    """
    from fleetmind.protocols import INSTALL_HINT, serve_broker, serve_embedded

    if config_dir is not None and port is not None:
        raise ConfigError("--port is for the embedded broker without --config; not both")
    if config_dir is None:
        if embedded is False:
            raise ConfigError(
                "Mosquitto needs --config DIR (write one with `fleetmind broker config`)"
            )
        if port is None and embedded is None:
            raise ConfigError(
                "give --config DIR (from `fleetmind broker config`), or --embedded [--port N] "
                "for a development broker on 127.0.0.1"
            )
        chosen = port if port is not None else 1883
        if not 0 < chosen < 65536:
            raise ConfigError(f"--port {chosen} is out of range (1-65535)")
        log_file = Path(tempfile.gettempdir()) / f"fleetmind-embedded-broker-{chosen}.log"
        broker = serve_embedded([chosen], log_file=log_file)
    else:
        broker = serve_broker(config_dir, embedded=embedded)
    # Plain prints: a Ctrl-C inside rich's print could emit its buffered line a second time.
    # `kill`/systemd stop the command with SIGTERM: stop the broker too, not orphan it.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"started {broker.describe()} (pid {broker.pid}, log {broker.log_file})", flush=True)
        if broker.embedded:
            print(
                f"this is the embedded development broker: {broker.lacks}; "
                f"for a fleet, install Mosquitto ({INSTALL_HINT})",
                flush=True,
            )
        code = broker.wait()
    except KeyboardInterrupt:
        broker.stop()
        print("stopped", flush=True)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
        broker.stop()
    print(f"{broker.name} exited with code {code}; see {broker.log_file}", flush=True)
    raise typer.Exit(1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

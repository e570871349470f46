"""`fleetmind broker`: write a fleet's Mosquitto configuration and run it."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from fleetmind.errors import ConfigError
from fleetmind.protocols import INSTALL_HINT, serve_broker, serve_embedded, write_broker_config

broker_app = typer.Typer(
    help="Deploy the fleet's MQTT broker: Mosquitto with passwords and per-device ACLs "
    "(or an embedded development broker).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@broker_app.command()
def config(
    devices: Annotated[
        Path, typer.Option("--devices", help="The devices file (YAML): devices, agents, users.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the configuration to.")],
) -> None:
    """Write mosquitto.conf, a hashed password file and the ACL for a devices file."""
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


@broker_app.command("serve")
def serve_cmd(
    config_dir: Annotated[
        Path | None,
        typer.Option("--config", help="A directory written by `fleetmind broker config`."),
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
        typer.Option("--port", help="Embedded broker without --config: the port on 127.0.0.1."),
    ] = None,
) -> None:
    """Run the broker in the foreground until Ctrl-C (or until it exits by itself)."""
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

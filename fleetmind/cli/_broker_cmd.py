"""`fleetmind broker`: write a fleet's Mosquitto configuration and run it."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from fleetmind.protocols._broker import serve, write_broker_config

broker_app = typer.Typer(
    help="Deploy the fleet's MQTT broker: Mosquitto with passwords and per-device ACLs.",
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
        Path, typer.Option("--config", help="A directory written by `fleetmind broker config`.")
    ],
) -> None:
    """Run Mosquitto in the foreground until Ctrl-C (or until it exits by itself)."""
    # Plain prints: a Ctrl-C inside rich's print could emit its buffered line a second time.
    broker = serve(config_dir)
    # `kill`/systemd stop the command with SIGTERM: stop the broker too, not orphan it.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"started {broker.describe()} (pid {broker.pid}, log {broker.log_file})", flush=True)
        code = broker.wait()
    except KeyboardInterrupt:
        broker.stop()
        print("stopped", flush=True)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
        broker.stop()
    print(f"mosquitto exited with code {code}; see {broker.log_file}", flush=True)
    raise typer.Exit(1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

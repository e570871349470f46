"""Commands of the MQTT fleet: serve agents from a device, list the fleet's devices."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetmind.agents import Agent
from fleetmind.cli._target import load_fleet
from fleetmind.cli._view import plain_table
from fleetmind.errors import ConfigError
from fleetmind.protocols._mqtt import BrokerAddress

agent_app = typer.Typer(help="Serve agents from this device to a fleet over MQTT.")

BrokerUrl = Annotated[
    str, typer.Option("--broker", help="The broker: mqtt://HOST:PORT or mqtts://HOST:PORT.")
]
Username = Annotated[str | None, typer.Option("--username", help="MQTT user name.")]
PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="File holding the MQTT password (or set FLEETMIND_MQTT_PASSWORD).",
    ),
]
FleetName = Annotated[str, typer.Option("--fleet-name", help="The fleet's name.")]


def broker_address(url: str, username: str | None, password_file: Path | None) -> BrokerAddress:
    """The broker and login from command-line options."""
    password = os.environ.get("FLEETMIND_MQTT_PASSWORD")
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {password_file}: {exc.strerror}") from exc
    return BrokerAddress.parse(url, username=username, password=password)


@agent_app.command("serve")
def serve(
    refs: Annotated[
        list[str], typer.Argument(help="Agents: FILE.py, module or module:attr (repeatable).")
    ],
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    device_id: Annotated[
        str | None, typer.Option("--device-id", help="Device name (default: the user name).")
    ] = None,
    fleet_name: FleetName = "default",
    heartbeat: Annotated[float, typer.Option("--heartbeat", min=0.1, help="Seconds.")] = 5.0,
) -> None:
    """Connect agents to a fleet's broker and take the subtasks dispatched to them."""
    from fleetmind.agents._device import DeviceRuntime

    agents: list[Agent] = []
    for ref in refs:
        agents.extend(load_fleet(ref)[0])
    device = device_id or username
    if not device:
        raise ConfigError("give --device-id or --username: the device needs a name")
    address = broker_address(broker, username, password_file)
    runtime = DeviceRuntime(device, agents, address, fleet=fleet_name, heartbeat_s=heartbeat)
    console = Console(stderr=True)

    async def main() -> None:
        serving = asyncio.create_task(runtime.run())
        ready = asyncio.create_task(runtime.ready.wait())
        done, _ = await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            names = ", ".join(sorted(runtime.agents))
            console.print(f"device {device} serving {names} on {address.host}:{address.port}")
        else:
            ready.cancel()
        await serving

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print(f"device {device} stopped")


def devices(
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
) -> None:
    """The fleet's devices: online or not, last seen, and their agents with versions."""
    from fleetmind.orchestrator import Fleet
    from fleetmind.orchestrator._fleet_link import MqttFleetLink
    from fleetmind.orchestrator._router import SkillRouter

    address = broker_address(broker, username, password_file)

    async def collect() -> MqttFleetLink:
        fleet = Fleet(router=SkillRouter())
        link = MqttFleetLink(
            fleet, address, fleet_name=fleet_name, client_id=f"fm-devices-{os.getpid()}"
        )
        async with link:
            await link.settle()
        return link

    link = asyncio.run(collect())
    if not link.devices:
        Console().print(f"no devices have announced themselves in fleet {fleet_name!r}")
        return
    table = plain_table("device", "state", "last seen", "agents")
    versions = {agent_id: profile.version for agent_id, profile in link.profiles.items()}
    for device in sorted(link.devices.values(), key=lambda d: d.device_id):
        seen = (
            datetime.fromtimestamp(device.last_seen_at).strftime("%Y-%m-%d %H:%M:%S")
            if device.last_seen_at
            else "never"
        )
        agents = ", ".join(f"{a} v{versions.get(a, '?')}" for a in sorted(device.agents))
        table.add_row(device.device_id, "online" if device.online else "offline", seen, agents)
    Console().print(table)

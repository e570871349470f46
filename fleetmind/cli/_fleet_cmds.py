"""Commands of the MQTT fleet: serve agents from a device, list the fleet's devices, run
orchestrator replicas and submit tasks to them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from fleetmind._ids import is_valid_id
from fleetmind.agents import Agent
from fleetmind.cli._memory_cmd import MemoryOption, memory_path
from fleetmind.cli._tables import fit_table, plain_table, table_console
from fleetmind.cli._target import LoadedFleet, load_fleet
from fleetmind.errors import ConfigError
from fleetmind.protocols import BrokerAddress

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
    from fleetmind.agents.remote import DeviceRuntime

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
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep watching: the table follows devices coming and going, until Ctrl-C.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON list of {device, online, last_seen, agents}; with --watch, one "
            "list per line whenever a device comes, goes or changes its agents.",
        ),
    ] = False,
) -> None:
    """The fleet's devices: online or not, last seen, and their agents with versions."""
    from fleetmind.orchestrator import Fleet, SkillRouter
    from fleetmind.serve import MqttFleetLink

    address = broker_address(broker, username, password_file)
    console = table_console()

    def link_for(fleet: Fleet) -> MqttFleetLink:
        return MqttFleetLink(
            fleet,
            address,
            fleet_name=fleet_name,
            client_id=f"fm-devices-{os.getpid()}",
            session_expiry_s=0,  # a look at the fleet leaves no session behind
        )

    def show(link: MqttFleetLink) -> None:
        if as_json:
            print(json.dumps([row.to_json() for row in _device_rows(link)]), flush=True)
        else:
            console.print(_devices_view(link, fleet_name, console))

    async def collect() -> MqttFleetLink:
        async with link_for(Fleet(router=SkillRouter())) as link:
            await link.settle()
        return link

    async def follow() -> None:
        async with link_for(Fleet(router=SkillRouter())) as link:
            await link.settle()
            if console.is_terminal and not as_json:  # one table, redrawn in place
                with Live(_devices_view(link, fleet_name, console), console=console) as live:
                    while True:
                        await asyncio.sleep(1.0)  # "last seen" moves with every heartbeat
                        live.update(_devices_view(link, fleet_name, console))
            # Off a terminal (a log, a pipe): the table again whenever a device comes, goes or
            # changes its agents, not at every heartbeat.
            shown = None
            while True:
                state = [(r.device, r.online, r.agents) for r in _device_rows(link)]
                if state != shown:
                    show(link)
                    shown = state
                await asyncio.sleep(1.0)

    if watch:
        try:
            asyncio.run(follow())
        except KeyboardInterrupt:
            return
        return
    show(asyncio.run(collect()))


@dataclass(frozen=True)
class _DeviceRow:
    """One device as `fleetmind devices` shows it."""

    device: str
    online: bool
    last_seen_at: float
    """The device's clock when it sent its latest presence or heartbeat (0: never)."""
    agents: tuple[tuple[str, str, int | None], ...]
    """(name, fleet id, card version) of each agent it announced."""

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "online": self.online,
            "last_seen": _iso(self.last_seen_at),
            "agents": [
                {"name": name, "id": agent_id, "version": version}
                for name, agent_id, version in self.agents
            ],
        }


def _device_rows(link: Any) -> list[_DeviceRow]:
    """One row per device, sorted by id."""
    from fleetmind._ids import remote_agent_id

    versions = {agent_id: profile.version for agent_id, profile in link.profiles.items()}
    rows = []
    for device in sorted(link.devices.values(), key=lambda d: d.device_id):
        agents = []
        for name in sorted(device.agents):
            agent_id = remote_agent_id(name, device.device_id)
            agents.append((name, agent_id, versions.get(agent_id)))
        rows.append(_DeviceRow(device.device_id, device.online, device.last_seen_at, tuple(agents)))
    return rows


def _when(timestamp: float) -> str:
    """A device's own clock reading, as a date; "never" or "?" when there is none to show."""
    if not timestamp:
        return "never"
    try:
        return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


def _iso(timestamp: float) -> str | None:
    """A device's clock reading as ISO 8601 with the local offset; None when there is none."""
    if not timestamp:
        return None
    try:
        return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def _devices_view(link: Any, fleet_name: str, console: Console) -> Any:
    rows = _device_rows(link)
    if not rows:
        return f"no devices have announced themselves in fleet {fleet_name!r}"
    table = plain_table("device", "state", "last seen", "agents")
    for row in rows:
        agents = ", ".join(
            f"{name} v{'?' if version is None else version}" for name, _, version in row.agents
        )
        table.add_row(
            row.device, "online" if row.online else "offline", _when(row.last_seen_at), agents
        )
    return fit_table(table, console)


orchestrator_app = typer.Typer(
    help="Run an orchestrator that takes tasks submitted over the broker (replicas share them).",
    no_args_is_help=True,
)


@orchestrator_app.command("serve")
def orchestrator_serve(
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    fleet_ref: Annotated[
        str | None,
        typer.Option("--fleet", help="Local agents too: FILE.py or module[:attr]."),
    ] = None,
    group: Annotated[
        str,
        typer.Option("--group", help="Replicas with the same group split the submitted tasks."),
    ] = "orchestrators",
    replica_id: Annotated[
        str | None,
        typer.Option("--replica-id", help="This replica's name (default: the host name)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where tasks are stored.")
    ] = None,
    memory: MemoryOption = False,
) -> None:
    """Take tasks from `fleetmind submit` and run them on the fleet's devices, until Ctrl-C."""
    from fleetmind.cli._build import build_fleet, open_store
    from fleetmind.serve import MqttFleetLink

    address = broker_address(broker, username, password_file)
    # Stable across restarts: a restarted replica resumes its session (and the tasks queued
    # in it); give each replica on one host its own --replica-id.
    replica = replica_id or _safe_name(socket.gethostname())
    for what, name in (("--replica-id", replica), ("--group", group)):
        if not is_valid_id(name):
            raise ConfigError(f"{what} {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    loaded = load_fleet(fleet_ref) if fleet_ref else LoadedFleet([])
    agents, router, tools = loaded.agents, loaded.router, loaded.tools
    fleet = build_fleet(
        agents,
        router,
        data_dir,
        open_store(data_dir),
        tools,
        memory=memory_path(data_dir) if memory else None,
    )
    console = Console(stderr=True)

    async def main() -> None:
        # The link outlives the fleet: on Ctrl-C the fleet's tasks are cancelled first (kept
        # resumable, their devices told to stop) while the link can still say so.
        async with (
            MqttFleetLink(
                fleet,
                address,
                fleet_name=fleet_name,
                replica_id=replica,
                share_group=group,
                accept_tasks=True,
            ) as link,
            fleet,
        ):
            console.print(
                f"orchestrator {link.replica_id} taking tasks of fleet {fleet_name!r} "
                f"(group {group!r}) on {address.host}:{address.port}"
            )
            await asyncio.Event().wait()  # until interrupted

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print(f"orchestrator {replica} stopped")


def submit(
    target: Annotated[str, typer.Argument(help="A task file (.yaml/.json).")],
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Set a task parameter: key=value (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.1, help="Give up after this many seconds.")
    ] = None,
    orchestrator_timeout: Annotated[
        float,
        typer.Option(
            "--orchestrator-timeout",
            min=0.1,
            help="Give up when no orchestrator has taken the task after this many seconds.",
        ),
    ] = 30.0,
) -> None:
    """Hand a task to the fleet's orchestrators over the broker and follow it to its end."""
    from fleetmind._ids import new_task_id
    from fleetmind.cli._drive import run_interruptible
    from fleetmind.cli._target import parse_params
    from fleetmind.cli._wait import waiting
    from fleetmind.orchestrator import read_task_file
    from fleetmind.serve import SubmittedTaskResult, submit_via_broker

    if not target.endswith((".yaml", ".yml", ".json")):
        raise ConfigError(f"{target}: `fleetmind submit` takes a task file (.yaml, .yml, .json)")
    task = read_task_file(target, parse_params(param or []))
    address = broker_address(broker, username, password_file)
    log = Console(stderr=True, highlight=False)
    task_id = new_task_id()
    taken = asyncio.Event()

    def show(event: dict[str, Any]) -> None:
        taken.set()  # an orchestrator sends events once it has taken the task
        if not as_json:
            log.print(_event_line(event))

    async def follow() -> SubmittedTaskResult:
        with waiting(f"connecting to the broker at {address.host}:{address.port}") as wait:
            job = asyncio.ensure_future(
                submit_via_broker(
                    address,
                    task.graph,
                    fleet_name=fleet_name,
                    task_id=task_id,
                    source=str(task.path),
                    on_event=show,
                    timeout_s=timeout,
                    on_submitted=lambda: wait.update(
                        f"waiting for an orchestrator of fleet {fleet_name!r} to take task "
                        f"{task_id}"
                    ),
                )
            )
            seen = asyncio.ensure_future(taken.wait())
            done, _ = await asyncio.wait(
                {job, seen}, timeout=orchestrator_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            seen.cancel()
            if not done:
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)
                raise ConfigError(
                    f"no orchestrator of fleet {fleet_name!r} took task {task_id} within "
                    f"{orchestrator_timeout:g} s; start one with `fleetmind orchestrator serve` "
                    "(or wait longer: --orchestrator-timeout)"
                )
        return await job

    def interrupted() -> str:
        if taken.is_set():
            return f"interrupted: task {task_id} goes on at the orchestrator"
        return f"interrupted before an orchestrator took task {task_id}"

    try:
        result = run_interruptible(follow(), on_interrupt=interrupted)
    except TimeoutError:
        raise ConfigError(
            f"no result within {timeout:g} s: is an orchestrator of fleet {fleet_name!r} "
            "serving (`fleetmind orchestrator serve`)?"
        ) from None
    if as_json:
        data = {
            "task_id": result.task_id,
            "status": result.status,
            "outputs": result.outputs,
            "errors": result.errors,
            "replica": result.replica,
        }
        print(json.dumps(data, indent=2, default=str))
    else:
        log.print(f"task {result.task_id} {result.status} on orchestrator {result.replica}")
        for subtask_id, output in result.outputs.items():
            print(f"{subtask_id}: {json.dumps(output, default=str)}")
    raise typer.Exit(0 if result.ok else 1)


def _safe_name(name: str) -> str:
    """A host name as an id: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:48].strip("-.") or "orchestrator"


def _event_line(event: dict[str, Any]) -> str:
    kind = str(event.get("kind", "?"))
    subject = event.get("subtask_id") or event.get("task_id", "")
    details = event.get("agent") or event.get("message") or event.get("status") or ""
    return f"{kind:<18} {subject} {details}".rstrip()

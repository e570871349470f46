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
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from fleetmind.cli._help import command_group, examples
from fleetmind.cli._memory_cmd import memory_path
from fleetmind.cli._options import (
    BrokerUrl,
    DataDir,
    FleetName,
    MemoryOption,
    OptionalFleetRef,
    Params,
    PasswordFile,
    StoreUrl,
    Username,
)
from fleetmind.cli._tables import fit_table, plain_table, table_console
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from fleetmind.agents import Agent
    from fleetmind.orchestrator import TaskHandle
    from fleetmind.protocols import BrokerAddress

agent_app = command_group("Serve agents from this device to a fleet.")


def broker_address(url: str, username: str | None, password_file: Path | None) -> BrokerAddress:
    """The broker and login from command-line options."""
    from fleetmind.protocols import BrokerAddress

    password = os.environ.get("FLEETMIND_MQTT_PASSWORD")
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {password_file}: {exc.strerror}") from exc
    return BrokerAddress.parse(url, username=username, password=password)


@agent_app.command(
    "serve",
    epilog=examples(
        "fleetmind agent serve agents.py --broker mqtt://hub:1883 --username pi",
        "fleetmind agent serve camera.py vision:agents --broker mqtts://hub:8883",
    ),
)
def serve(
    refs: Annotated[
        list[str],
        typer.Argument(
            metavar="AGENTS...",
            help="Where the agents are: FILE.py, module or module:attr (one or more).",
            show_default=False,
        ),
    ],
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    device_id: Annotated[
        str | None,
        typer.Option(
            "--device-id",
            metavar="NAME",
            help="This device's name (default: the user name).",
            show_default=False,
        ),
    ] = None,
    fleet_name: FleetName = "default",
    heartbeat: Annotated[
        float,
        typer.Option(
            "--heartbeat",
            min=0.1,
            metavar="SECONDS",
            help="How often the device tells the fleet it is alive.",
        ),
    ] = 5.0,
) -> None:
    """Serve agents to a fleet over its broker.

    The device announces its agents on the broker, runs what is dispatched to them and sends
    back the results, until Ctrl-C.
    """
    from fleetmind.agents.remote import DeviceRuntime
    from fleetmind.cli._target import load_fleet

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


DEVICES_EXAMPLES = examples(
    "fleetmind devices --broker mqtt://hub:1883 --username ops",
    "fleetmind devices --broker mqtt://hub:1883 --username ops --watch --json",
)


def devices(
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep watching: the table follows devices as they come and go, until Ctrl-C.",
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
    """List the fleet's devices and their agents.

    Each device is shown online or not, with when it was last heard from and its agents with
    the versions of their cards.
    """
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


orchestrator_app = command_group("Run orchestrators that take submitted tasks.")


@orchestrator_app.command(
    "serve",
    epilog=examples(
        "fleetmind orchestrator serve --broker mqtt://hub:1883 --username ops",
        "fleetmind orchestrator serve --broker mqtt://hub:1883 --replica-id hub-2",
        "fleetmind orchestrator serve --broker mqtt://hub --store postgresql://db/f",
    ),
)
def orchestrator_serve(
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    fleet_ref: OptionalFleetRef = None,
    group: Annotated[
        str,
        typer.Option(
            "--group",
            metavar="GROUP",
            help="Replicas of one group split the submitted tasks between them.",
        ),
    ] = "orchestrators",
    replica_id: Annotated[
        str | None,
        typer.Option(
            "--replica-id",
            metavar="NAME",
            help="This replica's name (default: the host name).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    store_url: StoreUrl = None,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            min=1.0,
            metavar="SECONDS",
            help="On a shared store, how long a replica may be silent before another takes "
            "its running tasks over (it renews its leases every third of this).",
        ),
    ] = 15.0,
    memory: MemoryOption = False,
) -> None:
    """Run submitted tasks until Ctrl-C.

    It takes the tasks that `fleetmind submit` hands to the fleet over the broker. They run on
    the devices of the fleet (and on --fleet's local agents). Replicas of one --group share the
    tasks. Each replica owns the tasks it runs under a lease in the store; a restarted replica
    resumes its own, and replicas that share one --store (PostgreSQL) take over the running
    tasks of a replica that stopped renewing its leases.
    """
    from fleetmind._ids import is_valid_id
    from fleetmind.cli._build import build_fleet, open_store
    from fleetmind.cli._target import LoadedFleet, load_fleet
    from fleetmind.orchestrator import Replica
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
    store = open_store(data_dir, store_url)
    try:
        fleet = build_fleet(
            agents,
            router,
            data_dir,
            store,
            tools,
            memory=memory_path(data_dir) if memory else None,
            # On a store with leases each running task has one owner, and a stopped replica's
            # tasks are taken over by another (or by itself once it is back).
            replica=Replica(replica, lease) if store.shared else None,
        )
    except BaseException:
        store.close()
        raise
    console = Console(stderr=True)

    def took_over(handle: TaskHandle) -> None:
        was = handle.taken_over_from
        whose = "its own before a restart" if was == replica else f"{was}'s"
        console.print(f"took over task {handle.task_id} (was {whose})", highlight=False)

    fleet.on_takeover(took_over)

    async def main() -> None:
        # The link outlives the fleet: on Ctrl-C the fleet hands its tasks over first (their
        # runs on devices go on for the replica that takes them over), before the link's
        # closing could fail their attempts.
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
                f"(group {group!r}) on {address.host}:{address.port}, {_store_words(store_url)}"
            )
            await asyncio.Event().wait()  # until interrupted

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print(f"orchestrator {replica} stopped")
    finally:
        store.close()


SUBMIT_EXAMPLES = examples(
    "fleetmind submit nightly.yaml --broker mqtt://hub:1883 -p branch=main",
    "fleetmind submit nightly.yaml --broker mqtt://hub:1883 --timeout 600 --json",
)


def submit(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TASK_FILE", help="A task file (.yaml, .yml or .json).", show_default=False
        ),
    ],
    broker: BrokerUrl,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    param: Params = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.1,
            metavar="SECONDS",
            help="Give up waiting for the result after this long (the task goes on).",
            show_default=False,
        ),
    ] = None,
    orchestrator_timeout: Annotated[
        float,
        typer.Option(
            "--orchestrator-timeout",
            min=0.1,
            metavar="SECONDS",
            help="Give up when no orchestrator has taken the task after this many seconds.",
        ),
    ] = 30.0,
) -> None:
    """Hand a task to the fleet's orchestrators.

    The task goes over the broker to a `fleetmind orchestrator serve` replica, and its events
    are shown as they come until it ends. Exit 0 when every subtask succeeded, 1 when one failed.
    """
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
        if not as_json:
            line = _event_line(event)
            if line is not None:  # ready and routed events are not worth a line, as in `run`
                log.print(line)

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
                    on_accepted=lambda replica: taken.set(),
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


def _store_words(store_url: str | None) -> str:
    """Where the replica keeps its tasks, for its first line (a URL without its password)."""
    from fleetmind.orchestrator import redact_url

    if store_url is None:
        return "tasks in the data directory"
    return f"tasks in {redact_url(store_url)}"


def _safe_name(name: str) -> str:
    """A host name as an id: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:48].strip("-.") or "orchestrator"


def _event_line(event: dict[str, Any]) -> str | None:
    """The line ``fleetmind run`` would print for this event, read back from its wire form.

    An event this version does not know (a newer orchestrator) or cannot rebuild falls back to
    its kind and subject, so a mixed fleet still shows progress.
    """
    import dataclasses
    import typing

    from fleetmind.orchestrator import TaskEvent, describe_event

    classes = typing.get_args(TaskEvent)
    fields = {cls: {f.name: f for f in dataclasses.fields(cls)} for cls in classes}
    kinds = {named["kind"].default: cls for cls, named in fields.items()}
    cls = kinds.get(event.get("kind"))
    if cls is not None:
        names = fields[cls].keys()
        try:
            return describe_event(cls(**{k: v for k, v in event.items() if k in names}))
        except (TypeError, ValueError, AttributeError, KeyError):
            pass  # not rebuildable: the plain line below
    kind = str(event.get("kind", "?"))
    subject = event.get("subtask_id") or event.get("task_id", "")
    details = event.get("agent") or event.get("message") or event.get("status") or ""
    return f"{kind:<18} {subject} {details}".rstrip()

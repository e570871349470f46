"""`fleetmind console`: a live web page of the tasks, their graphs and the devices.

The server and the page load only when the command runs, so ``fleetmind --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from fleetmind.cli._help import examples
from fleetmind.cli._options import (
    DataDir,
    FleetName,
    ModelsFile,
    OptionalFleetRef,
    PasswordFile,
    StoreUrl,
    Username,
)
from fleetmind.errors import ConfigError, ModelNotConfigured

if TYPE_CHECKING:
    from fleetmind.orchestrator import Store
    from fleetmind.serve import ConsoleSource

CONSOLE_EXAMPLES = examples(
    "fleetmind console --fleet examples/repo_audit.py",
    "fleetmind console --broker mqtt://hub:1883 --store postgresql://db/fleet",
    "fleetmind console --store postgresql://fleet@db/fleet --port 8700",
)

ConsoleBroker = Annotated[
    str | None,
    typer.Option(
        "--broker",
        metavar="URL",
        help="The fleet's MQTT broker: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS. The "
        "page shows its devices and hands tasks to its orchestrator replicas.",
        show_default=False,
    ),
]

SESSIONS_FILE = "console-sessions.json"
"""Where the console keeps its sessions (hashed) in the data directory."""

TASK_FILES = "console-tasks"
"""Where the task files submitted from the page are kept in the data directory, as the
sources of their tasks (so that `fleetmind resume` finds them)."""


def console(
    fleet: OptionalFleetRef = None,
    broker: ConsoleBroker = None,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    store_url: StoreUrl = None,
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, metavar="PORT", help="The port to listen on (0: any free)."
        ),
    ] = 8700,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="HOST",
            help="The address to listen on; anything but loopback opens the console to others.",
        ),
    ] = "127.0.0.1",
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
    forget_sessions: Annotated[
        bool,
        typer.Option(
            "--forget-sessions",
            help="Sign out every page signed in before (sessions last 30 days across restarts).",
        ),
    ] = False,
) -> None:
    """Serve a live web page of tasks and devices.

    The page shows the tasks, each task's graph as it changes, and the devices with their
    agents. With --fleet, tasks submitted from the page run here on that fleet's agents (kept
    in the data directory's store, or --store). With --broker, the page shows the fleet's
    devices and hands tasks to its orchestrator replicas (their tasks come from --store).
    With --store alone, or nothing, the page only reads the store. It prints the URL to open,
    with a token that is new each time and signs in once (restart the console for a new
    one); it serves until Ctrl-C.
    """
    # The server first: without its extra, the import says what serving the console needs.
    from fleetmind.serve import ConsoleAuth, serve_console  # isort: skip
    from fleetmind.cli._build import open_store
    from fleetmind.cli._options import home

    if fleet is not None and broker is not None:
        raise ConfigError(
            "give --fleet (run tasks here) or --broker (the fleet's devices and replicas), not both"
        )
    log = Console(stderr=True, soft_wrap=True, highlight=False)
    store = (
        open_store(data_dir, store_url) if fleet is not None or store_url or not broker else None
    )
    try:
        source = _source(
            fleet, broker, username, password_file, fleet_name, store, models_file, data_dir, log
        )
        auth = ConsoleAuth(sessions_file=home(data_dir) / SESSIONS_FILE)
        if forget_sessions:
            auth.forget_sessions()
        if not _is_loopback(host):
            log.print(
                f"warning: the console listens on {host}, not only on this machine: whoever "
                "reaches it with the token can see and run the fleet's tasks (plain HTTP)",
                style="yellow",
            )

        def ready(url: str) -> None:
            print(url, flush=True)
            log.print(_what(source), style="dim")

        try:
            asyncio.run(serve_console(source, host, port, auth=auth, ready=ready))
        except KeyboardInterrupt:  # a second Ctrl-C while stopping
            raise typer.Exit(130) from None
        if fleet is not None:
            from fleetmind.cli._build import save_router
            from fleetmind.serve import FleetSource

            assert isinstance(source, FleetSource)
            save_router(source.fleet)
    finally:
        if store is not None:
            store.close()
    log.print("stopped", style="dim")


def _source(
    fleet: str | None,
    broker: str | None,
    username: str | None,
    password_file: Path | None,
    fleet_name: str,
    store: Store | None,
    models_file: Path | None,
    data_dir: Path | None,
    log: Console,
) -> ConsoleSource:
    """What the console shows, from the options: a fleet run here, a broker, or a store."""
    from fleetmind.serve import ConsoleSource

    if fleet is not None:
        assert store is not None
        return _fleet_source(fleet, store, models_file, data_dir)
    if broker is not None:
        from fleetmind.cli._fleet_cmds import broker_address
        from fleetmind.serve import BrokerSource

        address = broker_address(broker, username, password_file)
        return BrokerSource(address, fleet_name=fleet_name, store=store)
    assert store is not None
    return ConsoleSource(store, fleet_name=fleet_name)


def _fleet_source(
    fleet: str, store: Store, models_file: Path | None, data_dir: Path | None
) -> ConsoleSource:
    from fleetmind.cli._build import build_fleet, process_replica
    from fleetmind.cli._llm_cmd import share_model_settings
    from fleetmind.cli._options import home
    from fleetmind.cli._plan_cmd import fleet_source, planner_for
    from fleetmind.cli._target import load_fleet
    from fleetmind.serve import FleetSource

    loaded = load_fleet(fleet)
    share_model_settings(models_file, data_dir)
    no_planner = None
    try:
        planner = planner_for(loaded, models_file, data_dir)
    except ModelNotConfigured as exc:
        planner, no_planner = None, exc.message
    replica = process_replica(store)  # its tasks are leased: no other process runs them too
    the_fleet = build_fleet(
        loaded.agents, loaded.router, data_dir, store, loaded.tools, planner, replica=replica
    )
    metadata: dict[str, object] = {"fleet": fleet_source(fleet), "submitted_from": "console"}
    if models_file is not None:
        metadata["models"] = str(models_file.resolve())  # a planned task replans on resume
    return FleetSource(
        the_fleet,
        fleet_name=Path(fleet.rpartition(":")[0] or fleet).stem,
        no_planner=no_planner,
        metadata=metadata,
        task_files=home(data_dir) / TASK_FILES,
    )


def _what(source: ConsoleSource) -> str:
    info = source.info()
    if info["mode"] == "fleet":
        plans = "; plain words are planned" if info["can_plan"] else ""
        return f"console of fleet {info['fleet']}: tasks run here{plans}"
    if info["mode"] == "broker":
        return f"console of fleet {info['fleet']!r} on the broker"
    return "console of the store (read-only)"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

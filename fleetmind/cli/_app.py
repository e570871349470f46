"""The `fleetmind` command: run task graphs, follow them live, resume them, look at them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Only the command line itself is imported here: typer, rich and the commands' signatures.
# The SDK (graphs, fleets, routers, models) loads inside the commands that use it, so that
# `fleetmind --help` and every `fleetmind COMMAND --help` answer at once.
from fleetmind.cli._a2a_cmd import a2a_app
from fleetmind.cli._broker_cmd import broker_app
from fleetmind.cli._console_cmd import CONSOLE_EXAMPLES, console
from fleetmind.cli._drive import run_interruptible
from fleetmind.cli._fleet_cmds import (
    DEVICES_EXAMPLES,
    SUBMIT_EXAMPLES,
    agent_app,
    broker_address,
    devices,
    orchestrator_app,
    submit,
)
from fleetmind.cli._help import CommandLine, examples
from fleetmind.cli._llm_cmd import llm_app, share_model_settings
from fleetmind.cli._mcp_cmd import mcp_app
from fleetmind.cli._memory_cmd import memory_app, memory_path
from fleetmind.cli._options import (
    CloudBudgetOption,
    DataDir,
    FleetName,
    FleetRef,
    Live,
    MemoryOption,
    ModelsFile,
    OptionalBrokerUrl,
    OptionalFleetRef,
    Params,
    PasswordFile,
    StepRouterOption,
    StoreUrl,
    TaskIdArg,
    Username,
)
from fleetmind.cli._plan_cmd import (
    PLAN_EXAMPLES,
    fleet_source,
    is_request,
    make_plan,
    plan,
    planner_for,
    show_plan,
)
from fleetmind.cli._route_cmd import ROUTE_EXAMPLES, route
from fleetmind.cli._router_cmd import apply_step_router, router_app, step_router_for
from fleetmind.cli._tables import (
    fit_table,
    plain_table,
    print_json,
    print_table,
    table_console,
)
from fleetmind.cli._wait import show_model_loads, waiting
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from fleetmind.agents import AgentProfile, StepRouter
    from fleetmind.cli._view import TaskView
    from fleetmind.orchestrator import (
        Fleet,
        Planner,
        TaskGraph,
        TaskHandle,
        TaskRecord,
        TaskResult,
    )
    from fleetmind.protocols import BrokerAddress

app = CommandLine(
    name="fleetmind",
    help="Run multi-agent work as a live task graph across your devices and the cloud.",
    epilog=examples(
        "fleetmind run examples/repo_audit.yaml",
        "fleetmind COMMAND --help",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _consoles() -> tuple[Console, Console]:
    # Event lines are a log: never hard-wrapped, whatever the width of the terminal or pipe.
    return table_console(), Console(stderr=True, soft_wrap=True)


def _use_live(live: bool | None, console: Console) -> bool:
    return console.is_terminal if live is None else live


async def _follow(fleet: Fleet, start: Callable[[], TaskHandle], view: TaskView) -> TaskResult:
    async with fleet:
        handle = start()
        await view.follow(handle)
        return await handle.result()


def _drive(
    fleet: Fleet,
    start: Callable[[], TaskHandle],
    view: TaskView,
    *,
    check: TaskGraph | None,
    broker: BrokerAddress | None,
    fleet_name: str,
    data_dir: Path | None,
    task_id: str,
) -> TaskResult:
    """Run a task to its end, with the devices of a broker's fleet when one is given, and
    the remote A2A agents added with `fleetmind a2a add`.

    Long waits show on the status line; Ctrl-C marks the task interrupted and says how to
    resume it (see :func:`run_interruptible`)."""
    from fleetmind.cli._a2a_agents import load_a2a_agents

    show_model_loads()

    async def main() -> TaskResult:
        try:
            return await drive()
        finally:
            await fleet.aclose()  # also when the task never started (a failed check)

    async def drive() -> TaskResult:
        # Connected inside this loop: their HTTP clients belong to it.
        with waiting("connecting the remote A2A agents"):
            remotes = await load_a2a_agents(data_dir)
        for remote in remotes:
            fleet.on_close(remote.aclose)
        for remote in remotes:
            if fleet.agent(remote.id) is not None:
                raise ConfigError(
                    f"the A2A agent {remote.id!r} has the id of an agent of the fleet; add it "
                    f"again under another id: fleetmind a2a remove {remote.id} && "
                    f"fleetmind a2a add URL --id OTHER"
                )
            fleet.add(remote)
        if broker is None:
            if check is not None:
                await fleet.acheck(check)
            return await _follow(fleet, start, view)
        from fleetmind.serve import MqttFleetLink

        # One MQTT session per task: a resumed run of this task gets the results its devices
        # sent meanwhile, and two tasks run side by side never share a session or replies.
        async with AsyncExitStack() as stack:
            with waiting(f"connecting to the broker at {broker.host}:{broker.port}") as wait:
                link = await stack.enter_async_context(
                    MqttFleetLink(
                        fleet,
                        broker,
                        fleet_name=fleet_name,
                        client_id=broker.client_id("run", task_id),
                        replica_id=f"run-{task_id}",
                    )
                )
                # Devices' cards and presence, and results that arrived while we were away.
                wait.update(f"hearing from the devices of fleet {fleet_name!r}")
                await link.settle()
            if check is not None:
                await fleet.acheck(check)
            return await _follow(fleet, start, view)

    def interrupted() -> str:
        status = fleet.store.interrupt(task_id)
        if status is None:
            return "interrupted before the task started; nothing to resume"
        if status in ("interrupted", "running"):
            return f"interrupted: resume with fleetmind resume {task_id}"
        return f"interrupted: task {task_id} had already ended ({status})"

    return run_interruptible(main(), on_interrupt=interrupted)


def _finish(result: TaskResult, view: TaskView, *, as_json: bool, live: bool) -> NoReturn:
    if as_json:
        print(json.dumps(_result_dict(result), indent=2, default=str))
    else:
        view.summary(result, show_table=not live)
    raise typer.Exit(0 if result.ok else 1)


def _result_dict(result: TaskResult) -> dict[str, object]:
    return {
        "task_id": result.task_id,
        "status": result.status,
        "outputs": result.outputs,
        "errors": result.errors,
        "counts": result.graph.counts(),
    }


_RESULT_JSON_HELP = "Print the result as JSON: {task_id, status, outputs, errors, counts}."


@app.command(
    epilog=examples(
        "fleetmind run examples/repo_audit.yaml",
        "fleetmind run examples/repo_audit.yaml -p path=../httpx --no-live",
        'fleetmind run "audit this repo" --fleet examples/repo_audit.py --confirm',
    )
)
def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="A task file (.yaml, .yml, .json), a Python module (.py), or a request in "
            "plain words (planned on --fleet's agents by the configured model).",
            show_default=False,
        ),
    ],
    param: Params = None,
    fleet: OptionalFleetRef = None,
    live: Live = None,
    as_json: Annotated[bool, typer.Option("--json", help=_RESULT_JSON_HELP)] = False,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Show a planned task and ask before it runs.")
    ] = False,
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
    broker: OptionalBrokerUrl = None,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
    step_router: StepRouterOption = None,
    cloud_budget: CloudBudgetOption = None,
    memory: MemoryOption = False,
) -> None:
    """Run a task and follow it to its end.

    The task is a task file, a Python module that defines one, or a request in plain words,
    which is planned first on --fleet's agents. On a terminal a live table follows the
    subtasks; Ctrl-C stops the task, which `fleetmind resume TASK_ID` continues. Exit 0 when
    every subtask succeeded, 1 when one failed, 2 for a mistake in what was given.
    """
    from fleetmind._ids import new_task_id
    from fleetmind.cli._build import build_fleet, open_store, process_replica
    from fleetmind.cli._target import load_target, parse_params

    share_model_settings(models_file, data_dir)
    steps = step_router_for(step_router, cloud_budget)
    if is_request(target):
        the_fleet, graph, source, metadata = _planned(
            target,
            fleet,
            param,
            confirm,
            models_file,
            data_dir,
            show=not as_json,
            steps=steps,
            memory=memory_path(data_dir) if memory else None,
        )
        check: TaskGraph | None = None
    else:
        if confirm:
            raise ConfigError("--confirm is for requests in plain words, which are planned first")
        target_spec = load_target(
            target, parse_params(param or []), fleet, remote_agents=broker is not None
        )
        apply_step_router(target_spec.agents, steps)
        store = open_store(data_dir)
        the_fleet = build_fleet(
            target_spec.agents,
            target_spec.router,
            data_dir,
            store,
            target_spec.tools,
            memory=memory_path(data_dir) if memory else None,
            replica=process_replica(store),
        )
        graph, source, metadata = target_spec.graph, target_spec.source, target_spec.metadata
        check = graph

    task_id = new_task_id()
    # resume rebuilds the fleet with the same memory and step router
    metadata = {**metadata, **_run_settings(memory, step_router, cloud_budget)}

    _execute(
        the_fleet,
        lambda: the_fleet.submit(graph, task_id=task_id, source=source, metadata=metadata),
        task_id=task_id,
        check=check,
        say_how_to_resume=True,
        live=live,
        as_json=as_json,
        data_dir=data_dir,
        broker=broker,
        username=username,
        password_file=password_file,
        fleet_name=fleet_name,
    )


def _execute(
    fleet: Fleet,
    start: Callable[[], TaskHandle],
    *,
    task_id: str,
    check: TaskGraph | None,
    say_how_to_resume: bool,
    live: bool | None,
    as_json: bool,
    data_dir: Path | None,
    broker: str | None,
    username: str | None,
    password_file: Path | None,
    fleet_name: str,
) -> NoReturn:
    """What `run` and `resume` do once the fleet is built, from the options they share: follow
    the task (a live table on a terminal), drive it to its end with the broker's devices and
    the remote A2A agents, keep what the router learned, and exit with the task's outcome."""
    from fleetmind.cli._build import save_router
    from fleetmind.cli._view import TaskView

    console, log = _consoles()
    use_live = _use_live(live, console) and not as_json
    view = TaskView(console, log, live=use_live)

    def started() -> TaskHandle:
        handle = start()
        if say_how_to_resume and not use_live:
            log.print(f"resume with: fleetmind resume {handle.task_id}", style="dim")
        return handle

    address = broker_address(broker, username, password_file) if broker else None
    result = _drive(
        fleet,
        started,
        view,
        check=check,
        broker=address,
        fleet_name=fleet_name,
        data_dir=data_dir,
        task_id=task_id,
    )
    save_router(fleet)
    _finish(result, view, as_json=as_json, live=use_live)


def _planned(
    request: str,
    fleet_ref: str | None,
    params: list[str] | None,
    confirm: bool,
    models_file: Path | None,
    data_dir: Path | None,
    *,
    show: bool,
    steps: StepRouter | None = None,
    memory: Path | None = None,
) -> tuple[Fleet, TaskGraph, str, dict[str, object]]:
    """Plan a request on the fleet's agents: the fleet, the graph, and how to resume it."""
    from fleetmind.cli._build import build_fleet, open_store, process_replica
    from fleetmind.cli._target import load_fleet

    if fleet_ref is None:
        raise ConfigError(
            "a request in plain words needs --fleet FILE.py: the agents to plan for "
            f"(or give a task file instead of {request!r})"
        )
    if params:
        raise ConfigError("--param sets parameters of task files; a request has none")
    loaded = load_fleet(fleet_ref)
    apply_step_router(loaded.agents, steps)
    planner = planner_for(loaded, models_file, data_dir)
    store = open_store(data_dir)
    the_fleet = build_fleet(
        loaded.agents,
        loaded.router,
        data_dir,
        store,
        loaded.tools,
        planner,
        memory=memory,
        replica=process_replica(store),
    )
    plan = make_plan(the_fleet, request)
    if show or confirm:
        show_plan(plan, table_console(stderr=True))
    if confirm and not typer.confirm("run this plan?", default=False, err=True):
        Console(stderr=True).print("not run")
        raise typer.Exit(0)
    source = fleet_source(fleet_ref)
    metadata: dict[str, object] = {"fleet": source, "request": request, "params": {}}
    if models_file is not None:
        metadata["models"] = str(models_file.resolve())
    return the_fleet, plan.graph, source, metadata


def _run_settings(
    memory: bool, step_router: str | None, cloud_budget: float | None
) -> dict[str, object]:
    """What ``run`` keeps in the task's metadata so that ``resume`` runs it the same way."""
    settings: dict[str, object] = {}
    if memory:
        settings["memory"] = True
    if step_router is not None:
        as_file = Path(step_router)
        settings["step_router"] = str(as_file.resolve()) if as_file.exists() else step_router
    if cloud_budget is not None:
        settings["cloud_budget"] = cloud_budget
    return settings


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@app.command(
    epilog=examples("fleetmind resume t3f9c2a71b0", "fleetmind resume t3f9 --no-live --json")
)
def resume(
    task_id: TaskIdArg,
    live: Live = None,
    as_json: Annotated[bool, typer.Option("--json", help=_RESULT_JSON_HELP)] = False,
    data_dir: DataDir = None,
    broker: OptionalBrokerUrl = None,
    username: Username = None,
    password_file: PasswordFile = None,
    fleet_name: FleetName = "default",
) -> None:
    """Finish an interrupted or stopped task.

    Its done subtasks are kept and the rest run, on the agents, memory and step router the
    task was started with; the time it was stopped counts in no duration. A task that another
    live process runs is left to it (exit 2); one whose process died is resumed once its lease
    lapses (FLEETMIND_LEASE_S, 15 s by default). Exit 0 when every subtask succeeded, 1 when
    one failed.
    """
    from fleetmind.cli._build import build_fleet, open_store, process_replica
    from fleetmind.cli._target import reload_target

    store = open_store(data_dir)
    task_id = store.resolve_id(task_id)
    record, _ = store.load(task_id)
    if record.status not in ("running", "interrupted"):
        raise ConfigError(f"task {task_id} has already ended ({record.status}); nothing to resume")
    if not record.source:
        raise ConfigError(f"task {task_id} was not started from a file; resume it from Python")
    agents, router, tools, planner = reload_target(
        record.source, record.metadata, remote_agents=broker is not None
    )
    if record.metadata.get("models"):
        share_model_settings(Path(str(record.metadata["models"])), data_dir)
    if planner is None and record.metadata.get("request"):
        planner = _replanner(record.metadata, data_dir)
    memory = memory_path(data_dir) if record.metadata.get("memory") else None
    apply_step_router(
        agents,
        step_router_for(
            _optional_str(record.metadata.get("step_router")),
            _optional_float(record.metadata.get("cloud_budget")),
        ),
    )
    replica = process_replica(store)
    the_fleet = build_fleet(
        agents, router, data_dir, store, tools, planner, memory=memory, replica=replica
    )
    _execute(
        the_fleet,
        lambda: the_fleet.submit_resume(task_id),
        task_id=task_id,
        check=None,
        say_how_to_resume=False,
        live=live,
        as_json=as_json,
        data_dir=data_dir,
        broker=broker,
        username=username,
        password_file=password_file,
        fleet_name=fleet_name,
    )


def _replanner(metadata: dict[str, object], data_dir: Path | None) -> Planner | None:
    """A planner for a resumed planned task, when a model is still configured (else its
    failures are not replanned)."""
    from fleetmind.cli._target import LoadedFleet

    models = metadata.get("models")
    try:
        loaded = LoadedFleet([])
        return planner_for(loaded, Path(str(models)) if models else None, data_dir)
    except ConfigError:
        return None


@app.command(
    epilog=examples(
        "fleetmind tasks",
        "fleetmind tasks -n 5 --json",
        "fleetmind tasks --store postgresql://fleet@db/fleet",
    )
)
def tasks(
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, metavar="N", help="How many tasks, at most."),
    ] = 20,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON list of {id, name, status, started_at, updated_at, source, owner}.",
        ),
    ] = False,
    data_dir: DataDir = None,
    store_url: StoreUrl = None,
) -> None:
    """List the recent tasks, newest first.

    On a store that orchestrator replicas share (--store), every replica's tasks are listed,
    with the replica that owns each running one.
    """
    from fleetmind.cli._build import open_store

    store = open_store(data_dir, store_url, read_only=True)
    try:
        records = store.tasks(limit)
    finally:
        store.close()
    if as_json:
        print_json([_task_json(r) for r in records])
        return
    if not records:
        Console().print("no tasks yet — start one with: fleetmind run TASK_FILE")
        return
    owned = any(r.owner for r in records)  # replicas' tasks: say whose each one is
    columns = ["id", "name", "status", "started", "updated", "source"]
    table = plain_table(*columns[:3], *(["owner"] if owned else []), *columns[3:])
    for r in records:
        owner = [escape(r.owner or "")] if owned else []
        table.add_row(
            r.id,
            escape(r.name),
            r.status,
            *owner,
            datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S"),
            datetime.fromtimestamp(r.updated_at).strftime("%H:%M:%S"),
            escape(r.source or ""),
        )
    print_table(table)


def _task_json(record: TaskRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "started_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "source": record.source,
        "owner": record.owner,
    }


def _iso(timestamp: float) -> str:
    """A moment as ISO 8601 with the local offset (``2026-12-05T14:25:09+00:00``)."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


@app.command(
    epilog=examples("fleetmind show t3f9c2a71b0", "fleetmind show t3f9 --format mermaid > task.mmd")
)
def show(
    task_id: TaskIdArg,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="How to show it: table, mermaid, dot or json.",
        ),
    ] = "table",
    data_dir: DataDir = None,
    store_url: StoreUrl = None,
) -> None:
    """Show a stored task and its subtasks.

    A table shows each subtask's state, agent, tries and time by default; --format mermaid or
    dot draws the graph, and json gives the task and its graph for scripts.
    """
    from fleetmind.cli._build import open_store
    from fleetmind.cli._view import graph_table, llm_line, routing_table, steps_table
    from fleetmind.orchestrator import TaskGraph, to_dot, to_mermaid

    if format not in ("table", "mermaid", "dot", "json"):
        raise ConfigError(f"unknown format {format!r}; use table, mermaid, dot or json")
    store = open_store(data_dir, store_url, read_only=True)
    try:
        record, entries = store.load(store.resolve_id(task_id))
    finally:
        store.close()
    graph = TaskGraph.from_log(entries, name=record.name)
    if format == "mermaid":
        sys.stdout.write(to_mermaid(graph))
    elif format == "dot":
        sys.stdout.write(to_dot(graph))
    elif format == "json":
        data = {"task": record.model_dump(mode="json"), "graph": graph.to_dict()}
        print(json.dumps(data, indent=2, default=str))
    else:
        console = table_console()
        if graph.request:
            console.print(f"planned from: {graph.request}", highlight=False, soft_wrap=True)
        title = f"{record.name} · task {record.id} · {record.status}"
        if record.owner and record.status == "running":
            title += f" on replica {record.owner}"
        # An interrupted task's clock stopped with it.
        stopped = record.updated_at if record.status == "interrupted" else None
        console.print(fit_table(graph_table(graph, title, stopped_at=stopped), console))
        llm = llm_line(graph)
        if llm:
            console.print(llm, style="dim", highlight=False)
            steps = steps_table(entries)
            if steps is not None:
                console.print(fit_table(steps, console))
        routed = routing_table(graph)
        if routed is not None:
            console.print(fit_table(routed, console))
        if record.source:
            console.print(f"source: {record.source}", style="dim", highlight=False, soft_wrap=True)


@app.command(
    epilog=examples(
        "fleetmind agents --fleet examples/repo_audit.py",
        "fleetmind agents --fleet my_fleet.py --json",
    )
)
def agents(
    fleet: FleetRef,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON list of {id, name, tier, cost_per_call, typical_latency_s, "
            "max_concurrency, version, skills, local_data}.",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """List a fleet's agents and their skills.

    Each agent is shown with its tier, cost per call, typical latency, concurrent slots,
    version, skills and the data it keeps local.
    """
    from fleetmind.cli._target import load_fleet

    profiles = sorted((a.profile for a in load_fleet(fleet).agents), key=lambda p: p.id)
    if as_json:
        print_json([_agent_json(p) for p in profiles])
        return
    table = plain_table("id", "tier", "cost", "latency", "slots", "version", "skills", "local data")
    for p in profiles:
        skills = ", ".join(s.name + (f" [{', '.join(s.tags)}]" if s.tags else "") for s in p.skills)
        table.add_row(
            p.id,
            p.tier.value,
            f"{p.cost_per_call:g}",
            f"{p.typical_latency_s:g}s",
            str(p.limits.max_concurrency),
            str(p.version),
            escape(skills),
            escape(", ".join(p.limits.local_data)),
        )
    print_table(table)


def _agent_json(profile: AgentProfile) -> dict[str, object]:
    return {
        "id": profile.id,
        "name": profile.display_name,
        "tier": profile.tier.value,
        "cost_per_call": profile.cost_per_call,
        "typical_latency_s": profile.typical_latency_s,
        "max_concurrency": profile.limits.max_concurrency,
        "version": profile.version,
        "skills": [
            {"name": s.name, "description": s.description, "tags": list(s.tags)}
            for s in profile.skills
        ],
        "local_data": list(profile.limits.local_data),
    }


def version_callback(value: bool) -> None:
    if value:
        from fleetmind._version import __version__

        print(f"fleetmind {__version__}")
        raise typer.Exit()


app.add_typer(agent_app, name="agent")
app.add_typer(broker_app, name="broker")
app.add_typer(mcp_app, name="mcp")
app.add_typer(a2a_app, name="a2a")
app.command("devices", epilog=DEVICES_EXAMPLES)(devices)
app.add_typer(orchestrator_app, name="orchestrator")
app.command("submit", epilog=SUBMIT_EXAMPLES)(submit)
app.command("plan", epilog=PLAN_EXAMPLES)(plan)
app.command("route", epilog=ROUTE_EXAMPLES)(route)
app.add_typer(llm_app, name="llm")
app.add_typer(router_app, name="router")
app.add_typer(memory_app, name="memory")
app.command("console", epilog=CONSOLE_EXAMPLES)(console)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Run multi-agent work as a live task graph across your devices and the cloud."""

"""`fleetmind a2a ...`: the A2A 1.0 side of the command line.

``serve`` offers one agent, or the whole fleet, to any A2A client; ``add``, ``list`` and
``remove`` manage the remote A2A agents that ``fleetmind run`` adds to its fleet. The A2A
libraries (and the SDK) load only when a command runs, so ``fleetmind --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fleetmind._suggest import did_you_mean
from fleetmind.cli._a2a_check import EXAMPLES as CHECK_EXAMPLES
from fleetmind.cli._a2a_check import check
from fleetmind.cli._help import command_group, examples
from fleetmind.cli._options import DataDir, FleetRef, ModelsFile
from fleetmind.cli._tables import plain_table, print_json, print_table, table_console
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from fleetmind.agents.remote import A2AAgent

a2a_app = command_group("Serve A2A agents, and use remote ones.")


@a2a_app.command(
    "serve",
    epilog=examples(
        "fleetmind a2a serve --fleet examples/repo_audit.py --port 8790",
        "fleetmind a2a serve --fleet my_fleet.py --agent translator --port 8791",
        "fleetmind a2a serve --fleet my_fleet.py --port 8790 --grpc-port 8791",
        "fleetmind a2a serve --fleet my_fleet.py --port 8790 --grpc-port off",
        "fleetmind a2a serve --fleet vision_fleet.py --port 8790 --accept image/png",
    ),
)
def serve(
    fleet: FleetRef,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            metavar="PORT",
            help="The port of the JSON-RPC and HTTP+JSON bindings.",
        ),
    ],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            metavar="AGENT",
            help="Serve only this agent (default: the whole fleet).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="The address to listen on.")
    ] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="A file holding the bearer token clients must send (declared on the card).",
            show_default=False,
        ),
    ] = None,
    grpc_port: Annotated[
        str,
        typer.Option(
            "--grpc-port",
            metavar="PORT|off",
            help="The port of the gRPC binding (0: any free port; off: no gRPC).",
        ),
    ] = "0",
    accept: Annotated[
        list[str] | None,
        typer.Option(
            "--accept",
            metavar="MEDIA_TYPE",
            help=(
                "Also accept message parts of this media type, e.g. image/png (repeatable; "
                "text/plain and application/json always are). Parts of other types are refused."
            ),
            show_default=False,
        ),
    ] = None,
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the fleet, or one agent, over A2A.

    Any A2A 1.0 client can then send it messages, over any of the three bindings the card
    declares: JSON-RPC at http://HOST:PORT/, HTTP+JSON at http://HOST:PORT/rest and gRPC at
    HOST:GRPC_PORT. It serves until Ctrl-C or SIGTERM. Messages in plain words to the whole
    fleet are planned into task graphs when a model is configured (see `fleetmind llm check`);
    otherwise each becomes one routed subtask.
    """
    # The server first: without the a2a extra, its import says what serving needs.
    from fleetmind.serve import A2AEndpoints, serve_a2a  # isort: skip
    from fleetmind.agents.remote import INPUT_MODES
    from fleetmind.cli._build import build_fleet, open_store, save_router
    from fleetmind.cli._llm_cmd import share_model_settings
    from fleetmind.cli._plan_cmd import optional_planner
    from fleetmind.cli._target import load_fleet
    from fleetmind.cli._tokens import read_token_file

    grpc = _grpc_port(grpc_port)
    input_modes = list(dict.fromkeys([*INPUT_MODES, *(_media_type(m) for m in accept or ())]))
    loaded = load_fleet(fleet)
    members, router, tools = loaded.agents, loaded.router, loaded.tools
    if agent is not None:
        chosen = [a for a in members if a.id == agent]
        if not chosen:
            ids = sorted(a.id for a in members)
            hint = did_you_mean(agent, ids) or f"; its agents: {', '.join(ids)}"
            raise ConfigError(f"{fleet} has no agent {agent!r}{hint}")
        members = chosen
    token = read_token_file(token_file) if token_file is not None else None
    share_model_settings(models_file, data_dir)
    planner = optional_planner(loaded, models_file, data_dir) if agent is None else None
    the_fleet = build_fleet(members, router, data_dir, open_store(data_dir), tools, planner)
    log = Console(stderr=True, soft_wrap=True)
    what = f"agent {agent}" if agent is not None else f"{len(members)} agent(s)"

    def ready(endpoints: A2AEndpoints) -> None:
        auth = " (bearer token required)" if token is not None else ""
        plans = f"; plain words planned by {planner.model.name}" if planner is not None else ""
        log.print(f"serving {what} over A2A at {endpoints.jsonrpc}{auth}{plans}", highlight=False)
        for line in endpoints.lines():
            log.print(f"  {line}", highlight=False)

    try:
        asyncio.run(
            serve_a2a(
                the_fleet,
                host,
                port,
                token,
                grpc_port=grpc,
                input_modes=input_modes,
                ready=ready,
            )
        )
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        raise typer.Exit(130) from None
    save_router(the_fleet)
    log.print("stopped", style="dim")


def _media_type(given: str) -> str:
    """``--accept``: a media type, ``type/subtype``."""
    text = given.strip().lower()
    if not re.fullmatch(r"[a-z0-9][\w.+-]*/[a-z0-9*][\w.+-]*", text):
        raise typer.BadParameter(
            f"{given!r} is not a media type (type/subtype, e.g. image/png)", param_hint="--accept"
        )
    return text


def _grpc_port(given: str) -> int | None:
    """``--grpc-port``: a port number, or ``off``."""
    text = given.strip().lower()
    if text in ("off", "no", "none"):
        return None
    if text.isdigit() and int(text) <= 65535:
        return int(text)
    raise typer.BadParameter(
        f"{given!r} is not a port (0-65535, 0: any free port) or 'off'", param_hint="--grpc-port"
    )


# Remote A2A agents the command line remembers (added to the fleet of `fleetmind run`) -----------


@a2a_app.command(
    "add",
    epilog=examples(
        "fleetmind a2a add https://agents.example.com/translator --token-file t.txt",
        "fleetmind a2a add http://127.0.0.1:8790 --id local-audit",
    ),
)
def add(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="The agent's base URL (where its card is served).",
            show_default=False,
        ),
    ],
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="A file holding the bearer token to send it.",
            show_default=False,
        ),
    ] = None,
    agent_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="ID",
            help="Its id in the fleet (default: from the card's name).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Add a remote A2A agent to your fleet.

    Its card is fetched and checked first; `fleetmind run` then adds it to the fleet of every
    task.
    """
    from fleetmind.agents.remote import connect_a2a_agent
    from fleetmind.cli._a2a_agents import A2AAgentEntry, read_entries, read_token, write_entries

    token_path = token_file.expanduser().resolve() if token_file is not None else None
    token = read_token(token_path)

    async def check() -> A2AAgent:
        agent = await connect_a2a_agent(url, token=token, agent_id=agent_id)
        await agent.aclose()
        return agent

    agent = asyncio.run(check())
    entry = A2AAgentEntry(
        id=agent.id, url=agent.url, token_file=str(token_path) if token_path else None
    )
    entries = read_entries(data_dir)
    existing = next((e for e in entries if e.id == entry.id), None)
    if existing is not None and existing.url != entry.url:
        raise ConfigError(
            f"an A2A agent with id {entry.id!r} is already added ({existing.url}); "
            "pick another with --id, or remove it first"
        )
    if existing is None:
        entries.append(entry)
    else:
        entries = [entry if e.id == entry.id else e for e in entries]
    write_entries(data_dir, entries)
    console = Console(highlight=False)
    verb = "updated" if existing is not None else "added"
    console.print(f"{verb} A2A agent {entry.id} ({agent.card.name}) at {entry.url}")
    if not agent.profile.skills:
        console.print("  its card lists no skills: subtasks reach it by id or by description")
    for skill in agent.profile.skills:
        line = f"  - {skill.name}"
        if skill.description:
            line += f": {skill.description}"
        console.print(line)


@a2a_app.command("list", epilog=examples("fleetmind a2a list --json"))
def list_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {id, url, token_file}.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """List the remote A2A agents in your fleet."""
    from fleetmind.cli._a2a_agents import read_entries

    entries = sorted(read_entries(data_dir), key=lambda e: e.id)
    if as_json:
        print_json([entry.model_dump(mode="json") for entry in entries])
        return
    if not entries:
        Console(highlight=False).print("no A2A agents yet — add one with: fleetmind a2a add URL")
        return
    table = plain_table("id", "url", "token file")
    for entry in entries:
        table.add_row(entry.id, escape(entry.url), escape(entry.token_file or ""))
    print_table(table, table_console(highlight=False))


@a2a_app.command("remove", epilog=examples("fleetmind a2a remove local-audit"))
def remove(
    agent_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="The id shown by `fleetmind a2a list`.", show_default=False
        ),
    ],
    data_dir: DataDir = None,
) -> None:
    """Forget a remote A2A agent.

    Its token file is left where it is.
    """
    from fleetmind.cli._a2a_agents import read_entries, write_entries

    entries = read_entries(data_dir)
    kept = [e for e in entries if e.id != agent_id]
    if len(kept) == len(entries):
        ids = [e.id for e in entries]
        hint = did_you_mean(agent_id, ids) or "; see: fleetmind a2a list"
        raise ConfigError(f"no A2A agent with id {agent_id!r}{hint}")
    write_entries(data_dir, kept)
    Console(highlight=False).print(f"removed A2A agent {agent_id}")


a2a_app.command("check", epilog=CHECK_EXAMPLES)(check)

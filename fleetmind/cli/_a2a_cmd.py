"""`fleetmind a2a ...`: the A2A 1.0 side of the command line.

``serve`` offers one agent, or the whole fleet, to any A2A client. The A2A libraries load only
when a command runs, so ``fleetmind --help`` stays fast.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetmind._suggest import did_you_mean
from fleetmind.cli._a2a_agents import add, list_cmd, remove
from fleetmind.cli._llm_cmd import ModelsFile
from fleetmind.cli._options import DataDir
from fleetmind.cli._target import load_fleet
from fleetmind.cli._tokens import read_token_file
from fleetmind.errors import ConfigError

a2a_app = typer.Typer(
    help="Serve agents to A2A clients, and use remote A2A agents.",
    no_args_is_help=True,
)


@a2a_app.command("serve")
def serve(
    fleet: Annotated[
        str, typer.Option("--fleet", help="Where the agents are: FILE.py or module[:attr].")
    ],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")],
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="Serve only this agent (default: the whole fleet)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding a bearer token that clients must send (declared on the card).",
        ),
    ] = None,
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Serve one agent, or the whole fleet, as an A2A 1.0 agent until Ctrl-C or SIGTERM.

    Messages in plain words to the whole fleet are planned into task graphs when a model is
    configured (see `fleetmind llm check`); otherwise each becomes one routed subtask.
    """
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
    # Imported here: _app imports this module to register the sub-app.
    from fleetmind.cli._build import build_fleet, open_store, save_router
    from fleetmind.cli._llm_cmd import share_model_settings
    from fleetmind.cli._plan_cmd import optional_planner
    from fleetmind.serve import serve_a2a

    share_model_settings(models_file, data_dir)
    planner = optional_planner(loaded, models_file, data_dir) if agent is None else None
    the_fleet = build_fleet(members, router, data_dir, open_store(data_dir), tools, planner)
    log = Console(stderr=True, soft_wrap=True)
    what = f"agent {agent}" if agent is not None else f"{len(members)} agent(s)"

    def ready(url: str) -> None:
        auth = " (bearer token required)" if token is not None else ""
        plans = f"; plain words planned by {planner.model.name}" if planner is not None else ""
        log.print(f"serving {what} over A2A at {url}{auth}{plans}", highlight=False)

    try:
        asyncio.run(serve_a2a(the_fleet, host, port, token, ready=ready))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        raise typer.Exit(130) from None
    save_router(the_fleet)
    log.print("stopped", style="dim")


# Remote A2A agents the command line remembers (added to the fleet of `fleetmind run`).
a2a_app.command("add")(add)
a2a_app.command("list")(list_cmd)
a2a_app.command("remove")(remove)

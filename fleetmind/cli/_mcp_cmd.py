"""`fleetmind mcp serve`: the fleet as an MCP server, over stdio or streamable HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from fleetmind.cli._help import command_group, examples
from fleetmind.cli._mcp_check import EXAMPLES as CHECK_EXAMPLES
from fleetmind.cli._mcp_check import check
from fleetmind.cli._mcp_login import EXAMPLES as LOGIN_EXAMPLES
from fleetmind.cli._mcp_login import login
from fleetmind.cli._options import DataDir, FleetRef, ModelsFile
from fleetmind.cli._tokens import read_token_file
from fleetmind.errors import ConfigError

mcp_app = command_group(
    "Serve the fleet to MCP hosts.",
    "MCP hosts (desktop apps, IDEs, other agents) then run tasks on the fleet.",
)


def parse_http_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port."""
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"--http expects HOST:PORT, e.g. 127.0.0.1:8765; got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"--http port must be between 1 and 65535; got {port}")
    return host, port


@mcp_app.command(
    "serve",
    epilog=examples(
        "fleetmind mcp serve --fleet examples/repo_audit.py --stdio",
        "fleetmind mcp serve --fleet my_fleet.py --http 127.0.0.1:8765",
    ),
)
def serve(
    fleet: FleetRef,
    stdio: Annotated[
        bool, typer.Option("--stdio", help="Serve over stdin/stdout (what MCP hosts launch).")
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            help="Serve streamable HTTP at /mcp on this address.",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="A file holding the bearer token HTTP clients must send (--http only).",
            show_default=False,
        ),
    ] = None,
    stream_window: Annotated[
        float | None,
        typer.Option(
            "--stream-window",
            metavar="SECONDS",
            help=(
                "Close a long call's SSE stream after this many seconds; the client resumes "
                "it with Last-Event-ID (--http, protocol 2025-11-25)."
            ),
            show_default=False,
        ),
    ] = None,
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the fleet's tools to MCP clients.

    The tools are submit_task, get_task, get_result and more. Tasks go to the task store in the
    data directory, like those of `fleetmind run`. A task given in plain words is planned when a
    model is configured (see `fleetmind llm check`).
    """
    if stdio == (http is not None):
        raise ConfigError("give exactly one of --stdio or --http HOST:PORT")
    if stdio and token_file is not None:
        # Over stdio there is no HTTP layer to check a token: the host that starts the
        # process is trusted. Refused, so that nobody believes the server is protected.
        raise ConfigError(
            "--token-file applies to --http only; over --stdio the MCP host that starts "
            "the server is trusted"
        )
    if stdio and stream_window is not None:
        raise ConfigError("--stream-window applies to --http only; stdio has no streams to resume")
    if stream_window is not None and not stream_window > 0:
        raise ConfigError(
            f"--stream-window must be a positive number of seconds; got {stream_window}"
        )
    host, port = parse_http_address(http) if http is not None else ("127.0.0.1", 0)
    token = read_token_file(token_file) if token_file is not None else None

    # The command line's own way to build a fleet: semantic routing caching its embeddings,
    # the SQLite store, both under the data directory.
    from fleetmind.cli._build import build_fleet, open_store, save_router
    from fleetmind.cli._llm_cmd import share_model_settings
    from fleetmind.cli._plan_cmd import optional_planner
    from fleetmind.cli._target import load_fleet
    from fleetmind.serve import serve_mcp

    # Under stdio, stdout is the JSON-RPC wire: whatever the user's module prints at import
    # goes to stderr.
    with contextlib.redirect_stdout(sys.stderr) if stdio else contextlib.nullcontext():
        loaded = load_fleet(fleet)
        agents, router, tools = loaded.agents, loaded.router, loaded.tools
    share_model_settings(models_file, data_dir)
    planner = optional_planner(loaded, models_file, data_dir)
    the_fleet = build_fleet(agents, router, data_dir, open_store(data_dir), tools, planner)
    transport: Literal["stdio", "http"] = "stdio" if stdio else "http"
    try:
        asyncio.run(
            serve_mcp(
                the_fleet,
                transport=transport,
                host=host,
                port=port,
                token=token,
                stream_window_s=stream_window,
            )
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        save_router(the_fleet)


mcp_app.command("check", epilog=CHECK_EXAMPLES)(check)
mcp_app.command("login", epilog=LOGIN_EXAMPLES)(login)

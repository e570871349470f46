"""`fleetmind mcp login URL`: authorize fleetmind with an MCP server that requires OAuth, ahead
of time, so that fleets that run with nobody at a terminal (on a server, under a supervisor)
find the tokens in the data directory.

The same module gives the fleets the command line builds their :class:`MCPAuth`: tokens under
``<data dir>/mcp_auth``, the user asked in a browser when a terminal is there, and otherwise an
error naming this command. Only typer and the standard library load with this module.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetmind.cli._help import examples
from fleetmind.cli._options import DataDir, home
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from fleetmind.protocols import MCPAuth
    from fleetmind.tools import ToolRegistry

EXAMPLES = examples(
    "fleetmind mcp login https://mcp.example.com/mcp",
    "fleetmind mcp login https://mcp.example.com/mcp --client-id my-app",
)


def mcp_auth(
    data_dir: Path | None,
    *,
    interactive: bool | None = None,
    open_browser: bool = True,
    wait_s: float = 300.0,
    show: Callable[[str, str], None] | None = None,
) -> MCPAuth:
    """How MCP servers reached from this data directory are authorized (see :class:`MCPAuth`)."""
    from fleetmind.protocols import MCP_TOKEN_DIR, MCPAuth

    command = "fleetmind mcp login {url}"
    if data_dir is not None:
        command += f" --data-dir {shlex.quote(str(data_dir))}"
    return MCPAuth(
        home(data_dir) / MCP_TOKEN_DIR,
        interactive=interactive,
        open_browser=open_browser,
        wait_s=wait_s,
        show=show,
        login_command=command,
    )


def share_mcp_auth(tools: ToolRegistry, data_dir: Path | None) -> None:
    """Let the MCP servers among ``tools`` use (and keep) tokens in the data directory."""
    from fleetmind.tools import MCPToolSource

    auth = None
    for source in tools.sources:
        if isinstance(source, MCPToolSource) and source.connection.auth is None:
            auth = auth or mcp_auth(data_dir)
            source.connection.auth = auth


def login(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="The MCP server's URL.", show_default=False),
    ],
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            metavar="ID",
            help="A client id registered with the server's authorization server beforehand "
            "(default: fleetmind registers itself).",
            show_default=False,
        ),
    ] = None,
    redirect_port: Annotated[
        int | None,
        typer.Option(
            "--redirect-port",
            metavar="PORT",
            min=1,
            max=65535,
            help="The loopback port the authorization comes back to (default: a free one).",
            show_default=False,
        ),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the address only; open no browser.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Authorize again, even when the kept tokens work.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option("--wait", metavar="SECONDS", min=1, help="How long to wait for the browser."),
    ] = 300.0,
    data_dir: DataDir = None,
) -> None:
    """Authorize fleetmind with an OAuth MCP server.

    The authorization address is printed (and opened in a browser on a desktop); once it is
    approved, the tokens are kept in the data directory (readable by you only) and refreshed
    when they expire, so fleets started later, even with no terminal, use the server.
    """
    from fleetmind.protocols import MCPConnection, MCPServerConfig, mcp_token_file

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"fleetmind mcp login takes the server's http(s) URL; got {url!r}")
    oauth = None
    if client_id is not None or redirect_port is not None:
        oauth = {"client_id": client_id, "redirect_port": redirect_port}
    config = MCPServerConfig.parse({"url": url, "oauth": oauth, "timeout_s": 60.0})
    asked: list[str] = []

    def show(server: str, address: str) -> None:
        asked.append(address)
        print(
            f"Open this address in a browser to authorize fleetmind with {url}:\n\n  {address}\n",
            file=sys.stderr,
            flush=True,
        )

    auth = mcp_auth(data_dir, interactive=True, open_browser=not no_browser, wait_s=wait, show=show)
    saved = mcp_token_file(auth.token_dir, url)
    if force:
        saved.unlink(missing_ok=True)

    async def authorize() -> int:
        async with MCPConnection(config, auth=auth) as connection:
            return len(await connection.list_tools())

    try:
        count = asyncio.run(authorize())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    tools = f"{count} tool{'s' if count != 1 else ''}"
    if asked:
        print(f"Authorized with {url} ({tools}); its tokens are kept in {saved}")
    elif saved.exists():
        print(f"Already authorized with {url} ({tools}); the tokens in {saved} work")
    else:
        print(f"{url} needs no authorization ({tools})")

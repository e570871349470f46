"""`fleetmind mcp check URL|COMMAND`: a user's first look at any MCP server, on one screen.

A URL is first asked, with a plain HTTP request, whether it needs authorization: a 401 names
what to do (an OAuth login, or a bearer token). Without ``--token``, the token that
``fleetmind mcp login`` kept in the data directory is sent (refreshed first if it expired);
a check never starts a browser flow itself. Then the server is connected to (a command
line is started over stdio), and what the handshake gave is shown: the protocol version, the
server's name and capabilities; its tools, resources and prompts are listed, a ping is timed,
and one tool may be called (``--call``). Nothing else is called: a check must not change
anything on the server. Only typer and the standard library load with this module; the MCP
SDK loads when the command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shlex
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer

from fleetmind.cli._a2a_check import (
    CheckJson,
    TimeoutOption,
    TokenFileOption,
    TokenOption,
    bearer_token,
)
from fleetmind.cli._check_report import CheckReport, timed
from fleetmind.cli._help import examples
from fleetmind.cli._options import DataDir
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from mcp import Client

    from fleetmind.protocols import MCPAuth, MCPServerConfig

EXAMPLES = examples(
    "fleetmind mcp check http://127.0.0.1:8765/mcp",
    'fleetmind mcp check "python server.py" --call add --arg a=1 --arg b=2',
)

_T = TypeVar("_T")

_NAMES_SHOWN = 8
_RESOURCE_METADATA = re.compile(r'resource_metadata\s*=\s*"([^"]+)"')
_AUTH_ERROR = re.compile(r'error\s*=\s*"([^"]+)"')


def check(
    target: Annotated[
        str,
        typer.Argument(
            metavar="URL|COMMAND",
            help="The server's streamable HTTP URL, or the command line that starts it "
            "(quoted, as one argument).",
            show_default=False,
        ),
    ],
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    call: Annotated[
        str | None,
        typer.Option(
            "--call",
            metavar="TOOL",
            help="Call this tool once (pick one that changes nothing).",
            show_default=False,
        ),
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            metavar="KEY=VALUE",
            help="An argument of --call's tool; the value is read as YAML (repeatable).",
            show_default=False,
        ),
    ] = None,
    timeout: TimeoutOption = 60.0,
    as_json: CheckJson = False,
    data_dir: DataDir = None,
) -> None:
    """Check an MCP server's handshake and lists.

    Connects (a URL over streamable HTTP, a command line over stdio), shows the protocol
    version, the server's name and capabilities, lists its tools, resources and prompts, times
    a ping and says whether it needs authorization. Without --token, a token kept by
    `fleetmind mcp login` in the data directory is used. No tool is called unless --call names
    one. Exit 0 when every check passed, 1 when one failed.
    """
    config = server_config(target)
    secret = bearer_token(token, token_file)
    if secret is not None and config.transport == "stdio":
        raise ConfigError("--token and --token-file go with a URL; a stdio server takes none")
    if arg and call is None:
        raise ConfigError("--arg gives arguments to --call's tool: name the tool with --call")
    from fleetmind.cli._target import parse_params

    arguments = parse_params(arg or [], option="--arg")
    auth = None
    if config.url is not None:
        from fleetmind.cli._mcp_login import mcp_auth

        auth = mcp_auth(data_dir, interactive=False)
    report = asyncio.run(probe_mcp(config, secret, call, arguments, timeout, auth=auth))
    raise typer.Exit(report.print(as_json=as_json))


def server_config(target: str) -> MCPServerConfig:
    """The server to check, from a URL or a command line.

    Raises:
        ConfigError: The URL or the command line is not valid, or names no program.
    """
    from fleetmind.protocols import MCPServerConfig

    config = MCPServerConfig.parse(target)
    if config.url is not None:
        parts = urlsplit(config.url)
        if not parts.hostname:
            raise ConfigError(f"the URL {config.url!r} has no host")
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError as exc:
            raise ConfigError(f"the URL {config.url!r} has a bad port: {exc}") from exc
    elif config.command is not None and shutil.which(config.command) is None:
        raise ConfigError(
            f"no program {config.command!r} found (on PATH, or as a file) to start the "
            "MCP server; give a URL or a command line"
        )
    return config


# The probe ----------------------------------------------------------------------------------


async def probe_mcp(
    config: MCPServerConfig,
    token: str | None,
    call: str | None,
    arguments: dict[str, Any],
    wait_s: float,
    *,
    auth: MCPAuth | None = None,
) -> CheckReport:
    """Check the server's authorization, handshake and lists; call ``call`` when given.

    ``auth`` is where saved OAuth tokens are looked for when no ``token`` is given (never
    interactively), and names the login command a server that needs authorization asks for.
    """
    from fleetmind.cli._wait import waiting

    where = config.url or " ".join([config.command or "", *config.args])
    report = CheckReport("MCP server", where)
    report.fact("transport", "streamable HTTP" if config.url else "stdio")
    if config.url is not None:
        login = (auth.login_command if auth else "fleetmind mcp login {url}").format(
            url=shlex.quote(config.url)
        )
        saved = False
        if token is None and auth is not None:
            from fleetmind.protocols import MCPAuthError, saved_mcp_token

            failure: MCPAuthError | None = None
            with waiting(f"looking for a saved token for {config.url}"), timed() as took:
                try:
                    token = await saved_mcp_token(auth, config.url, timeout_s=wait_s)
                except MCPAuthError as exc:
                    failure = exc
            if failure is not None:
                report.failed("auth", "saved token not usable", failure.message, took.ms)
                return report
            saved = token is not None
        with waiting(f"asking {config.url} whether it needs authorization"):
            if not await _authorization(config.url, token, wait_s, report, login, saved=saved):
                return report
    # The server's stderr is kept, so that a server that fails to start can be quoted.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        async with contextlib.AsyncExitStack() as stack:
            with waiting(f"{'connecting to' if config.url else 'starting'} {where}"):
                client = await _connect(stack, config, token, wait_s, errlog, report)
            if client is None:
                return report
            _describe_server(client, report)
            with waiting("listing what the server offers"):
                await _lists(client, wait_s, report)
                await _ping(client, wait_s, report)
            if call is not None:
                with waiting(f"calling the tool {call}"):
                    await _call(client, call, arguments, wait_s, report)
    return report


async def _authorization(
    url: str,
    token: str | None,
    wait_s: float,
    report: CheckReport,
    login: str,
    *,
    saved: bool = False,
) -> bool:
    """Whether the server may be connected to; a 401 is explained (OAuth, or a token).

    ``login`` is the command that authorizes with an OAuth server; ``saved`` says the token
    is the one that command kept.
    """
    import httpx

    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": "fleetmind-check", "method": "ping"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(wait_s)) as http:
        with timed() as took:
            try:
                response = await http.post(url, json=body, headers=headers)
            except httpx.TimeoutException:
                reason = f"no answer within {wait_s:g} s"
                report.failed("auth", reason, f"{url} is unreachable: {reason}", took.ms)
                return False
            except httpx.HTTPError as exc:
                from fleetmind.cli._a2a_check import network_reason

                reason = network_reason(exc)
                report.failed("auth", reason, f"{url} is unreachable: {reason}", took.ms)
                return False
        status = response.status_code
        challenge = response.headers.get("www-authenticate", "")
        report.data["auth"] = {
            "status": status,
            "www_authenticate": challenge or None,
            "token": "saved" if saved else "given" if token else None,
        }
        if status in (404, 405):
            report.failed(
                "auth",
                f"HTTP {status}",
                f"there is no MCP endpoint at {url} (HTTP {status}); MCP servers usually "
                "serve at a path such as /mcp",
                took.ms,
            )
            return False
        if status == 403:
            report.failed("auth", "HTTP 403", f"{url} refuses access (HTTP 403)", took.ms)
            return False
        if status != 401:
            if saved:
                line = "authorized with a saved token (from mcp login)"
            else:
                line = "token accepted" if token else "no authorization needed"
            report.ok("auth", line, took.ms, status=status)
            return True
        metadata = await _protected_resource(http, url, challenge)
    report.data["auth"]["oauth"] = metadata
    error = _AUTH_ERROR.search(challenge)
    if saved:
        why = f" ({error.group(1)})" if error else ""
        report.failed(
            "auth",
            f"HTTP 401: saved token refused{why}; needs authorization: run {login}",
            f"{url} refused the token saved by `fleetmind mcp login`{why}: run `{login}` "
            "to authorize again",
            took.ms,
        )
    elif token is not None:
        why = f" ({error.group(1)})" if error else ""
        report.failed(
            "auth", f"HTTP 401: token refused{why}", f"{url} refused the token{why}", took.ms
        )
    elif metadata is not None:
        servers = ", ".join(metadata.get("authorization_servers") or []) or "unnamed"
        report.failed(
            "auth",
            f"HTTP 401: needs authorization: run {login}",
            f"the server needs OAuth authorization (authorization server: {servers}): run "
            f"`{login}`, or give a token with --token",
            took.ms,
        )
    else:
        report.failed(
            "auth",
            "HTTP 401: needs a bearer token",
            f"{url} needs a bearer token: give it with --token or --token-file",
            took.ms,
        )
    return False


async def _protected_resource(http: Any, url: str, challenge: str) -> dict[str, Any] | None:
    """The server's OAuth protected resource metadata (RFC 9728), when it publishes one."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    candidates = []
    named = _RESOURCE_METADATA.search(challenge)
    if named:
        candidates.append(named.group(1))
    path = parts.path.rstrip("/")
    if path:
        candidates.append(f"{origin}/.well-known/oauth-protected-resource{path}")
    candidates.append(f"{origin}/.well-known/oauth-protected-resource")
    for candidate in candidates:
        with contextlib.suppress(Exception):
            response = await http.get(candidate)
            if response.status_code == 200:
                document = response.json()
                if isinstance(document, dict) and document.get("authorization_servers"):
                    return document | {"url": candidate}
    return None


async def _connect(
    stack: contextlib.AsyncExitStack,
    config: MCPServerConfig,
    token: str | None,
    wait_s: float,
    errlog: Any,
    report: CheckReport,
) -> Client | None:
    """The connected client, or None after recording why the handshake failed."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client

    transport: Any
    if config.url is not None:
        import httpx2
        from mcp.shared._httpx_utils import create_mcp_http_client

        headers = {"Authorization": f"Bearer {token}"} if token else None
        http = create_mcp_http_client(
            headers=headers, timeout=httpx2.Timeout(wait_s, read=max(wait_s, 60.0))
        )
        await stack.enter_async_context(http)
        transport = streamable_http_client(config.url, http_client=http)
    else:
        params = StdioServerParameters(
            command=config.command or "", args=list(config.args), cwd=config.cwd
        )
        transport = stdio_client(params, errlog=errlog)
    client = Client(transport, read_timeout_seconds=wait_s, cache=None)
    name = "connect" if config.url else "start"
    with timed() as took:
        try:
            async with asyncio.timeout(wait_s):
                await stack.enter_async_context(client)
        except Exception as exc:  # every failure is reported, none is raised
            failure: BaseException | None = exc
        else:
            failure = None
    if failure is None:
        version = client.protocol_version
        report.ok(name, f"handshake done, protocol {version}", took.ms)
        return client
    if isinstance(failure, TimeoutError):
        reason = f"no handshake within {wait_s:g} s"
    else:
        reason = _describe(failure)
    errlog.seek(0)
    said = " ".join(errlog.read().split()[-40:])
    tail = f"; its stderr ends: {said[-300:]}" if said else ""
    what = "could not be connected to" if config.url else "did not start or did not answer"
    report.failed(name, _cut(reason, 100), f"the server {what}: {reason}{tail}", took.ms)
    return None


def _describe_server(client: Client, report: CheckReport) -> None:
    """The handshake's facts: protocol version, name and version, capabilities."""
    info = client.server_info
    caps = client.server_capabilities
    name = f"{info.name} {info.version}".strip() if info is not None else "(anonymous)"
    report.fact("server", name)
    report.fact("protocol", client.protocol_version)
    offered: dict[str, Any] = {}
    words = []
    for kind in ("tools", "resources", "prompts", "logging", "completions"):
        capability = getattr(caps, kind, None)
        if capability is None:
            continue
        flags = {
            flag: bool(getattr(capability, flag, False))
            for flag in ("list_changed", "subscribe")
            if hasattr(capability, flag)
        }
        offered[kind] = flags
        shown = [flag.replace("_", " ") for flag, on in flags.items() if on]
        words.append(f"{kind} ({', '.join(shown)})" if shown else kind)
    for extra in ("experimental", "extensions", "tasks"):
        value = getattr(caps, extra, None)
        if value:
            offered[extra] = sorted(value) if isinstance(value, dict) else True
            words.append(extra)
    report.fact("capabilities", ", ".join(words) or "none")
    if client.instructions:
        report.fact("instructions", _cut(" ".join(client.instructions.split()), 100))
    report.data["server"] = {
        "name": info.name if info else None,
        "version": info.version if info else None,
        "protocol_version": client.protocol_version,
        "capabilities": offered,
        "instructions": client.instructions,
    }


async def _lists(client: Client, wait_s: float, report: CheckReport) -> None:
    """List tools, resources (and templates) and prompts: those the server offers."""
    caps = client.server_capabilities
    listings: dict[str, list[str]] = {}
    for kind, offered in (
        ("tools", caps.tools is not None),
        ("resources", caps.resources is not None),
        ("resource templates", caps.resources is not None),
        ("prompts", caps.prompts is not None),
    ):
        if not offered:
            report.skipped(kind, "not offered by the server")
            continue
        names, ms = await _within(wait_s, functools.partial(_all_names, client, kind))
        if isinstance(names, BaseException):
            reason = _describe(names)
            report.failed(kind, _cut(reason, 100), f"listing {kind} failed: {reason}", ms)
            continue
        listings[kind] = names
        shown = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
        report.ok(kind, f"{len(names)}: {shown}" if names else "none", ms, count=len(names))
    report.data["lists"] = listings


async def _within(
    wait_s: float, call: Callable[[], Awaitable[_T]]
) -> tuple[_T | BaseException, float]:
    """``call``'s value within ``wait_s``, or the exception it failed with (every failure is
    reported, none is raised), and how long it took in milliseconds."""
    outcome: _T | BaseException
    with timed() as took:
        try:
            async with asyncio.timeout(wait_s):
                outcome = await call()
        except Exception as exc:
            outcome = exc
    return outcome, took.ms


async def _all_names(client: Client, kind: str) -> list[str]:
    """Every name of a listing, across its pages."""
    names: list[str] = []
    cursor: str | None = None
    for _ in range(1000):  # a server whose cursors never end is not followed forever
        if kind == "tools":
            tools = await client.list_tools(cursor=cursor)
            names += [t.name for t in tools.tools]
            cursor = tools.next_cursor
        elif kind == "resources":
            resources = await client.list_resources(cursor=cursor)
            names += [str(r.uri) for r in resources.resources]
            cursor = resources.next_cursor
        elif kind == "resource templates":
            templates = await client.list_resource_templates(cursor=cursor)
            names += [t.uri_template for t in templates.resource_templates]
            cursor = templates.next_cursor
        else:
            prompts = await client.list_prompts(cursor=cursor)
            names += [p.name for p in prompts.prompts]
            cursor = prompts.next_cursor
        if cursor is None:
            break
    return names


async def _ping(client: Client, wait_s: float, report: CheckReport) -> None:
    """Time a ping (protocol revisions without ``ping`` get a ``server/discover`` instead)."""
    from mcp import MCPError
    from mcp.types import METHOD_NOT_FOUND

    session = client.session
    what = "ping"
    with timed() as took:
        try:
            async with asyncio.timeout(wait_s):
                try:
                    await session.send_ping()
                except MCPError as exc:
                    if exc.code != METHOD_NOT_FOUND:
                        raise
                    what = "server/discover"
                    with timed() as took:
                        await session.send_discover(client.protocol_version)
        except Exception as exc:  # every failure is reported, none is raised
            failure: BaseException | None = exc
        else:
            failure = None
    if failure is not None:
        reason = _describe(failure)
        report.failed("ping", _cut(reason, 100), f"the server did not answer a ping: {reason}")
        return
    report.ok("ping", f"answered ({what})", took.ms, method=what)


async def _call(
    client: Client, tool: str, arguments: dict[str, Any], wait_s: float, report: CheckReport
) -> None:
    """Call one tool and say what it returned."""
    import json

    name = f"call {tool}"
    result, ms = await _within(wait_s, lambda: client.call_tool(tool, arguments))
    if isinstance(result, BaseException):
        reason = _describe(result)
        report.failed(name, _cut(reason, 100), f"calling {tool} failed: {reason}", ms)
        return
    texts = [getattr(block, "text", "") for block in result.content]
    text = " ".join(" ".join(t for t in texts if t).split())
    if result.structured_content is not None:
        value = json.dumps(result.structured_content, default=str)
    else:
        value = text
    if result.is_error:
        report.failed(
            name,
            f"the tool reported an error: {_cut(text, 80)}",
            f"the tool {tool} reported an error: {_cut(text, 300)}",
            ms,
        )
        return
    report.ok(name, f"returned {_cut(value, 80)}", ms, value=result.structured_content)


def _describe(exc: BaseException) -> str:
    """One line for a failure, looking inside exception groups for the first real cause."""
    from fleetmind.cli._a2a_check import network_reason

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore")):
        return network_reason(exc)
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split()) or type(exc).__name__


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

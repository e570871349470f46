"""A client for one MCP server: its configuration, and a connection that survives a crash.

:class:`MCPServerConfig` says how to reach a server: a command to run (stdio) or a URL
(streamable HTTP). :class:`MCPConnection` holds one session to it, opened on first use and
shared by every later call, and restarts the server once when it dies under a call.

The ``mcp`` package is imported inside the functions that talk to a server, never at module
level: a device that only runs local agents imports fleetmind without loading the MCP SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import shlex
import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleetmind._extras import require
from fleetmind._validation import describe_validation_error
from fleetmind.errors import ConfigError, FleetStateError, ProtocolError
from fleetmind.protocols._mcp_auth import (
    MCPAuth,
    MCPAuthError,
    MCPOAuthClient,
    find_auth_error,
    oauth_provider,
    take_auth_failure,
)
from fleetmind.protocols._mcp_requests import (
    ElicitationHandler,
    SamplingHandler,
    client_callbacks,
    listen_for_tool_changes,
)

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["MCPCallResult", "MCPConnection", "MCPServerConfig", "MCPTool"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Programs that run a server named by their first real argument: a config string such as
# "npx -y @scope/server-files /data" should be called "server-files", not "npx".
_LAUNCHERS = frozenset(
    {"python", "python3", "node", "npx", "uv", "uvx", "deno", "bun", "bunx", "sh", "bash", "pipx"}
)

# JSON-RPC error code the SDK uses when the transport under a request went away.
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001


class MCPServerConfig(BaseModel):
    """How to reach one MCP server: a command to run over stdio, or a streamable HTTP URL.

    Build one directly, or with :meth:`parse` from a mapping (as found in a config file) or a
    string (a URL, or a command line).

    Attributes:
        name: A short name for the server, used in logs and errors.
        command: The program to run; the server then speaks MCP on its stdin and stdout.
        args: Arguments for ``command``.
        env: Environment variables for ``command``, on top of a minimal inherited set
            (``PATH``, ``HOME``, ...), so that secrets of this process do not leak into it.
        cwd: Working directory for ``command``.
        url: The server's streamable HTTP endpoint, e.g. ``http://127.0.0.1:8000/mcp``.
        headers: HTTP headers sent with every request to ``url`` (an API key, say).
        oauth: How fleetmind identifies itself to the server's authorization server, when
            the server asks for OAuth authorization and does not let clients register.
        timeout_s: How long to wait for the server to start and for each of its replies.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    oauth: MCPOAuthClient | None = None
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"name {self.name!r} is not valid: use 1 to 64 letters, digits, '_', '-' or '.'"
            )
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio) or 'url' (streamable HTTP)")
        if self.url is not None:
            if self.args or self.env or self.cwd is not None:
                raise ValueError("'args', 'env' and 'cwd' go with 'command', not with 'url'")
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url {self.url!r} is not an http:// or https:// URL")
        else:
            if self.headers:
                raise ValueError("'headers' go with 'url', not with 'command'")
            if self.oauth is not None:
                raise ValueError("'oauth' goes with 'url', not with 'command'")
            if not (self.command or "").strip():
                raise ValueError("'command' is empty")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """``"stdio"`` when fleetmind runs the server, ``"http"`` when it connects to one."""
        return "stdio" if self.command is not None else "http"

    @classmethod
    def parse(
        cls, value: MCPServerConfig | Mapping[str, Any] | str, *, name: str | None = None
    ) -> MCPServerConfig:
        """Read a server config from a mapping, a URL or a command line.

        A string that starts with ``http://`` or ``https://`` is a URL; any other string is a
        command line, split as a POSIX shell would. A mapping holds the fields of this class
        (``name`` may be left out). Without a name, one is made from the command or the URL.

        Args:
            value: The config; a :class:`MCPServerConfig` is returned as it is (renamed if
                ``name`` is given).
            name: The server's name, overriding any in ``value``.

        Raises:
            ConfigError: The config is not valid; the one-line message says what is wrong.
        """
        if isinstance(value, MCPServerConfig):
            if name is None:
                return value
            data: dict[str, Any] = value.model_dump()
        elif isinstance(value, str):
            data = _parse_string(value)
        elif isinstance(value, Mapping):
            data = _parse_mapping(value)
        else:
            raise ConfigError(
                f"an MCP server config is a mapping or a string, not {type(value).__name__}"
            )
        if name is not None:
            data["name"] = name
        elif "name" not in data:
            data["name"] = _derive_name(data)
        label = data.get("name")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            where = f"MCP server {label!r}" if isinstance(label, str) else "MCP server config"
            problems = describe_validation_error(exc, all_errors=True, noun="field")
            raise ConfigError(f"{where}: {' '.join(problems.split())}") from exc


def _parse_string(text: str) -> dict[str, Any]:
    text = text.strip()
    if not text:
        raise ConfigError("MCP server config is empty: give a URL or a command line")
    if text.startswith(("http://", "https://")):
        return {"url": text}
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"MCP server command line {text!r} cannot be split: {exc}") from exc
    return {"command": argv[0], "args": argv[1:]}


def _parse_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(value)
    command = data.get("command")
    # {"command": "python server.py"} is a common slip for command + args; splitting it is
    # what the user meant, unless the whole string names a program (a path with spaces).
    if (
        isinstance(command, str)
        and "args" not in data
        and len(command.split()) > 1
        and shutil.which(command) is None
        and not Path(command).exists()
    ):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"MCP server command {command!r} cannot be split: {exc}") from exc
        data["command"], data["args"] = argv[0], argv[1:]
    return data


def _derive_name(data: Mapping[str, Any]) -> str:
    """A readable server name from a URL (its host) or a command line (the server it runs)."""
    raw = "mcp"
    url = data.get("url")
    command = data.get("command")
    if isinstance(url, str):
        parts = urlsplit(url)
        raw = parts.hostname or raw
        if parts.port is not None:
            raw = f"{raw}-{parts.port}"
    elif isinstance(command, str):
        args = data.get("args") or []
        for index, arg in enumerate([command, *args]):
            if not isinstance(arg, str) or (index > 0 and arg.startswith("-")):
                continue
            # "@scope/server-files@1.2" -> "server-files"; "path/to/server.py" -> "server"
            base = Path(arg.rstrip("/")).name
            base = base.split("@")[0] or base
            raw = base.removesuffix(".py").removesuffix(".js") or base
            if not _is_launcher(base):
                break
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.")[:64]
    return cleaned or "mcp"


def _is_launcher(program: str) -> bool:
    return program in _LAUNCHERS or re.fullmatch(r"python[0-9.]*", program) is not None


@dataclass(frozen=True, slots=True)
class MCPTool:
    """A tool as an MCP server lists it.

    Attributes:
        name: The tool's name on the server.
        description: What it does, for the agent that decides whether to call it.
        input_schema: JSON Schema of its arguments object.
        output_schema: JSON Schema of its structured result, if it declares one.
        repeatable: The server marks it read-only or idempotent, so a call that a crash
            interrupted may be sent again after the restart without doing its work twice.
    """

    name: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)
    output_schema: dict[str, Any] | None = field(default=None, hash=False)
    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class MCPCallResult:
    """What one ``tools/call`` came back with.

    Attributes:
        is_error: The tool ran and reported a failure (its message is in ``text``).
        structured: The tool's structured result, when it gives one.
        content: The result's content blocks, as plain JSON-like dicts.
    """

    is_error: bool
    structured: Any = None
    content: list[dict[str, Any]] = field(default_factory=list, hash=False)

    @property
    def text(self) -> str | None:
        """The text blocks of the content joined by newlines, or ``None`` when there are none."""
        texts = [b["text"] for b in self.content if b.get("type") == "text" and "text" in b]
        return "\n".join(texts) if texts else None


@dataclass(eq=False)
class _Session:
    """One live MCP session and the task that owns its transport."""

    client: Client
    owner: asyncio.Task[None]
    stop: asyncio.Event
    generation: int


class MCPConnection:
    """One session to one MCP server, opened on first use and shared by every caller.

    The session starts when it is first needed (a server nobody calls never runs). When the
    server dies or the connection breaks under a request, the server is restarted (or, over
    HTTP, reconnected) once and the request sent again; if that fails too, the request fails
    with :class:`~fleetmind.errors.ProtocolError` and a warning is logged. The next request
    then starts afresh.

    The MCP SDK opens anyio task groups that must be left by the task that entered them, while
    requests come from any task (every subtask of a fleet, say). So each session is held open
    by a task of its own, which this connection starts, stops and awaits: it never outlives
    :meth:`aclose`.

    Example:
        ```python
        async with MCPConnection(MCPServerConfig.parse("python my_server.py")) as server:
            tools = await server.list_tools()
            result = await server.call_tool("add", {"a": 1, "b": 2})
        ```
    """

    def __init__(
        self,
        config: MCPServerConfig,
        *,
        sampling: SamplingHandler | None = None,
        elicitation: ElicitationHandler | None = None,
        on_tools_changed: Callable[[], None] | None = None,
        auth: MCPAuth | None = None,
    ) -> None:
        """Prepare a connection to ``config``'s server; nothing starts until it is used.

        The callbacks answer what the server asks while it serves a call, and are read when a
        session starts (so a change reaches the server at its next start):

        Args:
            sampling: Answers ``sampling/createMessage``; without it, the sampling capability
                is not declared.
            elicitation: Answers ``elicitation/create`` (forms and links); without it, the
                elicitation capability is not declared.
            on_tools_changed: Called (not awaited) when the server says its tools changed.
            auth: Where OAuth tokens are kept and whether the user may be asked, for an HTTP
                server that requires authorization (without it, such a server cannot be used).
        """
        self.config = config
        self.sampling = sampling
        self.elicitation = elicitation
        self.on_tools_changed = on_tools_changed
        self.auth = auth
        self._oauth: Any = None  # the OAuth provider of the current session, if any
        self._state: Literal["new", "open", "closed"] = "new"
        self._session: _Session | None = None
        self._lock: asyncio.Lock | None = None
        self._generation = 0
        self.restarts = 0
        """How many times the server was restarted (or reconnected) after a failure."""

    @property
    def name(self) -> str:
        """The server's name from its config."""
        return self.config.name

    @property
    def connected(self) -> bool:
        """Whether a session is open now (the server is running, for stdio)."""
        return self._session is not None and not self._session.owner.done()

    async def __aenter__(self) -> MCPConnection:
        if self._state == "closed":
            raise FleetStateError(f"the connection to MCP server {self.name!r} is closed")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def list_tools(self) -> list[MCPTool]:
        """Every tool the server offers, across all pages of its listing.

        Raises:
            ProtocolError: The server cannot be reached, or failed even after a restart.
            FleetStateError: The connection is closed.
        """

        async def op(client: Client) -> list[MCPTool]:
            tools: list[MCPTool] = []
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(
                    MCPTool(
                        name=t.name,
                        description=t.description or t.title or "",
                        input_schema=dict(t.input_schema or {"type": "object"}),
                        output_schema=dict(t.output_schema) if t.output_schema else None,
                        repeatable=_repeatable(t),
                    )
                    for t in page.tools
                )
                cursor = page.next_cursor
                if cursor is None:
                    return tools

        return await self._run("tools/list", op)

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any], *, repeatable: bool = False
    ) -> MCPCallResult:
        """Call a tool on the server; a failure inside the tool comes back as ``is_error``.

        If the connection breaks while the call is out, the server is restarted; the call is
        sent again only when ``repeatable`` (the tool is read-only or idempotent), since the
        server may have done the work before it died. Otherwise the caller hears that the
        outcome is unknown.

        Raises:
            ProtocolError: The server cannot be reached, failed even after a restart, did not
                answer in time, or rejected the request itself (an unknown tool, say).
            FleetStateError: The connection is closed.
        """

        async def op(client: Client) -> MCPCallResult:
            result = await client.call_tool(name, dict(arguments))
            return MCPCallResult(
                is_error=bool(result.is_error),
                structured=result.structured_content,
                content=[
                    block.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for block in result.content
                ],
            )

        return await self._run(f"tools/call {name!r}", op, resend=repeatable)

    async def aclose(self) -> None:
        """End the session and stop the server process; safe to call more than once."""
        self._state = "closed"
        # Under the lock, so that a server still starting for a caller is stopped too.
        async with self._get_lock():
            session, self._session = self._session, None
        if session is not None:
            await _stop(session)

    # Internals ----------------------------------------------------------------------------

    async def _run(
        self, what: str, op: Callable[[Client], Awaitable[_T]], *, resend: bool = True
    ) -> _T:
        """Run ``op`` on the session, restarting the server once if the connection breaks.

        The request goes out again on the new session when it never reached a live server
        (the session had ended before it was sent) or when ``resend`` says that is harmless.
        """
        session = await self._current()
        try:
            return await self._attempt(session, what, op)
        except _Broken as exc:
            first, sent = exc.cause, exc.sent
        session = await self._restart(session, first)
        if sent and not resend:
            raise ProtocolError(
                f"MCP server {self.name!r} failed during {what} ({_describe(first)}); it was "
                "restarted, but the call was not sent again: it may or may not have run",
                details={"server": self.name, "restarted": True, "outcome": "unknown"},
            ) from first
        try:
            return await self._attempt(session, what, op)
        except _Broken as exc:
            await self._discard(session)
            logger.warning(
                "MCP server %r failed again after a restart (%s); gave up on %s",
                self.name,
                _describe(exc.cause),
                what,
            )
            raise ProtocolError(
                f"MCP server {self.name!r} failed during {what} even after a restart: "
                f"{_describe(exc.cause)}",
                details={"server": self.name, "restarted": True},
            ) from exc.cause

    async def _attempt(
        self, session: _Session, what: str, op: Callable[[Client], Awaitable[_T]]
    ) -> _T:
        """Run ``op`` once; a broken connection becomes :class:`_Broken`, the rest is mapped."""
        from mcp import MCPError

        if session.owner.done():
            raise _Broken(ConnectionError("the session had already ended"), sent=False)
        try:
            return await op(session.client)
        except MCPError as exc:
            if exc.code == _CONNECTION_CLOSED:
                self._raise_auth_failure(exc)
                raise _Broken(exc) from exc
            if exc.code == _REQUEST_TIMEOUT:
                error = ProtocolError(
                    f"MCP server {self.name!r} did not answer {what} within "
                    f"{self.config.timeout_s:g} s",
                    details={"server": self.name},
                )
                error.retryable = True
                raise error from exc
            raise ProtocolError(
                f"MCP server {self.name!r} rejected {what}: {exc.message}",
                details={"server": self.name, "code": exc.code},
            ) from exc
        except Exception as exc:
            self._raise_auth_failure(exc)
            if _is_transport_failure(exc) or session.owner.done():
                raise _Broken(exc) from exc
            raise ProtocolError(
                f"MCP server {self.name!r} gave an unusable reply to {what}: {_describe(exc)}",
                details={"server": self.name},
            ) from exc

    def _raise_auth_failure(self, exc: BaseException) -> None:
        """A request the OAuth flow could not authorize ends the transport as if the server
        had gone away; the provider knows the real reason, which a restart would not cure."""
        failure = take_auth_failure(self._oauth)
        if failure is not None:
            raise failure from exc

    async def _current(self) -> _Session:
        """The open session, starting the server if none is open."""
        session = self._session
        if session is not None and self._state == "open":
            return session
        async with self._get_lock():
            self._check_open()
            if self._session is None:
                self._session = await self._start()
                if self._state == "new":  # aclose() may have run meanwhile; it then stops this
                    self._state = "open"
            return self._session

    async def _restart(self, broken: _Session, cause: BaseException) -> _Session:
        """Replace ``broken`` by a new session, unless another caller already did."""
        async with self._get_lock():
            self._check_open()
            if self._session is not None and self._session.generation != broken.generation:
                return self._session  # a concurrent caller restarted it already
            self._session = None
            await _stop(broken)
            verb = "restarting" if self.config.transport == "stdio" else "reconnecting to"
            try:
                session = await self._start()
            except MCPAuthError:
                raise  # says itself what to do; a restart is beside the point
            except ProtocolError as exc:
                logger.warning(
                    "MCP server %r: connection lost (%s); %s it failed: %s",
                    self.name,
                    _describe(cause),
                    verb,
                    exc.message,
                )
                raise ProtocolError(
                    f"MCP server {self.name!r} stopped ({_describe(cause)}) and {verb} it "
                    f"failed: {exc.message}",
                    details={"server": self.name, "restarted": False},
                ) from exc
            self._session = session
            self.restarts += 1
            logger.warning(
                "MCP server %r: connection lost (%s); %s it (restart %d)",
                self.name,
                _describe(cause),
                "restarted" if self.config.transport == "stdio" else "reconnected to",
                self.restarts,
            )
            return session

    async def _discard(self, session: _Session) -> None:
        """Drop a session that failed twice, so that the next call starts afresh."""
        async with self._get_lock():
            if self._session is session:
                self._session = None
        await _stop(session)

    def _check_open(self) -> None:
        if self._state == "closed":
            raise FleetStateError(f"the connection to MCP server {self.name!r} is closed")

    def _get_lock(self) -> asyncio.Lock:
        # Made on first use, inside the loop that uses it, not when the object is built.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _start(self) -> _Session:
        """Start the server (or connect to it) and wait until its session is ready."""
        require("mcp", "mcp", "MCP tools")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        stop = asyncio.Event()
        self._generation += 1
        owner = loop.create_task(
            self._own(ready, stop), name=f"mcp server {self.name} #{self._generation}"
        )
        limit = self.config.timeout_s
        if self.auth is not None and self.config.url is not None and self.auth.is_interactive():
            limit += self.auth.wait_s  # the user may have to authorize in a browser first
        try:
            async with asyncio.timeout(limit):
                client = await asyncio.shield(ready)
        except TimeoutError:
            await _cancel_owner(owner, ready)
            raise ProtocolError(
                f"MCP server {self.name!r} did not start within {self.config.timeout_s:g} s",
                details={"server": self.name},
            ) from None
        except asyncio.CancelledError:
            await _cancel_owner(owner, ready)
            raise
        except Exception as exc:
            with contextlib.suppress(asyncio.CancelledError):
                await owner
            auth_error = find_auth_error(exc)
            if auth_error is not None:
                raise auth_error from exc
            what = "start" if self.config.transport == "stdio" else "connect to"
            at = f" at {self.config.url}" if self.config.url is not None else ""
            raise ProtocolError(
                f"cannot {what} MCP server {self.name!r}{at}: {_describe(exc)}",
                details={"server": self.name},
            ) from exc
        return _Session(client=client, owner=owner, stop=stop, generation=self._generation)

    async def _own(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """Hold one session open until ``stop`` is set or the transport fails."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await self._open(stack)
                if not ready.done():
                    ready.set_result(client)
                await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                # Callers learn of it from their own requests, which fail as closed.
                logger.debug("MCP server %r: session ended: %s", self.name, _describe(exc))

    async def _open(self, stack: contextlib.AsyncExitStack) -> Client:
        """Enter the transport and the MCP client on ``stack`` (in the owner task)."""
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        config = self.config
        if config.command is not None:
            params = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=dict(config.env) or None,
                cwd=config.cwd,
            )
            transport: Any = stdio_client(params, errlog=_server_stderr())
        else:
            import httpx2
            from mcp.shared._httpx_utils import create_mcp_http_client

            assert config.url is not None
            # A server reached with an Authorization header of the user's own is not sent
            # through OAuth: the header is the credential.
            oauth = None
            own_credential = any(k.lower() == "authorization" for k in config.headers)
            if self.auth is not None and not own_credential:
                oauth = oauth_provider(self.name, config.url, self.auth, config.oauth)
            self._oauth = oauth
            http = create_mcp_http_client(
                auth=oauth,
                headers=dict(config.headers) or None,
                # Reads stay long: a server may hold a response stream open between events.
                timeout=httpx2.Timeout(config.timeout_s, read=max(config.timeout_s, 300.0)),
            )
            await stack.enter_async_context(http)
            transport = streamable_http_client(config.url, http_client=http)
        # No response cache: tools are listed once per load, and a stale listing after a
        # restart would be worse than the saved round trip.
        callbacks = client_callbacks(
            self.name,
            sampling=self.sampling,
            elicitation=self.elicitation,
            on_tools_changed=self.on_tools_changed,
        )
        client = Client(transport, read_timeout_seconds=config.timeout_s, cache=None, **callbacks)
        client = await stack.enter_async_context(client)
        if self.on_tools_changed is not None:
            await listen_for_tool_changes(client, stack, self.name)
        return client


class _Broken(Exception):
    """The connection under a request broke (``sent``: after the request went out)."""

    def __init__(self, cause: BaseException, *, sent: bool = True) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sent = sent


def _repeatable(tool: Any) -> bool:
    """Whether a listed tool says that calling it twice does no harm (MCP tool annotations)."""
    annotations = getattr(tool, "annotations", None)
    if annotations is None:
        return False
    read_only = getattr(annotations, "read_only_hint", None)
    idempotent = getattr(annotations, "idempotent_hint", None)
    return bool(read_only or idempotent)


async def _stop(session: _Session) -> None:
    """Let the owner task leave the session (closing the server) and wait for it."""
    session.stop.set()
    await _wait_for_owner(session.owner)


async def _cancel_owner(owner: asyncio.Task[None], ready: asyncio.Future[Any]) -> None:
    """Stop an owner task that is still starting its session."""
    owner.cancel()
    await _wait_for_owner(owner)
    if ready.done() and not ready.cancelled():
        ready.exception()  # mark it retrieved: nobody else will read it


async def _wait_for_owner(owner: asyncio.Task[None]) -> None:
    # Shielded: if our caller is cancelled, the owner still finishes shutting the server down
    # (the SDK bounds that shutdown), and the caller's cancellation goes on.
    try:
        await asyncio.shield(owner)
    except asyncio.CancelledError:
        if not owner.cancelled():
            raise


def _server_stderr() -> Any:
    """Where a stdio server's stderr goes: ours, when it is a real file, else the original."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.__stderr__
    return sys.stderr


def _is_transport_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the wire to the server broke (as opposed to a bad reply)."""
    import anyio

    if isinstance(exc, BaseExceptionGroup):
        return any(_is_transport_failure(e) for e in exc.exceptions)
    if isinstance(
        exc,
        OSError | EOFError | anyio.ClosedResourceError | anyio.BrokenResourceError,
    ):
        return True
    httpx2 = sys.modules.get("httpx2")
    return httpx2 is not None and isinstance(exc, httpx2.TransportError)


def _describe(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups for the first real cause."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = getattr(exc, "message", None) or str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return " ".join(text.split())

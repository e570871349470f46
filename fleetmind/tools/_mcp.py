"""The tools of an MCP server, as specs in a :class:`~fleetmind.tools.ToolRegistry`.

An :class:`MCPToolSource` lists a server's tools and wraps each in a :class:`ToolSpec`, so an
agent calls a remote MCP tool exactly as it calls a local ``@tool`` function. Arguments are
checked against the tool's JSON Schema here, before anything is sent: an agent's mistake then
costs no round trip, and the error it reads names the bad argument.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fleetmind.errors import AgentError, FleetmindError
from fleetmind.protocols import (
    ElicitationHandler,
    MCPAuth,
    MCPConnection,
    MCPServerConfig,
    MCPTool,
    SamplingHandler,
)
from fleetmind.tools._registry import ToolResult, ToolSpec, _one_line

__all__ = ["MCPToolSource"]

logger = logging.getLogger(__name__)

# At most this many schema violations are listed in one error; the rest are counted.
_MAX_LISTED_ERRORS = 3


class MCPToolSource:
    """The tools of one MCP server, ready to add to a registry with ``add_source``.

    The server starts (or is connected to) when the registry first loads its tools, and one
    session then serves every call. A server that crashes under a call is restarted once and
    the call sent again; see :class:`~fleetmind.protocols.MCPConnection`.

    Example:
        ```python
        source = MCPToolSource(MCPServerConfig.parse("npx -y @scope/files-server /data"))
        registry.add_source(source)
        result = await registry.call("read_file", {"path": "/data/notes.txt"})
        await source.aclose()
        ```

    When the server says its tools changed (``notifications/tools/list_changed``), every
    registry holding this source lists them again: added tools become callable, removed ones
    go, changed schemas are used; the session stays as it is.

    Args:
        config: How to reach the server.
        prefix: Put in front of every tool name (``prefix="fs_"`` gives ``fs_read_file``), so
            that two servers offering a tool of the same name can share a registry.
        sampling: Answers the server's requests for a model's answer (see
            :meth:`serve_requests`).
        elicitation: Answers the server's questions for the user.
        auth: For an HTTP server that requires OAuth: where its tokens are kept and whether
            the user may be asked to authorize (see :class:`~fleetmind.protocols.MCPAuth`);
            ``MCPAuth(Path.home() / ".fleetmind" / "mcp_auth")`` uses those of
            ``fleetmind mcp login``. Without it, such a server cannot be used (the fleets the
            command line builds are given their data directory's).
    """

    def __init__(
        self,
        config: MCPServerConfig,
        *,
        prefix: str = "",
        sampling: SamplingHandler | None = None,
        elicitation: ElicitationHandler | None = None,
        auth: MCPAuth | None = None,
    ) -> None:
        self.config = config
        self.prefix = prefix
        self._watchers: list[Callable[[], None]] = []
        self.connection = MCPConnection(
            config,
            sampling=sampling,
            elicitation=elicitation,
            on_tools_changed=self._tools_changed,
            auth=auth,
        )
        """The session to the server, shared by every tool of this source."""

    def serve_requests(
        self, *, sampling: SamplingHandler | None, elicitation: ElicitationHandler | None
    ) -> None:
        """Say who answers the server's sampling requests and questions (None: nobody).

        A fleet calls this for the MCP servers of its tools. The capabilities are declared
        when the session starts, so a change reaches a running server at its next start.
        """
        self.connection.sampling = sampling
        self.connection.elicitation = elicitation

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (not awaited) whenever the server says its tools changed."""
        self._watchers.append(callback)

    def _tools_changed(self) -> None:
        logger.info("MCP server %r: its tools changed", self.name)
        for watcher in list(self._watchers):
            watcher()

    @property
    def name(self) -> str:
        """The server's name from its config."""
        return self.config.name

    async def specs(self) -> list[ToolSpec]:
        """List the server's tools (starting it if needed) as specs that call it.

        A tool whose name is not a valid tool name even with the prefix is left out with a
        logged warning, rather than hiding the server's other tools.

        Raises:
            ProtocolError: The server cannot be started or reached.
            FleetStateError: The source was closed.
        """
        specs: list[ToolSpec] = []
        for remote in await self.connection.list_tools():
            try:
                specs.append(self._spec(remote))
            except AgentError as exc:
                logger.warning("MCP server %r: tool left out: %s", self.name, exc.message)
        return specs

    async def aclose(self) -> None:
        """Stop the server (or close the connection to it); safe to call more than once."""
        await self.connection.aclose()

    def _spec(self, remote: MCPTool) -> ToolSpec:
        local_name = f"{self.prefix}{remote.name}"
        validate = _schema_checker(remote.input_schema, local_name, self.name)
        connection = self.connection

        async def call_remote(arguments: Mapping[str, Any]) -> ToolResult:
            problem = validate(arguments)
            if problem is not None:
                return ToolResult(
                    ok=False, error=_one_line(f"bad arguments for tool {local_name!r}: {problem}")
                )
            try:
                result = await connection.call_tool(
                    remote.name, arguments, repeatable=remote.repeatable
                )
            except FleetmindError as exc:
                return ToolResult(
                    ok=False, error=_one_line(f"tool {local_name!r} failed: {exc.message}")
                )
            if result.is_error:
                text = result.text or "the tool reported an error without a message"
                return ToolResult(ok=False, error=_one_line(text))
            if result.structured is not None:
                return ToolResult(ok=True, value=result.structured)
            body = result.text
            return ToolResult(ok=True, value=body if body is not None else result.content)

        call_remote.__name__ = local_name.replace(".", "_").replace("-", "_")
        call_remote.__qualname__ = f"MCPToolSource({self.name}).{remote.name}"
        return ToolSpec(
            name=local_name,
            description=remote.description,
            input_schema=remote.input_schema,
            fn=call_remote,
            arguments_as_object=True,
        )


_Checker = Callable[[Mapping[str, Any]], str | None]


def _schema_checker(schema: dict[str, Any], tool_name: str, server: str) -> _Checker:
    """A function that returns ``None`` for valid arguments, else one line saying what is wrong.

    A schema that is itself invalid is not used (the server validates on its side anyway), so
    a sloppy server does not make its tool uncallable.
    """
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        logger.warning(
            "MCP server %r: tool %r has an invalid input schema, arguments are not checked: %s",
            server,
            tool_name,
            exc.message,
        )
        return _accept_anything
    validator = validator_class(schema)

    def check(arguments: Mapping[str, Any]) -> str | None:
        errors = sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))
        if not errors:
            return None
        parts = [_describe_schema_error(e) for e in errors[:_MAX_LISTED_ERRORS]]
        if len(errors) > _MAX_LISTED_ERRORS:
            parts.append(f"and {len(errors) - _MAX_LISTED_ERRORS} more")
        return "; ".join(parts)

    return check


def _accept_anything(arguments: Mapping[str, Any]) -> str | None:
    return None


def _describe_schema_error(error: Any) -> str:
    """One schema violation, naming the argument it is about (``a``, ``items[2].id``)."""
    where = ""
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = error.message
    if len(message) > 120:
        message = message[:117] + "..."
    return f"argument {where!r}: {message}" if where else message

"""Tests for fleetmind/tools/_mcp.py and fleetmind/protocols/_mcp_client.py: MCP servers' tools in
a ToolRegistry, against real server processes (tests/fixtures/mcp_demo_server.py) over stdio
and streamable HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetmind import Fleet, SubtaskFailed, TaskGraph, agent
from fleetmind._task_model import Dependency
from fleetmind.agents import SubtaskContext
from fleetmind.errors import AgentError, ConfigError, FleetStateError, ProtocolError
from fleetmind.protocols._mcp_client import MCPConnection
from fleetmind.testing import free_port
from fleetmind.tools import MCPServerConfig, MCPToolSource, ToolRegistry, ToolResult

pytestmark = pytest.mark.timeout(90)

SERVER = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_demo_server.py"
CLIENT_LOGGER = "fleetmind.protocols._mcp_client"
HAS_PROC = Path("/proc/self/stat").exists()
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="counts processes through /proc")


def stdio_config(name: str = "demo", **fields: Any) -> MCPServerConfig:
    return MCPServerConfig(name=name, command=sys.executable, args=[str(SERVER)], **fields)


def demo_server_pids() -> set[int]:
    """Live stdio demo servers that are children of this test process."""
    me = os.getpid()
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended while we looked
        # The command name in stat's second field may hold spaces; the rest follows its ")".
        state, ppid = stat.rpartition(")")[2].split()[:2]
        ours = int(ppid) == me and state != "Z"
        if ours and str(SERVER).encode() in argv and b"--http" not in argv:
            pids.add(int(entry.name))
    return pids


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie has ended; only its exit status waits to be collected.
    return not (stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z")


@pytest.fixture
async def source() -> AsyncIterator[MCPToolSource]:
    """A stdio demo server's tools; the server is stopped at the end whatever happened."""
    src = MCPToolSource(stdio_config())
    try:
        yield src
    finally:
        await src.aclose()


@pytest.fixture
async def registry(source: MCPToolSource) -> ToolRegistry:
    reg = ToolRegistry()
    reg.add_source(source)
    return reg


class HttpServer:
    """A demo server process serving streamable HTTP."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        for _ in range(3):
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, str(SERVER), "--http", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.process = process
            if self._wait_until_listening(port):
                self.url = f"http://127.0.0.1:{port}/mcp"
                return
            self.stop()  # another process took the port in between: try the next one
        raise RuntimeError("the demo MCP server did not start over HTTP")

    def _wait_until_listening(self, port: int) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# Listing and calling
# ---------------------------------------------------------------------------------------------


async def test_stdio_tools_are_listed_with_their_schemas_and_called(
    registry: ToolRegistry,
) -> None:
    specs = {spec.name: spec for spec in await registry.load()}

    assert {"add", "word_count", "fail", "crash", "crash_once", "pid"} <= specs.keys()
    assert registry.names() == list(specs)
    add = specs["add"]
    assert add.description == "Add two whole numbers."
    assert add.input_schema["required"] == ["a", "b"]
    assert add.input_schema["properties"]["a"]["type"] == "integer"
    assert await registry.call("add", {"a": 2, "b": 3}) == ToolResult(ok=True, value={"result": 5})
    # A tool that returns a model gives structured content, passed on as it is.
    counted = await registry.call("word_count", {"text": "one two three"})
    assert counted == ToolResult(ok=True, value={"words": 3, "characters": 13})


async def test_http_tools_are_listed_and_called(http_server: HttpServer) -> None:
    assert http_server.process is not None
    source = MCPToolSource(MCPServerConfig.parse(http_server.url))
    registry = ToolRegistry()
    registry.add_source(source)
    try:
        names = [spec.name for spec in await registry.load()]
        pid = await registry.call("pid")
        counted = await registry.call("word_count", {"text": "over http"})
    finally:
        await source.aclose()

    assert source.config.transport == "http"
    assert {"add", "word_count", "pid"} <= set(names)
    assert registry.get("word_count") is not None
    assert registry.get("word_count").input_schema["required"] == ["text"]  # type: ignore[union-attr]
    assert pid == ToolResult(ok=True, value={"result": http_server.process.pid})
    assert counted == ToolResult(ok=True, value={"words": 2, "characters": 9})


async def test_arguments_that_break_the_schema_never_reach_the_server(
    registry: ToolRegistry, source: MCPToolSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registry.load()
    sent: list[str] = []
    real_call = source.connection.call_tool

    async def spy(name: str, arguments: Any, **options: Any) -> Any:
        sent.append(name)
        return await real_call(name, arguments, **options)

    monkeypatch.setattr(source.connection, "call_tool", spy)

    wrong_type = await registry.call("add", {"a": "two", "b": 3})
    missing = await registry.call("add", {"a": 2})
    fine = await registry.call("add", {"a": 2, "b": 2})

    assert wrong_type == ToolResult(
        ok=False, error="bad arguments for tool 'add': argument 'a': 'two' is not of type 'integer'"
    )
    assert missing == ToolResult(
        ok=False, error="bad arguments for tool 'add': 'b' is a required property"
    )
    assert fine.value == {"result": 4}
    assert sent == ["add"]  # only the valid call went out


async def test_a_tool_error_on_the_server_is_an_error_result_and_the_session_goes_on(
    registry: ToolRegistry, source: MCPToolSource
) -> None:
    before = await registry.call("pid")
    failed = await registry.call("fail", {"message": "disk is full"})
    after = await registry.call("pid")

    assert failed.ok is False
    assert failed.value is None
    assert failed.error is not None and "disk is full" in failed.error
    assert "\n" not in failed.error
    assert before == after  # the same process answered: nothing was restarted
    assert source.connection.restarts == 0


async def test_an_unknown_tool_on_the_server_is_an_error_result(source: MCPToolSource) -> None:
    # Past the registry's own name check: the server itself rejects the call.
    result = await source.connection.call_tool("no_such_tool", {})
    assert result.is_error
    assert result.text is not None and "no_such_tool" in result.text


# ---------------------------------------------------------------------------------------------
# Lifecycle: lazy start, one session, restart, close
# ---------------------------------------------------------------------------------------------


@needs_proc
async def test_the_server_starts_on_first_use_not_before(
    registry: ToolRegistry, source: MCPToolSource
) -> None:
    assert demo_server_pids() == set()
    assert registry.pending_sources == [source]
    assert "pid" not in registry  # not loaded yet
    assert not source.connection.connected

    # An unknown name loads the pending sources, then is looked up again.
    result = await registry.call("pid")

    assert result.ok
    assert demo_server_pids() == {result.value["result"]}
    assert registry.pending_sources == []
    assert source.connection.connected


@needs_proc
async def test_one_session_serves_every_call(registry: ToolRegistry) -> None:
    # Several first calls at once: the source loads once and the server starts once.
    first = await asyncio.gather(*(registry.call("pid") for _ in range(4)))
    later = await asyncio.gather(*(registry.call("pid") for _ in range(4)))
    last = await registry.call("add", {"a": 1, "b": 1})

    pids = {r.value["result"] for r in (*first, *later)}
    assert len(pids) == 1
    assert last.ok
    assert demo_server_pids() == pids


@needs_proc
async def test_a_crash_in_the_middle_of_a_call_restarts_the_server_once(
    registry: ToolRegistry,
    source: MCPToolSource,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marker = tmp_path / "crashed-once"
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)

    result = await registry.call("crash_once", {"marker": str(marker)})
    now = await registry.call("pid")

    assert result == ToolResult(ok=True, value={"result": "survived"})
    crashed_pid = int(marker.read_text())
    assert not is_alive(crashed_pid)
    assert now.value["result"] != crashed_pid
    assert demo_server_pids() == {now.value["result"]}
    assert source.connection.restarts == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == CLIENT_LOGGER]
    assert len(warnings) == 1
    assert "'demo'" in warnings[0] and "restarted it" in warnings[0]


@needs_proc
async def test_a_call_that_may_have_run_is_not_sent_again_after_a_crash(
    registry: ToolRegistry, source: MCPToolSource, tmp_path: Path
) -> None:
    marker = tmp_path / "effects"

    result = await registry.call("append_then_crash", {"marker": str(marker)})

    assert result.ok is False
    assert "it was restarted, but the call was not sent again" in (result.error or "")
    assert marker.read_text() == "ran\n"  # its effect happened once, not twice
    assert source.connection.restarts == 1
    assert (await registry.call("add", {"a": 2, "b": 2})).value == {"result": 4}


@needs_proc
async def test_a_server_killed_between_calls_is_restarted_on_the_next_call(
    registry: ToolRegistry, source: MCPToolSource
) -> None:
    first = (await registry.call("pid")).value["result"]
    os.kill(first, signal.SIGKILL)

    # Every call that finds the connection broken waits for the same single restart.
    after = await asyncio.gather(*(registry.call("pid") for _ in range(3)))

    assert all(r.ok for r in after)
    second = {r.value["result"] for r in after}
    assert len(second) == 1
    assert first not in second
    assert source.connection.restarts == 1
    assert demo_server_pids() == second


@needs_proc
async def test_a_server_that_dies_again_after_the_restart_gives_a_clear_error(
    registry: ToolRegistry, source: MCPToolSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)

    result = await registry.call("crash")

    assert result.ok is False
    assert result.error == (
        "tool 'crash' failed: MCP server 'demo' failed during tools/call 'crash' even after a "
        "restart: MCPError: Connection closed"
    )
    messages = [r.getMessage() for r in caplog.records if r.name == CLIENT_LOGGER]
    assert "restarted it" in messages[0]
    assert "gave up" in messages[-1]
    assert source.connection.restarts == 1
    assert demo_server_pids() == set()  # nothing half-alive is left behind
    # The next call starts the server afresh.
    assert (await registry.call("add", {"a": 1, "b": 2})).value == {"result": 3}


@needs_proc
async def test_aclose_stops_the_server_and_later_calls_fail_cleanly(
    registry: ToolRegistry, source: MCPToolSource
) -> None:
    pid = (await registry.call("pid")).value["result"]
    assert is_alive(pid)

    await registry.aclose()
    await source.aclose()  # closing twice is fine (the fleet and the registry may both do it)

    assert not is_alive(pid)
    assert demo_server_pids() == set()
    after = await registry.call("pid")
    assert after == ToolResult(
        ok=False, error="tool 'pid' failed: the connection to MCP server 'demo' is closed"
    )
    with pytest.raises(FleetStateError, match="closed"):
        await source.connection.list_tools()


async def test_a_connection_is_an_async_context_manager() -> None:
    async with MCPConnection(stdio_config()) as connection:
        tools = await connection.list_tools()
        result = await connection.call_tool("add", {"a": 20, "b": 22})
    assert "add" in [t.name for t in tools]
    assert (result.is_error, result.structured, result.text) == (False, {"result": 42}, "42")
    assert not connection.connected


async def test_an_http_server_that_went_away_gives_a_clear_error(
    http_server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)
    source = MCPToolSource(MCPServerConfig.parse(http_server.url, name="remote"))
    registry = ToolRegistry()
    registry.add_source(source)
    try:
        assert (await registry.call("add", {"a": 1, "b": 1})).ok
        http_server.stop()
        result = await registry.call("add", {"a": 1, "b": 1})
    finally:
        await source.aclose()

    assert result.ok is False
    assert result.error is not None
    assert result.error.startswith("tool 'add' failed: MCP server 'remote' stopped")
    assert "reconnecting to it failed" in result.error
    assert any("reconnecting to it failed" in r.getMessage() for r in caplog.records)


async def test_a_server_that_cannot_start_fails_load_and_calls_with_one_line() -> None:
    source = MCPToolSource(MCPServerConfig(name="ghost", command="/nonexistent/mcp-server"))
    registry = ToolRegistry()
    registry.add_source(source)
    try:
        with pytest.raises(ProtocolError, match="cannot start MCP server 'ghost'") as caught:
            await registry.load()
        result = await registry.call("anything")
    finally:
        await source.aclose()

    assert "\n" not in caught.value.message
    assert registry.pending_sources == [source]  # tried again next time
    assert result.ok is False
    assert result.error is not None
    assert result.error.startswith(
        "unknown tool 'anything' (known tools: none); ProtocolError: cannot start MCP server"
    )


# ---------------------------------------------------------------------------------------------
# Several servers in one registry
# ---------------------------------------------------------------------------------------------


async def test_prefixes_keep_two_servers_tools_apart_and_a_clash_is_an_error() -> None:
    first = MCPToolSource(stdio_config("first"), prefix="a_")
    second = MCPToolSource(stdio_config("second"), prefix="b_")
    clashing = MCPToolSource(stdio_config("third"))
    registry = ToolRegistry()
    registry.add_source(first)
    registry.add_source(second)
    registry.add_source(first)  # adding a source twice is a no-op
    try:
        await registry.load()
        a_pid = await registry.call("a_pid")
        b_pid = await registry.call("b_pid")
        registry.add_source(clashing)
        await registry.call("unprefixed")  # loads "third": its names are free, so it joins
        again = MCPToolSource(stdio_config("fourth"))
        registry.add_source(again)
        with pytest.raises(AgentError, match=r"'fourth' offers a tool named 'add'.*prefix"):
            await registry.load()
    finally:
        await registry.aclose()

    assert registry.sources == [first, second, clashing, again]
    assert {"a_add", "b_add", "add"} <= set(registry.names())
    assert a_pid.ok and b_pid.ok
    assert a_pid.value != b_pid.value  # one process per server


async def test_mcp_tools_in_the_middle_of_a_fleet_task() -> None:
    source = MCPToolSource(stdio_config(), prefix="demo_")
    registry = ToolRegistry()
    registry.add_source(source)

    @agent(id="writer")
    async def write() -> str:
        return "the quick brown fox"

    @agent(id="counter")
    async def count(text: str, ctx: SubtaskContext) -> Any:
        result = await ctx.tools.call("demo_word_count", {"text": text})
        if not result.ok:
            raise SubtaskFailed(result.error or "word_count failed", retryable=False)
        return result.value

    @agent(id="reporter")
    async def report(counts: dict[str, int]) -> str:
        return f"{counts['words']} words, {counts['characters']} characters"

    fleet = Fleet([write, count, report], tools=registry)
    # What Fleet.add_mcp_server does: the source ends with the fleet.
    fleet.on_close(source.aclose)
    graph = TaskGraph("mcp-in-a-dag")
    graph.add_subtask("write", agent="writer")
    graph.add_subtask(
        "count",
        agent="counter",
        depends_on=[Dependency(source="write", target="count", kind="data", input="text")],
    )
    graph.add_subtask(
        "report",
        agent="reporter",
        depends_on=[Dependency(source="count", target="report", kind="data", input="counts")],
    )
    try:
        result = await fleet.run(graph)
        connected_during_run = source.connection.connected
    finally:
        await fleet.aclose()

    assert result.ok, result.errors
    assert result.outputs["count"] == {"words": 4, "characters": 19}
    assert result.output == "4 words, 19 characters"
    assert connected_during_run
    assert not source.connection.connected


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def test_a_url_string_is_streamable_http() -> None:
    config = MCPServerConfig.parse("https://tools.example.com:8443/mcp")
    assert config.transport == "http"
    assert config.url == "https://tools.example.com:8443/mcp"
    assert config.name == "tools.example.com-8443"


def test_a_command_line_string_is_split_like_a_shell_and_named_after_the_server() -> None:
    config = MCPServerConfig.parse("npx -y '@scope/server-files@1.2' '/my data'")
    assert config.transport == "stdio"
    assert (config.command, config.args) == ("npx", ["-y", "@scope/server-files@1.2", "/my data"])
    assert config.name == "server-files"
    assert MCPServerConfig.parse(f"{sys.executable} -u {SERVER}").name == "mcp_demo_server"


def test_a_mapping_is_read_like_a_config_file_entry() -> None:
    config = MCPServerConfig.parse(
        {"command": "python server.py --verbose", "env": {"TOKEN": "x"}, "timeout_s": 5},
        name="files",
    )
    assert (config.name, config.command, config.args) == (
        "files",
        "python",
        ["server.py", "--verbose"],
    )
    assert config.env == {"TOKEN": "x"}
    assert config.timeout_s == 5
    http = MCPServerConfig.parse(
        {"name": "search", "url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "k"}}
    )
    assert (http.name, http.headers) == ("search", {"Authorization": "k"})
    assert MCPServerConfig.parse(http) is http


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "MCP server config is empty"),
        ("python 'server.py", "cannot be split"),
        ({"name": "x"}, "give exactly one of 'command' (stdio) or 'url' (streamable HTTP)"),
        ({"name": "x", "command": "srv", "url": "http://h/mcp"}, "give exactly one of"),
        ({"name": "x", "url": "ftp://h/mcp"}, "is not an http:// or https:// URL"),
        ({"name": "x", "url": "http://h/mcp", "args": ["-v"]}, "go with 'command'"),
        ({"name": "x", "command": "srv", "headers": {"A": "b"}}, "'headers' go with 'url'"),
        ({"name": "x", "command": "srv", "colour": "red"}, "unknown field 'colour'"),
        ({"name": "bad name!", "command": "srv"}, "name 'bad name!' is not valid"),
        (
            {"name": "x", "command": "srv", "timeout_s": 0},
            "field 'timeout_s': Input should be greater",
        ),
        (42, "is a mapping or a string, not int"),
    ],
)
def test_a_bad_config_is_a_config_error_of_one_line(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MCPServerConfig.parse(value)
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_importing_fleetmind_loads_neither_mcp_nor_the_bridge() -> None:
    code = (
        "import sys, fleetmind, fleetmind.tools;"
        "print([m for m in ('mcp', 'jsonschema', 'fleetmind.tools._mcp', 'fleetmind.protocols')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

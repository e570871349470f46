"""MCP and A2A on loopback: what fleetmind adds to a call, beside the bare SDKs in the same run.

What is measured
    Every figure is the wall time of one call, awaited on its own, from the caller's side: p50
    and p99 in milliseconds, and calls/s for calls made one after the other (1 / mean). Each
    case has a fleetmind side and a baseline side that does the same work with the bare SDK
    against the same kind of server, so the ratio of the two is what fleetmind adds.

    1. MCP tool call (``mcp`` SDK). The server is this script run as a helper process
       (``--role mcp-server``): an ``MCPServer`` with one trivial tool, ``add(a, b) -> int``.

         - fleetmind: ``await registry.call("add", {"a": 20, "b": 22})`` on a ``ToolRegistry``
           holding an ``MCPToolSource`` (loaded before timing): the registry's lookup, the JSON
           Schema check of the arguments, ``MCPConnection.call_tool`` (its session task, error
           mapping, the result turned into plain dicts) and the SDK's ``Client.call_tool``.
         - baseline: ``await client.call_tool("add", {...})`` on a bare ``mcp.Client`` with the
           SDK's defaults.

       Over streamable HTTP both clients talk to one server process
       (``http://127.0.0.1:PORT/mcp``). Over stdio a server process can serve only the client
       that started it, so each client starts its own copy of the same server command. Both
       clients negotiate the protocol the same way (the SDK's ``auto`` mode); the version they
       agreed on is printed. Both check the result (42).

    2. A2A round trip (``a2a-sdk``, protocol 1.0). Three servers run as separate processes:
       two bare a2a-sdk echo agents (this script, ``--role a2a-echo``, in
       ``_protocols_servers.py``: an ``AgentExecutor`` that enqueues the task, marks it
       working, adds one text artifact with the message's ``text`` and completes it; one card
       says ``streaming: true``, the other ``false``), and ``fleetmind a2a serve`` of a
       one-agent fleet whose ``echo`` agent returns its input ``text`` (SQLite store and
       semantic router, as the command line builds them, in a temporary data directory). Each
       serves the JSON-RPC binding at ``/`` and the HTTP+JSON binding at ``/rest``; the
       streaming echo agent and ``fleetmind a2a serve`` also serve gRPC on a port of their own,
       and their cards declare every binding. Every message carries the same parts: a text
       part and a data part ``{"text": ...}`` (what ``A2AAgent`` sends for a subtask).

       Client side (JSON-RPC): ``A2AAgent.run(subtask, ctx)`` (from
       ``connect_a2a_agent(url)``) against the bare echo agent, beside the bare SDK client
       (``create_client`` with ``ClientConfig``) sending the same message to the same server:

         - non-streaming: the server's card says ``streaming: false``. ``A2AAgent`` then sends
           ``SendMessage`` with ``return_immediately`` (its ``polling`` config) and polls
           ``GetTask`` until the task ends (first poll after 50 ms, then 1.5x longer, at most
           ``poll_interval_s``); the baseline sends a blocking ``SendMessage`` and gets the
           finished task in its answer.
         - streaming: ``SendStreamingMessage`` on both sides, read until the task's state is
           final.

       Server side, once per binding (JSON-RPC, HTTP+JSON, gRPC): the bare SDK client, told
       to use that binding (``supported_protocol_bindings=[binding]``, the card's interface for
       it), sends the same message to ``fleetmind a2a serve`` and to the bare echo agent
       (streaming card), blocking ``SendMessage`` and ``SendStreamingMessage``. Both servers
       answer every binding with the SDK's own request handler, so the difference is
       fleetmind's ``FleetExecutor``: a fleetmind task per message (graph, router, SQLite
       writes, engine) and the events it reports (submitted, working, the subtask started, the
       subtask's artifact, the ``result`` artifact, completed: six events where the bare agent
       sends four). A binding the card of ``fleetmind a2a serve`` does not declare is left out,
       with a line saying so.

    Each side gets warm-up calls first (connections opened, sessions negotiated, tools listed,
    the SQLite store and the router warmed). Then the timed calls run in blocks that alternate
    fleetmind and baseline (F B, B F, F B, ...), so that noise from the shared machine falls on
    both sides alike. Objects that exist before timing are moved out of the cyclic garbage
    collector's reach (``gc.freeze()``); what the calls allocate is collected as usual.

Baselines
    The bare SDK clients above, in this process and event loop, against the same servers.
    /work/shared/ENVIRONMENT.md gives 3-4 ms per stdio call and 6 ms per HTTP call for the bare
    MCP SDK, and 4-9 ms per A2A message (8-15 ms streaming) on this kind of machine.

How to run
    .venv/bin/python benchmarks/protocols.py                 # full run, about 3 min
    .venv/bin/python benchmarks/protocols.py --quick         # fewer calls, about 40 s
    .venv/bin/python benchmarks/protocols.py --json out.json

    Every process it starts (MCP servers, A2A servers) is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    FLEETMIND_CLI,
    _role_command,
    _table,
    benchmark_parser,
    frozen_gc,
    machine_base,
    percentile,
    require_fleetmind_cli,
    write_json,
)
from _protocols_servers import Server, a2a_echo_server, mcp_server, start_server, stop

from fleetmind.testing import free_port

SELF = str(Path(__file__).resolve())
TEXT = "the quick brown fox jumps over the lazy dog"
ADD_ARGS = {"a": 20, "b": 22}
BINDINGS = (
    ("JSONRPC", "JSON-RPC", ""),
    ("HTTP+JSON", "HTTP+JSON", "_rest"),
    ("GRPC", "gRPC", "_grpc"),
)
"""The A2A bindings: the card's name, the name in the table, the suffix of the case's key."""

FLEET_FILE = '''\
"""A one-agent fleet for benchmarks/protocols.py: `fleetmind a2a serve` serves it."""

from fleetmind import agent


@agent(
    id="echo",
    skills=[{"name": "echo", "description": "Repeat the text it is given, word for word."}],
    max_concurrency=64,
)
async def echo(text: str) -> str:
    """Echo the text it is given."""
    return text
'''


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

Call = Callable[[], Awaitable[None]]


@dataclass
class CaseResult:
    """One case: the fleetmind side and the baseline side, per-call samples in seconds."""

    key: str
    label: str
    fleetmind_s: list[float] = field(default_factory=list)
    baseline_s: list[float] = field(default_factory=list)
    note: str = ""

    def figures(self) -> dict[str, Any]:
        f50, f99 = percentile(self.fleetmind_s, 50) * 1e3, percentile(self.fleetmind_s, 99) * 1e3
        b50, b99 = percentile(self.baseline_s, 50) * 1e3, percentile(self.baseline_s, 99) * 1e3
        return {
            "label": self.label,
            "fleetmind_ms_p50": round(f50, 3),
            "baseline_ms_p50": round(b50, 3),
            "ratio_p50": round(f50 / b50, 2),
            "fleetmind_ms_p99": round(f99, 3),
            "baseline_ms_p99": round(b99, 3),
            "ratio_p99": round(f99 / b99, 2),
            "fleetmind_calls_per_s": round(len(self.fleetmind_s) / sum(self.fleetmind_s), 1),
            "baseline_calls_per_s": round(len(self.baseline_s) / sum(self.baseline_s), 1),
            "calls": len(self.fleetmind_s),
            "note": self.note,
        }


async def measure(
    case: CaseResult, fleetmind: Call, baseline: Call, *, calls: int, blocks: int, warmup: int
) -> CaseResult:
    """Warm both sides up, then time ``calls`` calls of each in alternating blocks."""
    for _ in range(warmup):
        await fleetmind()
        await baseline()
    per_block = max(calls // blocks, 1)
    with frozen_gc():
        for block in range(blocks):
            order = [(fleetmind, case.fleetmind_s), (baseline, case.baseline_s)]
            if block % 2:
                order.reverse()
            for call, samples in order:
                for _ in range(per_block):
                    start = time.perf_counter()
                    await call()
                    samples.append(time.perf_counter() - start)
    return case


# ---------------------------------------------------------------------------------------------
# 1. MCP
# ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def mcp_sides(config: Any, bare_target: Any) -> AsyncIterator[tuple[Call, Call, str]]:
    """A fleetmind registry with the server's tools and a bare SDK client, both ready to call.

    Yields the two calls and the protocol version each negotiated (``fleetmind / bare``).
    """
    from mcp import Client

    from fleetmind.tools import MCPToolSource, ToolRegistry

    source = MCPToolSource(config)
    registry = ToolRegistry()
    registry.add_source(source)
    try:
        await registry.load()
        async with Client(bare_target) as bare:
            await bare.list_tools()  # a 2026-07-28 client lists a tool before it calls it

            async def through_fleetmind() -> None:
                result = await registry.call("add", ADD_ARGS)
                if not result.ok or result.value != {"result": 42}:
                    raise AssertionError(f"fleetmind's MCP call gave {result}")

            async def bare_sdk() -> None:
                result = await bare.call_tool("add", ADD_ARGS)
                if result.is_error or result.structured_content != {"result": 42}:
                    raise AssertionError(f"the bare MCP call gave {result}")

            session = source.connection._session
            fleetmind_version = session.client.protocol_version if session else "?"
            yield through_fleetmind, bare_sdk, f"{fleetmind_version} / {bare.protocol_version}"
    finally:
        await registry.aclose()


async def bench_mcp(tmp: Path, counts: Counts) -> list[CaseResult]:
    from mcp import StdioServerParameters

    from fleetmind.tools import MCPServerConfig

    stdio_command = _role_command(SELF, "mcp-server", port=None)
    config = MCPServerConfig(name="bench-stdio", command=stdio_command[0], args=stdio_command[1:])
    bare_params = StdioServerParameters(command=stdio_command[0], args=stdio_command[1:])
    where = "one server process per client"
    results = [await measure_mcp("mcp_stdio", "stdio", where, config, bare_params, counts)]

    server = await start_server(
        "mcp-http", lambda port: _role_command(SELF, "mcp-server", port=port), "/mcp", tmp
    )
    try:
        url = f"{server.base_url}/mcp"
        config = MCPServerConfig(name="bench-http", url=url)
        where = "one server process for both clients"
        results.append(await measure_mcp("mcp_http", "streamable HTTP", where, config, url, counts))
    finally:
        await stop(server.process)
    return results


async def measure_mcp(
    key: str, transport: str, where: str, config: Any, bare_target: Any, counts: Counts
) -> CaseResult:
    """One MCP case: fleetmind's registry and the bare SDK client on the same kind of server."""
    async with mcp_sides(config, bare_target) as (fleetmind, bare, versions):
        case = CaseResult(key, f"MCP tool call, {transport}", note=f"{where}; protocol {versions}")
        return await measure(case, fleetmind, bare, **counts.mcp)


# ---------------------------------------------------------------------------------------------
# 2. A2A
# ---------------------------------------------------------------------------------------------


def a2a_message() -> Any:
    """The message every A2A call sends: a text part and a data part ``{"text": ...}``."""
    from a2a.types import Message, Part, Role, SendMessageRequest
    from google.protobuf import json_format, struct_pb2

    data = json_format.ParseDict({"text": TEXT}, struct_pb2.Value())
    message = Message(
        message_id=uuid.uuid4().hex,
        role=Role.ROLE_USER,
        parts=[Part(text=TEXT), Part(data=data, media_type="application/json")],
    )
    return SendMessageRequest(message=message)


@contextlib.asynccontextmanager
async def bare_a2a_client(
    base_url: str, *, streaming: bool, binding: str = "JSONRPC"
) -> AsyncIterator[Call]:
    """A bare a2a-sdk client that sends one message over ``binding`` (the card's interface for
    it) and reads the answer to the task's end."""
    import grpc.aio
    from a2a.client import ClientConfig, create_client
    from a2a.types import TaskState

    terminal = {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_AUTH_REQUIRED,
    }
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None))
    try:
        config = ClientConfig(
            streaming=streaming,
            httpx_client=http,
            supported_protocol_bindings=[binding],
            use_client_preference=True,
            grpc_channel_factory=grpc.aio.insecure_channel,
        )
        client = await create_client(base_url, client_config=config)

        async def send() -> None:
            state = TaskState.TASK_STATE_UNSPECIFIED
            output = None
            async with contextlib.aclosing(client.send_message(a2a_message())) as events:
                async for event in events:
                    kind = event.WhichOneof("payload")
                    if kind == "task":
                        state = event.task.status.state
                        if event.task.artifacts:
                            output = event.task.artifacts[-1].parts[0].text
                    elif kind == "status_update":
                        state = event.status_update.status.state
                    elif kind == "artifact_update":
                        output = event.artifact_update.artifact.parts[0].text
                    elif kind == "message":
                        output = event.message.parts[0].text
                        break
                    if state in terminal:
                        break
            if output != TEXT:
                raise AssertionError(f"the bare A2A client got {output!r} ({state})")

        try:
            yield send
        finally:
            await client.close()
    finally:
        await http.aclose()


@contextlib.asynccontextmanager
async def fleetmind_a2a_client(base_url: str) -> AsyncIterator[Call]:
    """``A2AAgent.run`` of one echo subtask; streams or polls as the agent's card says."""
    from fleetmind import Subtask, SubtaskContext
    from fleetmind.agents.remote import connect_a2a_agent

    agent = await connect_a2a_agent(base_url)
    try:
        subtask = Subtask(id="echo", description=TEXT, inputs={"text": TEXT})

        async def run() -> None:
            ctx = SubtaskContext(task_id="bench", subtask=subtask, inputs={"text": TEXT})
            output = await agent.run(subtask, ctx)
            if output != TEXT:
                raise AssertionError(f"A2AAgent.run gave {output!r}")

        yield run
    finally:
        await agent.aclose()


async def bench_a2a(tmp: Path, counts: Counts) -> list[CaseResult]:
    (tmp / "echo_fleet.py").write_text(FLEET_FILE)

    def serve_argv(port: int, data: str) -> list[str]:
        fleet = str(tmp / "echo_fleet.py")
        return [
            "a2a",
            "serve",
            "--fleet",
            fleet,
            "--port",
            str(port),
            "--data-dir",
            str(tmp / data),
        ]

    def bare_echo(streaming: bool) -> Callable[[int], list[str]]:
        # The streaming agent also serves gRPC, on a port of its own as fleetmind's does.
        return lambda port: _role_command(
            SELF,
            "a2a-echo",
            port=port,
            streaming=streaming,
            grpc_port=free_port() if streaming else None,
        )

    servers: list[Server] = []

    async def started(name: str, command: Callable[[int], list[str]]) -> Server:
        server = await start_server(name, command, "/.well-known/agent-card.json", tmp)
        servers.append(server)
        return server

    try:
        bare_stream = await started("a2a-bare-streaming", bare_echo(True))
        bare_poll = await started("a2a-bare-non-streaming", bare_echo(False))
        served = await started(
            "fleetmind-a2a-serve", lambda port: [FLEETMIND_CLI, *serve_argv(port, "as-shipped")]
        )

        results = []
        for key, label, server, streaming, note in (
            (
                "a2a_client",
                "A2A client, non-streaming",
                bare_poll,
                False,
                "A2AAgent.run (SendMessage return_immediately + GetTask polls) vs blocking "
                "SendMessage; bare a2a-sdk echo server",
            ),
            (
                "a2a_client_streaming",
                "A2A client, streaming",
                bare_stream,
                True,
                "A2AAgent.run vs SendStreamingMessage; bare a2a-sdk echo server",
            ),
        ):
            async with (
                fleetmind_a2a_client(server.base_url) as fleetmind,
                bare_a2a_client(server.base_url, streaming=streaming) as bare,
            ):
                case = CaseResult(key, label, note=note)
                results.append(await measure(case, fleetmind, bare, **counts.a2a))
        declared = await _bindings(served.base_url)
        for binding, name, suffix in BINDINGS:
            if binding not in declared:
                print(f"`fleetmind a2a serve` declares no {name} binding: not measured")
                continue
            for streaming in (False, True):
                async with (
                    bare_a2a_client(
                        served.base_url, streaming=streaming, binding=binding
                    ) as fleetmind,
                    bare_a2a_client(
                        bare_stream.base_url, streaming=streaming, binding=binding
                    ) as bare,
                ):
                    case = CaseResult(
                        f"a2a_server{suffix}{'_streaming' if streaming else ''}",
                        f"A2A server, {name}{', streaming' if streaming else ''}",
                        note=f"bare a2a-sdk client over {name}; `fleetmind a2a serve` "
                        "(one-agent echo fleet) vs bare a2a-sdk echo server, same binding",
                    )
                    results.append(await measure(case, fleetmind, bare, **counts.a2a))
        return results
    finally:
        for server in servers:
            await stop(server.process)


async def _bindings(base_url: str) -> set[str]:
    """The bindings a server's card declares."""
    async with httpx.AsyncClient(timeout=10) as http:
        card = (await http.get(f"{base_url}/.well-known/agent-card.json")).json()
    return {i.get("protocolBinding") for i in card.get("supportedInterfaces", [])}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How many calls each case makes."""

    mcp: dict[str, int]
    a2a: dict[str, int]


def counts_for(quick: bool) -> Counts:
    if quick:
        return Counts(
            mcp={"calls": 100, "blocks": 4, "warmup": 10},
            a2a={"calls": 40, "blocks": 4, "warmup": 5},
        )
    return Counts(
        mcp={"calls": 1000, "blocks": 10, "warmup": 50},
        a2a={"calls": 400, "blocks": 8, "warmup": 20},
    )


def machine_info() -> dict[str, Any]:
    """Where the figures were taken."""
    return {
        **machine_base(),
        "fleetmind": package_version("fleetmind"),
        "mcp": package_version("mcp"),
        "a2a-sdk": package_version("a2a-sdk"),
    }


def render(results: list[CaseResult], machine: dict[str, Any], elapsed_s: float) -> str:
    """The results as a plain, aligned text table, then what each row compares."""
    rows: list[tuple[str, ...]] = [
        (
            "case",
            "fleetmind p50",
            "baseline p50",
            "ratio",
            "fleetmind p99",
            "baseline p99",
            "calls/s fleetmind / baseline",
        )
    ]
    for r in results:
        f = r.figures()
        rows.append(
            (
                r.label,
                f"{f['fleetmind_ms_p50']:.2f}",
                f"{f['baseline_ms_p50']:.2f}",
                f"{f['ratio_p50']:.2f}x",
                f"{f['fleetmind_ms_p99']:.2f}",
                f"{f['baseline_ms_p99']:.2f}",
                f"{f['fleetmind_calls_per_s']:.0f} / {f['baseline_calls_per_s']:.0f}",
            )
        )
    calls = ", ".join(f"{r.label}: {len(r.fleetmind_s)}" for r in results)
    lines = [
        "MCP and A2A on loopback: ms per call (lower is better), fleetmind beside the bare SDK",
        f"python {machine['python']}, mcp {machine['mcp']}, a2a-sdk {machine['a2a-sdk']}, "
        f"{machine['cpu_count']} CPU(s), load average at start {machine['load_average']}",
        f"timed calls per side: {calls}",
        "",
        *_table(rows),
        "",
        *(f"  {r.label}: {r.note}" for r in results),
        f"\nwhole run: {elapsed_s:.0f} s",
    ]
    return "\n".join(lines)


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case, print the table, and return the JSON document."""
    machine = machine_info()
    counts = counts_for(args.quick)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleetmind-bench-protocols-") as tmp:
        results = await bench_mcp(Path(tmp), counts)
        results += await bench_a2a(Path(tmp), counts)
    elapsed = time.monotonic() - start
    print(render(results, machine, elapsed))
    return {
        "cases": {r.key: r.figures() for r in results},
        "statistic": "per-call wall time; calls/s = calls / sum of call times (sequential)",
        "quick": args.quick,
        "elapsed_s": round(elapsed, 1),
        "machine": machine,
    }


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, "fewer calls (a smoke run)")
    parser.add_argument(
        "--role",
        choices=["mcp-server", "a2a-echo"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--role-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "mcp-server":
        mcp_server(**json.loads(args.role_args))
        return
    if args.role == "a2a-echo":
        a2a_echo_server(**json.loads(args.role_args))
        return
    require_fleetmind_cli()
    document = asyncio.run(benchmark(args))
    write_json(args.json, document)


if __name__ == "__main__":
    main()

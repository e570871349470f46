"""A fleet whose agents use the tools of an MCP server (examples/text_tools_server.py).

    fleetmind run examples/mcp_notes.yaml --param path=README.md

The server is listed in the fleet's ``mcp_servers``: fleetmind starts it on first use, reuses it
for every subtask, and stops it with the fleet.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleetmind import Fleet, SubtaskContext, SubtaskFailed, agent

SERVER = [sys.executable, str(Path(__file__).with_name("text_tools_server.py"))]


@agent(skills=["text-stats"])
async def reader(path: str, ctx: SubtaskContext) -> dict:
    """Read a text file's statistics through the MCP server."""
    stats = await ctx.tools.call("text_stats", {"path": path, "top": 3})
    if not stats.ok:
        raise SubtaskFailed(stats.error or "text_stats failed", retryable=False)
    return stats.value


@agent(skills=["summary"])
async def summariser(path: str, stats: dict, ctx: SubtaskContext) -> str:
    """One line about the file, shortened by the MCP server's headline tool."""
    words = ", ".join(stats["top_words"])
    text = f"{path}: {stats['lines']} lines, {stats['words']} words; most used: {words}"
    line = await ctx.tools.call("headline", {"text": text, "width": 80})
    return line.value["result"] if line.ok else text


fleet = Fleet(
    [reader, summariser],
    mcp_servers=[{"name": "text-tools", "command": SERVER[0], "args": SERVER[1:]}],
)

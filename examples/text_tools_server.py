"""An MCP server with two text tools, for examples/mcp_fleet.py (any MCP host can use it too).

Run it yourself with ``python examples/text_tools_server.py`` (stdio); fleetmind starts it on
first use when a fleet lists it in ``mcp_servers``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("text-tools", log_level="WARNING")


class TextStats(BaseModel):
    """Counts of a text file."""

    lines: int
    words: int
    top_words: list[str]


@server.tool()
def text_stats(path: str, top: int = 5) -> TextStats:
    """Count the lines and words of a UTF-8 text file, and list its most frequent words."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None
    words = re.findall(r"[a-zA-Z']+", text.lower())
    common = [w for w, _ in Counter(w for w in words if len(w) > 3).most_common(top)]
    return TextStats(lines=len(text.splitlines()), words=len(words), top_words=common)


@server.tool()
def headline(text: str, width: int = 60) -> str:
    """Shorten a text to one line of at most ``width`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


if __name__ == "__main__":
    server.run("stdio")

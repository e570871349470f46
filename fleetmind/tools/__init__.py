"""Tools that agents call: the registry, the ``@tool`` decorator, MCP servers' tools and
built-in repository tools.

``MCPToolSource`` and ``MCPServerConfig`` are imported on first access, so that importing
fleetmind (on a small device, say) loads neither the MCP bridge nor the protocols package.
"""

from typing import TYPE_CHECKING, Any

from fleetmind._extras import require
from fleetmind.tools._registry import (
    ToolRegistry,
    ToolResult,
    ToolSource,
    ToolSpec,
    tool,
    tool_spec,
)
from fleetmind.tools._repo import count_lines, declared_dependencies, find_todos, largest_files

if TYPE_CHECKING:
    from fleetmind.protocols import MCPServerConfig
    from fleetmind.tools._mcp import MCPToolSource

__all__ = [
    "MCPServerConfig",
    "MCPToolSource",
    "ToolRegistry",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "count_lines",
    "declared_dependencies",
    "find_todos",
    "largest_files",
    "tool",
    "tool_spec",
]


def __getattr__(name: str) -> Any:
    if name == "MCPToolSource":
        require("mcp", "mcp", "MCP tools")
        from fleetmind.tools._mcp import MCPToolSource

        return MCPToolSource
    if name == "MCPServerConfig":
        from fleetmind.protocols import MCPServerConfig

        return MCPServerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

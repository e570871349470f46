"""Tools that agents call: the registry, the ``@tool`` decorator, MCP servers' tools and
built-in repository tools.

``MCPToolSource``, ``MCPServerConfig`` and the types of what an MCP server may ask while it
serves a call (``SamplingRequest``, ``ElicitationRequest``, their replies and handlers) are
imported on first access, so that importing fleetmind (on a small device, say) loads neither
the MCP bridge nor the protocols package.
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
    from fleetmind.protocols import (
        ElicitationHandler,
        ElicitationReply,
        ElicitationRequest,
        FormField,
        MCPServerConfig,
        SamplingHandler,
        SamplingMessage,
        SamplingReply,
        SamplingRequest,
        SamplingTool,
        SamplingToolCall,
        check_form_answer,
        form_fields,
    )
    from fleetmind.tools._mcp import MCPToolSource

__all__ = [
    "ElicitationHandler",
    "ElicitationReply",
    "ElicitationRequest",
    "FormField",
    "MCPServerConfig",
    "MCPToolSource",
    "SamplingHandler",
    "SamplingMessage",
    "SamplingReply",
    "SamplingRequest",
    "SamplingTool",
    "SamplingToolCall",
    "ToolRegistry",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "check_form_answer",
    "count_lines",
    "declared_dependencies",
    "find_todos",
    "form_fields",
    "largest_files",
    "tool",
    "tool_spec",
]


def __getattr__(name: str) -> Any:
    if name == "MCPToolSource":
        require("mcp", "mcp", "MCP tools")
        from fleetmind.tools._mcp import MCPToolSource

        return MCPToolSource
    if name in __all__:  # not defined here: one of the protocols package's names
        import fleetmind.protocols

        return getattr(fleetmind.protocols, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

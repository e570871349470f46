"""Tools that agents call: the registry, the ``@tool`` decorator and built-in repository tools."""

from fleetmind.tools._registry import ToolRegistry, ToolResult, ToolSpec, tool, tool_spec
from fleetmind.tools._repo import count_lines, declared_dependencies, find_todos, largest_files

__all__ = [
    "ToolRegistry",
    "ToolResult",
    "ToolSpec",
    "count_lines",
    "declared_dependencies",
    "find_todos",
    "largest_files",
    "tool",
    "tool_spec",
]

"""fleetmind: run multi-agent work as a live, mutable task graph across devices and the cloud.

```python
from fleetmind import Fleet, TaskGraph, agent

@agent(skills=["greeting"])
async def greeter(name: str) -> str:
    return f"hello {name}"

graph = TaskGraph("hello")
graph.add_subtask("greet", skill="greeting", inputs={"name": "world"})
result = await Fleet([greeter]).run(graph)
```
"""

from typing import TYPE_CHECKING

from fleetmind._lazy import load
from fleetmind._version import __version__

if TYPE_CHECKING:
    from fleetmind.agents import (
        Agent,
        AgentLimits,
        AgentProfile,
        DataPart,
        FilePart,
        IncomingMessage,
        LangGraphAgent,
        LLMAgent,
        ModelConfig,
        ModelEndpoint,
        OpenAICompatibleClient,
        Reply,
        Skill,
        SubtaskContext,
        SubtaskResult,
        TextPart,
        Tier,
        agent,
    )
    from fleetmind.errors import (
        ConfigError,
        FleetmindError,
        GraphError,
        InputRequired,
        NoCapableAgent,
        SubtaskFailed,
        SubtaskTimeout,
        TaskCancelled,
        TaskRejected,
    )
    from fleetmind.orchestrator import (
        Condition,
        Dependency,
        DependencyKind,
        Fleet,
        Planner,
        RetryPolicy,
        Router,
        SQLiteStore,
        Subtask,
        SubtaskStatus,
        TaskGraph,
        TaskHandle,
        TaskResult,
    )
    from fleetmind.tools import ToolRegistry, tool

_EXPORTS: dict[str, str] = {
    name: module
    for module, names in {
        "fleetmind.agents": (
            "Agent",
            "AgentLimits",
            "AgentProfile",
            "DataPart",
            "FilePart",
            "IncomingMessage",
            "LLMAgent",
            "LangGraphAgent",
            "ModelConfig",
            "ModelEndpoint",
            "OpenAICompatibleClient",
            "Reply",
            "Skill",
            "SubtaskContext",
            "SubtaskResult",
            "TextPart",
            "Tier",
            "agent",
        ),
        "fleetmind.errors": (
            "ConfigError",
            "FleetmindError",
            "GraphError",
            "InputRequired",
            "NoCapableAgent",
            "SubtaskFailed",
            "SubtaskTimeout",
            "TaskCancelled",
            "TaskRejected",
        ),
        "fleetmind.orchestrator": (
            "Condition",
            "Dependency",
            "DependencyKind",
            "Fleet",
            "Planner",
            "RetryPolicy",
            "Router",
            "SQLiteStore",
            "Subtask",
            "SubtaskStatus",
            "TaskGraph",
            "TaskHandle",
            "TaskResult",
        ),
        "fleetmind.tools": ("ToolRegistry", "tool"),
    }.items()
    for name in names
}
"""Where each name of the SDK surface lives. A name's package loads on its first use, so that
``import fleetmind`` (and with it every ``fleetmind.*`` import, the command line's included)
costs nothing until the SDK is used: a device never loads the orchestrator, and
``fleetmind --help`` loads no agent, graph or model code."""


def __getattr__(name: str) -> object:
    return load(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Agent",
    "AgentLimits",
    "AgentProfile",
    "Condition",
    "ConfigError",
    "DataPart",
    "Dependency",
    "DependencyKind",
    "FilePart",
    "Fleet",
    "FleetmindError",
    "GraphError",
    "IncomingMessage",
    "InputRequired",
    "LLMAgent",
    "LangGraphAgent",
    "ModelConfig",
    "ModelEndpoint",
    "NoCapableAgent",
    "OpenAICompatibleClient",
    "Planner",
    "Reply",
    "RetryPolicy",
    "Router",
    "SQLiteStore",
    "Skill",
    "Subtask",
    "SubtaskContext",
    "SubtaskFailed",
    "SubtaskResult",
    "SubtaskStatus",
    "SubtaskTimeout",
    "TaskCancelled",
    "TaskGraph",
    "TaskHandle",
    "TaskRejected",
    "TaskResult",
    "TextPart",
    "Tier",
    "ToolRegistry",
    "__version__",
    "agent",
    "tool",
]

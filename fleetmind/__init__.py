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

from fleetmind._version import __version__
from fleetmind.agents import (
    Agent,
    AgentLimits,
    AgentProfile,
    LangGraphAgent,
    LLMAgent,
    ModelConfig,
    ModelEndpoint,
    Skill,
    SubtaskContext,
    SubtaskResult,
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


def __getattr__(name: str) -> object:
    # The HTTP model client loads httpx on first use, so `import fleetmind` stays light.
    if name == "OpenAICompatibleClient":
        from fleetmind.agents import OpenAICompatibleClient

        return OpenAICompatibleClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Agent",
    "AgentLimits",
    "AgentProfile",
    "Condition",
    "ConfigError",
    "Dependency",
    "DependencyKind",
    "Fleet",
    "FleetmindError",
    "GraphError",
    "InputRequired",
    "LLMAgent",
    "LangGraphAgent",
    "ModelConfig",
    "ModelEndpoint",
    "NoCapableAgent",
    "OpenAICompatibleClient",
    "Planner",
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
    "TaskResult",
    "Tier",
    "ToolRegistry",
    "__version__",
    "agent",
    "tool",
]

"""What does work: the Agent interface, profiles, the ``@agent`` decorator, and the LLM layer
(model clients and their configuration)."""

from fleetmind.agents._agent import (
    Agent,
    FunctionAgent,
    SubtaskContext,
    SubtaskResult,
    agent,
)
from fleetmind.agents._langgraph_agent import LangGraphAgent
from fleetmind.agents._llm import (
    ChatDelta,
    ChatMessage,
    ChatStream,
    Completion,
    LLMClient,
    ToolCall,
    Usage,
    extract_json,
)
from fleetmind.agents._llm_agent import GIVE_UP_TOOL, LLMAgent
from fleetmind.agents._models import ModelConfig, ModelEndpoint, ModelPrices
from fleetmind.agents._profile import AgentLimits, AgentProfile, Skill, Tier
from fleetmind.agents._steps import (
    AlwaysCloud,
    AlwaysDevice,
    FixedStepRouter,
    StepChoice,
    StepRecord,
    StepRouter,
    StepState,
    ToolOutcome,
)


def __getattr__(name: str) -> object:
    # The HTTP client (and httpx) load on first use, so `import fleetmind` stays light.
    if name == "OpenAICompatibleClient":
        from fleetmind.agents._openai import OpenAICompatibleClient

        return OpenAICompatibleClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GIVE_UP_TOOL",
    "Agent",
    "AgentLimits",
    "AgentProfile",
    "AlwaysCloud",
    "AlwaysDevice",
    "ChatDelta",
    "ChatMessage",
    "ChatStream",
    "Completion",
    "FixedStepRouter",
    "FunctionAgent",
    "LLMAgent",
    "LLMClient",
    "LangGraphAgent",
    "ModelConfig",
    "ModelEndpoint",
    "ModelPrices",
    "OpenAICompatibleClient",
    "Skill",
    "StepChoice",
    "StepRecord",
    "StepRouter",
    "StepState",
    "SubtaskContext",
    "SubtaskResult",
    "Tier",
    "ToolCall",
    "ToolOutcome",
    "Usage",
    "agent",
    "extract_json",
]

"""What does work: the Agent interface, profiles, and the ``@agent`` decorator."""

from fleetmind.agents._agent import (
    Agent,
    FunctionAgent,
    SubtaskContext,
    SubtaskResult,
    agent,
)
from fleetmind.agents._llm import ChatMessage, Completion, LLMClient
from fleetmind.agents._profile import AgentLimits, AgentProfile, Skill, Tier

__all__ = [
    "Agent",
    "AgentLimits",
    "AgentProfile",
    "ChatMessage",
    "Completion",
    "FunctionAgent",
    "LLMClient",
    "Skill",
    "SubtaskContext",
    "SubtaskResult",
    "Tier",
    "agent",
]

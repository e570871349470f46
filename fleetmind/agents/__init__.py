"""What does work: the Agent interface, profiles, the ``@agent`` decorator, the LLM layer
(model clients and their configuration), and the step-level device/cloud router."""

from typing import TYPE_CHECKING

from fleetmind._lazy import load

if TYPE_CHECKING:
    from fleetmind.agents._agent import Agent, FunctionAgent, SubtaskContext, SubtaskResult, agent
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
    from fleetmind.agents._messages import (
        ArtifactChunk,
        DataPart,
        FilePart,
        IncomingMessage,
        Part,
        Reply,
        TextPart,
        as_reply,
        part_from_json,
        part_to_json,
    )
    from fleetmind.agents._models import CONFIGURE_HINT, ModelConfig, ModelEndpoint, ModelPrices
    from fleetmind.agents._openai import OpenAICompatibleClient
    from fleetmind.agents._profile import AgentLimits, AgentProfile, Skill, Tier
    from fleetmind.agents._step_features import (
        DRAFT_FEATURES,
        STRUCTURAL_FEATURES,
        draft_features,
        hashed_matrix,
        hashed_ngrams,
        prompt_state,
        step_text,
        structural_features,
    )
    from fleetmind.agents._step_model import StepRouterFileError, StepRouterModel, fit_step_router
    from fleetmind.agents._step_outcomes import (
        OutcomeFileError,
        OutcomeSet,
        RoutingCurve,
        load_outcomes,
        routing_curve,
    )
    from fleetmind.agents._step_policies import (
        CascadeRouter,
        LearnedStepRouter,
        PerTaskRouter,
        Rule,
        RulesRouter,
        cloud_for_tools,
        default_draft_model,
        keep_local_data,
        within_budget,
    )
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

_EXPORTS: dict[str, str] = {
    name: module
    for module, names in {
        "fleetmind.agents._agent": (
            "Agent",
            "FunctionAgent",
            "SubtaskContext",
            "SubtaskResult",
            "agent",
        ),
        "fleetmind.agents._langgraph_agent": ("LangGraphAgent",),
        "fleetmind.agents._llm": (
            "ChatDelta",
            "ChatMessage",
            "ChatStream",
            "Completion",
            "LLMClient",
            "ToolCall",
            "Usage",
            "extract_json",
        ),
        "fleetmind.agents._llm_agent": ("GIVE_UP_TOOL", "LLMAgent"),
        "fleetmind.agents._messages": (
            "ArtifactChunk",
            "DataPart",
            "FilePart",
            "IncomingMessage",
            "Part",
            "Reply",
            "TextPart",
            "as_reply",
            "part_from_json",
            "part_to_json",
        ),
        "fleetmind.agents._models": (
            "CONFIGURE_HINT",
            "ModelConfig",
            "ModelEndpoint",
            "ModelPrices",
        ),
        "fleetmind.agents._profile": ("AgentLimits", "AgentProfile", "Skill", "Tier"),
        "fleetmind.agents._step_features": (
            "DRAFT_FEATURES",
            "STRUCTURAL_FEATURES",
            "draft_features",
            "hashed_matrix",
            "hashed_ngrams",
            "prompt_state",
            "step_text",
            "structural_features",
        ),
        "fleetmind.agents._step_model": (
            "StepRouterFileError",
            "StepRouterModel",
            "fit_step_router",
        ),
        "fleetmind.agents._step_outcomes": (
            "OutcomeFileError",
            "OutcomeSet",
            "RoutingCurve",
            "load_outcomes",
            "routing_curve",
        ),
        "fleetmind.agents._step_policies": (
            "CascadeRouter",
            "LearnedStepRouter",
            "PerTaskRouter",
            "Rule",
            "RulesRouter",
            "cloud_for_tools",
            "default_draft_model",
            "keep_local_data",
            "within_budget",
        ),
        "fleetmind.agents._steps": (
            "AlwaysCloud",
            "AlwaysDevice",
            "FixedStepRouter",
            "StepChoice",
            "StepRecord",
            "StepRouter",
            "StepState",
            "ToolOutcome",
        ),
        "fleetmind.agents._openai": ("OpenAICompatibleClient",),
    }.items()
    for name in names
}
"""Where each public name lives: its module loads on the first use of the name."""


def __getattr__(name: str) -> object:
    return load(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CONFIGURE_HINT",
    "DRAFT_FEATURES",
    "GIVE_UP_TOOL",
    "STRUCTURAL_FEATURES",
    "Agent",
    "AgentLimits",
    "AgentProfile",
    "AlwaysCloud",
    "AlwaysDevice",
    "ArtifactChunk",
    "CascadeRouter",
    "ChatDelta",
    "ChatMessage",
    "ChatStream",
    "Completion",
    "DataPart",
    "FilePart",
    "FixedStepRouter",
    "FunctionAgent",
    "IncomingMessage",
    "LLMAgent",
    "LLMClient",
    "LangGraphAgent",
    "LearnedStepRouter",
    "ModelConfig",
    "ModelEndpoint",
    "ModelPrices",
    "OpenAICompatibleClient",
    "OutcomeFileError",
    "OutcomeSet",
    "Part",
    "PerTaskRouter",
    "Reply",
    "RoutingCurve",
    "Rule",
    "RulesRouter",
    "Skill",
    "StepChoice",
    "StepRecord",
    "StepRouter",
    "StepRouterFileError",
    "StepRouterModel",
    "StepState",
    "SubtaskContext",
    "SubtaskResult",
    "TextPart",
    "Tier",
    "ToolCall",
    "ToolOutcome",
    "Usage",
    "agent",
    "as_reply",
    "cloud_for_tools",
    "default_draft_model",
    "draft_features",
    "extract_json",
    "fit_step_router",
    "hashed_matrix",
    "hashed_ngrams",
    "keep_local_data",
    "load_outcomes",
    "part_from_json",
    "part_to_json",
    "prompt_state",
    "routing_curve",
    "step_text",
    "structural_features",
    "within_budget",
]

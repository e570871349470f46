"""The public surface, listed: a change to it shows up in review."""

from __future__ import annotations

import importlib
import re

import pytest

EXPECTED = {
    "fleetmind": [
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
    ],
    "fleetmind.agents": [
        "CONFIGURE_HINT",
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
        "GIVE_UP_TOOL",
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
        "DRAFT_FEATURES",
        "STRUCTURAL_FEATURES",
        "CascadeRouter",
        "LearnedStepRouter",
        "OutcomeFileError",
        "OutcomeSet",
        "PerTaskRouter",
        "RoutingCurve",
        "Rule",
        "RulesRouter",
        "StepRouterFileError",
        "StepRouterModel",
        "cloud_for_tools",
        "default_draft_model",
        "draft_features",
        "fit_step_router",
        "hashed_matrix",
        "hashed_ngrams",
        "keep_local_data",
        "load_outcomes",
        "prompt_state",
        "routing_curve",
        "step_text",
        "structural_features",
        "within_budget",
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
    ],
    "fleetmind.agents.remote": [
        "A2AAgent",
        "AgentDict",
        "AgentPool",
        "DeviceAgent",
        "DeviceLink",
        "DeviceMemory",
        "DeviceMemoryChannel",
        "DeviceRuntime",
        "DeviceState",
        "DispatchLimits",
        "Dispatches",
        "LinkState",
        "MemoryRefused",
        "MemoryResponder",
        "MemoryUnavailable",
        "Recovered",
        "RemoteAgent",
        "ResultSource",
        "TaskIntake",
        "agent_card",
        "connect_a2a_agent",
        "dispatch_id",
        "message_from_a2a",
        "parts_from_a2a",
        "parts_to_a2a",
        "profile_from_card",
        "reply_from_a2a",
        "slug",
    ],
    "fleetmind.memory": [
        "LAYERS",
        "MAX_TEXT_CHARS",
        "SHARED",
        "AgentMemory",
        "Compressed",
        "EmbedFunction",
        "FleetMemoryStore",
        "ItemTooLarge",
        "Layer",
        "Memory",
        "MemoryItem",
        "MemoryStore",
        "MemoryStoreError",
        "NewEpisode",
        "RECURRING_KIND",
        "Recalled",
        "StoredItem",
        "Tokenizer",
        "WorkingEntry",
        "WorkingMemory",
        "agent_namespace",
        "collapse",
        "compress",
        "default_tokenizer",
        "same_specifics",
        "strip_timestamp",
        "truncate",
    ],
    "fleetmind.orchestrator": [
        "AddDependency",
        "AddSubtask",
        "AgentDirectory",
        "AgentSummary",
        "BoundReplanner",
        "CachedEmbedder",
        "CandidateScore",
        "CapabilityIndex",
        "CapabilityMatch",
        "Condition",
        "Dependency",
        "DependencyKind",
        "Embedder",
        "EmbeddingModel",
        "Engine",
        "Event",
        "Fleet",
        "FleetView",
        "GraphEdit",
        "GraphEditedEvent",
        "LogEntry",
        "InMemoryStore",
        "MiniLMEmbedder",
        "ModelAssemblyError",
        "OutcomeHistory",
        "Plan",
        "Planner",
        "RemoveDependency",
        "RemoveSubtask",
        "ReplanDecision",
        "ReplanRequest",
        "Replanner",
        "RouteReviewer",
        "RouteVerdict",
        "RetryPolicy",
        "Router",
        "RouterContext",
        "RoutingDecision",
        "RoutingWeights",
        "SQLiteStore",
        "SemanticRouter",
        "SentenceEmbedder",
        "SkillRouter",
        "Store",
        "Subtask",
        "SubtaskArtifactEvent",
        "SubtaskCancelledEvent",
        "SubtaskDoneEvent",
        "SubtaskFailedEvent",
        "SubtaskProgressEvent",
        "SubtaskReadyEvent",
        "SubtaskReassignedEvent",
        "SubtaskReplannedEvent",
        "SubtaskRetriedEvent",
        "SubtaskRoutedEvent",
        "SubtaskSkippedEvent",
        "SubtaskStartedEvent",
        "SubtaskState",
        "SubtaskStatus",
        "TaskEvent",
        "TaskFinishedEvent",
        "TaskResumedEvent",
        "describe_event",
        "TaskGraph",
        "TaskHandle",
        "TaskRecord",
        "TaskResult",
        "TaskSnapshot",
        "UpdateSubtask",
        "capability_texts",
        "embedding_model",
        "to_dot",
        "to_mermaid",
        "watch_model_loads",
        "StepRows",
        "draft_rows",
        "embedder_for",
        "held_out_scores",
        "load_step_router",
        "outcome_rows",
        "recorded_step_rows",
        "train_step_router",
        "TaskFile",
        "labeled_rows_from",
        "read_task_file",
    ],
    "fleetmind.protocols": [
        "DEFAULT_FLEET",
        "INSTALL_HINT",
        "MAX_MESSAGE_BYTES",
        "PROTOCOL_VERSION",
        "A2ATransport",
        "Account",
        "BrokerAddress",
        "BrokerConfig",
        "BrokerProcess",
        "CancelPayload",
        "CardPayload",
        "ClaimPayload",
        "DevicesFile",
        "DispatchPayload",
        "Envelope",
        "ErrorPayload",
        "Listener",
        "MCP_TOKEN_DIR",
        "MCPAuth",
        "MCPAuthError",
        "MCPAuthorizationDenied",
        "MCPAuthorizationRequired",
        "MCPCallResult",
        "MCPConnection",
        "MCPOAuthClient",
        "MCPServerConfig",
        "MCPTool",
        "MemoryRequestPayload",
        "MemoryResponsePayload",
        "Message",
        "MqttConnection",
        "PresencePayload",
        "ProceedPayload",
        "ProgressPayload",
        "ResultPayload",
        "SubmitPayload",
        "SyncPayload",
        "TaskEventPayload",
        "Topics",
        "data_values",
        "encode",
        "encode_fields",
        "load_devices_file",
        "mcp_token_file",
        "mosquitto_installed",
        "new_envelope",
        "parse_envelope",
        "plain_json",
        "serve_broker",
        "serve_embedded",
        "write_broker_config",
    ],
    "fleetmind.serve": [
        "DeviceMemoryService",
        "FleetIntake",
        "MemoryAccessDenied",
        "MqttFleetLink",
        "SharedAccess",
        "SubmittedTaskResult",
        "build_a2a_app",
        "build_mcp_server",
        "serve_a2a",
        "serve_mcp",
        "submit_via_broker",
    ],
    "fleetmind.testing": [
        "LocalBroker",
        "Reply",
        "Rule",
        "ScriptedLLMServer",
        "free_port",
        "request_text",
        "start_test_broker",
    ],
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_public_names(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert sorted(exported) == sorted(EXPECTED[module])
    for name in exported:
        assert hasattr(importlib.import_module(module), name)


def test_the_library_never_imports_the_cli_or_heavy_models() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fleetmind, fleetmind.orchestrator, fleetmind.protocols;"
        "heavy = [m for m in ('typer', 'rich', 'torch', 'sentence_transformers', 'hnswlib')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("fleetmind.protocols", "serve", "fleetmind.protocols:serve_broker"),
        ("fleetmind.protocols._broker", "serve", "fleetmind.protocols:serve_broker"),
        ("fleetmind.protocols._a2a_client", "connect_a2a_agent", "fleetmind.agents.remote"),
        ("fleetmind.protocols._a2a_client", "A2AAgent", "fleetmind.agents.remote"),
        ("fleetmind.protocols._a2a_client", "profile_from_card", "fleetmind.agents.remote"),
        ("fleetmind.protocols._a2a_server", "serve_a2a", "fleetmind.serve"),
        ("fleetmind.protocols._a2a_server", "build_a2a_app", "fleetmind.serve"),
    ],
)
def test_moved_names_resolve_with_a_deprecation_warning(old: str, name: str, new: str) -> None:
    module, _, new_name = new.partition(":")
    said = f"{module}.{new_name}" if new_name else f"from {module}"
    with pytest.warns(DeprecationWarning, match=re.escape(said)):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(module), new_name or name)


def test_an_unknown_name_of_a_moved_module_is_an_attribute_error() -> None:
    for module in ("fleetmind.protocols._a2a_client", "fleetmind.protocols._a2a_server"):
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            importlib.import_module(module).nothing  # noqa: B018


RENAMED_IN_ORCHESTRATOR = [
    *(
        (old, f"{old}Event")
        for old in (
            "GraphEdited",
            "SubtaskCancelled",
            "SubtaskDone",
            "SubtaskFailed",
            "SubtaskProgress",
            "SubtaskReady",
            "SubtaskReassigned",
            "SubtaskReplanned",
            "SubtaskRetried",
            "SubtaskRouted",
            "SubtaskSkipped",
            "SubtaskStarted",
            "TaskFinished",
        )
    ),
    ("MemoryStore", "InMemoryStore"),
]


@pytest.mark.parametrize(("old", "new"), RENAMED_IN_ORCHESTRATOR, ids=lambda n: n)
def test_renamed_orchestrator_names_resolve_with_a_deprecation_warning(old: str, new: str) -> None:
    orchestrator = importlib.import_module("fleetmind.orchestrator")
    said = f"fleetmind.orchestrator.{old} is deprecated: use fleetmind.orchestrator.{new}"
    with pytest.warns(DeprecationWarning, match=re.escape(said)):
        value = getattr(orchestrator, old)
    assert value is getattr(orchestrator, new)
    assert old not in orchestrator.__all__
    with pytest.warns(DeprecationWarning):  # every use warns, not only the first
        getattr(orchestrator, old)


def test_an_old_event_name_in_an_import_statement_warns_and_still_works() -> None:
    with pytest.warns(DeprecationWarning, match="SubtaskFailedEvent"):
        from fleetmind.orchestrator import SubtaskFailed  # type: ignore[attr-defined]
    from fleetmind.errors import SubtaskFailed as SubtaskFailedError
    from fleetmind.orchestrator import SubtaskFailedEvent

    assert SubtaskFailed is SubtaskFailedEvent
    assert SubtaskFailed is not SubtaskFailedError

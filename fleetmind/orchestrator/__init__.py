"""What decides: the task graph, the engine that runs it, routing, and the durable store."""

import warnings
from typing import TYPE_CHECKING

from fleetmind._lazy import load

if TYPE_CHECKING:
    from fleetmind._task_log import (
        AddDependency,
        AddSubtask,
        GraphEdit,
        LogEntry,
        RemoveDependency,
        RemoveSubtask,
        UpdateSubtask,
    )
    from fleetmind._task_model import (
        Condition,
        Dependency,
        DependencyKind,
        RetryPolicy,
        Subtask,
        SubtaskStatus,
    )
    from fleetmind.orchestrator._capindex import CapabilityIndex, CapabilityMatch, capability_texts
    from fleetmind.orchestrator._directory import AgentDirectory
    from fleetmind.orchestrator._embedding import (
        CachedEmbedder,
        Embedder,
        MiniLMEmbedder,
        SentenceEmbedder,
        watch_model_loads,
    )
    from fleetmind.orchestrator._embedding_models import (
        EmbeddingModel,
        ModelAssemblyError,
        embedding_model,
    )
    from fleetmind.orchestrator._engine import Engine
    from fleetmind.orchestrator._events import (
        Event,
        GraphEditedEvent,
        SubtaskArtifactEvent,
        SubtaskCancelledEvent,
        SubtaskDoneEvent,
        SubtaskFailedEvent,
        SubtaskProgressEvent,
        SubtaskReadyEvent,
        SubtaskReassignedEvent,
        SubtaskReplannedEvent,
        SubtaskRetriedEvent,
        SubtaskRoutedEvent,
        SubtaskSkippedEvent,
        SubtaskStartedEvent,
        TaskEvent,
        TaskFinishedEvent,
        TaskResumedEvent,
        describe_event,
    )
    from fleetmind.orchestrator._export import to_dot, to_mermaid
    from fleetmind.orchestrator._fleet import Fleet
    from fleetmind.orchestrator._fleet_stored import (
        cancel_stored,
        local_process_gone,
        local_process_owner,
    )
    from fleetmind.orchestrator._fleet_view import AgentSummary, FleetView
    from fleetmind.orchestrator._graph import TaskGraph
    from fleetmind.orchestrator._mcp_requests import ANSWER_SKILL, MCPRequests
    from fleetmind.orchestrator._ownership import Replica
    from fleetmind.orchestrator._planner import BoundReplanner, Plan, Planner
    from fleetmind.orchestrator._replan import ReplanDecision, Replanner, ReplanRequest
    from fleetmind.orchestrator._route_review import RouteReviewer, RouteVerdict
    from fleetmind.orchestrator._router import Router, RouterContext, RoutingDecision, SkillRouter
    from fleetmind.orchestrator._semantic import (
        CandidateScore,
        OutcomeHistory,
        RoutingWeights,
        SemanticRouter,
    )
    from fleetmind.orchestrator._step_training import (
        StepRows,
        draft_rows,
        embedder_for,
        held_out_scores,
        labeled_rows_from,
        load_step_router,
        outcome_rows,
        recorded_step_rows,
        train_step_router,
    )
    from fleetmind.orchestrator._store import Store, TaskRecord
    from fleetmind.orchestrator._store_memory import InMemoryStore
    from fleetmind.orchestrator._store_open import open_store, redact_url
    from fleetmind.orchestrator._store_postgres import PostgresStore
    from fleetmind.orchestrator._store_sqlite import SQLiteStore
    from fleetmind.orchestrator._subtask_state import SubtaskState
    from fleetmind.orchestrator._task_handle import TaskHandle, TaskSnapshot
    from fleetmind.orchestrator._task_result import TaskResult
    from fleetmind.orchestrator._taskfile import TaskFile, parse_task_text, read_task_file

_EXPORTS: dict[str, str] = {
    name: module
    for module, names in {
        "fleetmind._task_log": (
            "AddDependency",
            "AddSubtask",
            "GraphEdit",
            "LogEntry",
            "RemoveDependency",
            "RemoveSubtask",
            "UpdateSubtask",
        ),
        "fleetmind._task_model": (
            "Condition",
            "Dependency",
            "DependencyKind",
            "RetryPolicy",
            "Subtask",
            "SubtaskStatus",
        ),
        "fleetmind.orchestrator._capindex": (
            "CapabilityIndex",
            "CapabilityMatch",
            "capability_texts",
        ),
        "fleetmind.orchestrator._directory": ("AgentDirectory",),
        "fleetmind.orchestrator._embedding": (
            "CachedEmbedder",
            "Embedder",
            "MiniLMEmbedder",
            "SentenceEmbedder",
            "watch_model_loads",
        ),
        "fleetmind.orchestrator._embedding_models": (
            "EmbeddingModel",
            "ModelAssemblyError",
            "embedding_model",
        ),
        "fleetmind.orchestrator._engine": ("Engine",),
        "fleetmind.orchestrator._events": (
            "Event",
            "GraphEditedEvent",
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
            "TaskEvent",
            "TaskFinishedEvent",
            "TaskResumedEvent",
            "describe_event",
        ),
        "fleetmind.orchestrator._export": ("to_dot", "to_mermaid"),
        "fleetmind.orchestrator._fleet": ("Fleet",),
        "fleetmind.orchestrator._fleet_stored": (
            "cancel_stored",
            "local_process_gone",
            "local_process_owner",
        ),
        "fleetmind.orchestrator._fleet_view": ("AgentSummary", "FleetView"),
        "fleetmind.orchestrator._graph": ("TaskGraph",),
        "fleetmind.orchestrator._mcp_requests": ("ANSWER_SKILL", "MCPRequests"),
        "fleetmind.orchestrator._ownership": ("Replica",),
        "fleetmind.orchestrator._planner": ("BoundReplanner", "Plan", "Planner"),
        "fleetmind.orchestrator._replan": ("ReplanDecision", "Replanner", "ReplanRequest"),
        "fleetmind.orchestrator._route_review": ("RouteReviewer", "RouteVerdict"),
        "fleetmind.orchestrator._router": (
            "Router",
            "RouterContext",
            "RoutingDecision",
            "SkillRouter",
        ),
        "fleetmind.orchestrator._semantic": (
            "CandidateScore",
            "OutcomeHistory",
            "RoutingWeights",
            "SemanticRouter",
        ),
        "fleetmind.orchestrator._step_training": (
            "StepRows",
            "draft_rows",
            "embedder_for",
            "held_out_scores",
            "labeled_rows_from",
            "load_step_router",
            "outcome_rows",
            "recorded_step_rows",
            "train_step_router",
        ),
        "fleetmind.orchestrator._store": ("Store", "TaskRecord"),
        "fleetmind.orchestrator._store_memory": ("InMemoryStore",),
        "fleetmind.orchestrator._store_open": ("open_store", "redact_url"),
        "fleetmind.orchestrator._store_postgres": ("PostgresStore",),
        "fleetmind.orchestrator._store_sqlite": ("SQLiteStore",),
        "fleetmind.orchestrator._subtask_state": ("SubtaskState",),
        "fleetmind.orchestrator._task_handle": ("TaskHandle", "TaskSnapshot"),
        "fleetmind.orchestrator._task_result": ("TaskResult",),
        "fleetmind.orchestrator._taskfile": ("TaskFile", "parse_task_text", "read_task_file"),
    }.items()
    for name in names
}
"""Where each public name lives: its module loads on the first use of the name."""


_DEPRECATED: dict[str, str] = {
    **{
        old: f"{old}Event"
        for old in (
            "SubtaskReady",
            "SubtaskRouted",
            "SubtaskStarted",
            "SubtaskProgress",
            "SubtaskRetried",
            "SubtaskReassigned",
            "SubtaskDone",
            "SubtaskFailed",
            "SubtaskSkipped",
            "SubtaskCancelled",
            "GraphEdited",
            "SubtaskReplanned",
            "TaskFinished",
        )
    },
    "MemoryStore": "InMemoryStore",
}
"""Old names kept for one release: each now names something else too (an exception, a log
entry, the fleet's memory), so the new names say which one they are."""


def __getattr__(name: str) -> object:
    new = _DEPRECATED.get(name)
    if new is not None:
        warnings.warn(
            f"fleetmind.orchestrator.{name} is deprecated: use fleetmind.orchestrator.{new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return load(__name__, _EXPORTS, new)
    return load(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ANSWER_SKILL",
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
    "InMemoryStore",
    "LogEntry",
    "MCPRequests",
    "MiniLMEmbedder",
    "ModelAssemblyError",
    "OutcomeHistory",
    "Plan",
    "Planner",
    "PostgresStore",
    "RemoveDependency",
    "RemoveSubtask",
    "ReplanDecision",
    "ReplanRequest",
    "Replanner",
    "Replica",
    "RetryPolicy",
    "RouteReviewer",
    "RouteVerdict",
    "Router",
    "RouterContext",
    "RoutingDecision",
    "RoutingWeights",
    "SQLiteStore",
    "SemanticRouter",
    "SentenceEmbedder",
    "SkillRouter",
    "StepRows",
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
    "TaskFile",
    "TaskFinishedEvent",
    "TaskGraph",
    "TaskHandle",
    "TaskRecord",
    "TaskResult",
    "TaskResumedEvent",
    "TaskSnapshot",
    "UpdateSubtask",
    "cancel_stored",
    "capability_texts",
    "describe_event",
    "draft_rows",
    "embedder_for",
    "embedding_model",
    "held_out_scores",
    "labeled_rows_from",
    "load_step_router",
    "local_process_gone",
    "local_process_owner",
    "open_store",
    "outcome_rows",
    "parse_task_text",
    "read_task_file",
    "recorded_step_rows",
    "redact_url",
    "to_dot",
    "to_mermaid",
    "train_step_router",
    "watch_model_loads",
]

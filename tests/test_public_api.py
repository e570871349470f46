"""The public surface, listed: a change to it shows up in review."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "fleetmind": [
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
        "NoCapableAgent",
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
    ],
    "fleetmind.agents": [
        "Agent",
        "AgentLimits",
        "AgentProfile",
        "ChatDelta",
        "ChatMessage",
        "ChatStream",
        "Completion",
        "FunctionAgent",
        "LLMClient",
        "ModelConfig",
        "ModelEndpoint",
        "ModelPrices",
        "OpenAICompatibleClient",
        "Skill",
        "SubtaskContext",
        "SubtaskResult",
        "Tier",
        "ToolCall",
        "Usage",
        "agent",
        "extract_json",
    ],
    "fleetmind.memory": ["Memory", "MemoryItem"],
    "fleetmind.protocols": [
        "MAX_MESSAGE_BYTES",
        "PROTOCOL_VERSION",
        "BrokerAddress",
        "BrokerConfig",
        "Envelope",
        "Message",
        "MqttConnection",
        "Topics",
        "load_devices_file",
        "new_envelope",
        "parse_envelope",
        "serve",
        "write_broker_config",
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

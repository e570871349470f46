"""Helpers for testing fleets and the agents that run in them: a local MQTT broker, and a
scripted OpenAI-compatible server for LLM agents and planners."""

from fleetmind.testing._broker import LocalBroker, free_port, start_test_broker
from fleetmind.testing._llm_server import Reply, Rule, ScriptedLLMServer, request_text

__all__ = [
    "LocalBroker",
    "Reply",
    "Rule",
    "ScriptedLLMServer",
    "free_port",
    "request_text",
    "start_test_broker",
]

"""Helpers for testing fleets and the agents that run in them: a local MQTT broker, and a
scripted OpenAI-compatible server for LLM agents and planners, and a PostgreSQL cluster."""

from fleetmind.testing._broker import LocalBroker, free_port, start_test_broker
from fleetmind.testing._llm_server import Reply, Rule, ScriptedLLMServer, request_text
from fleetmind.testing._postgres import LocalPostgres, postgres_missing, start_test_postgres

__all__ = [
    "LocalBroker",
    "LocalPostgres",
    "Reply",
    "Rule",
    "ScriptedLLMServer",
    "free_port",
    "postgres_missing",
    "request_text",
    "start_test_broker",
    "start_test_postgres",
]

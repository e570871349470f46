"""An LLM agent that thinks with a model and acts with the tools of an MCP server.

    export FLEETMIND_CLOUD_BASE_URL=http://127.0.0.1:8080/v1 FLEETMIND_CLOUD_MODEL=your-model
    fleetmind run "How long is README.md, and which words does it use most?" \\
        --fleet examples/llm_mcp_agent.py

The request is planned by the configured model into subtasks for this fleet; the analyst's
step loop calls the MCP server's ``text_stats`` and ``headline`` tools
(examples/text_tools_server.py, started by fleetmind on first use) until it can answer.
Any OpenAI-compatible endpoint works: llama.cpp's server, vLLM, Ollama's /v1, a hosted API.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleetmind import AgentProfile, Fleet, LLMAgent

SERVER = [sys.executable, str(Path(__file__).with_name("text_tools_server.py"))]

analyst = LLMAgent(
    AgentProfile(
        id="text-analyst",
        description=(
            "Answers questions about text files: how many lines and words they have, which "
            "words they use most, and a one-line summary."
        ),
        skills=[{"name": "text-analysis", "tags": ["files", "words", "statistics"]}],
        tier="cloud",
    ),
    model="cloud",  # the endpoint configured for the cloud tier
    tools=["text_stats", "headline"],  # the MCP server's tools, by name
    max_steps=6,
)

fleet = Fleet(
    [analyst],
    mcp_servers=[{"name": "text-tools", "command": SERVER[0], "args": SERVER[1:]}],
)

"""How every command builds what it runs on: the store in the data directory, a fleet whose
semantic router caches embeddings there, and a planner from the model configuration."""

from __future__ import annotations

import logging
from pathlib import Path

from fleetmind.agents import Agent, LLMClient
from fleetmind.cli._options import home
from fleetmind.errors import FleetmindError
from fleetmind.orchestrator import Fleet, Planner, Router, SemanticRouter, SQLiteStore
from fleetmind.tools import ToolRegistry


def open_store(data_dir: Path | None) -> SQLiteStore:
    """The task store of the data directory."""
    return SQLiteStore(home(data_dir) / "fleetmind.db")


def build_fleet(
    agents: list[Agent],
    router: Router | None,
    data_dir: Path | None,
    store: SQLiteStore | None,
    tools: ToolRegistry | None = None,
    planner: Planner | None = None,
    memory: Path | None = None,
) -> Fleet:
    """A fleet for the command line: semantic routing caches embeddings in the data dir.

    ``tools`` are those of the user's own Fleet (with its MCP servers), if it defined one;
    ``memory`` is the memory file agents share (None: no memory).
    """
    if router is None or (isinstance(router, SemanticRouter) and router.data_dir is None):
        base = router if isinstance(router, SemanticRouter) else SemanticRouter()
        router = base.with_data_dir(home(data_dir))
    fleet = Fleet(agents, router=router, store=store, tools=tools, planner=planner, memory=memory)
    if tools is not None:
        from fleetmind.cli._mcp_login import share_mcp_auth

        share_mcp_auth(tools, data_dir)  # OAuth tokens of its MCP servers: in the data dir
        fleet.on_close(tools.aclose)  # its MCP servers stop with this fleet
        if tools.sources:
            answer_mcp_requests(fleet, data_dir)
    return fleet


def answer_mcp_requests(fleet: Fleet, data_dir: Path | None) -> None:
    """The fleet's MCP servers' questions go to the user on a terminal, and their sampling
    requests to the configured models (every tier of the model configuration)."""
    from fleetmind.cli._elicit import terminal_asker

    fleet.mcp_requests.ask_user = terminal_asker()
    models = _configured_models(data_dir)
    if models:
        fleet.mcp_requests.models = models
        for model in models.values():
            fleet.on_close(model.aclose)


def _configured_models(data_dir: Path | None) -> dict[str, LLMClient]:
    from fleetmind.agents import OpenAICompatibleClient
    from fleetmind.cli._llm_cmd import load_models

    try:
        config = load_models(None, data_dir)
        return {tier: OpenAICompatibleClient(config.endpoint(tier)) for tier in config.tiers}
    except FleetmindError as exc:  # the servers then hear that sampling is not offered
        logging.getLogger(__name__).warning("MCP sampling: no model: %s", exc.message)
        return {}


def save_router(fleet: Fleet) -> None:
    """Keep what the router learned (embeddings, outcomes) for the next command."""
    fleet.router.save()

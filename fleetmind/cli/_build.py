"""How every command builds what it runs on: the task store (the data directory's, or the one
``--store`` names), a fleet whose semantic router caches embeddings in the data directory, and
a planner from the model configuration."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from fleetmind.agents import Agent, LLMClient
from fleetmind.cli._options import home
from fleetmind.errors import ConfigError, FleetmindError, MissingExtra
from fleetmind.orchestrator import (
    Fleet,
    Planner,
    Replica,
    Router,
    SemanticRouter,
    SQLiteStore,
    Store,
    local_process_owner,
    redact_url,
)
from fleetmind.orchestrator import open_store as orchestrator_open_store
from fleetmind.tools import ToolRegistry


def open_store(
    data_dir: Path | None, store_url: str | None = None, *, read_only: bool = False
) -> Store:
    """The task store: ``--store`` (a PostgreSQL URL, or a SQLite file), else the data
    directory's SQLite file.

    A PostgreSQL store is reached at once, so that a wrong URL or a server that cannot be
    reached is one line before anything starts, not a failure in the middle of a task.
    ``read_only`` (the commands that only list or show tasks) lets a role that may only read
    the tables open it. The caller closes the store.

    Raises:
        ConfigError: ``store_url`` is neither, or its store cannot be opened (the message
            names the store without its password).
    """
    if store_url is None:
        return SQLiteStore(home(data_dir) / "fleetmind.db")
    url = store_url.strip()
    if not url:
        raise ConfigError("--store is empty: give a postgresql:// URL or a SQLite file")
    shown = redact_url(url)
    target: str | Path = url if "://" in url else Path(url).expanduser()
    if isinstance(target, Path) and target.is_dir():
        raise ConfigError(f"--store {shown} is a directory; give a SQLite file (or --data-dir)")
    try:
        return orchestrator_open_store(target, read_only=read_only)  # the scheme in any case
    except MissingExtra:
        raise  # its own line says which extra to install
    except FleetmindError as exc:
        raise ConfigError(f"--store {shown}: {exc.message.replace(url, shown)}") from None
    except OSError as exc:
        raise ConfigError(f"--store {shown}: {exc.strerror or exc}") from None


LEASE_ENV = "FLEETMIND_LEASE_S"
"""How long (seconds) the lease of a task this process drives outlives the process."""


def process_replica(store: Store | None) -> Replica | None:
    """The owner this process leases the tasks it runs or resumes under, in a store that
    several processes may share: another process then refuses to run them too while it
    lives, and may resume them once its lease lapses (it crashed). It takes over no one's
    tasks (orchestrator replicas do). None for a store that keeps no leases.

    Raises:
        ConfigError: ``FLEETMIND_LEASE_S`` is not a positive number of seconds.
    """
    if store is None or not store.shared:
        return None
    raw = os.environ.get(LEASE_ENV, "").strip()
    try:
        lease_s = float(raw) if raw else 15.0
    except ValueError:
        lease_s = math.nan
    if not (math.isfinite(lease_s) and lease_s > 0):
        raise ConfigError(f"{LEASE_ENV}={raw!r} is not a positive number of seconds")
    return Replica(local_process_owner(), lease_s, adopt=False)


def build_fleet(
    agents: list[Agent],
    router: Router | None,
    data_dir: Path | None,
    store: Store | None,
    tools: ToolRegistry | None = None,
    planner: Planner | None = None,
    memory: Path | None = None,
    replica: Replica | None = None,
) -> Fleet:
    """A fleet for the command line: semantic routing caches embeddings in the data dir.

    ``tools`` are those of the user's own Fleet (with its MCP servers), if it defined one;
    ``memory`` is the memory file agents share (None: no memory); ``replica`` makes the
    fleet an orchestrator replica that owns its tasks under leases in ``store``.
    """
    if router is None or (isinstance(router, SemanticRouter) and router.data_dir is None):
        base = router if isinstance(router, SemanticRouter) else SemanticRouter()
        router = base.with_data_dir(home(data_dir))
    fleet = Fleet(
        agents,
        router=router,
        store=store,
        tools=tools,
        planner=planner,
        memory=memory,
        replica=replica,
    )
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

"""Remote A2A agents the command line remembers: ``<data dir>/a2a_agents.json``.

``fleetmind a2a add URL`` records ``{id, url, token_file}`` here once the agent's card checks
out; ``list`` and ``remove`` show and forget them, and :func:`load_a2a_agents` connects them all
so that ``fleetmind run`` can add them to its fleet. Only the token file's path is stored, never
the token, so the file can be shared or backed up. (The commands are in ``_a2a_cmd``: this
module loads pydantic, which ``fleetmind --help`` does without.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmind._ids import AgentId
from fleetmind._validation import describe_validation_error
from fleetmind.cli._options import home
from fleetmind.errors import ConfigError, FleetmindError

if TYPE_CHECKING:  # the A2A libraries load only when a command needs them
    from fleetmind.agents.remote import A2AAgent

A2A_AGENTS_FILE = "a2a_agents.json"


class A2AAgentEntry(BaseModel):
    """One remembered A2A agent: its id in the fleet, its URL, and where its token is kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: AgentId
    url: str = Field(min_length=1)
    token_file: str | None = None


class _A2AAgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    agents: list[A2AAgentEntry] = Field(default_factory=list)


def agents_file(data_dir: Path | None) -> Path:
    """Where the remembered A2A agents are kept."""
    return home(data_dir) / A2A_AGENTS_FILE


def read_entries(data_dir: Path | None) -> list[A2AAgentEntry]:
    """The remembered A2A agents (none when the file does not exist yet)."""
    path = agents_file(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return _A2AAgentsFile.model_validate_json(text).agents
    except ValidationError as exc:
        problem = describe_validation_error(exc, plain=True, model=_A2AAgentsFile)
        raise ConfigError(f"{path} is not a valid A2A agents file: {problem}") from exc


def write_entries(data_dir: Path | None, entries: list[A2AAgentEntry]) -> None:
    """Replace the remembered A2A agents (atomically: a crash leaves the old file or the new)."""
    path = agents_file(data_dir)
    text = _A2AAgentsFile(agents=entries).model_dump_json(indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".a2a_agents.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


def read_token(token_file: str | Path | None) -> str | None:
    """The bearer token kept in ``token_file`` (its first line), or None without a file."""
    if token_file is None:
        return None
    path = Path(token_file)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from exc
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token.splitlines()[0].strip()


async def load_a2a_agents(data_dir: Path | None) -> list[A2AAgent]:
    """Connect every remembered A2A agent (all at once), ready to be added to a fleet.

    The caller owns the agents and closes them (``fleet.on_close(agent.aclose)``).

    Raises:
        ConfigError: An agent's token file cannot be read or its card cannot be fetched; the
            agents already connected are closed first.
    """
    entries = read_entries(data_dir)
    if not entries:
        return []
    from fleetmind.agents.remote import A2AAgent, connect_a2a_agent

    outcomes: list[A2AAgent | FleetmindError | None] = [None] * len(entries)

    async def connect(i: int, entry: A2AAgentEntry) -> None:
        # Each outcome is kept, not raised, so that one bad agent does not cancel the others
        # halfway through connecting (which would leave their HTTP clients open).
        try:
            outcomes[i] = await connect_a2a_agent(
                entry.url, token=read_token(entry.token_file), agent_id=entry.id
            )
        except FleetmindError as exc:
            outcomes[i] = exc

    async with asyncio.TaskGroup() as tg:
        for i, entry in enumerate(entries):
            tg.create_task(connect(i, entry))
    agents = [o for o in outcomes if isinstance(o, A2AAgent)]
    for entry, outcome in zip(entries, outcomes, strict=True):
        if isinstance(outcome, FleetmindError):
            for agent in agents:
                await agent.aclose()
            raise ConfigError(
                f"A2A agent {entry.id!r}: {outcome.message} "
                f"(or forget it with: fleetmind a2a remove {entry.id})"
            ) from outcome
    return agents

"""Remote A2A agents the command line remembers, and the commands that manage them.

``fleetmind a2a add URL`` reads the agent's card, checks it and records ``{id, url, token_file}``
in ``<data dir>/a2a_agents.json``; ``list`` and ``remove`` show and forget them, and
:func:`load_a2a_agents` connects them all so that ``fleetmind run`` can add them to its fleet.
Only the token file's path is stored, never the token, so the file can be shared or backed up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console
from rich.markup import escape

from fleetmind._ids import AgentId
from fleetmind._validation import describe_validation_error
from fleetmind.cli._options import DataDir, home
from fleetmind.cli._tables import plain_table, print_json, print_table, table_console
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


# Commands ---------------------------------------------------------------------------------------


def add(
    url: Annotated[str, typer.Argument(help="The agent's base URL (where its card is served).")],
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="A file holding the bearer token to send it."),
    ] = None,
    agent_id: Annotated[
        str | None,
        typer.Option("--id", help="Its id in the fleet (default: from the card's name)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Add a remote A2A agent to your fleet: its card is fetched and checked first."""
    token_path = token_file.expanduser().resolve() if token_file is not None else None
    token = read_token(token_path)

    from fleetmind.agents.remote import connect_a2a_agent

    async def check() -> A2AAgent:
        agent = await connect_a2a_agent(url, token=token, agent_id=agent_id)
        await agent.aclose()
        return agent

    agent = asyncio.run(check())
    entry = A2AAgentEntry(
        id=agent.id, url=agent.url, token_file=str(token_path) if token_path else None
    )
    entries = read_entries(data_dir)
    existing = next((e for e in entries if e.id == entry.id), None)
    if existing is not None and existing.url != entry.url:
        raise ConfigError(
            f"an A2A agent with id {entry.id!r} is already added ({existing.url}); "
            "pick another with --id, or remove it first"
        )
    if existing is None:
        entries.append(entry)
    else:
        entries = [entry if e.id == entry.id else e for e in entries]
    write_entries(data_dir, entries)
    console = Console(highlight=False)
    verb = "updated" if existing is not None else "added"
    console.print(f"{verb} A2A agent {entry.id} ({agent.card.name}) at {entry.url}")
    if not agent.profile.skills:
        console.print("  its card lists no skills: subtasks reach it by id or by description")
    for skill in agent.profile.skills:
        line = f"  - {skill.name}"
        if skill.description:
            line += f": {skill.description}"
        console.print(line)


def list_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {id, url, token_file}.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """List the remote A2A agents in your fleet."""
    entries = sorted(read_entries(data_dir), key=lambda e: e.id)
    if as_json:
        print_json([entry.model_dump(mode="json") for entry in entries])
        return
    if not entries:
        Console(highlight=False).print("no A2A agents yet — add one with: fleetmind a2a add URL")
        return
    table = plain_table("id", "url", "token file")
    for entry in entries:
        table.add_row(entry.id, escape(entry.url), escape(entry.token_file or ""))
    print_table(table, table_console(highlight=False))


def remove(
    agent_id: Annotated[str, typer.Argument(help="The id shown by `fleetmind a2a list`.")],
    data_dir: DataDir = None,
) -> None:
    """Forget a remote A2A agent (the token file is left where it is)."""
    entries = read_entries(data_dir)
    kept = [e for e in entries if e.id != agent_id]
    if len(kept) == len(entries):
        raise ConfigError(f"no A2A agent with id {agent_id!r}; see: fleetmind a2a list")
    write_entries(data_dir, kept)
    Console(highlight=False).print(f"removed A2A agent {agent_id}")

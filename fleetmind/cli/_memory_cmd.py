"""`fleetmind memory`: search, count, export, import and forget the fleet's memory.

The memory lives beside the task store in the data directory (``fleetmind.memory.db``);
``fleetmind run --memory`` records into it and gives agents ``ctx.memory``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fleetmind._suggest import did_you_mean
from fleetmind.cli._options import DataDir, home
from fleetmind.cli._tables import plain_table, print_table
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from fleetmind.memory import Layer, MemoryStore

memory_app = typer.Typer(help="The fleet's episodic and semantic memory.")

MEMORY_FILE = "fleetmind.memory.db"


def memory_path(data_dir: Path | None) -> Path:
    """The memory file of the data directory."""
    return home(data_dir) / MEMORY_FILE


def open_memory(data_dir: Path | None, *, must_exist: bool = True) -> MemoryStore:
    """The data directory's memory store (embedding with the orchestrator's model)."""
    from fleetmind.memory import MemoryStore
    from fleetmind.orchestrator import SentenceEmbedder

    path = memory_path(data_dir)
    if must_exist and not path.exists():
        raise ConfigError(
            f"no memory at {path} yet: run tasks with `fleetmind run ... --memory`, "
            "or import some with `fleetmind memory import FILE`"
        )
    return MemoryStore(path, SentenceEmbedder().embed)


MemoryOption = Annotated[
    bool,
    typer.Option(
        "--memory/--no-memory",
        help="Give agents the fleet's memory (ctx.memory) and record the task in it.",
        envvar="FLEETMIND_MEMORY",
    ),
]


@memory_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    layer: Annotated[
        str | None, typer.Option("--layer", help="episodic or semantic (default: both).")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's items.")] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="Only episodes that ended so (done, failed).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the items as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The remembered items most like QUERY: episodes (what happened) and facts (what is known).

    Example: fleetmind memory search "why did the nightly build fail" --layer episodic
    """
    layers: dict[str | None, Layer | None] = {
        None: None,
        "episodic": "episodic",
        "semantic": "semantic",
    }
    if layer not in layers:
        raise ConfigError(f"--layer {layer!r}: choose episodic or semantic")
    store = open_memory(data_dir)
    try:
        found = store.recall(
            query, layer=layers[layer], agent_id=agent, outcome=outcome, limit=limit
        )
        remembered = {item.agent_id for item in store.items() if item.agent_id}
    finally:
        store.close()
    if agent is not None and not found and agent not in remembered:
        raise ConfigError(
            f"--agent {agent!r}: no agent of that name has memories here"
            f"{did_you_mean(agent, remembered)}"
        )
    if as_json:
        rows = [{**r.item.to_json(), "score": r.score, "similarity": r.similarity} for r in found]
        print(json.dumps(rows, indent=2, default=str))
        return
    if not found:
        Console(stderr=True).print("nothing remembered matches")
        return
    table = plain_table("score", "layer", "kind", "when", "agent", "text")
    for r in found:
        item = r.item
        when = datetime.fromtimestamp(item.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            f"{r.score:.3f}",
            item.layer,
            item.kind + (f" ({item.outcome})" if item.outcome else ""),
            when,
            item.agent_id or "",
            escape(item.text if len(item.text) < 200 else item.text[:200] + "…"),
        )
    print_table(table)


@memory_app.command("stats")
def stats(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """How much is remembered, per layer and namespace."""
    store = open_memory(data_dir)
    try:
        figures = store.stats()
    finally:
        store.close()
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    table = plain_table("layer", "namespace", "items")
    for layer, namespaces in sorted(figures["layers"].items()):
        for namespace, count in sorted(namespaces.items()):
            table.add_row(layer, namespace, str(count))
    print_table(table)
    Console().print(
        f"{figures['items']} items, {figures['superseded']} superseded facts kept as history, "
        f"{figures['bytes'] / 1024:.0f} KB in {escape(str(memory_path(data_dir)))}",
        highlight=False,
    )


@memory_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="The JSON lines file to write.")],
    data_dir: DataDir = None,
) -> None:
    """Write every item as JSON lines (``memory import`` reads them back exactly)."""
    store = open_memory(data_dir)
    try:
        count = store.export(out)
    finally:
        store.close()
    Console().print(f"exported {count} items to {escape(str(out))}", highlight=False)


@memory_app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="A file written by `fleetmind memory export`.")],
    data_dir: DataDir = None,
) -> None:
    """Add the items of an export (their ids are kept: importing twice changes nothing)."""
    if not source.is_file():
        raise ConfigError(f"no file {source} to import")
    created = not memory_path(data_dir).exists()
    store = open_memory(data_dir, must_exist=False)
    try:
        count = store.import_(source)
    except ConfigError:
        store.close()
        if created:  # a refused import leaves no empty memory behind
            for suffix in ("", "-wal", "-shm"):
                Path(f"{memory_path(data_dir)}{suffix}").unlink(missing_ok=True)
        raise
    store.close()
    Console().print(f"imported {count} items from {escape(str(source))}", highlight=False)


@memory_app.command("consolidate")
def consolidate(
    everything: Annotated[
        bool, typer.Option("--all", help="Look at every episode, not only the new ones.")
    ] = False,
    min_episodes: Annotated[
        int, typer.Option("--min-episodes", min=2, help="How many alike episodes make a fact.")
    ] = 3,
    data_dir: DataDir = None,
) -> None:
    """Turn what recurs across episodes into facts (runs after every task by itself).

    Example: fleetmind memory consolidate --all
    """
    store = open_memory(data_dir)
    try:
        facts = store.consolidate(min_episodes=min_episodes, full=everything)
    finally:
        store.close()
    for fact in facts:
        Console().print(f"{fact.id}  {escape(fact.text)}", highlight=False, soft_wrap=True)
    Console().print(f"{len(facts)} recurring facts written or restated", highlight=False)


@memory_app.command("forget")
def forget(
    match: Annotated[
        str | None, typer.Option("--match", help="Forget items whose text contains this.")
    ] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Forget items made before this date (YYYY-MM-DD[THH:MM])."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Forget a namespace (agent:<id>, shared).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Delete items for good: from the file and from the index."""
    if match is None and before is None and namespace is None:
        raise ConfigError("say what to forget: --match TEXT, --before DATE or --namespace NS")
    cutoff = None
    if before is not None:
        try:
            moment = datetime.fromisoformat(before)
        except ValueError:
            raise ConfigError(f"--before {before!r} is not a date (YYYY-MM-DD[THH:MM])") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        cutoff = moment.timestamp()
    store = open_memory(data_dir)
    try:
        count = store.forget(match=match, before=cutoff, namespace=namespace)
    finally:
        store.close()
    Console().print(f"forgot {count} items", highlight=False)

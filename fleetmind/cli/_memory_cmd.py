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
from fleetmind.cli._help import command_group, examples
from fleetmind.cli._options import DataDir, home
from fleetmind.cli._tables import plain_table, print_table
from fleetmind.errors import ConfigError

if TYPE_CHECKING:
    from fleetmind.memory import Layer, MemoryStore

memory_app = command_group("Search and manage the fleet's memory.")

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


@memory_app.command(
    "search",
    epilog=examples(
        'fleetmind memory search "why did the nightly build fail" --layer episodic',
        'fleetmind memory search "release checklist" --agent planner --json',
    ),
)
def search(
    query: Annotated[
        str,
        typer.Argument(
            metavar="QUERY", help="What to look for, in plain words.", show_default=False
        ),
    ],
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            metavar="LAYER",
            help="Only this layer: episodic or semantic (default: both).",
            show_default=False,
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", metavar="AGENT", help="Only this agent's items.", show_default=False
        ),
    ] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            metavar="OUTCOME",
            help="Only episodes that ended so: done or failed.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-n", min=1, max=1000, metavar="N", help="How many items, at most."
        ),
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the items as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Find the items most like a query.

    Items are episodes (what happened in a task) and facts (what is known), best match first.
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


@memory_app.command("stats", epilog=examples("fleetmind memory stats --json"))
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Count what is remembered.

    The counts are per layer (episodic, semantic) and namespace.
    """
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


@memory_app.command("export", epilog=examples("fleetmind memory export --out memory.jsonl"))
def export(
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE", help="The JSON lines file to write.")
    ],
    data_dir: DataDir = None,
) -> None:
    """Write every item to a JSON lines file.

    `fleetmind memory import` reads the file back exactly.
    """
    store = open_memory(data_dir)
    try:
        count = store.export(out)
    finally:
        store.close()
    Console().print(f"exported {count} items to {escape(str(out))}", highlight=False)


@memory_app.command(
    "import", epilog=examples("fleetmind memory import memory.jsonl --data-dir ~/other-fleet")
)
def import_(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="A file written by `fleetmind memory export`.", show_default=False
        ),
    ],
    data_dir: DataDir = None,
) -> None:
    """Add the items of an export file.

    Their ids are kept: importing the same file twice changes nothing.
    """
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


@memory_app.command("consolidate", epilog=examples("fleetmind memory consolidate --all"))
def consolidate(
    everything: Annotated[
        bool, typer.Option("--all", help="Look at every episode, not only the new ones.")
    ] = False,
    min_episodes: Annotated[
        int,
        typer.Option(
            "--min-episodes", min=2, metavar="N", help="How many alike episodes make a fact."
        ),
    ] = 3,
    data_dir: DataDir = None,
) -> None:
    """Turn recurring episodes into facts.

    This also runs by itself after every task that records into the memory.
    """
    store = open_memory(data_dir)
    try:
        facts = store.consolidate(min_episodes=min_episodes, full=everything)
    finally:
        store.close()
    for fact in facts:
        Console().print(f"{fact.id}  {escape(fact.text)}", highlight=False, soft_wrap=True)
    Console().print(f"{len(facts)} recurring facts written or restated", highlight=False)


@memory_app.command(
    "forget",
    epilog=examples(
        "fleetmind memory forget --before 2025-01-01",
        'fleetmind memory forget --match "old api key"',
    ),
)
def forget(
    match: Annotated[
        str | None,
        typer.Option(
            "--match",
            metavar="TEXT",
            help="Forget the items whose text contains this.",
            show_default=False,
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="YYYY-MM-DD",
            help="Forget the items made before this date (a time may follow: THH:MM).",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            metavar="NAMESPACE",
            help="Forget a whole namespace: agent:<id> or shared.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Delete items for good.

    They go from the memory file and from its index.
    """
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

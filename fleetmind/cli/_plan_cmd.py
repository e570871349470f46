"""Plain words in: `fleetmind plan "..."` shows (and saves) a plan, and `fleetmind run "..."`
plans, shows and runs one. The planner is the fleet module's own, or one made from the
model configuration (``--models``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from fleetmind.cli._help import examples
from fleetmind.cli._llm_cmd import load_models
from fleetmind.cli._options import DataDir, FleetRef, ModelsFile
from fleetmind.cli._tables import fit_table, plain_table, table_console
from fleetmind.errors import ConfigError, ModelNotConfigured

if TYPE_CHECKING:
    from fleetmind.cli._target import LoadedFleet
    from fleetmind.orchestrator import Fleet, Plan, Planner

_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".py")


def is_request(target: str) -> bool:
    """Whether `fleetmind run TARGET` was given plain words rather than a file."""
    path = Path(target)
    if path.exists() or path.suffix.lower() in _FILE_SUFFIXES:
        return False
    return bool(target.strip())


def planner_for(loaded: LoadedFleet, models_file: Path | None, data_dir: Path | None) -> Planner:
    """The fleet module's planner, or one on the configured planning model.

    Raises:
        ModelNotConfigured: no model is configured (the message says how to configure one).
    """
    if loaded.planner is not None:
        return loaded.planner
    from fleetmind.agents import OpenAICompatibleClient
    from fleetmind.orchestrator import Planner

    config = load_models(models_file, data_dir)
    return Planner(OpenAICompatibleClient(config.endpoint(config.planner_tier())))


def optional_planner(
    loaded: LoadedFleet, models_file: Path | None, data_dir: Path | None
) -> Planner | None:
    """A planner when one can be had (the fleet's, or a configured model's), else None:
    servers that take plain words plan them when they can, and route them as one subtask
    otherwise."""
    try:
        return planner_for(loaded, models_file, data_dir)
    except ModelNotConfigured:
        return None


def fleet_source(fleet_ref: str) -> str:
    """The fleet reference as stored with a task (a file made absolute, so resume finds it)."""
    path = Path(fleet_ref.rpartition(":")[0] or fleet_ref)
    if fleet_ref.endswith(".py") and path.exists():
        return str(path.resolve())
    return fleet_ref


def make_plan(fleet: Fleet, request: str) -> Plan:
    """Plan ``request`` on ``fleet``, with a status line while the model thinks."""
    assert fleet.planner is not None
    model = fleet.planner.model

    async def plan() -> Plan:
        try:
            return await fleet.plan(request)
        finally:
            await model.release_connections()  # the run that follows has its own event loop

    label = f"planning with the {model.name} model" + (
        f" ({model.model_name})" if model.model_name else ""
    )
    from fleetmind.cli._drive import run_interruptible
    from fleetmind.cli._wait import waiting

    with waiting(label):
        return run_interruptible(plan(), on_interrupt=lambda: "interrupted while planning")


def show_plan(plan: Plan, console: Console) -> None:
    """The plan as a table: subtasks, who takes them, what they get, and what it cost."""
    table = plain_table("subtask", "agent / skill", "description", "inputs", "after")
    for entry in plan.entries:
        who = entry.get("agent") or (
            f"skill: {entry['skill']}" if entry.get("skill") else "(router)"
        )
        inputs = ", ".join(f"{k}={_short(v)}" for k, v in (entry.get("inputs") or {}).items())
        table.add_row(
            escape(entry["id"]),
            escape(who),
            escape(entry["description"]),
            escape(inputs),
            escape(", ".join(entry.get("depends_on") or ())),
        )
    console.print(fit_table(table, console))
    cost = f", cost {plan.cost:.4g}" if plan.cost else ""
    console.print(
        f"planned by {plan.model or 'the model'} in {plan.rounds} round"
        f"{'s' * (plan.rounds != 1)} ({plan.tokens} tokens{cost})",
        style="dim",
        highlight=False,
    )


def write_plan(plan: Plan, out: Path, fleet_ref: str) -> None:
    """Save the plan as a task file that `fleetmind run` runs without a model."""
    import yaml

    ref = fleet_source(fleet_ref)
    if os.path.isabs(ref):
        ref = os.path.relpath(ref, out.resolve().parent)
    try:
        out.write_text(
            yaml.safe_dump(plan.task_file(ref), sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(f"cannot write the plan to {out}: {exc.strerror}") from None


PLAN_EXAMPLES = examples(
    'fleetmind plan "audit this repo" --fleet examples/repo_audit.py',
    'fleetmind plan "audit this repo" --fleet examples/repo_audit.py -o plan.yaml',
)


def plan(
    request: Annotated[
        str,
        typer.Argument(
            metavar="REQUEST", help="What you want done, in plain words.", show_default=False
        ),
    ],
    fleet: FleetRef,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Save the plan as a task file (YAML) to run later.",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", metavar="FORMAT", help="How to show it: table, yaml, json or mermaid."
        ),
    ] = "table",
    models_file: ModelsFile = None,
    data_dir: DataDir = None,
) -> None:
    """Plan a request without running it.

    The request is planned on --fleet's agents and the plan is shown. The fleet module's own
    planner plans it, or else the configured planning model (see
    `fleetmind llm check`). Save the plan with --out to run it later with `fleetmind run`.
    """
    import yaml

    from fleetmind.cli._build import build_fleet
    from fleetmind.cli._target import load_fleet
    from fleetmind.orchestrator import to_mermaid

    if format not in ("table", "yaml", "json", "mermaid"):
        raise ConfigError(f"unknown format {format!r}; use table, yaml, json or mermaid")
    loaded = load_fleet(fleet)
    planner = planner_for(loaded, models_file, data_dir)
    the_fleet = build_fleet(loaded.agents, loaded.router, data_dir, None, loaded.tools, planner)
    the_plan = make_plan(the_fleet, request)
    if format == "json":
        print(json.dumps(_plan_dict(the_plan), indent=2, default=str))
    elif format == "yaml":
        sys.stdout.write(yaml.safe_dump(the_plan.task_file(fleet_source(fleet)), sort_keys=False))
    elif format == "mermaid":
        sys.stdout.write(to_mermaid(the_plan.graph))
    else:
        show_plan(the_plan, table_console())
    if out is not None:
        write_plan(the_plan, out, fleet)
        Console(stderr=True).print(
            f"saved to {out} — run it with: fleetmind run {out}", highlight=False
        )


def _plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "request": plan.request,
        "name": plan.graph.name,
        "model": plan.model,
        "rounds": plan.rounds,
        "tokens": plan.tokens,
        "cost": plan.cost,
        "subtasks": plan.entries,
    }


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."

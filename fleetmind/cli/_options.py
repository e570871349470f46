"""The options that several `fleetmind` commands take, each defined once, and the data directory.

One alias per option keeps its flag, its metavar and its help text the same wherever it appears.
Only light types (``str``, ``Path``, ``float``, ``bool``) appear here: typer reads these
annotations when the command line is built, before any command runs, and ``fleetmind --help``
must not load the SDK to show them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fleetmind.errors import ConfigError

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FLEETMIND_HOME",
        metavar="DIR",
        help="Where fleetmind keeps its tasks, memory and caches (default: ~/.fleetmind).",
        show_default=False,
    ),
]

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="FLEETMIND_STORE",
        metavar="URL",
        help="Where tasks are kept: postgresql://USER@HOST/DB (one store that orchestrator "
        "replicas share), or a SQLite file (default: fleetmind.db in the data directory).",
        show_default=False,
    ),
]

_FLEET_HELP = "Where the agents are: FILE.py, or module[:attr] (a Fleet or a list of agents)."

FleetRef = Annotated[str, typer.Option("--fleet", metavar="FLEET", help=_FLEET_HELP)]
"""``--fleet``, required: the commands that only make sense on a fleet's agents."""

OptionalFleetRef = Annotated[
    str | None, typer.Option("--fleet", metavar="FLEET", help=_FLEET_HELP, show_default=False)
]
"""``--fleet`` where the task file or the broker may bring the agents instead."""

_BROKER_HELP = "The fleet's MQTT broker: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS."

BrokerUrl = Annotated[str, typer.Option("--broker", metavar="URL", help=_BROKER_HELP)]
"""``--broker``, required: the commands that only work through the broker."""

OptionalBrokerUrl = Annotated[
    str | None,
    typer.Option(
        "--broker",
        metavar="URL",
        help=_BROKER_HELP + " Its devices' agents join the fleet.",
        show_default=False,
    ),
]
"""``--broker`` for commands that also run without one (``run``, ``resume``)."""

Username = Annotated[
    str | None,
    typer.Option("--username", metavar="USER", help="The MQTT user name.", show_default=False),
]
PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        metavar="FILE",
        help="A file holding the MQTT password (or set FLEETMIND_MQTT_PASSWORD).",
        show_default=False,
    ),
]
FleetName = Annotated[
    str,
    typer.Option(
        "--fleet-name", metavar="NAME", help="The fleet's name on the broker (its topics' root)."
    ),
]

ModelsFile = Annotated[
    Path | None,
    typer.Option(
        "--models",
        metavar="FILE",
        help="The model endpoints file (default: models.yaml in the data directory; "
        "FLEETMIND_MODELS and FLEETMIND_<TIER>_* variables also work).",
        show_default=False,
    ),
]

MemoryOption = Annotated[
    bool,
    typer.Option(
        "--memory/--no-memory",
        envvar="FLEETMIND_MEMORY",
        help="Give agents the fleet's memory (ctx.memory) and record the task in it.",
    ),
]

StepRouterOption = Annotated[
    str | None,
    typer.Option(
        "--step-router",
        metavar="ROUTER",
        help="How LLM agents pick the model for each step: device, cloud, cascade, or a "
        "router file (from fleetmind router train).",
        show_default=False,
    ),
]
CloudBudgetOption = Annotated[
    float | None,
    typer.Option(
        "--cloud-budget",
        metavar="0..1",
        help="The share of each subtask's steps that may run on the cloud model.",
        show_default=False,
    ),
]

Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="Set a task parameter; the value is read as YAML (repeatable).",
        show_default=False,
    ),
]
Live = Annotated[
    bool | None,
    typer.Option(
        "--live/--no-live",
        help="Redraw a live table of the subtasks (default: when on a terminal).",
        show_default=False,
    ),
]
TaskIdArg = Annotated[
    str,
    typer.Argument(
        metavar="TASK_ID", help="The task's id (a unique prefix will do).", show_default=False
    ),
]


def home(data_dir: Path | None) -> Path:
    """The data directory: ``--data-dir``, ``FLEETMIND_HOME``, or ``~/.fleetmind``."""
    base = data_dir or Path(os.path.expanduser("~/.fleetmind"))
    if base.exists() and not base.is_dir():
        raise ConfigError(f"data directory {base} is a file, not a directory")
    return base

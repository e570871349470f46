"""What `fleetmind run` was pointed at: a task file or a Python module, turned into a fleet."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

import yaml

from fleetmind._imports import load_attr, load_module
from fleetmind.agents import Agent
from fleetmind.errors import ConfigError
from fleetmind.tools import ToolRegistry

if TYPE_CHECKING:
    from fleetmind.orchestrator import Fleet, Planner, Router, TaskGraph


@dataclass
class RunTarget:
    """A graph ready to run, the agents for it, and how to find them again on resume."""

    graph: TaskGraph
    agents: list[Agent]
    router: Router | None
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tools: ToolRegistry | None = None


def parse_params(items: Iterable[str], option: str = "--param") -> dict[str, Any]:
    """``key=value`` pairs from the command line (``option`` names them in an error); values
    are read as YAML (``1`` is a number, ``[a]`` a list)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects key=value, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            params[key.strip()] = value
    return params


def load_target(
    target: str,
    params: Mapping[str, Any],
    fleet_ref: str | None = None,
    *,
    remote_agents: bool = False,
) -> RunTarget:
    """Load a task file (YAML/JSON) or a Python module that defines ``fleet`` and ``task``."""
    path = Path(target)
    if not path.exists():
        raise ConfigError(f"file not found: {target}")
    if path.suffix == ".py":
        return _load_python(path, params, fleet_ref)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"{target}: expected a .yaml, .yml, .json or .py file")
    from fleetmind.orchestrator import read_task_file

    task = read_task_file(path, params)
    ref = fleet_ref or task.fleet_ref
    if ref is None and remote_agents:
        # Every agent is on a device, reached through the broker.
        return RunTarget(
            graph=task.graph,
            agents=[],
            router=None,
            source=str(task.path),
            metadata={"params": dict(task.params), "fleet": None},
        )
    if ref is None:
        raise ConfigError(f"{target}: no fleet given; add `fleet: FILE.py` or pass --fleet")
    base = None if fleet_ref else path.resolve().parent
    loaded = _agents_from(load_attr(ref, relative_to=base), ref)
    fleet_source = ref if fleet_ref or ":" in ref else str((path.parent / ref).resolve())
    return RunTarget(
        graph=task.graph,
        agents=loaded.agents,
        router=loaded.router,
        source=str(task.path),
        metadata={"params": dict(task.params), "fleet": fleet_source},
        tools=loaded.tools,
    )


def _load_python(path: Path, params: Mapping[str, Any], fleet_ref: str | None) -> RunTarget:
    from fleetmind.orchestrator import TaskGraph

    module = load_module(path)
    task = getattr(module, "task", None)
    if callable(task) and not isinstance(task, TaskGraph):
        try:
            inspect.signature(task).bind(**params)
        except TypeError as exc:
            raise ConfigError(f"{path}: task() cannot take these --param values: {exc}") from None
        task = task(**params)
    elif params:
        raise ConfigError(f"{path}: --param needs `task` to be a function taking parameters")
    if not isinstance(task, TaskGraph):
        raise ConfigError(f"{path} must define `task`: a TaskGraph, or a function returning one")
    source = load_attr(fleet_ref) if fleet_ref else module
    loaded = _agents_from(source, fleet_ref or str(path))
    return RunTarget(
        graph=task,
        agents=loaded.agents,
        router=loaded.router,
        source=str(path.resolve()),
        metadata={"params": dict(params), "fleet": fleet_ref},
        tools=loaded.tools,
    )


class LoadedFleet(NamedTuple):
    """What a fleet reference names: its agents, and its router and tools when it is a Fleet."""

    agents: list[Agent]
    router: Router | None = None
    tools: ToolRegistry | None = None
    """The Fleet's tools (with its MCP servers), handed on to the fleet the CLI builds."""
    planner: Planner | None = None
    """The Fleet's own planner, if it defined one (else the CLI makes one from --models)."""


def _agents_from(obj: Any, ref: str) -> LoadedFleet:
    """Agents (and a router) from a Fleet, a list of agents, or a module that defines them."""
    if _is_fleet(obj):
        return LoadedFleet(obj.agents, obj.router, obj.tools, obj.planner)
    if isinstance(obj, list | tuple) and all(isinstance(a, Agent) for a in obj):
        return LoadedFleet(list(obj))
    fleet = getattr(obj, "fleet", None)
    if _is_fleet(fleet):
        return LoadedFleet(fleet.agents, fleet.router, fleet.tools, fleet.planner)
    agents = getattr(obj, "agents", None)
    if isinstance(agents, list | tuple) and agents and all(isinstance(a, Agent) for a in agents):
        return LoadedFleet(list(agents))
    if isinstance(obj, ModuleType):
        # A module of @agent functions: every agent defined at its top level.
        found = [v for v in vars(obj).values() if isinstance(v, Agent)]
        if found:
            return LoadedFleet(found)
    raise ConfigError(f"{ref} defines no agents (a `fleet`, an `agents` list, or @agent functions)")


def _is_fleet(obj: object) -> TypeGuard[Fleet]:
    """Whether ``obj`` is a Fleet. Nothing is one unless the user's code loaded the orchestrator,
    so a device's agents file (`fleetmind agent serve`) is read without importing it."""
    module = sys.modules.get("fleetmind.orchestrator._fleet")
    return module is not None and isinstance(obj, module.Fleet)


def load_fleet(ref: str) -> LoadedFleet:
    """The agents (and router) that ``--fleet FILE.py`` or ``module[:attr]`` names."""
    if not Path(ref.rpartition(":")[0] or ref).exists() and ref.endswith(".py"):
        raise ConfigError(f"fleet file not found: {ref}")
    return _agents_from(load_attr(ref), ref)


def reload_target(
    source: str, metadata: Mapping[str, Any], *, remote_agents: bool = False
) -> LoadedFleet:
    """The agents of a stored task, loaded again from where the task came from."""
    params = dict(metadata.get("params") or {})
    fleet_ref = metadata.get("fleet")
    if source.endswith(".py"):
        if fleet_ref:
            return _agents_from(load_attr(fleet_ref), fleet_ref)
        return _agents_from(load_module(source), source)
    if not fleet_ref:
        target = load_target(source, params, remote_agents=remote_agents)
        return LoadedFleet(target.agents, target.router, target.tools)
    return _agents_from(load_attr(str(fleet_ref)), str(fleet_ref))

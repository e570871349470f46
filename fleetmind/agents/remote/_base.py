"""What every remote agent is, and the two seams between remote agents and the orchestrator.

A :class:`RemoteAgent` runs somewhere else — on a device reached over MQTT
(:class:`~fleetmind.agents.remote.DeviceAgent`) or behind an A2A endpoint
(:class:`~fleetmind.agents.remote.A2AAgent`) — and the engine and the router treat it like a
local agent. A link that brings remote agents and takes them away works on an
:class:`AgentPool` (a Fleet is one), so this room never needs the orchestrator.

A device may finish a subtask while the orchestrator that dispatched it is dead; the broker
keeps the answer in the orchestrator's session and hands it over when the orchestrator comes
back. A :class:`ResultSource` holds such answers (for dispatches the task's log shows were
made: same subtask, same agent, an attempt the log allows) and gives them to the engine, which
uses them instead of running the subtask again — whichever agent the router would choose now.

An orchestrator replica that stops driving a task which goes on at another replica cancels its
runners with :data:`HANDED_OVER`: a remote attempt cancelled so is left running where it runs
(nobody is told to stop it), for the next owner's dispatch to join.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from fleetmind.agents import Agent, SubtaskResult
from fleetmind.errors import FleetmindError


class RemoteAgent(Agent, abc.ABC):
    """An agent that runs elsewhere and is reached over a protocol.

    Subclasses say where it runs (:attr:`location`) and release what reaching it holds in
    :meth:`aclose` (a connection, an HTTP client); the rest is the :class:`Agent` interface.
    """

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the agent runs, for people: a device id, a URL."""

    async def aclose(self) -> None:
        """Release what reaching the agent holds; safe to call more than once."""


class AgentPool(Protocol):
    """Where remote agents join and leave: the fleet, or a plain listing of what is out there."""

    def add(self, agent: Agent) -> None:
        """Add an agent (replacing one with the same id)."""
        ...

    def remove(self, agent_id: str) -> Agent:
        """Remove an agent by id and return it."""
        ...

    def agent(self, agent_id: str) -> Agent | None:
        """The agent with this id, if it is in the pool."""
        ...


class AgentDict(dict[str, Agent]):
    """The simplest :class:`AgentPool`: agents by id (``fleetmind devices`` lists one)."""

    def add(self, agent: Agent) -> None:
        self[agent.id] = agent

    def remove(self, agent_id: str) -> Agent:
        return self.pop(agent_id)

    def agent(self, agent_id: str) -> Agent | None:
        return self.get(agent_id)


Recovered = tuple[SubtaskResult | FleetmindError, Callable[[], None]]
"""An attempt's outcome, and what to call once the engine has saved it (the acknowledgement)."""


@runtime_checkable
class ResultSource(Protocol):
    """Keeps answers to attempts made before a crash."""

    def recovered(
        self, task_id: str, subtask_id: str, agent_id: str, epochs: range
    ) -> Recovered | None:
        """The outcome of one of these attempts of the subtask on that agent, if one came."""
        ...


HANDED_OVER = "handed over to another replica"
"""The message an attempt is cancelled with when its task goes on at another orchestrator
replica (this one closes, or lost its lease): a remote agent forgets the attempt without
cancelling it, so that the device's run goes on for the next owner instead of running twice."""


def handed_over(exc: BaseException) -> bool:
    """Whether ``exc`` cancels an attempt because its task was handed over (see
    :data:`HANDED_OVER`), not because the attempt is no longer wanted."""
    return isinstance(exc, asyncio.CancelledError) and HANDED_OVER in exc.args

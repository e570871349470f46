"""The fleet's agents, and how many subtasks each may take on at once.

Concurrency limits belong to agents, not to tasks: two tasks running on one fleet share every
agent's slots. When an agent is full, engines queue for it here; a freed slot is offered to the
first engine still waiting, in order.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from fleetmind.agents import Agent, AgentProfile
from fleetmind.errors import AgentError
from fleetmind.orchestrator._constraints import ProfileIndex


class SlotWaiter(Protocol):
    """An engine waiting for a slot on an agent."""

    def wants_slot(self, subtask_id: str, agent_id: str) -> bool:
        """Whether the subtask still waits and may go to that agent."""
        ...

    def offer_slot(self, subtask_id: str, agent_id: str) -> None:
        """A slot on the agent is now held for the subtask."""
        ...

    def agent_gone(self, subtask_id: str, agent_id: str) -> None:
        """The agent the subtask was waiting for left the fleet."""
        ...


class _Slots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.waiters: deque[tuple[SlotWaiter, str]] = deque()


class AgentDirectory:
    """The agents of a fleet, their profiles, and their free slots."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}
        self._slots: dict[str, _Slots] = {}
        self._profiles = ProfileIndex()
        self._join_listeners: list[Callable[[], None]] = []

    def on_join(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever an agent joins (engines waiting for agents listen)."""
        self._join_listeners.append(listener)

    def off_join(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with contextlib.suppress(ValueError):
            self._join_listeners.remove(listener)

    def add(self, agent: Agent) -> None:
        """Add an agent, or replace the one with the same id (a new version)."""
        if not isinstance(agent, Agent):
            raise AgentError(f"{agent!r} is not an Agent; use @agent or subclass Agent")
        previous = self._profiles.get(agent.id)
        if (
            previous is not None
            and agent.profile.version <= previous.version
            and agent.profile.model_dump(exclude={"version"})
            != previous.model_dump(exclude={"version"})
        ):
            # A changed profile is a new version, whether or not its author said so.
            agent.profile = agent.profile.model_copy(update={"version": previous.version + 1})
        limit = agent.profile.limits.max_concurrency
        slots = self._slots.get(agent.id)
        if slots is None:
            self._slots[agent.id] = _Slots(limit)
        else:
            slots.limit = limit
            self._serve_waiters(agent.id)
        self._agents[agent.id] = agent
        self._profiles[agent.id] = agent.profile
        for listener in list(self._join_listeners):
            listener()

    def remove(self, agent_id: str) -> Agent:
        """Remove an agent; subtasks queued for it are routed again."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            raise AgentError(f"no agent {agent_id!r} in the fleet")
        del self._profiles[agent_id]
        slots = self._slots[agent_id]
        waiters, slots.waiters = list(slots.waiters), deque()
        for waiter, subtask_id in waiters:
            waiter.agent_gone(subtask_id, agent_id)
        return agent

    def get(self, agent_id: str) -> Agent | None:
        """The agent with this id, if it is in the fleet."""
        return self._agents.get(agent_id)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def __iter__(self) -> Iterator[Agent]:
        return iter(list(self._agents.values()))

    def __len__(self) -> int:
        return len(self._agents)

    @property
    def profiles(self) -> Mapping[str, AgentProfile]:
        """Every agent's profile by id (kept up to date as agents join and leave)."""
        return self._profiles

    def try_take(self, agent_id: str) -> bool:
        """Take a slot on an agent if one is free."""
        slots = self._slots.get(agent_id)
        if slots is None or agent_id not in self._agents or slots.in_use >= slots.limit:
            return False
        slots.in_use += 1
        return True

    def wait(self, agent_id: str, waiter: SlotWaiter, subtask_id: str) -> None:
        """Queue for a slot on an agent; it is offered through ``waiter.offer_slot``."""
        self._slots[agent_id].waiters.append((waiter, subtask_id))

    def release(self, agent_id: str) -> None:
        """Give a slot back; it goes to the first waiter that still wants it."""
        slots = self._slots[agent_id]
        slots.in_use -= 1
        self._serve_waiters(agent_id)

    def _serve_waiters(self, agent_id: str) -> None:
        slots = self._slots[agent_id]
        while slots.waiters and slots.in_use < slots.limit and agent_id in self._agents:
            waiter, subtask_id = slots.waiters.popleft()
            if waiter.wants_slot(subtask_id, agent_id):
                slots.in_use += 1
                waiter.offer_slot(subtask_id, agent_id)

    def load(self, agent_id: str) -> tuple[int, int]:
        """Slots in use and the limit, for one agent."""
        slots = self._slots[agent_id]
        return slots.in_use, slots.limit

"""An agent on a device, reached over MQTT: what a device's card becomes in a fleet."""

from __future__ import annotations

from typing import Any

from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile, SubtaskContext
from fleetmind.agents.remote._base import RemoteAgent
from fleetmind.agents.remote._dispatches import Dispatches


class DeviceAgent(RemoteAgent):
    """An agent on a device, with the same interface as a local one.

    Its id is ``name@device``, so the same agent on two devices is two candidates. Each run is
    one dispatch on the link that saw the device's card (see :class:`DeviceLink`).

    Args:
        profile: The agent's card, with its fleet id and its device.
        dispatches: The dispatches of the link the device is reached through.
        device: The device's id.
    """

    def __init__(self, profile: AgentProfile, dispatches: Dispatches, device: str) -> None:
        super().__init__(profile)
        self.device = device
        self._dispatches = dispatches

    @property
    def location(self) -> str:
        """The device the agent runs on."""
        return self.device

    async def run(self, subtask: Subtask, ctx: SubtaskContext) -> Any:
        return await self._dispatches.dispatch(self.device, self.id, subtask, ctx)

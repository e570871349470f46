"""Every kind of remote agent, behind one interface: agents that run elsewhere and are reached
over a protocol, which the engine and the router treat like local ones.

- :class:`DeviceAgent`: an agent on a device, reached over MQTT. A :class:`DeviceLink` keeps an
  :class:`AgentPool` (a Fleet) in step with the devices' cards, presence and heartbeats, and
  its :class:`Dispatches` get each attempt answered exactly once. :class:`DeviceRuntime` is
  the device's end: it serves local agents to a fleet, with :class:`DeviceMemory` as their
  ``ctx.memory``.
- :class:`A2AAgent`: any A2A agent, from its Agent Card (:func:`connect_a2a_agent`);
  :func:`agent_card` and :func:`profile_from_card` map profiles and cards both ways.

Names load on first use: a device imports the MQTT side without the A2A client, and the
orchestrator imports :class:`ResultSource` without either.
"""

from typing import TYPE_CHECKING

from fleetmind import _lazy
from fleetmind._extras import require

if TYPE_CHECKING:
    from fleetmind.agents.remote._a2a_agent import A2AAgent, connect_a2a_agent
    from fleetmind.agents.remote._a2a_card import (
        INPUT_MODES,
        agent_card,
        profile_from_card,
        slug,
    )
    from fleetmind.agents.remote._a2a_parts import (
        message_from_a2a,
        parts_from_a2a,
        parts_to_a2a,
        reply_from_a2a,
    )
    from fleetmind.agents.remote._base import (
        HANDED_OVER,
        AgentDict,
        AgentPool,
        Recovered,
        RemoteAgent,
        ResultSource,
        handed_over,
    )
    from fleetmind.agents.remote._device_agent import DeviceAgent
    from fleetmind.agents.remote._device_link import (
        DeviceLink,
        DeviceState,
        LinkState,
        MemoryResponder,
        TaskIntake,
    )
    from fleetmind.agents.remote._device_memory import (
        DeviceMemory,
        DeviceMemoryChannel,
        MemoryRefused,
        MemoryUnavailable,
    )
    from fleetmind.agents.remote._device_runtime import DeviceRuntime
    from fleetmind.agents.remote._dispatches import Dispatches, DispatchLimits, dispatch_id

_EXPORTS = {
    "A2AAgent": "fleetmind.agents.remote._a2a_agent",
    "connect_a2a_agent": "fleetmind.agents.remote._a2a_agent",
    "INPUT_MODES": "fleetmind.agents.remote._a2a_card",
    "agent_card": "fleetmind.agents.remote._a2a_card",
    "profile_from_card": "fleetmind.agents.remote._a2a_card",
    "slug": "fleetmind.agents.remote._a2a_card",
    "message_from_a2a": "fleetmind.agents.remote._a2a_parts",
    "parts_from_a2a": "fleetmind.agents.remote._a2a_parts",
    "parts_to_a2a": "fleetmind.agents.remote._a2a_parts",
    "reply_from_a2a": "fleetmind.agents.remote._a2a_parts",
    "HANDED_OVER": "fleetmind.agents.remote._base",
    "handed_over": "fleetmind.agents.remote._base",
    "AgentDict": "fleetmind.agents.remote._base",
    "AgentPool": "fleetmind.agents.remote._base",
    "Recovered": "fleetmind.agents.remote._base",
    "RemoteAgent": "fleetmind.agents.remote._base",
    "ResultSource": "fleetmind.agents.remote._base",
    "DeviceAgent": "fleetmind.agents.remote._device_agent",
    "DeviceLink": "fleetmind.agents.remote._device_link",
    "DeviceState": "fleetmind.agents.remote._device_link",
    "LinkState": "fleetmind.agents.remote._device_link",
    "MemoryResponder": "fleetmind.agents.remote._device_link",
    "TaskIntake": "fleetmind.agents.remote._device_link",
    "DeviceMemory": "fleetmind.agents.remote._device_memory",
    "DeviceMemoryChannel": "fleetmind.agents.remote._device_memory",
    "MemoryRefused": "fleetmind.agents.remote._device_memory",
    "MemoryUnavailable": "fleetmind.agents.remote._device_memory",
    "DeviceRuntime": "fleetmind.agents.remote._device_runtime",
    "DispatchLimits": "fleetmind.agents.remote._dispatches",
    "Dispatches": "fleetmind.agents.remote._dispatches",
    "dispatch_id": "fleetmind.agents.remote._dispatches",
}


def __getattr__(name: str) -> object:
    if _EXPORTS.get(name, "").startswith("fleetmind.agents.remote._a2a"):
        require("a2a", "a2a", "talking to A2A agents")
    return _lazy.load(__name__, _EXPORTS, name)


__all__ = [
    "HANDED_OVER",
    "INPUT_MODES",
    "A2AAgent",
    "AgentDict",
    "AgentPool",
    "DeviceAgent",
    "DeviceLink",
    "DeviceMemory",
    "DeviceMemoryChannel",
    "DeviceRuntime",
    "DeviceState",
    "DispatchLimits",
    "Dispatches",
    "LinkState",
    "MemoryRefused",
    "MemoryResponder",
    "MemoryUnavailable",
    "Recovered",
    "RemoteAgent",
    "ResultSource",
    "TaskIntake",
    "agent_card",
    "connect_a2a_agent",
    "dispatch_id",
    "handed_over",
    "message_from_a2a",
    "parts_from_a2a",
    "parts_to_a2a",
    "profile_from_card",
    "reply_from_a2a",
    "slug",
]

"""The fleet exposed over a protocol: a room above the orchestrator, as the command line is.

- :class:`MqttFleetLink`: a fleet on an MQTT broker — devices' agents join it, their memory
  requests are answered (:class:`DeviceMemoryService`), and orchestrator replicas take tasks
  submitted over the broker (:class:`FleetIntake`, :func:`submit_via_broker`).
- :func:`serve_mcp` / :func:`build_mcp_server`: the fleet as an MCP server.
- :func:`serve_a2a` / :func:`build_a2a_app`: the fleet as an A2A agent.

Names load on first use: the MCP and A2A servers bring ``mcp``, ``a2a`` and ``uvicorn``.
"""

from typing import TYPE_CHECKING

from fleetmind import _lazy
from fleetmind._extras import require

if TYPE_CHECKING:
    from fleetmind.serve._a2a_server import A2AEndpoints, build_a2a_app, serve_a2a
    from fleetmind.serve._device_memory_service import (
        DeviceMemoryService,
        MemoryAccessDenied,
        SharedAccess,
    )
    from fleetmind.serve._fleet_link import MqttFleetLink
    from fleetmind.serve._intake import FleetIntake
    from fleetmind.serve._mcp_server import build_mcp_server, serve_mcp
    from fleetmind.serve._submit import SubmittedTaskResult, submit_via_broker

_EXPORTS = {
    "A2AEndpoints": "fleetmind.serve._a2a_server",
    "build_a2a_app": "fleetmind.serve._a2a_server",
    "serve_a2a": "fleetmind.serve._a2a_server",
    "DeviceMemoryService": "fleetmind.serve._device_memory_service",
    "MemoryAccessDenied": "fleetmind.serve._device_memory_service",
    "SharedAccess": "fleetmind.serve._device_memory_service",
    "MqttFleetLink": "fleetmind.serve._fleet_link",
    "FleetIntake": "fleetmind.serve._intake",
    "build_mcp_server": "fleetmind.serve._mcp_server",
    "serve_mcp": "fleetmind.serve._mcp_server",
    "SubmittedTaskResult": "fleetmind.serve._submit",
    "submit_via_broker": "fleetmind.serve._submit",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module == "fleetmind.serve._mcp_server":
        require("mcp", "mcp", "serving the fleet over MCP")
    elif module == "fleetmind.serve._a2a_server":
        require("a2a", "a2a", "serving the fleet over A2A")
    return _lazy.load(__name__, _EXPORTS, name)


__all__ = [
    "A2AEndpoints",
    "DeviceMemoryService",
    "FleetIntake",
    "MemoryAccessDenied",
    "MqttFleetLink",
    "SharedAccess",
    "SubmittedTaskResult",
    "build_a2a_app",
    "build_mcp_server",
    "serve_a2a",
    "serve_mcp",
    "submit_via_broker",
]

"""The fleet exposed over a protocol: a room above the orchestrator, as the command line is.

- :class:`MqttFleetLink`: a fleet on an MQTT broker — devices' agents join it, their memory
  requests are answered (:class:`DeviceMemoryService`), and orchestrator replicas take tasks
  submitted over the broker (:class:`FleetIntake`, :func:`submit_via_broker`).
- :func:`serve_mcp` / :func:`build_mcp_server`: the fleet as an MCP server.
- :func:`serve_a2a` / :func:`build_a2a_app`: the fleet as an A2A agent.
- :func:`serve_console` / :func:`build_console_app`: the fleet console, a live web page of
  tasks, graphs and devices, fed by a :class:`ConsoleSource` (a store read-only), a
  :class:`FleetSource` (a fleet run here) or a :class:`BrokerSource` (a fleet's broker).

Names load on first use: the MCP, A2A and console servers bring ``mcp``, ``a2a``,
``starlette`` and ``uvicorn``.
"""

from typing import TYPE_CHECKING

from fleetmind import _lazy
from fleetmind._extras import require

if TYPE_CHECKING:
    from fleetmind.serve._a2a_server import A2AEndpoints, build_a2a_app, serve_a2a
    from fleetmind.serve._console_app import build_console_app, serve_console
    from fleetmind.serve._console_auth import ConsoleAuth
    from fleetmind.serve._console_broker import BrokerSource
    from fleetmind.serve._console_sources import ConsoleSource, FleetSource
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
    "build_console_app": "fleetmind.serve._console_app",
    "serve_console": "fleetmind.serve._console_app",
    "ConsoleAuth": "fleetmind.serve._console_auth",
    "BrokerSource": "fleetmind.serve._console_broker",
    "ConsoleSource": "fleetmind.serve._console_sources",
    "FleetSource": "fleetmind.serve._console_sources",
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
    elif module is not None and module.startswith("fleetmind.serve._console"):
        require("starlette", "console", "the fleet console")
        require("uvicorn", "console", "the fleet console")
    return _lazy.load(__name__, _EXPORTS, name)


__all__ = [
    "A2AEndpoints",
    "BrokerSource",
    "ConsoleAuth",
    "ConsoleSource",
    "DeviceMemoryService",
    "FleetIntake",
    "FleetSource",
    "MemoryAccessDenied",
    "MqttFleetLink",
    "SharedAccess",
    "SubmittedTaskResult",
    "build_a2a_app",
    "build_console_app",
    "build_mcp_server",
    "serve_a2a",
    "serve_console",
    "serve_mcp",
    "submit_via_broker",
]

"""What crosses a wire.

The orchestrator reaches remote agents only through the small interfaces defined here
(:class:`Transport`), never through an MQTT, MCP or A2A library directly.
"""

from fleetmind.protocols._transport import Transport

__all__ = ["Transport"]

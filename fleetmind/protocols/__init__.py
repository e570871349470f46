"""What crosses a wire: the fleet's message envelope and topics, MQTT, and broker deployment.

The orchestrator reaches remote agents only through these small interfaces, never through an
MQTT, MCP or A2A library directly.
"""

from fleetmind.protocols._broker import BrokerConfig, load_devices_file, serve, write_broker_config
from fleetmind.protocols._envelope import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Envelope,
    new_envelope,
    parse_envelope,
)
from fleetmind.protocols._mqtt import BrokerAddress, Message, MqttConnection
from fleetmind.protocols._topics import Topics

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "BrokerAddress",
    "BrokerConfig",
    "Envelope",
    "Message",
    "MqttConnection",
    "Topics",
    "load_devices_file",
    "new_envelope",
    "parse_envelope",
    "serve",
    "write_broker_config",
]

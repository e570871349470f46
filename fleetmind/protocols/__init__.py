"""What crosses a wire: the fleet's message envelope and topics, MQTT, broker deployment, and
the MCP and A2A clients.

Wire formats and clients only: this room imports nothing but the vocabulary, so every room
above (agents, the orchestrator, the servers in ``fleetmind.serve``) can speak it. The MCP and
A2A clients load on first use (``mcp``, ``a2a`` and ``httpx`` are heavy).
"""

import warnings
from typing import TYPE_CHECKING

from fleetmind.protocols._a2a_values import data_values, plain_json
from fleetmind.protocols._broker import (
    INSTALL_HINT,
    Account,
    BrokerConfig,
    BrokerProcess,
    DevicesFile,
    Listener,
    load_devices_file,
    mosquitto_installed,
    serve_broker,
    serve_embedded,
    write_broker_config,
)
from fleetmind.protocols._envelope import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ArtifactPayload,
    CancelPayload,
    CardPayload,
    ClaimPayload,
    DispatchPayload,
    Envelope,
    ErrorPayload,
    MemoryRequestPayload,
    MemoryResponsePayload,
    PresencePayload,
    ProceedPayload,
    ProgressPayload,
    ResultPayload,
    SubmitPayload,
    SyncPayload,
    TaskCancelPayload,
    TaskEventPayload,
    encode,
    encode_fields,
    new_envelope,
    parse_envelope,
)
from fleetmind.protocols._mqtt import BrokerAddress, Message, MqttConnection
from fleetmind.protocols._topics import DEFAULT_FLEET, Topics

if TYPE_CHECKING:
    from fleetmind.protocols._a2a_transport import A2ATransport
    from fleetmind.protocols._mcp_auth import (
        MCP_TOKEN_DIR,
        MCPAuth,
        MCPAuthError,
        MCPAuthorizationDenied,
        MCPAuthorizationRequired,
        MCPOAuthClient,
        mcp_token_file,
        saved_mcp_token,
    )
    from fleetmind.protocols._mcp_client import (
        MCPCallResult,
        MCPConnection,
        MCPServerConfig,
        MCPTool,
    )
    from fleetmind.protocols._mcp_requests import (
        ElicitationHandler,
        ElicitationReply,
        ElicitationRequest,
        FormField,
        SamplingHandler,
        SamplingMessage,
        SamplingReply,
        SamplingRequest,
        SamplingTool,
        SamplingToolCall,
        check_form_answer,
        form_fields,
    )

_LAZY = {
    "A2ATransport": "fleetmind.protocols._a2a_transport",
    "MCP_TOKEN_DIR": "fleetmind.protocols._mcp_auth",
    "MCPAuth": "fleetmind.protocols._mcp_auth",
    "MCPAuthError": "fleetmind.protocols._mcp_auth",
    "MCPAuthorizationDenied": "fleetmind.protocols._mcp_auth",
    "MCPAuthorizationRequired": "fleetmind.protocols._mcp_auth",
    "MCPOAuthClient": "fleetmind.protocols._mcp_auth",
    "mcp_token_file": "fleetmind.protocols._mcp_auth",
    "saved_mcp_token": "fleetmind.protocols._mcp_auth",
    "MCPCallResult": "fleetmind.protocols._mcp_client",
    "MCPConnection": "fleetmind.protocols._mcp_client",
    "MCPServerConfig": "fleetmind.protocols._mcp_client",
    "MCPTool": "fleetmind.protocols._mcp_client",
    "ElicitationHandler": "fleetmind.protocols._mcp_requests",
    "ElicitationReply": "fleetmind.protocols._mcp_requests",
    "ElicitationRequest": "fleetmind.protocols._mcp_requests",
    "FormField": "fleetmind.protocols._mcp_requests",
    "SamplingHandler": "fleetmind.protocols._mcp_requests",
    "SamplingMessage": "fleetmind.protocols._mcp_requests",
    "SamplingReply": "fleetmind.protocols._mcp_requests",
    "SamplingRequest": "fleetmind.protocols._mcp_requests",
    "SamplingTool": "fleetmind.protocols._mcp_requests",
    "SamplingToolCall": "fleetmind.protocols._mcp_requests",
    "check_form_answer": "fleetmind.protocols._mcp_requests",
    "form_fields": "fleetmind.protocols._mcp_requests",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "serve":
        warnings.warn(
            "fleetmind.protocols.serve is deprecated: use fleetmind.protocols.serve_broker",
            DeprecationWarning,
            stacklevel=2,
        )
        return serve_broker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_FLEET",
    "INSTALL_HINT",
    "MAX_MESSAGE_BYTES",
    "MCP_TOKEN_DIR",
    "PROTOCOL_VERSION",
    "A2ATransport",
    "Account",
    "ArtifactPayload",
    "BrokerAddress",
    "BrokerConfig",
    "BrokerProcess",
    "CancelPayload",
    "CardPayload",
    "ClaimPayload",
    "DevicesFile",
    "DispatchPayload",
    "ElicitationHandler",
    "ElicitationReply",
    "ElicitationRequest",
    "Envelope",
    "ErrorPayload",
    "FormField",
    "Listener",
    "MCPAuth",
    "MCPAuthError",
    "MCPAuthorizationDenied",
    "MCPAuthorizationRequired",
    "MCPCallResult",
    "MCPConnection",
    "MCPOAuthClient",
    "MCPServerConfig",
    "MCPTool",
    "MemoryRequestPayload",
    "MemoryResponsePayload",
    "Message",
    "MqttConnection",
    "PresencePayload",
    "ProceedPayload",
    "ProgressPayload",
    "ResultPayload",
    "SamplingHandler",
    "SamplingMessage",
    "SamplingReply",
    "SamplingRequest",
    "SamplingTool",
    "SamplingToolCall",
    "SubmitPayload",
    "SyncPayload",
    "TaskCancelPayload",
    "TaskEventPayload",
    "Topics",
    "check_form_answer",
    "data_values",
    "encode",
    "encode_fields",
    "form_fields",
    "load_devices_file",
    "mcp_token_file",
    "mosquitto_installed",
    "new_envelope",
    "parse_envelope",
    "plain_json",
    "saved_mcp_token",
    "serve_broker",
    "serve_embedded",
    "write_broker_config",
]

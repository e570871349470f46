"""The MQTT topic scheme of a fleet.

Everything lives under one prefix per fleet, ``fleetmind/<fleet>``. A device writes only under
its own names and reads only its own inboxes, which is what the broker's ACL enforces:

```
<prefix>/agents/<agent>/card        retained  device -> all     the agent's profile (card)
<prefix>/agents/<agent>/inbox                 orch -> device    dispatch, cancel
<prefix>/devices/<device>/presence  retained  device -> all     online / offline, heartbeats
<prefix>/devices/<device>/out                 device -> orch    progress, results, errors
<prefix>/devices/<device>/inbox               orch -> device    error replies, control
<prefix>/tasks/<task>/events                  orch -> anyone    the task's event stream
```

Orchestrator replicas share the devices' output through the shared subscription
``$share/<group>/<prefix>/devices/+/out``, so each message is handled by one replica.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetmind._ids import is_valid_id
from fleetmind.errors import ConfigError

DEFAULT_FLEET = "default"


@dataclass(frozen=True)
class Topics:
    """Topic names of one fleet."""

    fleet: str = DEFAULT_FLEET

    def __post_init__(self) -> None:
        if not is_valid_id(self.fleet):
            raise ConfigError(
                f"fleet name {self.fleet!r} must be letters, digits, '.', '_' or '-' (max 64)"
            )

    @property
    def prefix(self) -> str:
        return f"fleetmind/{self.fleet}"

    def card(self, agent_id: str) -> str:
        return f"{self.prefix}/agents/{_checked(agent_id)}/card"

    def agent_inbox(self, agent_id: str) -> str:
        return f"{self.prefix}/agents/{_checked(agent_id)}/inbox"

    def presence(self, device_id: str) -> str:
        return f"{self.prefix}/devices/{_checked(device_id)}/presence"

    def device_out(self, device_id: str) -> str:
        return f"{self.prefix}/devices/{_checked(device_id)}/out"

    def device_inbox(self, device_id: str) -> str:
        return f"{self.prefix}/devices/{_checked(device_id)}/inbox"

    def task_events(self, task_id: str) -> str:
        return f"{self.prefix}/tasks/{_checked(task_id)}/events"

    # Filters the orchestrator subscribes to --------------------------------------------------

    @property
    def all_cards(self) -> str:
        return f"{self.prefix}/agents/+/card"

    @property
    def all_presence(self) -> str:
        return f"{self.prefix}/devices/+/presence"

    def all_device_out(self, share_group: str | None = None) -> str:
        """Every device's output; through a shared subscription when replicas split the work."""
        topic = f"{self.prefix}/devices/+/out"
        return f"$share/{_checked(share_group)}/{topic}" if share_group else topic

    @property
    def everything(self) -> str:
        return f"{self.prefix}/#"


def _checked(name: str) -> str:
    if not is_valid_id(name):
        raise ConfigError(f"{name!r} cannot be part of a topic: use letters, digits, '.', '_', '-'")
    return name

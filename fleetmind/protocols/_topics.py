"""The MQTT topic scheme of a fleet.

Everything lives under one prefix per fleet, ``fleetmind/<fleet>``. A device writes only under
its own names and reads only its own inboxes, which is what the broker's ACL enforces:

```
<prefix>/agents/<agent>/card        retained  device -> all     the agent's profile (card)
<prefix>/agents/<agent>/inbox                 orch -> device    dispatch, cancel
<prefix>/devices/<device>/presence  retained  device -> all     online / offline, heartbeats
<prefix>/devices/<device>/out                 device -> orch    progress, results, errors
<prefix>/devices/<device>/out/<replica>       device -> orch    the same, for one replica
<prefix>/devices/<device>/inbox               orch -> device    error replies, control
<prefix>/orchestrators/submit                 client -> orch    tasks submitted to the fleet
<prefix>/tasks/<task>/events                  orch -> anyone    the task's event stream
```

Orchestrator replicas share the work through the shared subscription
``$share/<group>/<prefix>/orchestrators/submit``: the broker hands each submitted task to one
replica of the group. A replica names itself in each dispatch (``reply_to``), and the device
answers on ``out/<replica>``, so results reach the replica that runs the task and no other.
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

    def device_out(self, device_id: str, replica: str | None = None) -> str:
        """A device's output; ``replica`` when a dispatch asked for replies to one replica."""
        topic = f"{self.prefix}/devices/{_checked(device_id)}/out"
        return f"{topic}/{_checked(replica)}" if replica else topic

    def device_inbox(self, device_id: str) -> str:
        return f"{self.prefix}/devices/{_checked(device_id)}/inbox"

    def task_events(self, task_id: str) -> str:
        return f"{self.prefix}/tasks/{_checked(task_id)}/events"

    @property
    def submit(self) -> str:
        """Where clients submit tasks to the fleet's orchestrators."""
        return f"{self.prefix}/orchestrators/submit"

    def intake(self, share_group: str | None = None) -> str:
        """Submitted tasks; through a shared subscription when replicas split them."""
        return f"$share/{_checked(share_group)}/{self.submit}" if share_group else self.submit

    # Filters the orchestrator subscribes to --------------------------------------------------

    @property
    def all_cards(self) -> str:
        return f"{self.prefix}/agents/+/card"

    @property
    def all_presence(self) -> str:
        return f"{self.prefix}/devices/+/presence"

    def all_device_out(self, replica: str | None = None) -> str:
        """Every device's output (``replica``: only the replies addressed to that replica)."""
        topic = f"{self.prefix}/devices/+/out"
        return f"{topic}/{_checked(replica)}" if replica else topic

    @property
    def everything(self) -> str:
        return f"{self.prefix}/#"


def _checked(name: str) -> str:
    if not is_valid_id(name):
        raise ConfigError(f"{name!r} cannot be part of a topic: use letters, digits, '.', '_', '-'")
    return name

"""The MQTT topic scheme of a fleet.

Everything lives under one prefix per fleet, ``fleetmind/<fleet>``, and everything a device
says or hears lives under its own name, which is what the broker's ACL enforces: a device writes
only under ``devices/<itself>`` and reads only its own inbox.

```
<prefix>/devices/<device>/agents/<agent>/card  retained  device -> all   an agent's profile
<prefix>/devices/<device>/presence             retained  device -> all   online/offline, beats
<prefix>/devices/<device>/inbox                          orch -> device  dispatch, cancel, proceed
<prefix>/devices/<device>/out                            device -> orch  progress, claims, results
<prefix>/devices/<device>/out/<replica>                  device -> orch  the same, for one replica
<prefix>/orchestrators/submit                            client -> orch  tasks for the fleet
<prefix>/tasks/<task>/events                             orch -> anyone  the task's event stream
<prefix>/tasks/<task>/control                            client -> orch  cancel the task
```

An agent offered by two devices is two agents of the fleet (``resizer@pi-1``,
``resizer@pi-2``), each with its own card and reached through its own device's inbox.

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

    def card(self, device_id: str, agent: str) -> str:
        """Where a device announces one of its agents (retained)."""
        return f"{self.prefix}/devices/{_checked(device_id)}/agents/{_checked(agent)}/card"

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

    def task_control(self, task_id: str) -> str:
        """Where clients ask the replica that drives a task to cancel it."""
        return f"{self.prefix}/tasks/{_checked(task_id)}/control"

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
        return f"{self.prefix}/devices/+/agents/+/card"

    @property
    def all_presence(self) -> str:
        return f"{self.prefix}/devices/+/presence"

    def all_device_out(self, replica: str | None = None) -> str:
        """Every device's output (``replica``: only the replies addressed to that replica)."""
        topic = f"{self.prefix}/devices/+/out"
        return f"{topic}/{_checked(replica)}" if replica else topic

    @property
    def all_task_control(self) -> str:
        return f"{self.prefix}/tasks/+/control"

    @property
    def everything(self) -> str:
        return f"{self.prefix}/#"


def _checked(name: str) -> str:
    if not is_valid_id(name):
        raise ConfigError(f"{name!r} cannot be part of a topic: use letters, digits, '.', '_', '-'")
    return name

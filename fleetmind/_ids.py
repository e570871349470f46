"""Identifier types shared by every package.

Ids end up in MQTT topics, URLs, file names and command lines, so they are restricted to a small,
safe alphabet: lower- and upper-case letters, digits, ``.``, ``_`` and ``-``; at most 64
characters; starting with a letter or digit.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from pydantic import StringConstraints

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"

AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
"""The id of an agent, unique within a fleet. An agent on a device of an MQTT fleet is
``name@device``: the same agent offered by two devices is two agents of the fleet."""

PlainId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""A name that may be part of a topic: a device, a replica, an agent's name on its device."""

SubtaskId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""The id of a subtask, unique within its task graph."""

TaskId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""The id of a task (one run of a task graph), unique within a store."""


def remote_agent_id(agent: str, device: str) -> str:
    """The fleet's id of agent ``agent`` served by device ``device``."""
    return f"{agent}@{device}"


def agent_name(agent_id: str) -> str:
    """An agent id without its device: ``resizer@pi-7`` -> ``resizer``."""
    return agent_id.partition("@")[0]


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may be used as an agent, subtask or task id."""
    return bool(_ID_RE.match(value))


def new_task_id() -> str:
    """A fresh task id: short enough to type, random enough never to collide in one store."""
    return "t" + secrets.token_hex(5)

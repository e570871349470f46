"""Deprecated home of the A2A client agent: it is now in :mod:`fleetmind.agents.remote`.

``from fleetmind.protocols._a2a_client import connect_a2a_agent`` keeps working for one
release, with a ``DeprecationWarning``; import from ``fleetmind.agents.remote`` instead.
"""

import warnings

_MOVED = ("A2AAgent", "agent_card", "connect_a2a_agent", "profile_from_card", "slug")


def __getattr__(name: str) -> object:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"fleetmind.protocols._a2a_client.{name} is deprecated: "
        f"import it from fleetmind.agents.remote",
        DeprecationWarning,
        stacklevel=2,
    )
    # Loaded on use: the wire room never imports the rooms above it on its own.
    from fleetmind.agents import remote as new_home

    return getattr(new_home, name)

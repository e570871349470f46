"""Deprecated home of the fleet's A2A server: it is now in :mod:`fleetmind.serve`.

``from fleetmind.protocols._a2a_server import serve_a2a`` keeps working for one release, with
a ``DeprecationWarning``; import from ``fleetmind.serve`` instead.
"""

import warnings

_MOVED = ("build_a2a_app", "serve_a2a")


def __getattr__(name: str) -> object:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"fleetmind.protocols._a2a_server.{name} is deprecated: import it from fleetmind.serve",
        DeprecationWarning,
        stacklevel=2,
    )
    # Loaded on use: the wire room never imports the rooms above it on its own.
    from fleetmind import serve as new_home

    return getattr(new_home, name)

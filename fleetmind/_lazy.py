"""Lazy package exports (PEP 562): a package names where each public name lives, and the module
loads on the first use of one of its names.

A device that only runs agents imports ``fleetmind.agents`` without the step routers' numpy, and
``fleetmind --help`` imports no orchestrator at all: each package pays only for what is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping


def load(package: str, exports: Mapping[str, str], name: str) -> object:
    """The public ``name`` of ``package``, imported from the module ``exports`` names for it and
    kept in the package so the next lookup is a plain attribute.

    Raises:
        AttributeError: ``name`` is not one of the package's exports.
    """
    module = exports.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[package], name, value)
    return value

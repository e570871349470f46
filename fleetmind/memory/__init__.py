"""The seam for agent memory.

Working, episodic and semantic memory will implement :class:`Memory`; agents depend on the
interface only, so each layer can be added without touching them.
"""

from fleetmind.memory._interface import Memory, MemoryItem

__all__ = ["Memory", "MemoryItem"]

"""Settings every test shares."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Tests give every fleet its own data directory; the embedding model is assembled into
    # one cache for the whole run (and kept for the next), not once per data directory.
    os.environ.setdefault(
        "FLEETMIND_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "fleetmind-test-models")
    )

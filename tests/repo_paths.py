"""Where the tests' fixture files and the repository's examples are: one place, so a test module
may sit at any depth (``from repo_paths import FIXTURES``)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
"""Fleets, agents and servers that tests start."""
EXAMPLES = REPO / "examples"

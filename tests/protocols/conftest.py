"""Fixtures of the broker tests: Mosquitto itself, a broker started for one test, and paho
clients that are all closed when the test ends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_harness import DEVICES, FLEET, Client, Env

from fleetmind.protocols import _broker
from fleetmind.testing import start_test_broker


@pytest.fixture(scope="session")
def mosquitto() -> None:
    """Mosquitto must be installed; under CI its absence fails the tests instead of skipping."""
    missing = [b for b in ("mosquitto",) if _broker._find_binary(b) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def env(tmp_path: Path, mosquitto: None) -> Iterator[Env]:
    broker = start_test_broker(tmp_path, DEVICES, fleet=FLEET)
    running = Env(broker, [broker.handle])
    try:
        yield running
    finally:
        for handle in running.handles:
            handle.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(*args: Any, **kwargs: Any) -> Client:
        made.append(Client(*args, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()

"""Helpers for testing fleets and the agents that run in them."""

from fleetmind.testing._broker import LocalBroker, free_port, start_test_broker

__all__ = ["LocalBroker", "free_port", "start_test_broker"]

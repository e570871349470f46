"""Tests for fleetmind/orchestrator/_preflight.py (Fleet.check and Fleet.acheck) and the one
missing-input rule (Agent.missing_inputs) that the check, the engine and a function agent share."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.errors import MissingInput, NoCapableAgent
from fleetmind.orchestrator import SkillRouter, Subtask


@agent(id="greeter", skills=["greet"])
async def greeter(name: str, greeting: str = "hello") -> str:
    return f"{greeting} {name}"


MESSAGE = "subtask 'g' is missing input(s) name required by agent 'greeter'"


def greet(**inputs: str) -> TaskGraph:
    graph = TaskGraph("greet")
    graph.add_subtask("g", skill="greet", inputs=inputs)
    return graph


def test_an_agent_names_the_inputs_a_subtask_lacks() -> None:
    assert greeter.missing_inputs("g", {"name", "greeting"}) is None
    assert greeter.missing_inputs("g", {"name"}) is None
    missing = greeter.missing_inputs("g", ["greeting"])
    assert isinstance(missing, MissingInput) and missing.message == MESSAGE


async def test_the_check_the_engine_and_the_agent_say_the_same_thing() -> None:
    fleet = Fleet([greeter], router=SkillRouter())

    with pytest.raises(MissingInput) as checked:
        fleet.check(greet())
    with pytest.raises(MissingInput) as achecked:
        await fleet.acheck(greet(greeting="hi"))
    dispatched = await fleet.run(greet())  # the engine checks again before each dispatch
    with pytest.raises(MissingInput) as ran:  # as does a function agent where it runs
        await greeter.run(Subtask(id="g"), SubtaskContext("t", Subtask(id="g"), {}))

    assert checked.value.message == achecked.value.message == ran.value.message == MESSAGE
    assert dispatched.errors["g"]["type"] == "MissingInput"
    assert dispatched.errors["g"]["message"] == MESSAGE


async def test_acheck_refuses_what_nobody_can_take_and_passes_what_can_run() -> None:
    fleet = Fleet([greeter], router=SkillRouter())
    fine = greet(name="Ada")
    nobody = TaskGraph("nobody")
    nobody.add_subtask("x", skill="juggle")

    await fleet.acheck(fine)
    with pytest.raises(NoCapableAgent, match="'juggle'"):
        await fleet.acheck(nobody)
    assert (await fleet.run(fine)).outputs == {"g": "hello Ada"}


class Preparing(SkillRouter):
    """Notes which thread prepares which subtasks."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[tuple[int, list[str]]] = []

    def prepare(self, subtasks: Sequence[Subtask]) -> None:
        self.prepared.append((threading.get_ident(), [s.id for s in subtasks]))


async def test_acheck_prepares_the_subtasks_off_the_event_loop_thread() -> None:
    router = Preparing()
    fleet = Fleet([greeter], router=router)

    await fleet.acheck(greet(name="Ada"))
    fleet.check(greet(name="Ada"))  # the plain check prepares nothing

    assert len(router.prepared) == 1
    thread, ids = router.prepared[0]
    assert ids == ["g"] and thread != threading.get_ident()

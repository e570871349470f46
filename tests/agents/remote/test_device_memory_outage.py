"""A device agent's memory across outages: real Mosquitto, a real `fleetmind agent serve`
process, the orchestrator's real MemoryStore (a SQLite file).

The agent (``scribe``) writes down when it starts, then waits for a file the test creates
before each round of memory calls: the test decides when the agent writes or reads, so every
call happens at a known point of an outage (after the broker has stopped, and after the device
has noticed). What the agent saw comes back in its notes (JSON lines in a file); what arrived
is read from the orchestrator's store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fleet_harness import FLEETMIND, MOSQUITTO, Mosquitto

from fleetmind import Fleet, TaskGraph
from fleetmind.memory import SHARED, MemoryStore, StoredItem
from fleetmind.orchestrator import SentenceEmbedder, SkillRouter, SQLiteStore
from fleetmind.protocols import BrokerAddress
from fleetmind.serve import MqttFleetLink

if MOSQUITTO is None and os.environ.get("CI") == "true":
    raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
pytestmark = [
    pytest.mark.skipif(MOSQUITTO is None, reason="needs Mosquitto (persistent sessions)"),
    pytest.mark.timeout(300),
]

DEVICE = "pi-1"
HEARTBEAT_S = 0.5
OWN = "agent:scribe"
"""The namespace the orchestrator gives the scribe's own memory."""

SCRIBE_AGENTS = """
import asyncio, json, os, time
from fleetmind import agent
from fleetmind.agents import SubtaskContext
from fleetmind.agents.remote import MemoryUnavailable


def note(log, **record):
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\\n")


@agent(id="scribe", skills=["scribe"])
async def scribe(ctx: SubtaskContext, log: str, rounds: list) -> dict:
    \"\"\"Reads and writes the fleet's memory when told to (a file appears).\"\"\"
    note(log, event="started", subtask=ctx.subtask.id)
    report = []
    for number, step in enumerate(rounds):
        while not os.path.exists(step["go"]):
            await asyncio.sleep(0.02)
        seen = {"event": "round", "subtask": ctx.subtask.id, "round": number}
        if step.get("recall"):
            began = time.monotonic()
            try:
                found = await ctx.memory.recall(step["recall"], limit=3)
            except MemoryUnavailable as exc:  # the agent can catch it and carry on
                seen["recall_error"] = type(exc).__name__
                seen["message"] = str(exc)
            else:
                seen["recalled"] = [item.text for item in found]
            seen["recall_s"] = time.monotonic() - began
        queued = []
        began = time.monotonic()
        for key, text in step.get("facts", {}).items():
            item = await ctx.memory.remember(text, key=key)
            queued.append(bool(item.metadata.get("queued")))
        for text in step.get("episodes", []):
            item = await ctx.memory.remember(text, layer="episodic", outcome="done")
            queued.append(bool(item.metadata.get("queued")))
        seen["queued"] = queued
        seen["remember_s"] = time.monotonic() - began
        note(log, **seen)
        report.append(seen)
    return {"rounds": report}
"""


# Processes -------------------------------------------------------------------------------------


class Scribe:
    """`fleetmind agent serve` of the scribe on device pi-1, its notes and its stderr."""

    def __init__(self, workdir: Path, broker_url: str) -> None:
        self.workdir = workdir
        self.broker_url = broker_url
        self.log = workdir / "scribe-notes.jsonl"
        self.stderr_path = workdir / "scribe-stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        agents = self.workdir / "scribe_agents.py"
        agents.write_text(SCRIBE_AGENTS)
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [
                    *(FLEETMIND, "agent", "serve", str(agents), "--broker", self.broker_url),
                    *("--device-id", DEVICE, "--heartbeat", str(HEARTBEAT_S)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=20)

    def notes(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [r for r in records if event is None or r["event"] == event]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def cut_off(self) -> bool:
        """Whether the device has noticed that its broker connection is gone (it logs it)."""
        return "lost" in self.stderr() and "reconnecting" in self.stderr()

    def exited(self) -> str:
        """Why the device is no longer running ("" while it runs)."""
        if self.process is None or self.process.poll() is None:
            return ""
        return f"the device exited ({self.process.returncode})"

    def diagnosis(self) -> str:
        alive = self.process is not None and self.process.poll() is None
        return (
            f"device alive: {alive}; notes: {self.notes()[-5:]}; stderr: {self.stderr()[-1500:]!r}"
        )

    async def until(self, predicate: Callable[[], Any], what: str, **options: Any) -> None:
        """Wait for ``predicate()``; fail at once if the device process dies meanwhile."""

        def alive_and() -> Any:
            assert not self.exited(), f"{what}: never, {self.exited()}; {self.diagnosis()}"
            return predicate()

        await until(alive_and, what, self.diagnosis, **options)


class Orchestrator:
    """`fleetmind run` in its own process group, killed like a crashed machine."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = workdir / "orchestrator-stderr.log"

    def run(self, *args: str) -> None:
        env = {**os.environ, "FLEETMIND_EMBEDDING_MODEL": "light"}
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [FLEETMIND, "run", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )

    def exited(self) -> str:
        """Why the orchestrator is no longer running ("" while it runs)."""
        if self.process is None or self.process.poll() is None:
            return ""
        return f"fleetmind run exited ({self.process.returncode}): {self.stderr_path.read_text()}"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=20)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path)  # persistent: sessions and queued messages survive a stop
    try:
        yield mosquitto
    finally:
        mosquitto.close()


@pytest.fixture
def scribe(tmp_path: Path, broker: Mosquitto) -> Iterator[Scribe]:
    device = Scribe(tmp_path, broker.url)
    try:
        device.start()
        yield device
    finally:
        device.close()


@pytest.fixture
def orchestrator(tmp_path: Path) -> Iterator[Orchestrator]:
    process = Orchestrator(tmp_path)
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def embed() -> Callable[..., Any]:
    return SentenceEmbedder("light").embed


@pytest.fixture
def open_memory(embed: Callable[..., Any]) -> Iterator[Callable[[Path], MemoryStore]]:
    """Opens the orchestrator's memory files (SQLite), and closes them after the test."""
    opened: list[MemoryStore] = []

    def open_(path: Path) -> MemoryStore:
        opened.append(MemoryStore(path, embed))
        return opened[-1]

    try:
        yield open_
    finally:
        for memory in opened:
            memory.close()


# Helpers ---------------------------------------------------------------------------------------


def address(broker: Mosquitto) -> BrokerAddress:
    return BrokerAddress("127.0.0.1", broker.port)


class WriteRefused(AssertionError):
    """The orchestrator refused a device's queued memory write (it is lost)."""


async def until(
    predicate: Callable[[], Any],
    what: str,
    why: Callable[[], str],
    deadline_s: float = 90.0,
    hopeless: Callable[[], str] = lambda: "",
    failure: type[AssertionError] = AssertionError,
) -> None:
    """Wait (without blocking the event loop) until ``predicate()`` is true; fail at once
    (with ``failure``) when ``hopeless()`` says why it never will be."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        reason = hopeless()
        if reason:
            raise failure(f"{what}: never, {reason}; {why()}")
        assert time.monotonic() < deadline, f"timed out: {what}; {why()}"
        await asyncio.sleep(0.05)


def stored(
    memory: MemoryStore, namespace: str, layer: Literal["episodic", "semantic"] | None = None
) -> list[StoredItem]:
    """What the store holds in ``namespace`` now (it is written from worker threads)."""
    while True:
        try:
            return list(memory.items(namespace=namespace, layer=layer))
        except RuntimeError:  # a write changed the dict while we read it: read again
            continue


def scribe_task(scribe: Scribe, *rounds: dict[str, Any], name: str = "outage") -> TaskGraph:
    graph = TaskGraph(name)
    graph.add_subtask(
        "write", agent="scribe", inputs={"log": str(scribe.log), "rounds": list(rounds)}
    )
    return graph


def assert_arrived_once(item: StoredItem, task_id: str, key: str | None = None) -> None:
    """One statement, stored once, in the scribe's own namespace, with its provenance."""
    assert item.namespace == OWN
    assert item.agent_id == f"scribe@{DEVICE}" and item.task_id == task_id
    assert item.key == key
    assert item.superseded_by is None
    if item.layer == "semantic":
        assert item.support == 1, f"stated {item.support} times: {item.provenance}"
        (source,) = item.provenance
        assert source["agent"] == f"scribe@{DEVICE}" and source["task"] == task_id


# Tests -----------------------------------------------------------------------------------------


async def test_a_write_made_while_the_broker_is_down_arrives_once_it_is_back(
    tmp_path: Path, broker: Mosquitto, scribe: Scribe, open_memory: Callable[[Path], MemoryStore]
) -> None:
    memory = open_memory(tmp_path / "memory.db")
    go = tmp_path / "go"
    fact = "the boiler in the cellar was serviced on 12 March 2024"
    fleet = Fleet(router=SkillRouter(), memory=memory)
    graph = scribe_task(scribe, {"go": str(go), "facts": {"boiler": fact}})
    async with MqttFleetLink(fleet, address(broker), dead_after_s=60) as link:
        await link.wait_for_agents(f"scribe@{DEVICE}", timeout_s=120)
        async with fleet:
            handle = fleet.submit(graph)
            await scribe.until(lambda: scribe.notes("started"), "the agent started")
            broker.stop()
            await scribe.until(scribe.cut_off, "the device noticed the outage")
            go.touch()  # now the agent remembers: the broker is down and the device knows it
            await scribe.until(lambda: scribe.notes("round"), "remember returned")
            assert stored(memory, OWN) == []  # nothing can have arrived yet
            broker.start()  # the same port, with its saved sessions
            await scribe.until(lambda: stored(memory, OWN), "the write arrived")
            result = await asyncio.wait_for(handle.result(), 120)

    assert result.status == "done", result.errors
    (round_,) = scribe.notes("round")
    assert round_["queued"] == [True] and round_["remember_s"] < 5.0  # at once, marked queued
    memory.close()
    reopened = open_memory(tmp_path / "memory.db")  # it is saved, not only held in RAM
    (item,) = stored(reopened, OWN)
    assert item.text == fact and item.layer == "semantic"
    assert_arrived_once(item, result.task_id, key="boiler")
    assert not stored(reopened, SHARED, "semantic")  # nothing went to the shared namespace


async def test_a_read_while_the_broker_is_down_fails_at_once_with_memory_unavailable(
    tmp_path: Path, broker: Mosquitto, scribe: Scribe, open_memory: Callable[[Path], MemoryStore]
) -> None:
    memory = open_memory(tmp_path / "memory.db")
    fact = "the boiler in the cellar was serviced on 12 March 2024"
    memory.add_fact(fact, namespace=OWN, key="boiler")
    question = "when was the boiler serviced?"
    first, second = tmp_path / "go-offline", tmp_path / "go-online"
    fleet = Fleet(router=SkillRouter(), memory=memory)
    graph = scribe_task(
        scribe, {"go": str(first), "recall": question}, {"go": str(second), "recall": question}
    )
    async with MqttFleetLink(fleet, address(broker), dead_after_s=60) as link:
        await link.wait_for_agents(f"scribe@{DEVICE}", timeout_s=120)
        async with fleet:
            handle = fleet.submit(graph)
            await scribe.until(lambda: scribe.notes("started"), "the agent started")
            broker.stop()
            await scribe.until(scribe.cut_off, "the device noticed the outage")
            first.touch()
            # The read fails while the broker is still down: it does not wait for it.
            await scribe.until(lambda: scribe.notes("round"), "recall returned")
            restarted = time.monotonic()
            broker.start()
            # Both ends are back once the orchestrator hears the device say online again.
            await scribe.until(
                lambda: link.devices[DEVICE].online and link.devices[DEVICE].last_seen > restarted,
                "the device is heard again",
            )
            second.touch()
            result = await asyncio.wait_for(handle.result(), 120)

    assert result.status == "done", result.errors  # the agent caught the error and carried on
    offline, online = result.outputs["write"]["rounds"]
    assert offline["recall_error"] == "MemoryUnavailable"
    assert "offline" in offline["message"]
    assert offline["recall_s"] < 5.0  # at once, not after the channel's 10 s answer timeout
    assert "recalled" not in offline
    assert online["recalled"][0] == fact  # and reads work again once the broker is back
    assert [n["round"] for n in scribe.notes("round")] == [0, 1]


GRACE_S = 3.0
"""The orchestrator's heartbeat window here: a device silent this long is declared dead."""
OUTAGE_S = 3 * GRACE_S


async def test_writes_queued_through_an_outage_longer_than_the_heartbeat_window_arrive_once(
    tmp_path: Path, broker: Mosquitto, scribe: Scribe, open_memory: Callable[[Path], MemoryStore]
) -> None:
    memory = open_memory(tmp_path / "memory.db")
    early, late, barrier = tmp_path / "go-early", tmp_path / "go-late", tmp_path / "go-barrier"
    facts = {f"pump-{n}": f"pump {n} ran {10 + n} minutes on line {n + 3}" for n in range(4)}
    episodes = [f"valve {n} stuck {n + 2} times before noon" for n in range(3)]
    rounds = [
        {"go": str(early), "facts": dict(list(facts.items())[:2]), "episodes": episodes[:2]},
        {"go": str(late), "facts": dict(list(facts.items())[2:]), "episodes": episodes[2:]},
    ]
    fleet = Fleet(router=SkillRouter(), memory=memory)
    async with MqttFleetLink(fleet, address(broker), dead_after_s=GRACE_S) as link:
        await link.wait_for_agents(f"scribe@{DEVICE}", timeout_s=120)
        async with fleet:
            handle = fleet.submit(scribe_task(scribe, *rounds))
            await scribe.until(lambda: scribe.notes("started"), "the agent started")
            broker.stop()
            stopped = time.monotonic()
            await scribe.until(scribe.cut_off, "the device noticed the outage")
            early.touch()
            await scribe.until(lambda: scribe.notes("round"), "the early writes")
            # The outage's length is what this test is about: later writes are made after a
            # whole heartbeat window without a broker.
            await asyncio.sleep(max(0.0, stopped + GRACE_S + 1.0 - time.monotonic()))
            late.touch()
            await scribe.until(lambda: len(scribe.notes("round")) == 2, "the late writes")
            await asyncio.sleep(max(0.0, stopped + OUTAGE_S - time.monotonic()))
            assert stored(memory, OWN) == []
            outage_s = time.monotonic() - stopped
            broker.start()
            wanted = len(facts) + len(episodes)
            await scribe.until(lambda: len(stored(memory, OWN)) >= wanted, "every write arrived")
            result = await asyncio.wait_for(handle.result(), 120)
            # A barrier: a write made online is answered only once it is stored, and anything
            # the device could have sent twice was sent before it.
            after = fleet.submit(
                scribe_task(
                    scribe, {"go": str(barrier), "facts": {"barrier": "the outage is over"}}
                )
            )
            barrier.touch()
            after_result = await asyncio.wait_for(after.result(), 120)

    assert outage_s > OUTAGE_S > GRACE_S
    assert result.status == "done", result.errors
    assert after_result.status == "done", after_result.errors
    offline_rounds = [n for n in scribe.notes("round") if n["subtask"] == "write"][:2]
    assert [n["queued"] for n in offline_rounds] == [[True] * 4, [True] * 3]
    assert len(scribe.notes("started")) == 2  # the offline agent ran once (and the barrier)
    items = stored(memory, OWN)
    texts = sorted(i.text for i in items)
    assert texts == sorted([*facts.values(), *episodes, "the outage is over"])  # once each
    for item in items:
        if item.text != "the outage is over":
            key = next((k for k, t in facts.items() if t == item.text), None)
            assert_arrived_once(item, result.task_id, key=key)
    assert {i.layer for i in items if i.text in episodes} == {"episodic"}


async def test_writes_made_while_the_orchestrator_is_down_arrive_when_it_comes_back(
    tmp_path: Path,
    broker: Mosquitto,
    scribe: Scribe,
    orchestrator: Orchestrator,
    open_memory: Callable[[Path], MemoryStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fleetmind.memory_service")
    home = tmp_path / "home"
    go = tmp_path / "go"
    fact = "the attic window was left open on 3 June"
    task = {
        "name": "orchestrator-outage",
        "subtasks": [
            {
                "id": "write",
                "agent": "scribe",
                "inputs": {
                    "log": str(scribe.log),
                    "rounds": [{"go": str(go), "facts": {"window": fact}}],
                },
            }
        ],
    }
    (tmp_path / "task.json").write_text(json.dumps(task))
    # `fleetmind run` checks its task against the cards it finds: the device's must be there.
    await scribe.until(lambda: "serving" in scribe.stderr(), "the device serves")
    orchestrator.run(
        *(str(tmp_path / "task.json"), "--broker", broker.url, "--memory", "--no-live"),
        *("--data-dir", str(home)),
    )
    # A loaded machine starts `fleetmind run` slowly.
    await scribe.until(
        lambda: scribe.notes("started"),
        "the agent started",
        deadline_s=240,
        hopeless=orchestrator.exited,
    )
    orchestrator.kill()  # it crashes with the subtask out on the device; the broker stays up
    store = SQLiteStore(home / "fleetmind.db")
    (record,) = store.tasks()
    store.close()
    go.touch()
    # Online, the device sends the write at once; nobody answers it, so after the channel's
    # wait for an answer the call returns, marked queued. The broker keeps the request in the
    # orchestrator's session.
    await scribe.until(lambda: scribe.notes("round"), "remember returned")
    (round_,) = scribe.notes("round")
    assert round_["queued"] == [True]
    assert round_["remember_s"] < 30.0  # it returns (after about 10 s): it does not hang

    # The orchestrator comes back: the session that `fleetmind run` (and `fleetmind resume`)
    # of this task uses, with the memory file it was using.
    memory = open_memory(home / "fleetmind.memory.db")
    assert stored(memory, OWN) == []

    def refused() -> str:
        said = [r.getMessage() for r in caplog.records if r.name == "fleetmind.memory_service"]
        return "; ".join(m for m in said if "refused" in m)

    fleet = Fleet(router=SkillRouter(), memory=memory)
    back = address(broker)
    async with MqttFleetLink(
        fleet, back, client_id=back.client_id("run", record.id), replica_id=f"run-{record.id}"
    ):
        await scribe.until(
            lambda: stored(memory, OWN), "the write arrived", hopeless=refused, failure=WriteRefused
        )
    (item,) = stored(memory, OWN)
    assert item.text == fact
    assert_arrived_once(item, record.id, key="window")

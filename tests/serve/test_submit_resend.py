"""A submit that no replica accepts is sent again: replicas take submits on a connection that
keeps no session, so a submit the broker handed to a replica that hung (and then died) would
otherwise be lost, its submitter waiting until it gives up. Replicas say at once that they have
a task (``task_accepted``), and replicas on one shared store run a task once however often its
submit comes: a running task is left to its owner, an ended one has its stored result sent.

The client's side against a peer on the broker; then real ``fleetmind orchestrator serve``
processes on one PostgreSQL, a device and ``fleetmind submit`` (the rig of test_replica_faults).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from replica_harness import (
    DEADLINE_S,
    FLEET,
    FLEETMIND,
    RELAY_OUTPUTS,
    Rig,
    replica_rig,
)

from fleetmind import TaskGraph
from fleetmind.orchestrator import read_task_file
from fleetmind.protocols import (
    BrokerAddress,
    MqttConnection,
    SubmitPayload,
    TaskEventPayload,
    Topics,
    encode,
    parse_envelope,
)
from fleetmind.serve import submit_via_broker
from fleetmind.testing import start_test_broker

pytestmark = pytest.mark.timeout(480)


def one_subtask(key: str) -> str:
    return f"name: one-{key}\nsubtasks:\n  - {{id: a, agent: counted, inputs: {{key: {key}}}}}\n"


# The client's side ---------------------------------------------------------------------------


async def test_a_submit_is_sent_again_until_a_replica_accepts_it(tmp_path: Path) -> None:
    handle, port, credentials = start_test_broker(tmp_path, fleet=FLEET)
    address = BrokerAddress(
        "127.0.0.1", port, username="orchestrator", password=credentials["orchestrator"]
    )
    topics = Topics(FLEET)
    copies: list[bytes] = []
    accepted: list[str] = []
    seen: list[str] = []
    graph = TaskGraph("one")
    graph.add_subtask("a", agent="counted", inputs={"key": "x"})

    async def peer(ready: asyncio.Event) -> None:
        """Takes no notice of the first two copies (as a hung replica), answers the third."""
        async with MqttConnection(address, "fm-peer", session_expiry_s=0) as mqtt:
            await mqtt.subscribe(topics.submit)
            ready.set()
            async for message in mqtt.messages():
                copies.append(message.payload)
                if len(copies) < 3:
                    continue
                _, task = parse_envelope(message.payload)
                assert isinstance(task, SubmitPayload)
                for event, result in (
                    ({"kind": "task_accepted", "task_id": task.task_id, "replica": "r2"}, None),
                    ({"kind": "subtask_started", "task_id": task.task_id}, None),
                    (
                        {"kind": "task_result", "task_id": task.task_id},
                        {"status": "done", "outputs": {"a": 1}, "errors": {}},
                    ),
                ):
                    body = TaskEventPayload(task_id=task.task_id, event=event, result=result)
                    await mqtt.publish(
                        topics.task_events(task.task_id), encode("task_event", "r2", body)
                    )

    with handle:
        ready = asyncio.Event()
        peering = asyncio.create_task(peer(ready))
        try:
            await asyncio.wait_for(ready.wait(), DEADLINE_S)
            result = await submit_via_broker(
                address,
                graph,
                fleet_name=FLEET,
                timeout_s=DEADLINE_S,
                resend_s=0.2,
                on_accepted=accepted.append,
                on_event=lambda event: seen.append(event["kind"]),
            )
        finally:
            peering.cancel()
            with suppress(asyncio.CancelledError):
                await peering

    assert (result.status, result.outputs, result.replica) == ("done", {"a": 1}, "r2")
    assert len(copies) == 3 and len(set(copies)) == 1  # the same submit, message id and all
    assert accepted == ["r2"]
    assert seen == ["subtask_started"]  # the accept is not one of the task's events


async def test_resend_interval_must_be_positive(tmp_path: Path) -> None:
    address = BrokerAddress("127.0.0.1", 1)
    with pytest.raises(ValueError, match="resend_s"):
        await submit_via_broker(address, TaskGraph("one"), resend_s=0)


# Real replicas -------------------------------------------------------------------------------


@contextmanager
def watching(rig: Rig, *topic_filters: str) -> Iterator[list[tuple[str, Any]]]:
    """Every message on these topics while in the block, as ``(sender, payload)`` (read by a
    thread of its own, so that the test may wait on processes meanwhile)."""
    seen: list[tuple[str, Any]] = []
    subscribed = threading.Event()
    loop = asyncio.new_event_loop()

    async def watch() -> None:
        client = f"fm-watch-{os.getpid()}"
        async with MqttConnection(rig.address(), client, session_expiry_s=0) as mqtt:
            await mqtt.subscribe(*topic_filters)
            subscribed.set()
            async for message in mqtt.messages():
                envelope, payload = parse_envelope(message.payload)
                seen.append((envelope.sender, payload))

    def run(job: asyncio.Task[None]) -> None:
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(job)

    job = loop.create_task(watch())
    thread = threading.Thread(target=run, args=(job,), daemon=True)
    thread.start()
    try:
        rig.until(subscribed.is_set, "the watcher is subscribed")
        yield seen
    finally:
        loop.call_soon_threadsafe(job.cancel)
        thread.join(timeout=30)
        loop.close()


def test_submits_held_by_a_replica_that_hung_and_died_are_run_by_another(tmp_path: Path) -> None:
    keys = [f"x{n}" for n in range(4)]
    with replica_rig(tmp_path) as rig, watching(rig, Topics(FLEET).submit) as seen:
        rig.start_replicas("r1", "r2")
        rig.freeze("r1")  # hung: still connected, so the broker hands it its share
        submitters: list[subprocess.Popen[bytes]] = []
        try:
            for key in keys:
                task = tmp_path / f"{key}.yaml"
                task.write_text(one_subtask(key))
                with (tmp_path / f"{key}.out").open("wb") as out:
                    submitters.append(
                        subprocess.Popen(
                            [
                                *(FLEETMIND, "submit", str(task), "--broker", rig.broker_url),
                                *("--fleet-name", FLEET, *rig.login("orchestrator"), "--json"),
                                *("--timeout", "400", "--orchestrator-timeout", str(DEADLINE_S)),
                            ],
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            rig.until(
                lambda: any(s.poll() == 0 for s in submitters), "r2 answers a submit", alive=("r2",)
            )
            rig.kill("r1")  # dies with the submits the broker handed it
            rig.until(
                lambda: all(s.poll() is not None for s in submitters),
                "every submitter is answered",
                alive=("r2",),
            )
            outputs = [(tmp_path / f"{key}.out").read_text() for key in keys]
            codes = [s.returncode for s in submitters]
            tasks = rig.store().tasks(10)
        finally:
            for submitter in submitters:
                if submitter.poll() is None:
                    os.killpg(submitter.pid, signal.SIGKILL)
                    submitter.wait()
        copies = Counter(task.task_id for _, task in list(seen) if isinstance(task, SubmitPayload))

    assert codes == [0, 0, 0, 0], outputs
    answers = [json.loads(text[text.find("{") :]) for text in outputs]
    for key, answer in zip(keys, answers, strict=True):
        assert (answer["status"], answer["outputs"], answer["replica"]) == (
            "done",
            {"a": f"{key} done"},
            "r2",
        )
    assert max(copies.values()) >= 2, copies  # some submit went to r1 first, and was sent again
    assert rig.runs() == dict.fromkeys(keys, 1)  # every task ran, none twice
    assert sorted((t.status, t.owner) for t in tasks) == [("done", "r2")] * 4


def test_a_repeated_submit_on_a_shared_store_is_left_to_its_owner_or_answered(
    tmp_path: Path,
) -> None:
    with replica_rig(tmp_path) as rig:
        rig.start_replicas("r1", "r2")
        rig.submit()  # the relay task; b holds on the device until the gate opens
        rig.until(lambda: rig.runs()["b"] == 1, "b runs on the device", alive=("r1", "r2"))
        task = rig.the_task()
        graph = read_task_file(rig.workdir / "task.yaml").graph
        body = SubmitPayload(task_id=task.id, graph=graph.to_definition())
        topics = Topics(FLEET)
        accepts: list[tuple[str, Any]] = []

        async def again() -> None:
            """The same submit four times: the replicas take turns, so each gets copies."""
            async with MqttConnection(rig.address(), "fm-again", session_expiry_s=0) as mqtt:
                for _ in range(4):
                    await mqtt.publish(topics.submit, encode("submit", "client", body))

        with watching(rig, topics.task_events(task.id)) as seen:
            asyncio.run(again())

            def answered() -> bool:
                accepts[:] = [
                    (sender, p.event)
                    for sender, p in list(seen)
                    if isinstance(p, TaskEventPayload) and p.event["kind"] == "task_accepted"
                ]
                return {sender for sender, _ in accepts} == {"r1", "r2"}

            rig.until(answered, "both replicas say the task is taken", alive=("r1", "r2"))
            refused = [p for _, p in list(seen) if p.event["kind"] == "task_refused"]
        rig.open_gate()
        answer = rig.submitted()
        runs = rig.runs()

        first: list[str] = []
        after = asyncio.run(
            submit_via_broker(
                rig.address(),
                graph,
                fleet_name=FLEET,
                task_id=task.id,
                timeout_s=DEADLINE_S,
                on_accepted=first.append,
            )
        )
        record = rig.record(task.id)

    assert all(event["replica"] == task.owner for _, event in accepts), accepts
    assert refused == []
    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert runs == {"a": 1, "b": 1, "c": 1}  # nothing ran again, however often it came
    # Once it has ended, the same submit gets the stored result back, and runs nothing.
    assert (after.status, after.outputs) == ("done", RELAY_OUTPUTS)
    assert len(first) == 1
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}
    assert record.status == "done"

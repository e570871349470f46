"""Orchestrator replicas on one PostgreSQL under real faults, every part its own process: a
replica SIGKILLed mid-task (another takes the task over; or it comes back at once and resumes
it) or stopped cleanly (another takes it over), the old owner back after a takeover (it cannot
write), an owner paused (SIGSTOP) past its lease and woken after the takeover (it lets go),
PostgreSQL restarted mid-task, and a device's answer held by the broker for a replica that was
down. Nothing may be lost and nothing finished may run again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from replica_harness import LEASE_S, RELAY_OUTPUTS, Rig, replica_rig

from fleetmind.errors import LeaseLost

pytestmark = pytest.mark.timeout(480)


def kinds(entries: list[Any], kind: str, subtask_id: str | None = None) -> list[Any]:
    """The log entries of one kind (about one subtask)."""
    return [
        e for e in entries if e.kind == kind and (subtask_id is None or e.subtask_id == subtask_id)
    ]


def held_at_b(rig: Rig, *replicas: str) -> tuple[str, str]:
    """Submit the relay task and wait until ``b`` holds on the device: the task's id and its
    owner."""
    rig.submit()
    rig.until(lambda: rig.runs()["b"] == 1, "b runs on the device", alive=replicas)
    task = rig.the_task()
    assert task.owner in replicas, task
    return task.id, task.owner


def test_a_replica_killed_mid_task_is_taken_over_and_nothing_is_lost(tmp_path: Path) -> None:
    replicas = ("r1", "r2", "r3")
    with replica_rig(tmp_path) as rig:
        rig.start_replicas(*replicas)
        task_id, owner = held_at_b(rig, *replicas)
        rig.kill(owner)  # after a is done, while b runs on the device
        survivors = tuple(r for r in replicas if r != owner)
        rig.until(
            lambda: rig.record(task_id).owner in survivors,
            "another replica takes the task over",
            alive=survivors,
        )
        rig.open_gate()
        answer = rig.submitted()
        record = rig.record(task_id)
        assert all(rig.alive(r) for r in survivors), rig.trace()

    assert answer["status"] == "done", answer
    assert answer["outputs"] == RELAY_OUTPUTS  # nothing lost
    assert record.status == "done" and record.owner in survivors
    assert answer["replica"] == record.owner  # the new owner reported the result
    assert record.lease_epoch >= 2
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}  # a was not run again; b's run was joined
    assert rig.runs("end") == {"a": 1, "b": 1, "c": 1}


def test_an_answer_sent_to_a_dead_owner_before_any_takeover_is_not_lost(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        rig.start_replicas("r1", "r2")
        task_id, owner = held_at_b(rig, "r1", "r2")
        other = "r2" if owner == "r1" else "r1"
        rig.freeze(other)  # no one can take the task over yet
        rig.kill(owner)
        rig.wait_for_answer(owner)  # b's answer goes to the dead owner's session
        rig.freeze(other, frozen=False)
        answer = rig.submitted()
        record = rig.record(task_id)

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert answer["replica"] == other == record.owner
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}  # the device's saved answer stood


def test_a_replica_stopped_cleanly_hands_its_task_to_another(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        rig.start_replicas("r1", "r2")
        task_id, owner = held_at_b(rig, "r1", "r2")
        other = "r2" if owner == "r1" else "r1"
        assert rig.stop(owner) == 0, rig.trace()  # its leases are released as it goes
        rig.until(lambda: rig.record(task_id).owner == other, "the other replica takes over")
        rig.open_gate()
        answer = rig.submitted()
        record = rig.record(task_id)

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert answer["replica"] == other
    assert (record.status, record.owner, record.lease_epoch) == ("done", other, 2)
    # The stopped owner left b running on the device: the other replica joined that run.
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}
    assert rig.runs("end") == {"a": 1, "b": 1, "c": 1}


def test_an_owner_restarted_within_its_lease_resumes_its_own_task(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        # A lease far longer than a restart: the other replica must not be the one to resume.
        rig.start_replicas("r1", "r2", lease_s=90)
        task_id, owner = held_at_b(rig, "r1", "r2")
        rig.kill(owner)
        rig.start_replicas(owner, lease_s=90)  # at once, under the same id
        rig.until(lambda: rig.record(task_id).lease_epoch == 2, "the owner claims its task back")
        rig.open_gate()
        answer = rig.submitted()
        record = rig.record(task_id)
        entries = rig.entries(task_id)

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert answer["replica"] == owner
    assert (record.status, record.owner, record.lease_epoch) == ("done", owner, 2)
    assert len(kinds(entries, "task_resumed")) == 1
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}  # nothing done ran again


def test_the_old_owner_restarted_after_a_takeover_cannot_write(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        # A lease long enough that a busy machine does not let the new owner's lapse: the
        # epoch it holds must be the one the task ends with.
        rig.start_replicas("r1", "r2", lease_s=5)
        task_id, old = held_at_b(rig, "r1", "r2")
        new = "r2" if old == "r1" else "r1"
        rig.kill(old)
        rig.until(lambda: rig.record(task_id).owner == new, "the other replica takes over")
        epoch = rig.record(task_id).lease_epoch
        rig.start_replicas(old, lease_s=5)  # back under its id, its broker session with it
        with pytest.raises(LeaseLost):  # what the old owner's engine would write is refused
            rig.store().set_status(task_id, "failed", epoch=1)
        rig.open_gate()  # b's answer goes to the old owner's dispatch and the new owner's
        answer = rig.submitted()
        record = rig.record(task_id)
        entries = rig.entries(task_id)
        assert rig.alive(old) and rig.alive(new), rig.trace()

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert answer["replica"] == new
    # The old owner never took the task back: no claim after the takeover, one resume per claim.
    assert (record.status, record.owner, record.lease_epoch) == ("done", new, epoch)
    assert len(kinds(entries, "task_resumed")) == epoch - 1
    assert [e.subtask_id for e in kinds(entries, "subtask_finished")] == ["a", "b", "c"]
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}


def test_a_paused_owner_taken_over_lets_go_when_it_wakes(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        # The lease the new owner holds must not lapse on a busy machine (see above).
        rig.start_replicas("r1", "r2", lease_s=5)
        task_id, old = held_at_b(rig, "r1", "r2")
        new = "r2" if old == "r1" else "r1"
        rig.freeze(old)  # a hung machine: it neither renews nor lets go
        rig.until(
            lambda: rig.record(task_id).owner == new and rig.record(task_id).lease_epoch >= 2,
            "the other replica takes over",
            alive=(new,),
        )
        epoch = rig.record(task_id).lease_epoch
        rig.freeze(old, frozen=False)
        rig.until(
            lambda: f"task {task_id}: replica {old} lost its lease" in rig.output(old),
            "the old owner finds it lost the task",
            alive=(old, new),
        )
        rig.open_gate()
        answer = rig.submitted()
        record = rig.record(task_id)
        entries = rig.entries(task_id)
        assert rig.alive(old) and rig.alive(new), rig.trace()

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert answer["replica"] == new
    # The woken owner wrote nothing: no claim after the takeover, one resume per claim, each
    # subtask finished once.
    assert (record.status, record.owner, record.lease_epoch) == ("done", new, epoch)
    assert len(kinds(entries, "task_resumed")) == epoch - 1
    assert [e.subtask_id for e in kinds(entries, "subtask_finished")] == ["a", "b", "c"]
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}


def test_postgresql_restarted_mid_task_the_replicas_reconnect_and_finish(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        rig.start_replicas("r1", "r2")
        task_id, owner = held_at_b(rig, "r1", "r2")
        rig.forget_store()
        rig.postgres.stop("fast")  # every replica's connections are closed
        down_since = time.monotonic()
        rig.until(
            lambda: all("lost PostgreSQL" in rig.output(r) for r in ("r1", "r2")),
            "each replica notices",
            alive=("r1", "r2"),
        )
        rig.wait_for_answer(owner)  # b ends while the store is down: its outcome must wait
        # The outage outlasts every lease: back, the replicas find them all lapsed.
        rig.until(lambda: time.monotonic() > down_since + 2 * LEASE_S, "the leases lapse")
        rig.postgres.start()  # the same port, the same data
        answer = rig.submitted()
        rig.until(
            lambda: all("reached PostgreSQL" in rig.output(r) for r in ("r1", "r2")),
            "each replica reaches the store again",
            alive=("r1", "r2"),
        )
        record = rig.record(task_id)
        assert rig.alive("r1") and rig.alive("r2"), rig.trace()  # no replica died of it

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert record.status == "done" and record.owner == answer["replica"]
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}


def test_an_answer_held_by_the_broker_for_a_killed_replica_is_used(tmp_path: Path) -> None:
    with replica_rig(tmp_path) as rig:
        rig.start_replicas("r1")
        task_id, _ = held_at_b(rig, "r1")
        rig.kill("r1")
        rig.wait_for_answer("r1")  # the device answers while r1 is down: its session holds it
        rig.start_replicas("r1")
        answer = rig.submitted()
        record = rig.record(task_id)
        entries = rig.entries(task_id)

    assert answer["status"] == "done" and answer["outputs"] == RELAY_OUTPUTS, answer
    assert (record.status, record.owner, record.lease_epoch) == ("done", "r1", 2)
    # The kept answer was taken: b was not requeued nor started again.
    assert kinds(entries, "subtask_requeued", "b") == []
    assert len(kinds(entries, "subtask_started", "b")) == 1
    assert rig.runs() == {"a": 1, "b": 1, "c": 1}

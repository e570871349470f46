"""Tasks submitted over the broker, run on a fleet: the replicas' side of ``fleetmind submit``.

A client publishes a task's graph on the fleet's submit topic (:func:`submit_via_broker`); the
orchestrator replicas that accept tasks subscribe to it — as one MQTT shared-subscription group
when they have one, so each task goes to one replica — and the replica that takes it runs it on
its fleet and publishes the task's events and result on the task's own topic. They subscribe on
a connection that keeps no session, so that a replica that dies takes no share of the tasks
submitted after it. A replica says at once that it has a task (a ``task_accepted`` event, sent
as soon as the task is in its store, before it starts to run), since the client sends the
submit again until one does: a submit handed to a replica that hung and then died is not lost.

Replicas that share one store (each a :class:`~fleetmind.orchestrator.Replica` fleet) own their
tasks under leases. A task whose replica stopped is taken over by another, which follows it
from then on exactly as it follows the tasks submitted to it: the client that submitted it
keeps waiting on the task's topic and gets the result from the new owner. A replica that loses
a task that way stops following it and says nothing more about it.

A client cancels a task by publishing ``task_cancel`` on the task's control topic. Every
replica that takes tasks hears it; the one that follows the task cancels it there, and the
task's end goes out on its events topic as any end does. The others ignore it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fleetmind.agents.remote import DeviceLink
from fleetmind.errors import (
    FleetmindError,
    FleetStateError,
    LeaseLost,
    ProtocolError,
    StoreError,
    TaskNotFound,
    error_outcome,
)
from fleetmind.orchestrator import Fleet, TaskGraph, TaskHandle, TaskResult
from fleetmind.protocols import (
    Message,
    MqttConnection,
    SubmitPayload,
    TaskCancelPayload,
    TaskEventPayload,
    Topics,
    encode,
    parse_envelope,
)
from fleetmind.serve._submit import ACCEPTED

log = logging.getLogger("fleetmind.fleet_link")

_REMEMBERED = 10_000
"""Ids of accepted tasks kept to recognise a redelivered submit."""

_ENDED = ("done", "failed", "cancelled")


class FleetIntake:
    """Runs tasks submitted over the broker on ``fleet`` (a :class:`TaskIntake` of a link), and
    follows the tasks the fleet takes over from other replicas.

    Args:
        fleet: Where the tasks run; it must be open (``async with fleet``) while the link is.
        share_group: Replicas of one group split submitted tasks between them (an MQTT shared
            subscription); without a group every replica that accepts tasks gets every one.
    """

    def __init__(self, fleet: Fleet, share_group: str | None = None) -> None:
        self.fleet = fleet
        self.share_group = share_group
        self._accepted: dict[str, None] = {}
        self._following: set[str] = set()
        self._driving: dict[str, TaskHandle] = {}
        """The tasks a cancel request here is for: those followed, and those about to be."""
        self._link: DeviceLink | None = None
        self._taken: list[TaskHandle] = []
        """Tasks taken over before the link opened: followed once it is."""
        fleet.on_takeover(self._taken_over)

    # The link's side ------------------------------------------------------------------------

    def attach(self, link: DeviceLink) -> None:
        """Publish on ``link`` (open) from now on, starting with the tasks taken over so far."""
        self._link = link
        taken, self._taken = self._taken, []
        for handle in taken:
            self._taken_over(handle)

    def detach(self) -> None:
        """The link is closing: nothing more is published on it."""
        self._link = None

    @contextlib.asynccontextmanager
    async def listening(self, link: DeviceLink) -> AsyncIterator[None]:
        """Take submitted tasks while in the block, on a connection of the link's login that
        keeps no session.

        A replica that dies must leave no session in the replicas' shared subscription: the
        broker would queue there its share of the tasks submitted from then on, to wait for
        that replica instead of going to the replicas that are up.
        """
        client_id = link.broker.client_id("intake", link.replica_id)
        async with MqttConnection(link.broker, client_id, session_expiry_s=0) as mqtt:
            mqtt.handle_messages(partial(self._received, link))
            await mqtt.subscribe(self.topic_filter(link.topics, mqtt.protocol))
            await mqtt.subscribe(link.topics.all_task_control)
            yield

    def _received(self, link: DeviceLink, message: Message) -> None:
        try:
            envelope, payload = parse_envelope(message.payload)
        except ProtocolError as exc:
            log.warning("ignored a malformed message on %s: %s", message.topic, exc.message)
            return
        if isinstance(payload, TaskCancelPayload):
            if message.topic != link.topics.task_control(payload.task_id):
                log.warning("ignored a cancel of task %s on %s", payload.task_id, message.topic)
                return
            self.cancel_requested(link, envelope.sender, payload)
            return
        if not isinstance(payload, SubmitPayload) or message.topic != link.topics.submit:
            log.warning("ignored a %s message on %s", envelope.kind, message.topic)
            return
        with contextlib.suppress(FleetStateError):  # the link is closing: taken by no one
            self.submitted(link, envelope.sender, payload)

    def cancel_requested(self, link: DeviceLink, sender: str, request: TaskCancelPayload) -> None:
        """Cancel a task this replica follows; a task followed elsewhere (or ended) is left be."""
        handle = self._driving.get(request.task_id)
        if handle is None:
            log.debug(
                "task %s is not driven here: its cancel is left to its owner", request.task_id
            )
            return
        log.info("task %s: cancelled by %s (%s)", request.task_id, sender, request.reason)
        with contextlib.suppress(FleetStateError):  # the link is closing: the task resumes later
            link.spawn(_cancel(handle, request.reason))

    def topic_filter(self, topics: Topics, protocol: str) -> str:
        if self.share_group and protocol == "3.1.1":
            # Shared subscriptions are MQTT 5 (the embedded development broker has none): this
            # replica takes every submitted task.
            log.warning(
                "the broker speaks MQTT 3.1.1 only: group %r cannot split tasks between replicas",
                self.share_group,
            )
            return topics.intake(None)
        return topics.intake(self.share_group)

    def submitted(self, link: DeviceLink, sender: str, task: SubmitPayload) -> None:
        if task.task_id in self._accepted:
            # Delivered again: the task runs here (its end is reported), or has ended (its
            # result is sent again).
            link.spawn(self._again(link, task.task_id))
            return
        self._accepted[task.task_id] = None
        while len(self._accepted) > _REMEMBERED:
            self._accepted.pop(next(iter(self._accepted)))
        link.spawn(self._run(link, sender, task))

    def _taken_over(self, handle: TaskHandle) -> None:
        link = self._link
        if link is None or link.state != "open":
            self._taken.append(handle)  # the link is not open yet: followed once it is
            return
        log.info("task %s taken over by replica %s", handle.task_id, link.replica_id)
        with contextlib.suppress(FleetStateError):  # closing: the next owner reports it
            link.spawn(self.follow(link, handle))

    # Running and following ------------------------------------------------------------------

    async def _run(self, link: DeviceLink, sender: str, submitted: SubmitPayload) -> None:
        """Run a submitted task and stream its events to its topic; never raises."""
        task_id = submitted.task_id
        # A task can arrive (from this replica's session) before the fleet is entered.
        await self.fleet.wait_open()
        if await self._known(link, task_id):
            return
        try:
            graph = TaskGraph.from_definition(submitted.graph)
            # Created off the event loop: a store across the network must not hold it up.
            handle = await self.fleet.asubmit(
                graph, task_id=task_id, source=submitted.source or f"mqtt:{sender}"
            )
        except Exception as exc:  # a bad submission must not take the link down
            if isinstance(exc, StoreError) and await self._known(link, task_id):
                return  # another replica created it meanwhile (the same submit, redelivered)
            error = error_outcome(exc)
            log.warning("refused task %s from %s: %s", task_id, sender, error["message"])
            with contextlib.suppress(ProtocolError, FleetStateError):
                await _send_event(
                    link,
                    task_id,
                    {"kind": "task_refused", "task_id": task_id},
                    {"status": "failed", "outputs": {}, "errors": {"": error}},
                )
            return
        # Stored: from now on the task survives this replica (another takes it over), so the
        # client may stop sending it. Said before anything else, to leave it little time to
        # send it to another replica meanwhile.
        self._driving[task_id] = handle  # a cancel sent once it is accepted finds it
        try:
            await _accept(link, task_id, link.replica_id)
        except BaseException:
            self._driving.pop(task_id, None)
            raise
        log.info("running task %s from %s on replica %s", task_id, sender, link.replica_id)
        await self.follow(link, handle)

    async def _again(self, link: DeviceLink, task_id: str) -> None:
        await self.fleet.wait_open()
        await self._known(link, task_id)

    async def _known(self, link: DeviceLink, task_id: str) -> bool:
        """Whether the store has this task already (a submit delivered again, perhaps after
        its first replica stopped): one that ended has its stored result published again; one
        that runs is left to its owner, which reports its end. False too when the store cannot
        be read. Never raises."""
        try:
            # Read off the event loop: a store across the network must not hold the link up.
            record, entries = await asyncio.to_thread(self.fleet.store.load, task_id)
        except TaskNotFound:
            return False
        except StoreError as exc:  # the submit goes on, and is refused with the store's error
            log.warning("task %s: cannot read it in the store: %s", task_id, exc.message)
            return False
        if record.status not in _ENDED:
            where = f"replica {record.owner}" if record.owner else "its replica"
            log.info("task %s is in the store already: %s on %s", task_id, record.status, where)
            # Its owner (or whichever replica takes it over) reports it: the client may stop
            # sending the submit.
            await _accept(link, task_id, record.owner or link.replica_id)
            return True
        try:
            result = TaskResult.of(task_id, TaskGraph.from_log(entries, name=record.name))
        except FleetmindError as exc:
            log.warning("task %s ended, but its log cannot be read: %s", task_id, exc.message)
            return True
        log.info(
            "task %s is in the store already: it ended (%s); its result is sent again",
            task_id,
            result.status,
        )
        with contextlib.suppress(ProtocolError, FleetStateError):
            await _send_result(link, result, record.status)
        return True

    async def follow(self, link: DeviceLink, handle: TaskHandle) -> None:
        """Publish a task's events and its result on the task's topic until it ends here: a
        task submitted to this replica, or one it took over. Never raises (but cancellation).

        A task another replica takes over (:class:`LeaseLost`) is that one's to report.
        """
        task_id = handle.task_id
        if task_id in self._following:
            return
        self._following.add(task_id)
        self._driving[task_id] = handle
        try:
            async for event in handle.events():
                await _send_event(link, task_id, {**dataclasses.asdict(event)}, None)
            result = await handle.result()
            await _send_result(link, result, result.status)
        except LeaseLost:
            log.warning(
                "task %s: replica %s lost its lease; the replica that took it over reports it",
                task_id,
                link.replica_id,
            )
        except StoreError as exc:  # out of reach: the fleet resumes it once it answers again
            log.warning("task %s: stopped on replica %s: %s", task_id, link.replica_id, exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the link is closing
            # The task's driver was cancelled (the fleet is closing): it stays resumable.
            log.info("task %s stopped on replica %s; it resumes later", task_id, link.replica_id)
        except (ProtocolError, FleetStateError) as exc:
            log.warning("could not report task %s: %s", task_id, exc)
        except Exception:
            log.exception("task %s failed inside the fleet link", task_id)
        finally:
            self._following.discard(task_id)
            self._driving.pop(task_id, None)


async def _cancel(handle: TaskHandle, reason: str) -> None:
    """Cancel a followed task; its follower reports how it ended (and any error). Never raises."""
    with contextlib.suppress(Exception):
        await handle.cancel(reason)


async def _accept(link: DeviceLink, task_id: str, replica: str) -> None:
    """Tell the task's submitter that ``replica`` has the task; never raises."""
    accepted = {"kind": ACCEPTED, "task_id": task_id, "replica": replica}
    with contextlib.suppress(ProtocolError, FleetStateError):
        await _send_event(link, task_id, accepted, None)


async def _send_result(link: DeviceLink, result: TaskResult, status: str) -> None:
    summary = {"status": status, "outputs": result.outputs, "errors": result.errors}
    finished = {"kind": "task_result", "task_id": result.task_id, "replica": link.replica_id}
    await _send_event(link, result.task_id, finished, summary)


async def _send_event(
    link: DeviceLink, task_id: str, event: dict[str, Any], result: dict[str, Any] | None
) -> None:
    body = TaskEventPayload(task_id=task_id, event=event, result=result)
    await link.connection.publish(
        link.topics.task_events(task_id), encode("task_event", link.replica_id, body)
    )

"""The webhook sender on its own, against a real receiver: it never waits on a webhook, keeps each
webhook's updates in order, retries what may pass later, and says so in one line when it gives up.
"""

from __future__ import annotations

import logging
import threading

import pytest
from a2a.server.context import ServerCallContext
from a2a.server.tasks import InMemoryPushNotificationConfigStore
from a2a.types import (
    AuthenticationInfo,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError
from webhook_receiver import Call, Receiver

from fleetmind.serve._a2a_push import CheckedPushConfigStore, WebhookSender

pytestmark = pytest.mark.timeout(90)
TASK = "task-1"
STATES = (
    TaskState.TASK_STATE_SUBMITTED,
    TaskState.TASK_STATE_WORKING,
    TaskState.TASK_STATE_INPUT_REQUIRED,
    TaskState.TASK_STATE_WORKING,
    TaskState.TASK_STATE_COMPLETED,
)


async def _configs(*urls: str) -> CheckedPushConfigStore:
    store = CheckedPushConfigStore(InMemoryPushNotificationConfigStore())
    for n, url in enumerate(urls):
        config = TaskPushNotificationConfig(
            id=f"hook-{n}",
            url=url,
            token=f"token-{n}",
            authentication=AuthenticationInfo(scheme="Bearer", credentials=f"secret-{n}"),
        )
        await store.set_info(TASK, config, ServerCallContext())
    return store


def _update(state: TaskState) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(task_id=TASK, context_id="c", status=TaskStatus(state=state))


def _states(calls: list[Call]) -> list[TaskState]:
    return [c.update.status_update.status.state for c in calls]


async def test_updates_are_queued_at_once_and_arrive_in_order() -> None:
    release = threading.Event()
    with Receiver(hold=release) as receiver:
        store = await _configs(receiver.url + "/hook")
        async with WebhookSender(store) as sender:
            # The webhook answers nothing until released: a sender that waited on it would
            # hang here.
            for state in STATES:
                await sender.send_notification(TASK, _update(state))
            release.set()
            calls = await receiver.wait_for(lambda calls: len(calls) == len(STATES))
    assert _states(calls) == list(STATES)
    assert {c.headers["authorization"] for c in calls} == {"Bearer secret-0"}
    assert {c.headers["x-a2a-notification-token"] for c in calls} == {"token-0"}


async def test_a_webhook_that_fails_for_a_while_gets_each_update_once_in_order() -> None:
    with Receiver(refuse_first=3) as receiver:
        store = await _configs(receiver.url + "/flaky")
        async with WebhookSender(store, backoff_s=0.01) as sender:
            for state in STATES:
                await sender.send_notification(TASK, _update(state))
            calls = await receiver.wait_for(lambda calls: len(calls) == len(STATES))
    assert receiver.refused == 3
    assert _states(calls) == list(STATES)


async def test_a_final_refusal_is_given_up_at_once_in_one_line_and_the_next_update_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Receiver(refuse_first=1, refuse_status=400) as receiver:
        store = await _configs(receiver.url + "/strict?key=hidden")
        async with WebhookSender(store, backoff_s=0.01) as sender:
            with caplog.at_level(logging.WARNING, logger="fleetmind.a2a.push"):
                for state in STATES[:2]:
                    await sender.send_notification(TASK, _update(state))
                calls = await receiver.wait_for(lambda calls: len(calls) == 1)
    assert receiver.refused == 1  # not retried: a 400 will not pass later
    assert _states(calls) == [TaskState.TASK_STATE_WORKING]
    lines = [r.getMessage() for r in caplog.records if r.name == "fleetmind.a2a.push"]
    assert lines == [
        f"push notification for task {TASK} to {receiver.url}/strict given up after "
        "1 attempt(s): HTTP 400"
    ]


async def test_a_stuck_webhook_does_not_hold_back_another() -> None:
    release = threading.Event()
    with Receiver(hold=release) as stuck, Receiver() as alive:
        store = await _configs(stuck.url + "/stuck", alive.url + "/alive")
        async with WebhookSender(store, drain_s=0) as sender:
            for state in STATES:
                await sender.send_notification(TASK, _update(state))
            calls = await alive.wait_for(lambda calls: len(calls) == len(STATES))
            assert stuck.calls == []  # still held while the other webhook got everything
    assert _states(calls) == list(STATES)
    assert {c.headers["authorization"] for c in calls} == {"Bearer secret-1"}


async def test_a_webhook_far_behind_loses_its_oldest_updates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    with Receiver(hold=release) as receiver:
        store = await _configs(receiver.url + "/slow")
        async with WebhookSender(store, max_pending=2) as sender:
            with caplog.at_level(logging.WARNING, logger="fleetmind.a2a.push"):
                for state in STATES:
                    await sender.send_notification(TASK, _update(state))
                release.set()
                calls = await receiver.wait_for(
                    lambda calls: TaskState.TASK_STATE_COMPLETED in _states(calls)
                )
    got = _states(calls)
    assert got == list(STATES[-len(got) :])  # the newest, in order
    assert len(got) < len(STATES)
    lines = [r.getMessage() for r in caplog.records if "falls behind" in r.getMessage()]
    assert len(lines) == 1


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "mailto:someone@example.com", "/relative/hook", "http://"]
)
async def test_a_webhook_that_is_not_http_is_refused_before_it_is_kept(url: str) -> None:
    store = CheckedPushConfigStore(InMemoryPushNotificationConfigStore())
    with pytest.raises(InvalidParamsError, match="must be an http:// or https:// URL"):
        await store.set_info(TASK, TaskPushNotificationConfig(url=url), ServerCallContext())
    assert await store.get_info_for_dispatch(TASK) == []

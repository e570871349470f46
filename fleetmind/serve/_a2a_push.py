"""A2A push notifications: webhook configs checked when given, task updates delivered to them.

A client that will not hold a stream open for a long task gives a webhook instead (with
``CreateTaskPushNotificationConfig``, or inline in ``SendMessage``'s configuration); every
update of the task is then POSTed to it as a ``StreamResponse`` (camelCase JSON), carrying the
config's ``authentication`` as the ``Authorization`` header (``<scheme> <credentials>``) and its
``token`` as ``X-A2A-Notification-Token``, so that the receiver knows the call is ours.

A webhook is the client's server, and it may be slow or down: delivery never holds the task
back. Each webhook of each task has its own queue, drained in order by one worker; a failing
call is retried with backoff a few times, then given up with one log line, and the next update
is tried as usual. What is still queued when the server stops gets a short grace, then is
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from a2a.server.context import ServerCallContext
from a2a.server.tasks import PushNotificationConfigStore, PushNotificationSender
from a2a.server.tasks.push_notification_sender import PushNotificationEvent
from a2a.types import TaskPushNotificationConfig
from a2a.utils.errors import InvalidParamsError
from a2a.utils.proto_utils import to_stream_response
from google.protobuf.json_format import MessageToDict

log = logging.getLogger("fleetmind.a2a.push")

TOKEN_HEADER = "X-A2A-Notification-Token"
"""The header that carries the config's ``token`` back to the client's webhook."""

_SCHEME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP authentication scheme is a header token (RFC 9110)."""
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")
"""What a header value may hold: printable ASCII, so that no value can smuggle a header in."""
_RETRYABLE_STATUS = frozenset({408, 425, 429})
"""Besides 5xx, the answers that say "try again later"; any other 4xx is final."""


# ------------------------------------------------------------------------------------------
# Configs: refused at once when they cannot be honoured
# ------------------------------------------------------------------------------------------


def check_push_config(config: TaskPushNotificationConfig) -> None:
    """Refuse a webhook config that could never be delivered as asked.

    Raises:
        InvalidParamsError: The URL is not an absolute http(s) URL, or the authentication or
            token cannot be sent as an HTTP header.
    """
    url = config.url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise InvalidParamsError(
            message=f"push notification URL {url!r} is not valid: {exc}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParamsError(
            message=f"push notification URL must be an http:// or https:// URL, got {url!r}"
        )
    if config.HasField("authentication"):
        scheme, credentials = config.authentication.scheme, config.authentication.credentials
        if scheme or credentials:
            if not _SCHEME.fullmatch(scheme):
                raise InvalidParamsError(
                    message="push notification authentication needs an HTTP scheme such as "
                    f"Bearer or Basic, got {scheme!r}"
                )
            if not credentials:
                raise InvalidParamsError(
                    message=f"push notification authentication scheme {scheme!r} has no "
                    "credentials to send"
                )
            if not _HEADER_TEXT.fullmatch(credentials):
                raise InvalidParamsError(
                    message="push notification credentials must be printable ASCII "
                    "(they travel in the Authorization header)"
                )
    if not _HEADER_TEXT.fullmatch(config.token):
        raise InvalidParamsError(
            message="push notification token must be printable ASCII "
            f"(it travels in {TOKEN_HEADER})"
        )


def webhook_headers(config: TaskPushNotificationConfig) -> dict[str, str]:
    """The headers that authenticate a call to the config's webhook, as the client asked."""
    headers: dict[str, str] = {}
    auth = config.authentication
    if config.HasField("authentication") and auth.scheme and auth.credentials:
        headers["Authorization"] = f"{auth.scheme} {auth.credentials}"
    if config.token:
        headers[TOKEN_HEADER] = config.token
    return headers


class CheckedPushConfigStore(PushNotificationConfigStore):
    """A config store that refuses undeliverable configs before they are kept.

    Every way in (``CreateTaskPushNotificationConfig`` and the config inline in
    ``SendMessage``) goes through :meth:`set_info`, so the client gets the reason as an
    ``InvalidParams`` error at config time instead of silent failures later.
    """

    def __init__(self, inner: PushNotificationConfigStore) -> None:
        self._inner = inner

    async def set_info(
        self,
        task_id: str,
        notification_config: TaskPushNotificationConfig,
        context: ServerCallContext,
    ) -> TaskPushNotificationConfig | None:
        """Check the config, then keep it in the wrapped store."""
        check_push_config(notification_config)
        return await self._inner.set_info(task_id, notification_config, context)

    async def get_info(
        self, task_id: str, context: ServerCallContext
    ) -> list[TaskPushNotificationConfig]:
        """The caller's configs for the task."""
        return await self._inner.get_info(task_id, context)

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        """Every config of the task, whoever made it."""
        return await self._inner.get_info_for_dispatch(task_id)

    async def delete_info(
        self, task_id: str, context: ServerCallContext, config_id: str | None = None
    ) -> None:
        """Forget one of the caller's configs for the task (all of them without an id)."""
        await self._inner.delete_info(task_id, context, config_id)


# ------------------------------------------------------------------------------------------
# Delivery: one ordered queue per webhook of a task, retried, never in the task's way
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Delivery:
    """One update on its way to one webhook: what to POST, where, and with which headers."""

    task_id: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Webhook:
    """The updates waiting for one webhook of one task, and the worker sending them."""

    pending: deque[_Delivery] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    dropped: int = 0


class WebhookSender(PushNotificationSender):
    """Delivers each task update to the task's webhooks, in order, retrying failed calls.

    :meth:`send_notification` only queues (the SDK awaits it inside the task's event loop);
    workers owned by this sender make the calls. Use it as an async context manager: the HTTP
    client is made on enter, and on exit queued updates get ``drain_s`` seconds before the
    workers are cancelled.

    Args:
        configs: Where the webhooks of each task are kept.
        timeout_s: The time one call may take.
        attempts: Calls per update before it is given up.
        backoff_s: The wait before the first retry; it doubles with each further retry.
        max_pending: Updates a webhook may have waiting; beyond, the oldest is dropped.
        drain_s: How long closing waits for queued updates.
    """

    def __init__(
        self,
        configs: PushNotificationConfigStore,
        *,
        timeout_s: float = 10.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
        max_pending: int = 256,
        drain_s: float = 3.0,
    ) -> None:
        if attempts < 1 or max_pending < 1 or timeout_s <= 0 or backoff_s < 0 or drain_s < 0:
            raise ValueError("push delivery needs attempts and max_pending >= 1, timeout_s > 0")
        self._configs = configs
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_pending = max_pending
        self._drain_s = drain_s
        self._webhooks: dict[tuple[str, str], _Webhook] = {}
        self._client: httpx.AsyncClient | None = None
        self._group: asyncio.TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        if self._client is not None:
            raise RuntimeError("the push notification sender is already open")
        async with contextlib.AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
            )
            # The group is entered last so that it is left first: workers end before the
            # client they use is closed.
            self._group = await stack.enter_async_context(asyncio.TaskGroup())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        workers = [w.worker for w in self._webhooks.values() if w.worker is not None]
        if workers and self._drain_s > 0:
            await asyncio.wait(workers, timeout=self._drain_s)
        self._group = None  # no new worker from here on
        for webhook in self._webhooks.values():
            if webhook.worker is not None:
                webhook.worker.cancel()
        try:
            await self._stack.aclose()
        finally:
            self._client = None
            dropped = sum(len(w.pending) for w in self._webhooks.values())
            self._webhooks.clear()
            if dropped:
                log.warning("push notifications: %d update(s) not sent before shutdown", dropped)

    async def send_notification(self, task_id: str, event: PushNotificationEvent) -> None:
        """Queue ``event`` for every webhook of ``task_id``; returns without waiting on them."""
        if self._group is None:
            return
        try:
            configs = await self._configs.get_info_for_dispatch(task_id)
        except Exception as exc:  # a store failure must not reach the task
            log.warning("push notifications for task %s skipped: %s", task_id, exc)
            return
        if not configs:
            return
        body = MessageToDict(to_stream_response(event))
        for config in configs:
            self._queue(
                (task_id, config.id),
                _Delivery(task_id, config.url, webhook_headers(config), body),
            )

    def _queue(self, key: tuple[str, str], delivery: _Delivery) -> None:
        webhook = self._webhooks.setdefault(key, _Webhook())
        if len(webhook.pending) >= self._max_pending:
            webhook.pending.popleft()
            webhook.dropped += 1
            if webhook.dropped == 1:
                log.warning(
                    "push notifications for task %s to %s: the webhook falls behind, "
                    "dropping the oldest updates",
                    delivery.task_id,
                    _shown(delivery.url),
                )
        webhook.pending.append(delivery)
        if webhook.worker is None and self._group is not None:
            webhook.worker = self._group.create_task(self._drain(key, webhook))

    async def _drain(self, key: tuple[str, str], webhook: _Webhook) -> None:
        """Send the webhook's updates one after the other; the worker ends when none is left."""
        try:
            while webhook.pending:
                delivery = webhook.pending.popleft()
                try:
                    await self._deliver(delivery)
                except Exception as exc:  # a worker that raised would stop the whole server
                    log.warning(
                        "push notification for task %s to %s given up: %s",
                        delivery.task_id,
                        _shown(delivery.url),
                        exc,
                    )
        finally:
            # No await between the last check and here: an update queued meanwhile would
            # have found this worker still running.
            if self._webhooks.get(key) is webhook and not webhook.pending:
                del self._webhooks[key]
            webhook.worker = None

    async def _deliver(self, delivery: _Delivery) -> None:
        """POST one update, retrying what may pass later; give up with one log line."""
        assert self._client is not None
        problem = ""
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 2))
            try:
                response = await self._client.post(
                    delivery.url, json=delivery.body, headers=delivery.headers
                )
            except httpx.HTTPError as exc:
                problem = _describe(exc)
                continue
            if response.is_success:
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in _RETRYABLE_STATUS:
                break
        log.warning(
            "push notification for task %s to %s given up after %d attempt(s): %s",
            delivery.task_id,
            _shown(delivery.url),
            attempt,
            problem,
        )


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _shown(url: str) -> str:
    """The URL for a log line, without user info or query (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"

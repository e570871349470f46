"""The PostgreSQL store's connections: a pool driven by an event loop on a thread of its own.

The store's methods are synchronous (the engine creates tasks from inside its event loop, the
CLI has no loop at all) and its writes are awaited by the engine; both hand their work to this
loop, so that neither blocks on the other and a sync call made inside a running loop waits on
another thread rather than on the loop it is blocking. Every operation is retried while the
server is out of reach (restarted, a connection dropped), for up to ``reconnect_s`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from fleetmind.errors import StoreError
from fleetmind.orchestrator._store_postgres_schema import migrate
from fleetmind.orchestrator._store_postgres_target import (
    Target,
    connect_error,
    failure,
    libpq_reason,
    lost,
)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[TupleRow]
log = logging.getLogger("fleetmind.store")
_POOL_NAME = "fleetmind-store"
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0
_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
"""A server that vanished without closing its connections is noticed within half a minute."""


_pooled: weakref.WeakSet[Connection] = weakref.WeakSet()
"""The connections of the stores' pools, whose reports psycopg_pool's log leaves out."""


class _QuietPool(logging.Filter):
    """Leaves psycopg_pool's reports about the stores' own pools out of its log: libpq's
    messages span lines, and come once per attempt while a server restarts; the store says
    an outage and its end in one line each instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(arg == _POOL_NAME or _is_pooled(arg) for arg in args)


def _is_pooled(value: object) -> bool:
    try:
        return value in _pooled
    except TypeError:  # not hashable, so not a connection
        return False


async def _remember(conn: Connection) -> None:
    _pooled.add(conn)


_pool_log = logging.getLogger("psycopg.pool")
if not any(isinstance(kept, _QuietPool) for kept in _pool_log.filters):
    _pool_log.addFilter(_QuietPool())


_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})
"""The server shut down (by an administrator, or crashing) or is starting: it comes back."""
_CONFLICTS = frozenset({"40P01", "40001"})
"""A deadlock or a serialization failure: the transaction lost a race, and another try wins."""


def is_connection_lost(exc: BaseException) -> bool:
    """Whether the connection or the server failed (not the statement): trying again once the
    server is back helps. A statement refused for what it is (a disk full, a query cancelled)
    fails the same way every time."""
    if isinstance(exc, PoolClosed) or not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, PoolTimeout | TooManyRequests):  # no connection free, or to be had
        return True
    code = exc.sqlstate
    return code is None or code.startswith("08") or code in _SERVER_GONE


def is_conflict(exc: BaseException) -> bool:
    """Whether the transaction lost a race with another (a deadlock, a serialization
    failure): trying it again succeeds, the server is fine."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in _CONFLICTS


class Link:
    """A connection pool to one database, on an event loop that a daemon thread runs.

    Opening makes the first connection directly, with a short timeout, so that a wrong URL
    or a server that is down is told at once and in words; then it migrates the schema.
    """

    def __init__(
        self,
        target: Target,
        *,
        pool_size: int,
        reconnect_s: float,
        connect_timeout: float,
        read_only: bool = False,
    ) -> None:
        self.target = target
        self.reconnect_s = reconnect_s
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self.read_only = read_only
        self._outage_deadline: float | None = None
        """When the server went out of reach plus ``reconnect_s`` (None: it is reachable)."""
        self.retried = 0
        """Operations tried again after the connection or server failed."""
        self._closed = False
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._pool: AsyncConnectionPool[Connection] | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"fleetmind-postgres {target.where}", daemon=True
        )
        self._thread.start()
        try:
            self._wait(self._open(pool_size))
        except BaseException:
            self._closed = True
            self._stop_loop()
            raise

    # Opening and closing ---------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True, **_KEEPALIVES}
        if not self.target.has_connect_timeout:
            kwargs["connect_timeout"] = max(1, math.ceil(self._connect_timeout))
        return kwargs

    async def _open(self, pool_size: int) -> None:
        kwargs = self._connect_kwargs()
        try:
            first = await psycopg.AsyncConnection.connect(self.target.url, **kwargs)
        except psycopg.Error as exc:
            raise connect_error(self.target, exc, self._connect_timeout) from exc
        try:
            await migrate(first, self.target, read_only=self.read_only)
        except psycopg.OperationalError as exc:
            raise connect_error(self.target, exc, self._connect_timeout) from exc
        finally:
            await first.close()
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.target.url,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            open=False,
            name=_POOL_NAME,
            configure=_remember,
            timeout=self._connect_timeout,
            reconnect_timeout=max(self.reconnect_s, self._connect_timeout),
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise connect_error(self.target, exc, self._connect_timeout) from exc
        self._pool = pool

    def close(self, drain: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``drain`` (the pending writes), close the pool and stop the thread; twice is
        harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            calls = list(self._calls)
        concurrent.futures.wait(calls)  # the calls already made end first, as writes do
        try:
            self._wait(self._shutdown(drain))
        finally:
            self._stop_loop()

    async def _shutdown(self, drain: Callable[[], Awaitable[None]] | None) -> None:
        try:
            if drain is not None:
                await drain()
        finally:
            if self._pool is not None:
                await self._pool.close(timeout=self._connect_timeout)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    # Handing work to the loop ----------------------------------------------------------------

    def _closed_error(self) -> StoreError:
        return StoreError(f"the store at {self.target.where} is closed")

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise StoreError("the PostgreSQL store cannot wait on itself from its own thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (from any other thread)."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise StoreError("the PostgreSQL store cannot wait on itself from its own thread")
        with self._lock:
            if self._closed:
                coroutine.close()
                raise self._closed_error()
            future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
            self._calls.add(future)
        future.add_done_callback(self._calls.discard)
        return future.result()

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop, in the order of the calls."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            self.loop.call_soon_threadsafe(callback, *args)

    def run(self, what: str, operation: Callable[[Connection], Awaitable[T]]) -> T:
        """:meth:`using`, waited for."""
        return self.call(self.using(what, operation))

    async def using(
        self,
        what: str,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        on_retry: Callable[[], object] | None = None,
    ) -> T:
        """Run ``operation`` with a pooled connection (on the loop), again while the server is
        out of reach, until ``reconnect_s`` seconds from the start of the outage: every
        operation waiting through one outage shares its deadline, so that one queued behind
        another does not wait a second window. A deadlock or serialization failure is tried
        again at once (for as long); any other refusal fails at once.

        Args:
            what: The operation in words, for messages ("read", "write").
            operation: Runs on a connection; it may run more than once, so it is one
                transaction, or a statement that is harmless to repeat.
            on_retry: Called before each repeat (the first try's commit may have landed).

        Raises:
            StoreUnavailable: the server stayed out of reach until the deadline.
            StoreError: the server refused the statement.
        """
        assert self._pool is not None
        if what == "write" and self.read_only:
            raise self.read_only_error()
        conflicts_until: float | None = None
        delay = _FIRST_DELAY_S
        while True:
            started = time.monotonic()
            outage = self._outage_deadline
            left = self.reconnect_s if outage is None else outage - started
            # Past the outage's deadline an operation still gets one try, as long as a
            # connection may take: the server may be back, the pool reconnecting.
            wait_s = max(left, self._connect_timeout, 1.0)
            try:
                async with self._pool.connection(timeout=wait_s) as conn:
                    result = await operation(conn)
            except psycopg.Error as exc:
                now = time.monotonic()
                if is_conflict(exc):
                    if conflicts_until is None:
                        conflicts_until = started + self.reconnect_s
                    if now >= conflicts_until:
                        raise failure(self.target, exc, what) from exc
                    deadline = conflicts_until
                elif is_connection_lost(exc):
                    deadline = self._lost(exc, started)
                    if now >= deadline:
                        raise lost(self.target, exc, self.reconnect_s, what) from exc
                else:
                    raise failure(self.target, exc, what) from exc
                self.retried += 1
                await asyncio.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, _MAX_DELAY_S)
                if on_retry is not None:
                    on_retry()
            else:
                if self._outage_deadline is not None:
                    self._outage_deadline = None
                    log.warning("reached PostgreSQL at %s again", self.target.where)
                return result

    def _lost(self, exc: psycopg.Error, started: float) -> float:
        """Note that the server is out of reach (said once an outage); its deadline."""
        if self._outage_deadline is None:
            self._outage_deadline = started + self.reconnect_s
            log.warning(
                "lost PostgreSQL at %s (%s); trying again for up to %g s",
                self.target.where,
                libpq_reason(exc),
                self.reconnect_s,
            )
        return self._outage_deadline

    def read_only_error(self) -> StoreError:
        """A write to a store opened only to be read."""
        return StoreError(f"the store at {self.target.where} was opened read-only: it cannot write")


def settle(future: concurrent.futures.Future[None], error: BaseException | None) -> None:
    """Give a waiting caller its outcome (unless it stopped waiting)."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        pass

"""paho-mqtt driven by the asyncio event loop: connect, publish with QoS 1, subscribe.

paho's packet handling runs on the event loop itself: the loop watches paho's socket
(``add_reader``) and calls ``loop_read``; a message to send is written in the same turn of the
loop (``add_writer`` only for what the socket does not take at once); a housekeeping task calls
``loop_misc`` for keep-alives. No network thread means no thread hop per message in either
direction — on a round trip through a device that is four hops fewer than paho's threaded loop —
and a process may take messages straight from the read (:meth:`MqttConnection.handle_messages`).
Only the blocking TCP (and TLS) connect runs in a worker thread. Publishes are awaited until the
broker acknowledges them, through a table of pending message ids that is always cleaned up.
Incoming messages go into a bounded queue; when a slow consumer lets it fill, further messages
are dropped with a log line rather than growing memory without end.

MQTT 5 is spoken by default (session expiry, shared subscriptions). A broker that only speaks
MQTT 3.1.1 (the embedded development broker, older brokers) refuses that; the connection then
falls back to 3.1.1 with a persistent session, which is all fleetmind's protocol needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetmind.errors import ConfigError, FleetStateError, ProtocolError, ServiceUnreachable

log = logging.getLogger("fleetmind.mqtt")


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is, and how to log in."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    protocol: str = "auto"
    """``"5"``, ``"3.1.1"``, or ``"auto"``: MQTT 5, falling back to 3.1.1 if the broker refuses."""

    def __post_init__(self) -> None:
        if self.protocol not in _PROTOCOLS:
            raise ConfigError(
                f"MQTT protocol {self.protocol!r} is not one of {', '.join(_PROTOCOLS)}"
            )

    def client_id(self, role: str, name: str) -> str:
        """A stable MQTT client id for ``role`` (device, orchestrator, run...) and ``name``.

        With a password it carries a digest of the login: stable across restarts (so the
        broker keeps the session), yet nobody who does not know the password can guess it — a
        device that reads another client's name in a message cannot connect under its id and
        knock it off the broker.
        """
        base = f"fm-{role}-{name}"
        if not self.password:
            return base[:64]
        secret = f"{self.username}\0{self.password}\0{role}\0{name}".encode()
        return f"{base[:47]}-{hashlib.sha256(secret).hexdigest()[:16]}"

    @classmethod
    def parse(cls, url: str, **login: Any) -> BrokerAddress:
        """``mqtt://host:1883`` or ``mqtts://host:8883`` (user:password@ and ?protocol= allowed)."""
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise ConfigError(f"broker URL {url!r} must look like mqtt://HOST:PORT or mqtts://...")
        try:
            port = parsed.port
        except ValueError:
            raise ConfigError(f"broker URL {url!r} has an invalid port") from None
        query = dict(parse_qsl(parsed.query))
        unknown = sorted(set(query) - {"protocol"})
        if unknown:
            raise ConfigError(f"broker URL {url!r}: unknown option {unknown[0]!r}; known: protocol")
        tls = parsed.scheme == "mqtts"
        return cls(
            host=parsed.hostname,
            port=port or (8883 if tls else 1883),
            username=login.get("username") or parsed.username,
            password=login.get("password") or parsed.password,
            tls=tls,
            ca_file=login.get("ca_file"),
            protocol=query.get("protocol", "auto"),
        )


_PROTOCOLS = ("auto", "5", "3.1.1")
_V5_SILENCE_S = 2.0
_MIN_BACKOFF_S = 0.1
_ACK_TIMEOUT_S = 10.0
"""How long the broker may take to acknowledge a subscription (it may be busy with a fleet)."""
_MAX_BACKOFF_S = 5.0
_STABLE_S = 5.0
"""A connection up this long counts as healthy again: the reconnect back-off starts over."""
"""How long an open socket may stay silent after an MQTT 5 CONNECT before 3.1.1 is tried."""


class _ProtocolRefused(Exception):
    """The broker does not speak the MQTT version this client asked for."""


def _reason(exc: OSError) -> str:
    """``connection refused`` rather than ``[Errno 111] Connection refused``."""
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """Send small messages at once: Nagle's algorithm adds ~40 ms to every QoS 1 round trip."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(frozen=True)
class Message:
    """One received message."""

    topic: str
    payload: bytes
    retain: bool
    dup: bool = False
    """Delivered before (the broker sends it again because it was never acknowledged)."""
    mid: int = 0
    """Its packet id, for :meth:`MqttConnection.ack` (QoS 1 with ``manual_ack``)."""
    qos: int = 0


class MqttConnection:
    """One MQTT session with a broker, as an async context manager.

    Args:
        address: The broker.
        client_id: Stable per process role, so that the broker keeps its session (and the QoS 1
            messages queued for it) across disconnects and broker restarts.
        will: ``(topic, payload)`` the broker publishes, retained, if this client vanishes.
        session_expiry_s: How long the broker keeps the session while disconnected (MQTT 5).
        queue_size: Received messages buffered for the consumer before new ones are dropped.
        connect_timeout_s: How long the first connection may take when the broker's host does
            not answer (a broker that refuses it, or a host that does not resolve, fails at once).
        manual_ack: Acknowledge received QoS 1 messages only when :meth:`ack` is called (after
            their effect is saved), so that the broker delivers them again after a crash.
        receive_maximum: How many unacknowledged QoS 1 messages the broker may send at once
            (MQTT 5; the broker's own limit may be lower).
    """

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        will: tuple[str, bytes] | None = None,
        session_expiry_s: int = 3600,
        queue_size: int = 10_000,
        connect_timeout_s: float = 5.0,
        manual_ack: bool = False,
        receive_maximum: int = 1000,
    ) -> None:
        self.address = address
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self.session_present = False
        """Whether the broker had this client's session at the latest connection (messages
        queued for it while it was away come first)."""
        self._on_connected: list[Callable[[bool], None]] = []
        self.client_id = client_id
        self._will = will
        self._session_expiry_s = session_expiry_s
        self._queue_size = queue_size
        self._connect_timeout_s = connect_timeout_s
        self._state = "new"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._messages: asyncio.Queue[Message] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._connected: asyncio.Event | None = None
        self._connect_error: str | None = None
        self.dropped = 0
        self._filters: dict[str, int] = {}
        self.connected_at = 0.0
        """When the current connection to the broker was made (monotonic clock)."""
        self.is_connected = False
        """Whether the connection to the broker is up right now."""
        self.protocol = ""
        """The MQTT version in use once connected: ``"5"`` or ``"3.1.1"``."""
        self._protocol_refused = False
        self._connected_once = False
        self._trying_v5 = False
        self._socket_opened_at = 0.0
        self._sock: Any = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._backoff_s = _MIN_BACKOFF_S
        self._reading = False
        """Inside paho's ``loop_read``: writes wait until it returns."""
        self._handler: Callable[[Message], None] | None = None
        self._lost_logged = False

    async def __aenter__(self) -> MqttConnection:
        if self._state != "new":
            raise FleetStateError(f"MQTT connection is {self._state}; open a new one")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._messages = asyncio.Queue(self._queue_size)
        versions = {"auto": (5, 4), "5": (5,), "3.1.1": (4,)}[self.address.protocol]
        for version in versions:
            try:
                await self._connect(version)
            except _ProtocolRefused:
                if version == versions[-1]:
                    raise ProtocolError(
                        f"the MQTT broker at {self.address.host}:{self.address.port} does not "
                        f"speak MQTT {'5' if version == 5 else '3.1.1'}"
                    ) from None
                log.info(
                    "the broker at %s:%s refused MQTT 5; using MQTT 3.1.1",
                    self.address.host,
                    self.address.port,
                )
                continue
            self.protocol = "5" if version == 5 else "3.1.1"
            break
        self._state = "open"
        self._housekeeping = asyncio.create_task(self._keep_alive(), name="mqtt keep-alive")
        return self

    def _new_client(self, version: int) -> mqtt.Client:
        if version == 5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
            )
        else:
            # 3.1.1 has no session expiry: a non-clean session is kept until the client
            # connects with a clean one (or the broker's own limit), so a short-lived client
            # (session_expiry_s=0) asks for a clean session instead.
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=self._session_expiry_s == 0,
            )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            context = ssl.create_default_context(cafile=self.address.ca_file)
            client.tls_set_context(context)
        if self._will is not None:
            client.will_set(self._will[0], self._will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        if self._manual_ack:
            client.manual_ack_set(True)
        return client

    async def _connect(self, version: int) -> None:
        """One connection attempt with MQTT ``version`` (5, or 4 for 3.1.1)."""
        self._connected = asyncio.Event()
        self._connect_error = None
        self._protocol_refused = False
        self._connected_once = False
        self._trying_v5 = version == 5
        self._socket_opened_at = 0.0
        client = self._client = self._new_client(version)
        if version == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s
            properties.ReceiveMaximum = self._receive_maximum
            options: dict[str, Any] = {"clean_start": False, "properties": properties}
        else:
            options = {}
        assert self._loop is not None
        scheme = "mqtts" if self.address.tls else "mqtt"
        where = f"{scheme}://{self.address.host}:{self.address.port}"
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                try:
                    await self._loop.run_in_executor(
                        None,
                        lambda: client.connect(
                            self.address.host, self.address.port, keepalive=15, **options
                        ),
                    )
                except ssl.SSLError as exc:
                    self._shutdown()
                    raise ServiceUnreachable(
                        f"TLS with the MQTT broker at {where} failed: {exc.reason or exc}",
                        details={"host": self.address.host, "port": self.address.port},
                    ) from None
                except OSError as exc:
                    # Refused, unknown host, no route: asking again will not help, and a person
                    # at a prompt should hear so at once rather than after the timeout.
                    self._shutdown()
                    raise ServiceUnreachable(
                        f"cannot reach the MQTT broker at {where}: {_reason(exc)} (is a broker "
                        "running there? `fleetmind broker serve` starts one)",
                        details={"host": self.address.host, "port": self.address.port},
                    ) from None
                await self._wait_for_connack()
        except TimeoutError:
            self._shutdown()
            raise ServiceUnreachable(
                f"the MQTT broker at {where} did not answer within the connect timeout "
                f"({self._connect_timeout_s:g} s): check the host and port, and that no "
                "firewall drops MQTT",
                details={"host": self.address.host, "port": self.address.port},
            ) from None
        refused, error = self._connect_outcome()
        if refused:
            self._shutdown(final=False)
            raise _ProtocolRefused
        if error:
            self._shutdown()
            if "user name" in error or "authorized" in error.lower():
                raise ConfigError(
                    f"the MQTT broker at {self.address.host}:{self.address.port} refused the "
                    f"login of {self.address.username or 'an anonymous client'}: {error}"
                )
            raise ProtocolError(
                f"the MQTT broker at {self.address.host}:{self.address.port} refused "
                f"{self.client_id!r}: {error}"
            )

    def _connect_outcome(self) -> tuple[bool, str | None]:
        """What paho's callbacks recorded about the connection attempt, while we waited."""
        return self._protocol_refused, self._connect_error

    async def _wait_for_connack(self) -> None:
        """Wait for the broker's answer to CONNECT (or a refusal of MQTT 5, see below)."""
        assert self._connected is not None
        if not self._trying_v5:
            await self._connected.wait()
            return
        # Some MQTT 3.1.1-only brokers neither answer an MQTT 5 CONNECT nor close the socket:
        # they wait for bytes that never come. A socket that is open but silent for a while is
        # taken as a refusal, and 3.1.1 is tried (which an MQTT 5 broker would accept as well).
        while not self._connected.is_set():
            opened = self._socket_opened_at
            if opened and time.monotonic() - opened > _V5_SILENCE_S:
                self._protocol_refused = True
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._connected.wait()

    async def __aexit__(self, *exc_info: Any) -> None:
        self._shutdown()
        for task in (self._housekeeping, self._reconnecting):
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _shutdown(self, *, final: bool = True) -> None:
        client = self._client
        if final:
            self._state = "closing"  # the disconnect below is ours: no reconnecting
        if client is not None:
            client.disconnect()
            client.loop_write()  # sends DISCONNECT now; paho then closes the socket
            self._unwatch()
        if not final:
            # A failed attempt: drop this client, keep the connection usable for the next.
            self._client = None
            return
        self._client = None  # a connect still running in a worker thread finds it gone
        for task in (self._housekeeping, self._reconnecting):
            if task is not None:
                task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    ProtocolError("MQTT connection closed before the broker acknowledged")
                )
        self._pending.clear()
        self._state = "closed"

    # Driving paho from the event loop ------------------------------------------------------

    def _soon(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` on the event loop: now when already there, else at its next turn."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        if client is not self._client:  # a (re)connect that finished after close()
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._socket_opened_at = time.monotonic()
        _no_delay(client, userdata, sock)
        self._soon(self._watch, sock)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        self._soon(self._unwatch, sock)

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._soon(self._want_write, sock)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._soon(self._done_writing, sock)

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        if self._sock is not None and self._sock is not sock:
            self._unwatch(self._sock)
        self._sock = sock
        self._loop.add_reader(sock, self._read_ready)

    def _unwatch(self, sock: Any = None) -> None:
        sock = sock if sock is not None else self._sock
        if sock is None or self._loop is None:
            return
        with contextlib.suppress(ValueError, OSError):  # already closed: nothing to unwatch
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if sock is self._sock:
            self._sock = None

    def _want_write(self, sock: Any) -> None:
        assert self._loop is not None
        if sock is not self._sock or sock is None:
            return
        try:
            if sock.fileno() < 0:
                return  # closed under us (the broker went away): the reconnect writes later
        except OSError:
            return
        if not self._reading and self._client is not None:
            # Write now, in this turn of the loop: most messages leave in one send, with no
            # writer registered and no extra turn. Only what the socket does not take waits
            # for it to become writable.
            self._client.loop_write()
            if not self._client.want_write():
                return
        elif self._reading:
            return  # _read_ready writes once paho has finished reading (PUBACKs, mostly)
        with contextlib.suppress(ValueError, OSError):  # a socket closed meanwhile
            self._loop.add_writer(sock, self._write_ready)

    def _done_writing(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    def _read_ready(self) -> None:
        client = self._client
        if client is None:
            return
        self._reading = True
        try:
            client.loop_read()
            # TLS may hold decrypted bytes the socket no longer signals: read them too.
            sock = self._sock
            while sock is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
                client.loop_read()
                sock = self._sock
        finally:
            self._reading = False
        if self._client is client and client.want_write() and self._sock is not None:
            self._want_write(self._sock)  # what paho queued while reading (acks, subscribes)

    def _write_ready(self) -> None:
        if self._client is not None:
            self._client.loop_write()

    async def _keep_alive(self) -> None:
        """Keep-alive pings, and a new connection whenever the old one is lost."""
        while self._state == "open":
            await asyncio.sleep(1.0)
            client = self._client
            if client is None:
                continue
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS and self._reconnecting is None:
                self._reconnecting = asyncio.create_task(self._reconnect(), name="mqtt reconnect")

    async def _reconnect(self) -> None:
        """Connect again (with back-off) until it works or the connection is closed.

        The back-off lives on the connection, not in this task: a broker that accepts the TCP
        connection and then drops the session (a taken client id, a changed password) would
        otherwise be asked again at once, thousands of times a second. Only a connection that
        stayed up for a while resets it (see ``_on_disconnect``).
        """
        assert self._loop is not None and self._client is not None
        client = self._client
        try:
            while self._state == "open":
                await asyncio.sleep(self._backoff_s)
                self._backoff_s = min(self._backoff_s * 2, _MAX_BACKOFF_S)
                try:
                    await self._loop.run_in_executor(None, client.reconnect)
                    return  # the broker's CONNACK arrives through _on_connect
                except OSError as exc:
                    log.debug("reconnect to %s failed: %s", self.address.host, exc)
        finally:
            self._reconnecting = None

    # paho callbacks (on the event loop, except during a connect) ----------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        assert self._connected is not None
        self._connected_once = True
        if reason.is_failure:
            self._connect_error = str(reason)
            if self._state == "new":
                # "Unsupported protocol version" is 132 in MQTT 5, 1 in 3.1.1.
                self._protocol_refused = reason.value in (1, 132)
        else:
            self.connected_at = time.monotonic()
            self.is_connected = True
            self.session_present = bool(getattr(flags, "session_present", False))
            if self._state == "open":
                for listener in list(self._on_connected):
                    self._soon(listener, self.session_present)
                resumed = self.session_present
                log.info(
                    "reconnected to %s:%s (%s)",
                    self.address.host,
                    self.address.port,
                    "session resumed" if resumed else "new session",
                )
                if not resumed and self._filters:
                    # The broker lost our session (no persistence): subscribe again.
                    client.subscribe([(f, q) for f, q in self._filters.items()])
        self._soon(self._connected.set)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.is_connected = False
        if self._state == "new" and not self._connected_once and self._trying_v5:
            # Some MQTT 3.1.1-only brokers close the socket on an MQTT 5 CONNECT (with its
            # properties) instead of answering "unsupported protocol version".
            assert self._connected is not None
            self._protocol_refused = True
            self._soon(self._connected.set)
            return
        if self._state == "open":
            up_s = time.monotonic() - self.connected_at
            if up_s > _STABLE_S:  # it had been healthy: try again quickly
                self._backoff_s = _MIN_BACKOFF_S
            if up_s > _STABLE_S or not self._lost_logged:  # one warning per outage, not per try
                log.warning(
                    "MQTT connection to %s lost (%s); reconnecting", self.address.host, reason
                )
            self._lost_logged = up_s <= _STABLE_S
            self._soon(self._start_reconnect)

    def _start_reconnect(self) -> None:
        if self._state == "open" and self._reconnecting is None:
            self._reconnecting = asyncio.create_task(self._reconnect(), name="mqtt reconnect")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Message(
            message.topic,
            bytes(message.payload),
            bool(message.retain),
            bool(message.dup),
            int(message.mid),
            int(message.qos),
        )
        self._soon(self._deliver, received)

    def _deliver(self, message: Message) -> None:
        handler = self._handler
        if handler is not None:
            try:
                handler(message)
            except Exception:  # one bad message must never stop the connection
                log.exception("could not handle a message on %s", message.topic)
            return
        assert self._messages is not None
        try:
            self._messages.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "dropped a message on %s: the consumer is %d behind",
                message.topic,
                self._queue_size,
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # MQTT 5 brokers say "not authorized" or "quota exceeded" in the PUBACK, and drop the
        # message: that is a failed publish, not a delivered one.
        refused = str(reason) if getattr(reason, "is_failure", False) else None
        self._soon(self._acknowledge, mid, refused and f"the broker refused it: {refused}")

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        failed = [str(c) for c in codes if getattr(c, "is_failure", False)]
        self._soon(self._acknowledge, mid, failed and f"the broker refused it: {failed[0]}")

    def _on_unsubscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._soon(self._acknowledge, mid)

    def _acknowledge(self, mid: int, refused: str | None = None) -> None:
        future = self._pending.pop(mid, None)
        if future is not None and not future.done():
            if refused:
                future.set_exception(ProtocolError(refused))
            else:
                future.set_result(None)

    # API -------------------------------------------------------------------------------------

    def _open_client(self) -> mqtt.Client:
        if self._state != "open" or self._client is None:
            raise FleetStateError(f"MQTT connection is {self._state}")
        return self._client

    def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool, expiry_s: float | None
    ) -> mqtt.MQTTMessageInfo:
        """Hand a message to paho. While the connection is down paho keeps it and sends it
        after reconnecting; a socket that closed under us is not an error of the publish."""
        client = self._open_client()
        properties = None
        if expiry_s is not None and self.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = max(1, int(expiry_s))
        try:
            return client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except (ValueError, OSError) as exc:  # e.g. add_writer on a descriptor of -1
            log.debug("publish to %s waits for the connection: %s", topic, exc)
            if client.want_write():
                self._start_reconnect()
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_NO_CONN
            return info

    def on_connected(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(session_present)`` after every reconnection to the broker."""
        self._on_connected.append(listener)

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message received with ``manual_ack`` (after its effect is saved)."""
        client = self._client
        if not self._manual_ack or message.qos == 0 or client is None:
            return
        with contextlib.suppress(ValueError, OSError):
            client.ack(message.mid, message.qos)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> None:
        """Publish and, for QoS 1, wait until the broker has the message.

        ``expiry_s``: the broker drops the message if it could not be delivered by then (MQTT 5).
        """
        assert self._loop is not None
        info = self._send(topic, payload, qos, retain, expiry_s)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise ProtocolError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        if info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published():
            return
        if info.mid == 0:
            return  # not handed to paho (no connection at all): nothing will acknowledge it
        # While disconnected paho keeps the message and sends it after reconnecting; the
        # acknowledgement (and this await) come then.
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = future
        try:
            await future
        except ProtocolError as exc:
            raise ProtocolError(f"publish to {topic}: {exc.message}") from None
        finally:
            self._pending.pop(info.mid, None)

    def publish_nowait(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> None:
        """Publish without waiting for the acknowledgement (paho still delivers it)."""
        self._send(topic, payload, qos, retain, expiry_s)

    async def subscribe(self, *topic_filters: str, qos: int = 1) -> None:
        """Subscribe to topic filters (the session remembers them across reconnects)."""
        client = self._open_client()
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._filters.update(dict.fromkeys(topic_filters, qos))
        result, mid = client.subscribe([(f, qos) for f in topic_filters])
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise ProtocolError(f"subscribe failed: {mqtt.error_string(result)}")
        self._pending[mid] = future
        try:
            async with asyncio.timeout(max(self._connect_timeout_s, _ACK_TIMEOUT_S)):
                await future  # the broker's SUBACK: messages from now on reach us
        finally:
            self._pending.pop(mid, None)

    async def unsubscribe(self, *topic_filters: str) -> None:
        """Stop receiving from topic filters (also removes them from the persistent session)."""
        client = self._open_client()
        assert self._loop is not None
        for f in topic_filters:
            self._filters.pop(f, None)
        result, mid = client.unsubscribe(list(topic_filters))
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise ProtocolError(f"unsubscribe failed: {mqtt.error_string(result)}")
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[mid] = future
        try:
            async with asyncio.timeout(max(self._connect_timeout_s, _ACK_TIMEOUT_S)):
                await future
        finally:
            self._pending.pop(mid, None)

    def handle_messages(self, handler: Callable[[Message], None]) -> None:
        """Hand every message to ``handler`` as it is read, instead of to :meth:`messages`.

        The handler runs on the event loop inside paho's read, without a queue or a task switch
        in between (the fast path for a process whose handling is quick and never blocks). What
        it publishes is sent as soon as the read is done. Messages already queued are handed
        over first.
        """
        assert self._messages is not None
        while not self._messages.empty():
            message = self._messages.get_nowait()
            try:
                handler(message)
            except Exception:
                log.exception("could not handle a message on %s", message.topic)
        self._handler = handler

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages, in order, until the connection closes."""
        assert self._messages is not None
        while self._state == "open":
            yield await self._messages.get()

"""What the broker tests share: a running broker's handles, a paho client on its own network
thread, and devices files to write.

Waits are bounded and synchronised on control messages: a forbidden message is sent first, a
permitted one on the same connection after it, and once the permitted one has arrived the
forbidden one can no longer be on its way.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleetmind.protocols._broker import (
    BrokerProcess,
    serve_broker,
)
from fleetmind.protocols._topics import Topics
from fleetmind.testing import LocalBroker

FLEET = "home"
T = Topics(FLEET)
DEVICES = {"pi-7": ["camera", "thermostat"], "phone": ["notes"]}
WAIT_S = 5.0
REFUSED = {"Bad user name or password", "Not authorized"}


@dataclass
class Env:
    """A running broker for one test, restartable; every handle is stopped by the fixture."""

    broker: LocalBroker
    handles: list[BrokerProcess] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.broker.port

    def password(self, user: str) -> str:
        return self.broker.credentials[user]

    def restart(self) -> None:
        current = self.handles[-1]
        current.stop()
        self.handles.append(serve_broker(current.config.config_dir))


class Client:
    """What a test needs from paho: connect, subscribe, publish, and the messages received."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str = "",
        protocol: int = mqtt.MQTTv5,
        clean_start: bool = True,
        session_expiry_s: int | None = None,
        will: str | None = None,
    ) -> None:
        self.port = port
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.session_present = False
        self._connected = threading.Event()
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        self._killed = False
        self._mqtt = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        if username is not None:
            self._mqtt.username_pw_set(username, password)
        if will is not None:
            self._mqtt.will_set(will, b"offline", qos=1, retain=False)
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_subscribe = self._on_ack
        self._mqtt.on_publish = self._on_ack
        self._mqtt.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def _on_connect(self, client: Any, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        self.connack = reason_code
        self.session_present = bool(flags.session_present)
        if reason_code.is_failure:
            client.disconnect()  # or paho's network thread retries, and stopping it waits 1 s
        self._connected.set()

    def _on_ack(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self._acked:
            self._acks[mid] = codes
            self._acked.notify_all()

    def connect(self, *, background: bool = True) -> ReasonCode:
        """Connect and wait for the CONNACK; ``background=False`` runs no network thread (for
        a client that is only going to be :meth:`kill`-ed)."""
        if self._mqtt.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s or 0
            self._mqtt.connect(
                "127.0.0.1", self.port, clean_start=self.clean_start, properties=props
            )
        else:
            self._mqtt.connect("127.0.0.1", self.port)
        if background:
            self._mqtt.loop_start()
        else:
            deadline = time.monotonic() + WAIT_S
            while not self._connected.is_set() and time.monotonic() < deadline:
                self._mqtt.loop(timeout=0.05)
        assert self._connected.wait(WAIT_S), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def _wait_ack(self, mid: int) -> Any:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, WAIT_S), f"no ack for {mid}"
            return self._acks.pop(mid)

    def subscribe(self, *topics: str, qos: int = 1) -> list[ReasonCode]:
        _, mid = self._mqtt.subscribe([(t, qos) for t in topics])
        return list(self._wait_ack(mid))

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> Any:
        info = self._mqtt.publish(topic, payload, qos=qos, retain=retain)
        return self._wait_ack(info.mid)

    def next(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT_S)

    def until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including the control message ``(topic, payload)``."""
        seen: list[tuple[str, bytes]] = []
        while (topic, payload) not in seen:
            msg = self.next()
            seen.append((msg.topic, msg.payload))
        return seen

    def kill(self) -> None:
        """Drop the connection without DISCONNECT (the broker sends the will), and wait until
        the broker has closed its side: by then it has handled the will."""
        sock = self._mqtt.socket()
        self._killed = True
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(WAIT_S)
        while sock.recv(4096):
            pass

    def close(self) -> None:
        if not self._killed:
            self._mqtt.disconnect()
        self._mqtt.loop_stop()
        sock = self._mqtt.socket()
        if isinstance(sock, socket.socket):
            sock.close()


def connected(
    make: Callable[..., Client], env: Env, user: str, *, background: bool = True, **kwargs: Any
) -> Client:
    client = make(env.port, user, env.password(user), **kwargs)
    code = client.connect(background=background)
    assert not code.is_failure, f"{user} refused: {code}"
    return client


def write(tmp_path: Path, text: str, name: str = "devices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
fleet: home
listeners:
  - {port: 1883, bind: 127.0.0.1}
  - {port: 8883, bind: 0.0.0.0, tls: {cafile: ca.crt, certfile: server.crt, keyfile: server.key}}
orchestrators:
  - {username: orchestrator, password_env: FLEETMIND_TEST_ORCH_PW}
devices:
  - {id: pi-7, password: pi-s3cret-pw, agents: [camera, thermostat]}
  - {id: phone, password: phone-s3cret-pw, agents: [notes]}
"""


ORCH = "orchestrators: [{username: orchestrator, password: x}]\n"

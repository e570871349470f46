"""The broker deployment, against a real Mosquitto started from fleetmind's own configuration.

Every test that needs a broker starts one on a free loopback port and stops it in a fixture's
``finally``. Waits are bounded and synchronised on control messages: a forbidden message is
sent first, a permitted one on the same connection after it, and once the permitted one has
arrived the forbidden one can no longer be on its way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from fleetmind.cli._broker_cmd import broker_app
from fleetmind.errors import ConfigError, ProtocolError
from fleetmind.protocols import _broker
from fleetmind.protocols._broker import (
    BrokerConfig,
    BrokerProcess,
    Listener,
    load_devices_file,
    serve_broker,
    write_broker_config,
)
from fleetmind.protocols._mqtt import BrokerAddress, MqttConnection
from fleetmind.protocols._topics import Topics
from fleetmind.testing import LocalBroker, free_port, start_test_broker

pytestmark = pytest.mark.timeout(30)

FLEET = "home"
T = Topics(FLEET)
DEVICES = {"pi-7": ["camera", "thermostat"], "phone": ["notes"]}
WAIT_S = 5.0
REFUSED = {"Bad user name or password", "Not authorized"}


# Mosquitto itself -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mosquitto() -> None:
    """Mosquitto must be installed; under CI its absence fails the tests instead of skipping."""
    missing = [b for b in ("mosquitto",) if _broker._find_binary(b) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


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


@pytest.fixture
def env(tmp_path: Path, mosquitto: None) -> Iterator[Env]:
    broker = start_test_broker(tmp_path, DEVICES, fleet=FLEET)
    running = Env(broker, [broker.handle])
    try:
        yield running
    finally:
        for handle in running.handles:
            handle.stop()


# A paho client on its own network thread -----------------------------------------------------


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


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(*args: Any, **kwargs: Any) -> Client:
        made.append(Client(*args, **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()


def connected(
    make: Callable[..., Client], env: Env, user: str, *, background: bool = True, **kwargs: Any
) -> Client:
    client = make(env.port, user, env.password(user), **kwargs)
    code = client.connect(background=background)
    assert not code.is_failure, f"{user} refused: {code}"
    return client


# Configuration files --------------------------------------------------------------------------


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


def test_config_files(tmp_path: Path, mosquitto: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ca.crt", "server.crt", "server.key"):
        (tmp_path / name).write_text("not read by the generator\n")
    monkeypatch.setenv("FLEETMIND_TEST_ORCH_PW", "orch-s3cret-pw")
    out = tmp_path / "out"
    config = write_broker_config(write(tmp_path, GOOD), out)

    assert config.fleet == "home"
    assert config.orchestrators == ("orchestrator",)
    assert config.devices == {"pi-7": ("camera", "thermostat"), "phone": ("notes",)}
    conf = (out / "mosquitto.conf").read_text().splitlines()
    for line in (
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out}/passwords",
        f"acl_file {out}/acl",
        "persistence true",
        f"persistence_location {out}/data/",
        "autosave_interval 1",
        "listener 1883 127.0.0.1",
        "listener 8883 0.0.0.0",
        f"cafile {tmp_path}/ca.crt",
        f"certfile {tmp_path}/server.crt",
        f"keyfile {tmp_path}/server.key",
        "require_certificate false",
    ):
        assert line in conf
    # TLS settings belong to the listener after which they come.
    assert conf.index("listener 1883 127.0.0.1") < conf.index("listener 8883 0.0.0.0")
    assert conf.index("listener 8883 0.0.0.0") < conf.index(f"certfile {tmp_path}/server.crt")
    assert (out / "data").is_dir()

    acl = (out / "acl").read_text()
    assert "user orchestrator\ntopic readwrite fleetmind/home/#\n" in acl
    assert (
        "user pi-7\n"
        "topic read fleetmind/home/devices/pi-7/inbox\n"
        "topic write fleetmind/home/devices/pi-7/inbox\n"
        "topic write fleetmind/home/devices/pi-7/agents/camera/card\n"
        "topic write fleetmind/home/devices/pi-7/agents/thermostat/card\n"
        "topic write fleetmind/home/devices/pi-7/presence\n"
        "topic write fleetmind/home/devices/pi-7/out\n"
    ) in acl
    assert "topic readwrite" not in acl.split("user pi-7")[1]

    hashed = (out / "passwords").read_text().splitlines()
    assert [line.split(":")[0] for line in hashed] == ["orchestrator", "pi-7", "phone"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in hashed)
    assert (out / "passwords").stat().st_mode & 0o077 == 0
    for file in out.rglob("*"):
        if file.is_file():
            text = file.read_text(errors="replace")
            for secret in ("orch-s3cret-pw", "pi-s3cret-pw", "phone-s3cret-pw"):
                assert secret not in text, f"{secret} in {file}"

    summary = json.loads((out / "fleetmind-broker.json").read_text())
    assert summary["prefix"] == "fleetmind/home"
    assert summary["listeners"][1]["tls"]["certfile"] == f"{tmp_path}/server.crt"
    assert BrokerConfig.load(out) == config


def test_defaults(tmp_path: Path) -> None:
    text = "orchestrators: [{username: o, password_env: FLEETMIND_TEST_PW}]"
    devices = load_devices_file(write(tmp_path, text), env={"FLEETMIND_TEST_PW": "hunter2"})
    assert devices.fleet == "default"
    assert devices.listeners == (Listener(port=1883, bind="127.0.0.1"),)
    assert devices.devices == ()
    assert devices.orchestrators[0].password == "hunter2"
    assert "hunter2" not in repr(devices)


ORCH = "orchestrators: [{username: orchestrator, password: x}]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ORCH + "devices: [{id: pi-7, password: a}, {id: pi-7, password: b}]",
            "devices[2].id: duplicate device id 'pi-7' (already used by devices[1])",
        ),
        (
            ORCH + "devices: [{id: orchestrator, password: a}]",
            "devices[1].id: duplicate device id 'orchestrator'",
        ),
        (
            ORCH + "devices: [{id: a, password: a, agents: [camera, camera]}]",
            "devices[1].agents[2]: agent 'camera' is listed twice",
        ),
        (ORCH + "devices: [{id: 'pi 7', password: a}]", "devices[1].id: 'pi 7' is not a valid id"),
        (
            ORCH + "devices: [{id: pi, password: a, agents: [a/b]}]",
            "devices[1].agents[1]: 'a/b' is not a valid id",
        ),
        ("fleet: 'my fleet'\n" + ORCH, "fleet: 'my fleet' is not a valid id"),
        (
            ORCH + "devices: [{id: pi, password_env: FLEETMIND_TEST_UNSET_PW}]",
            "devices[1]: environment variable FLEETMIND_TEST_UNSET_PW is not set",
        ),
        (
            ORCH + "devices: [{id: pi}]",
            "devices[1]: give exactly one of 'password' or 'password_env'",
        ),
        (
            ORCH + "devices: [{id: pi, password: a, password_env: B}]",
            "devices[1]: give exactly one of 'password' or 'password_env'",
        ),
        (
            ORCH + "listeners: [{port: 8883, tls: {certfile: nope.crt, keyfile: nope.key}}]",
            "listeners[1].tls.certfile: file not found: ",
        ),
        (
            ORCH + "listeners: [{port: 70000}]",
            "listeners[1].port: should be less than or equal to 65535 (got 70000)",
        ),
        (
            ORCH + "listeners: [{port: 1883}, {port: 1883, bind: 127.0.0.1}]",
            "listeners[2].port: 127.0.0.1:1883 is listed twice",
        ),
        (
            ORCH
            + "listeners: [{port: 1, tls: {certfile: a, keyfile: b, require_certificate: true}}]",
            "listeners[1].tls: require_certificate needs a cafile",
        ),
        (
            ORCH + "listeners: [{port: 1, bind: 'a b'}]",
            "listeners[1].bind: should match the pattern ^[A-Za-z0-9.:_-]+$ (got 'a b')",
        ),
        (
            ORCH + "devices: [{id: pi, password: a, colour: red}]",
            "devices[1]: unknown key 'colour'",
        ),
        ("devices: []", "missing key 'orchestrators'"),
        (ORCH + "devices: [{id: pi, password: a\n", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_devices_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.delenv("FLEETMIND_TEST_UNSET_PW", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        write_broker_config(path, tmp_path / "out")
    message = caught.value.message
    assert expected in message
    assert message.startswith(str(path))
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_missing_devices_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read devices file"):
        load_devices_file(tmp_path / "nope.yaml")


def test_config_is_written_without_mosquitto_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_broker, "_find_binary", lambda name: None)
    devices = write(tmp_path, ORCH + "devices: [{id: pi, password: s3cret}]")
    config = write_broker_config(devices, tmp_path / "out")
    lines = dict(line.split(":", 1) for line in config.password_file.read_text().splitlines())
    assert set(lines) == {"orchestrator", "pi"}
    scheme, iterations, salt, digest = lines["pi"].split("$")[1:]
    assert (scheme, iterations) == ("7", "101")  # Mosquitto 2's PBKDF2-SHA512 format
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", base64.b64decode(salt), 101)
    assert base64.b64decode(digest) == expected
    assert "s3cret" not in config.password_file.read_text()
    assert oct(config.password_file.stat().st_mode & 0o777) == "0o600"


# Starting and stopping --------------------------------------------------------------------------


def test_serve_and_stop(env: Env) -> None:
    handle = env.handles[0]
    assert handle.running
    assert handle.describe() == f"mosquitto {handle.version} on 127.0.0.1:{env.port}"
    assert handle.version[0].isdigit()
    handle.stop()
    assert not handle.running
    assert not _broker._accepts("127.0.0.1", env.port)
    handle.stop()  # a second stop does nothing


def test_serve_errors(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir = env.handles[0].config.config_dir
    with pytest.raises(ConfigError, match="already in use"):
        serve_broker(config_dir)
    with pytest.raises(ConfigError, match="is not a broker directory"):
        serve_broker(tmp_path)

    env.handles[0].stop()
    conf = config_dir / "mosquitto.conf"
    conf.write_text(conf.read_text() + "no_such_option 1\n")
    with pytest.raises(ConfigError) as caught:
        env.handles.append(serve_broker(config_dir))
    assert "mosquitto exited with code" in caught.value.message
    assert "no_such_option" in caught.value.message
    assert "\n" not in caught.value.message

    monkeypatch.setattr(_broker, "_find_binary", lambda name: None)
    with pytest.raises(
        ConfigError, match=r"mosquitto is not installed: .*apt-get install mosquitto"
    ):
        serve_broker(config_dir, embedded=False)


async def test_serve_falls_back_to_the_embedded_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    devices = write(tmp_path, ORCH + f"listeners: [{{port: {port}, bind: 0.0.0.0}}]")
    config = write_broker_config(devices, tmp_path / "out")
    monkeypatch.setattr(_broker, "_find_binary", lambda name: None)
    with serve_broker(config.config_dir) as handle:
        assert handle.embedded
        assert handle.describe() == f"amqtt (embedded) {handle.version} on 127.0.0.1:{port}"
        assert "MQTT 3.1.1 only" in (handle.lacks or "")
        lan = _lan_address()
        if lan is not None:  # bound to loopback only, whatever the configuration says
            assert not _broker._accepts(lan, port)
        # fleetmind's client falls back to MQTT 3.1.1 by itself and works as usual.
        address = BrokerAddress("127.0.0.1", port)
        async with MqttConnection(address, "fm-a") as a, MqttConnection(address, "fm-b") as b:
            assert a.protocol == "3.1.1"
            await b.subscribe("fleetmind/home/#")
            await a.publish("fleetmind/home/x", b"hello")
            async with asyncio.timeout(WAIT_S):
                message = await anext(b.messages())
            assert (message.topic, message.payload) == ("fleetmind/home/x", b"hello")
        insisting = BrokerAddress("127.0.0.1", port, protocol="5")
        with pytest.raises(ProtocolError, match="does not speak MQTT 5"):
            async with MqttConnection(insisting, "fm-c"):
                pass
    assert not handle.running


async def test_mqtt_3_1_1_on_mosquitto(env: Env) -> None:
    address = BrokerAddress(
        "127.0.0.1",
        env.port,
        username="orchestrator",
        password=env.password("orchestrator"),
        protocol="3.1.1",
    )
    async with MqttConnection(address, "fm-old") as client:
        assert client.protocol == "3.1.1"
        await client.subscribe(T.presence("pi-7"))
        await client.publish(T.presence("pi-7"), b"online")
        async with asyncio.timeout(WAIT_S):
            message = await anext(client.messages())
        assert message.payload == b"online"
    auto = BrokerAddress.parse(
        f"mqtt://orchestrator:{env.password('orchestrator')}@127.0.0.1:{env.port}"
    )
    async with MqttConnection(auto, "fm-new") as client:
        assert client.protocol == "5"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mqtt://h:1883?protocol=4", "MQTT protocol '4' is not one of auto, 5, 3.1.1"),
        ("mqtt://h:1883?qos=2", "unknown option 'qos'; known: protocol"),
        ("mqtt://h:99999", "has an invalid port"),
    ],
)
def test_bad_broker_urls(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BrokerAddress.parse(url)
    assert problem in caught.value.message


def _lan_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


# Who may connect --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
@pytest.mark.parametrize(
    ("user", "password"),
    [("pi-7", "wrong"), ("orchestrator", "wrong"), ("stranger", "whatever"), (None, None)],
    ids=["wrong-password", "wrong-orchestrator-password", "unknown-user", "anonymous"],
)
def test_refused(
    env: Env,
    clients: Callable[..., Client],
    user: str | None,
    password: str | None,
    protocol: int,
) -> None:
    code = clients(env.port, user, password, protocol=protocol).connect()
    assert code.is_failure
    assert code.getName() in REFUSED


# What a device may read -------------------------------------------------------------------------


def test_device_receives_its_inbox(env: Env, clients: Callable[..., Client]) -> None:
    device = connected(clients, env, "pi-7")
    mine = [T.device_inbox("pi-7")]
    assert not any(code.is_failure for code in device.subscribe(*mine))
    orch = connected(clients, env, "orchestrator")
    for n, topic in enumerate(mine):
        orch.publish(topic, f"dispatch {n}".encode())
    got = [device.next() for _ in mine]
    assert [(m.topic, m.payload) for m in got] == [
        (t, f"dispatch {n}".encode()) for n, t in enumerate(mine)
    ]


def test_device_cannot_read_another_devices_inbox(env: Env, clients: Callable[..., Client]) -> None:
    device = connected(clients, env, "pi-7")
    forbidden = [T.device_inbox("phone"), T.everything]
    codes = device.subscribe(*forbidden)
    # Mosquitto 2.0 grants these SUBACKs and filters each message against the ACL on delivery;
    # other versions may refuse (0x80/0x87). Either way, nothing forbidden may arrive.
    assert all(c.value in (1, 0x80, 0x87) for c in codes), codes
    control = T.device_inbox("pi-7")
    device.subscribe(control)
    orch = connected(clients, env, "orchestrator")
    orch.publish(T.device_inbox("phone"), b"for the phone")
    orch.publish(T.card("phone", "notes"), b"a card")
    orch.publish(control, b"control")
    seen = device.until(control, b"control")
    assert {topic for topic, _ in seen} == {control}, seen


def test_shared_subscriptions_are_checked_without_the_share_prefix(
    env: Env, clients: Callable[..., Client]
) -> None:
    # The ACL has no `$share/...` lines: Mosquitto checks `$share/<group>/<filter>` as `<filter>`.
    device = connected(clients, env, "pi-7")
    own, other = T.device_inbox("pi-7"), T.device_inbox("phone")
    device.subscribe(f"$share/g/{other}", f"$share/g/{own}")
    orch = connected(clients, env, "orchestrator")
    orch.publish(other, b"for the phone")
    orch.publish(own, b"control")
    assert device.until(own, b"control") == [(own, b"control")]


# What a device may write ------------------------------------------------------------------------


def test_device_cannot_write_as_another_device(env: Env, clients: Callable[..., Client]) -> None:
    orch = connected(clients, env, "orchestrator")
    orch.subscribe(T.everything)
    device = connected(clients, env, "pi-7")
    forbidden = [
        T.presence("phone"),
        T.device_out("phone"),
        T.card("phone", "notes"),
        T.card("pi-7", "notes"),  # an agent the devices file does not give it
        T.device_inbox("phone"),
        T.task_events("t0123456789"),
    ]
    for topic in forbidden:
        code = device.publish(topic, b"spoofed")
        assert code.getName() == "Not authorized", (topic, code)  # MQTT 5 tells the publisher
    allowed = [T.card("pi-7", "camera"), T.presence("pi-7")]
    for topic in allowed:
        assert not device.publish(topic, b"ok").is_failure
    control = T.device_out("pi-7")
    device.publish(control, b"control")
    seen = orch.until(control, b"control")
    assert seen == [(t, b"ok") for t in allowed] + [(control, b"control")]


def test_device_will_cannot_speak_for_another_device(
    env: Env, clients: Callable[..., Client]
) -> None:
    orch = connected(clients, env, "orchestrator")
    orch.subscribe(T.all_presence)
    will = {"background": False}
    spoof = connected(clients, env, "pi-7", client_id="spoof", will=T.presence("phone"), **will)
    spoof.kill()
    honest = connected(clients, env, "pi-7", client_id="honest", will=T.presence("pi-7"), **will)
    honest.kill()
    assert orch.until(T.presence("pi-7"), b"offline") == [(T.presence("pi-7"), b"offline")]


# The orchestrator ---------------------------------------------------------------------------


def test_orchestrator_replicas_share_submitted_tasks(
    env: Env, clients: Callable[..., Client]
) -> None:
    shared = T.intake("orchestrators")
    assert shared == "$share/orchestrators/fleetmind/home/orchestrators/submit"
    replicas = [connected(clients, env, "orchestrator") for _ in range(2)]
    for replica in replicas:
        assert not any(c.is_failure for c in replica.subscribe(shared))
    submitter = connected(clients, env, "orchestrator")
    sent = set()
    for n in range(20):
        submitter.publish(T.submit, f"task {n}".encode())
        sent.add((T.submit, f"task {n}".encode()))
    got: list[list[tuple[str, bytes]]] = [[], []]
    deadline = time.monotonic() + WAIT_S
    while sum(map(len, got)) < len(sent) and time.monotonic() < deadline:
        for i, replica in enumerate(replicas):
            try:
                msg = replica.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            got[i].append((msg.topic, msg.payload))
    assert sorted(got[0] + got[1]) == sorted(sent)  # each task taken exactly once
    assert got[0] and got[1]  # and the work is split


def test_device_answers_a_replica_on_its_own_output_only(
    env: Env, clients: Callable[..., Client]
) -> None:
    orch = connected(clients, env, "orchestrator")
    assert not any(c.is_failure for c in orch.subscribe(T.all_device_out("r1")))
    device = connected(clients, env, "pi-7")
    device.publish(T.device_out("phone", "r1"), b"forged")  # another device's output: denied
    device.publish(T.device_out("pi-7", "r1"), b"mine")
    assert orch.until(T.device_out("pi-7", "r1"), b"mine") == [
        (T.device_out("pi-7", "r1"), b"mine")
    ]


# Persistence ------------------------------------------------------------------------------------


def test_retained_presence_and_queued_messages_survive_a_restart(
    env: Env, clients: Callable[..., Client]
) -> None:
    device = connected(clients, env, "pi-7")
    device.publish(T.presence("pi-7"), b"online", retain=True)
    session = dict(client_id="orch-1", clean_start=False, session_expiry_s=3600)
    orch = connected(clients, env, "orchestrator", **session)
    orch.subscribe(T.all_device_out())
    orch.close()
    device.publish(T.device_out("pi-7"), b"result while you were away")
    device.close()

    env.restart()

    orch = connected(clients, env, "orchestrator", **session)
    assert orch.session_present
    msg = orch.next()
    assert (msg.topic, msg.payload) == (T.device_out("pi-7"), b"result while you were away")
    watcher = connected(clients, env, "orchestrator")
    watcher.subscribe(T.all_presence)
    msg = watcher.next()
    assert (msg.topic, msg.payload, msg.retain) == (T.presence("pi-7"), b"online", True)


# TLS --------------------------------------------------------------------------------------------


def _make_certs(tmp: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True, timeout=30)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr",
    )  # fmt: skip
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt",
    )  # fmt: skip


def test_tls_listener(tmp_path: Path, mosquitto: None, clients: Callable[..., Client]) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _make_certs(tmp_path)
    plain, tls = free_port(), free_port()
    path = write(
        tmp_path,
        f"""
fleet: {FLEET}
listeners:
  - {{port: {plain}}}
  - {{port: {tls}, tls: {{cafile: ca.crt, certfile: server.crt, keyfile: server.key}}}}
orchestrators: [{{username: orchestrator, password: orch-pw}}]
""",
    )
    config = write_broker_config(path, tmp_path / "out")
    with serve_broker(config.config_dir) as handle:
        assert handle.describe().endswith(f"127.0.0.1:{plain}, 127.0.0.1:{tls} (TLS)")
        secure = clients(tls, "orchestrator", "orch-pw")
        secure._mqtt.tls_set(ca_certs=str(tmp_path / "ca.crt"))
        assert not secure.connect().is_failure
        secure.close()


# The command line -------------------------------------------------------------------------------


def test_cli_config(tmp_path: Path, mosquitto: None) -> None:
    devices = write(tmp_path, ORCH + "devices: [{id: pi-7, password: a, agents: [camera]}]")
    result = CliRunner().invoke(
        broker_app, ["config", "--devices", str(devices), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path}/out/mosquitto.conf" in result.output
    assert "listener 127.0.0.1:1883" in result.output
    assert "orchestrator orchestrator: read/write fleetmind/default/#" in result.output
    assert "device pi-7 (camera): reads its agents' and its own inbox" in result.output
    assert (tmp_path / "out" / "acl").is_file()

    bad = write(tmp_path, "devices: []", name="bad.yaml")
    result = CliRunner().invoke(broker_app, ["config", "--devices", str(bad), "--out", "x"])
    assert isinstance(result.exception, ConfigError)
    assert "missing key 'orchestrators'" in result.exception.message


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_serve_runs_until_interrupted(
    tmp_path: Path, mosquitto: None, signum: signal.Signals
) -> None:
    port = free_port()
    devices = write(
        tmp_path, ORCH + f"listeners: [{{port: {port}}}]\ndevices: [{{id: pi, password: a}}]"
    )
    write_broker_config(devices, tmp_path / "out")
    code = "from fleetmind.cli._broker_cmd import broker_app; broker_app()"
    args = [sys.executable, "-c", code, "serve", "--config", str(tmp_path / "out")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("started mosquitto "), line + proc.stderr.read()  # type: ignore[union-attr]
        assert f" on 127.0.0.1:{port} (pid " in line
        broker_pid = int(line.split("(pid ")[1].split(",")[0])
        assert _broker._accepts("127.0.0.1", port)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert out.strip() == "stopped", (line, out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not _broker._accepts("127.0.0.1", port)
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)


def test_cli_serve_embedded_says_what_it_lacks(tmp_path: Path) -> None:
    port = free_port()
    code = "from fleetmind.cli._broker_cmd import broker_app; broker_app()"
    args = [sys.executable, "-c", code, "serve", "--embedded", "--port", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("started amqtt (embedded) "), line + proc.stderr.read()  # type: ignore[union-attr]
        assert f" on 127.0.0.1:{port} (pid " in line
        lacks = proc.stdout.readline()
        assert lacks.startswith("this is the embedded development broker: MQTT 3.1.1 only")
        assert "install Mosquitto" in lacks
        assert _broker._accepts("127.0.0.1", port)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert out.strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not _broker._accepts("127.0.0.1", port)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["serve"], "give --config DIR"),
        (["serve", "--mosquitto"], "Mosquitto needs --config DIR"),
        (["serve", "--embedded", "--port", "0"], "--port 0 is out of range"),
        (["serve", "--config", "x", "--port", "5"], "--port is for the embedded broker"),
    ],
)
def test_cli_serve_bad_flags(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(broker_app, args)
    assert isinstance(result.exception, ConfigError)
    assert problem in result.exception.message


def test_start_test_broker_without_devices(tmp_path: Path, mosquitto: None) -> None:
    handle, port, credentials = start_test_broker(tmp_path)
    with handle:
        assert set(credentials) == {"orchestrator"}
        assert handle.config.fleet == "test"
        assert isinstance(handle.config.listeners[0], Listener)
        assert handle.config.listeners[0].port == port
    assert not handle.running


async def test_a_publish_the_broker_refuses_raises(env: Env) -> None:
    device = BrokerAddress("127.0.0.1", env.port, username="pi-7", password=env.password("pi-7"))
    async with MqttConnection(device, "fm-pi-7") as mqtt:
        assert mqtt.protocol == "5"  # MQTT 5 brokers say "not authorized" in the PUBACK
        with pytest.raises(ProtocolError, match="refused it: Not authorized"):
            await mqtt.publish(T.device_out("phone"), b"forged")
        await mqtt.publish(T.device_out("pi-7"), b"mine")  # its own output still goes


async def test_a_taken_client_id_does_not_make_a_reconnect_storm(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    login = BrokerAddress(
        "127.0.0.1", env.port, username="orchestrator", password=env.password("orchestrator")
    )
    caplog.set_level(logging.INFO, logger="fleetmind.mqtt")
    async with MqttConnection(login, "fm-twin"), MqttConnection(login, "fm-twin"):
        # Each takes the session from the other as it reconnects; back-off keeps this slow.
        await asyncio.sleep(3)
    reconnects = [r for r in caplog.records if "reconnected to" in r.getMessage()]
    warnings = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(reconnects) < 40, len(reconnects)  # without back-off: thousands
    assert len(warnings) <= 4, [r.getMessage() for r in warnings]

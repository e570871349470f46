"""Starting and stopping the broker, from Python and from the command line, against a real
Mosquitto on a free loopback port (or the embedded broker when Mosquitto is missing).

Every test that starts a broker stops it, in a fixture's ``finally`` or its own ``with``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from broker_harness import ORCH, REFUSED, WAIT_S, Client, Env, T, write
from typer.testing import CliRunner

from fleetmind.cli._broker_cmd import broker_app
from fleetmind.errors import ConfigError, ProtocolError
from fleetmind.protocols import _broker
from fleetmind.protocols._broker import (
    Listener,
    serve_broker,
    write_broker_config,
)
from fleetmind.protocols._mqtt import BrokerAddress, MqttConnection
from fleetmind.testing import free_port, start_test_broker

pytestmark = pytest.mark.timeout(30)


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

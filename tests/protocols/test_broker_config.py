"""The broker's configuration: a devices file turned into Mosquitto's files, and every way a
devices file can be wrong, each said in one line."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from broker_harness import GOOD, ORCH, write
from typer.testing import CliRunner

from fleetmind.cli._broker_cmd import broker_app
from fleetmind.errors import ConfigError
from fleetmind.protocols import _broker
from fleetmind.protocols._broker import (
    BrokerConfig,
    Listener,
    load_devices_file,
    write_broker_config,
)

pytestmark = pytest.mark.timeout(30)


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

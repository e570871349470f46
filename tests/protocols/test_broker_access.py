"""What each account may read and write on a real Mosquitto, over plain TCP and TLS.

A forbidden message is sent first and a permitted one on the same connection after it: once the
permitted one has arrived, the forbidden one can no longer be on its way."""

from __future__ import annotations

import queue
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from broker_harness import FLEET, WAIT_S, Client, Env, T, connected, write

from fleetmind.protocols._broker import (
    serve_broker,
    write_broker_config,
)
from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(30)


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
    orch.publish(T.task_control("t0123456789"), b"cancel")
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
        T.task_control("t0123456789"),  # cancelling tasks is for orchestrator logins
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

"""The MQTT fleet end to end: real Mosquitto, agents in separate OS processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from repo_paths import EXAMPLES

from fleetmind import Fleet, TaskGraph, agent
from fleetmind.agents.remote import DeviceRuntime
from fleetmind.protocols._envelope import DispatchPayload, ResultPayload, new_envelope
from fleetmind.protocols._mqtt import BrokerAddress, MqttConnection
from fleetmind.protocols._topics import Topics
from fleetmind.serve import MqttFleetLink

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)

if MOSQUITTO is None and os.environ.get("CI") == "true":
    raise RuntimeError("Mosquitto is required under CI: apt-get install mosquitto")
# Without Mosquitto the tests run on the embedded development broker, except those that need
# what only Mosquitto has (persistence across a restart, passwords and ACLs).
DEFAULT_BROKER = "mosquitto" if MOSQUITTO else "embedded"


def needs_mosquitto(what: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        MOSQUITTO is None, reason=f"needs Mosquitto ({what}; the embedded broker lacks it)"
    )


pytestmark = pytest.mark.timeout(60)

AGENTS = """
import asyncio, os, pathlib
from fleetmind import agent

DEVICE = os.environ["FM_DEVICE"]
LOG = pathlib.Path(os.environ["FM_LOG"])

def mark(text):
    with LOG.open("a") as f:
        f.write(f"{DEVICE} {text}\\n")

@agent(id=f"resizer-{DEVICE}", skills=["resize"], cost_per_call=float(os.environ["FM_COST"]))
async def resize(size: int, ctx) -> int:
    mark(f"resize {size}")
    ctx.progress(f"resizing {size}")
    if os.environ.get("FM_HANG") and size == 2:
        await asyncio.sleep(3600)  # killed while it works
    return size // 2

@agent(id=f"adder-{DEVICE}", skills=["add"], cost_per_call=float(os.environ["FM_COST"]))
async def add(a: int, b: int) -> int:
    mark("add")
    return a + b
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerAddress]:
    """An anonymous broker on a free port: Mosquitto, or the embedded one (``indirect`` param)."""
    kind = getattr(request, "param", DEFAULT_BROKER)
    if kind == "embedded":
        from fleetmind.protocols._broker import serve_embedded

        with serve_embedded([free_port()], log_file=tmp_path / "embedded.log") as embedded:
            yield BrokerAddress("127.0.0.1", embedded.listeners[0].port)
        return
    if MOSQUITTO is None:
        pytest.skip("Mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield BrokerAddress("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def devices(tmp_path: Path, broker: BrokerAddress) -> Iterator[dict]:
    """Starts `fleetmind agent serve` processes on demand; stops them all at the end."""
    (tmp_path / "agents.py").write_text(AGENTS)
    log = tmp_path / "calls.log"
    processes: dict[str, subprocess.Popen] = {}

    def start(device: str, cost: float, hang: bool = False) -> subprocess.Popen:
        env = {
            **os.environ,
            "FM_DEVICE": device,
            "FM_LOG": str(log),
            "FM_COST": str(cost),
            "FM_HANG": "1" if hang else "",
        }
        process = subprocess.Popen(
            [
                FLEETMIND,
                "agent",
                "serve",
                str(tmp_path / "agents.py"),
                "--broker",
                f"mqtt://127.0.0.1:{broker.port}",
                "--device-id",
                device,
                "--heartbeat",
                "0.5",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes[device] = process
        return process

    try:
        yield {"start": start, "log": log, "processes": processes}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"], indirect=True)
async def test_agents_in_separate_processes_complete_a_dag(
    broker: BrokerAddress, devices: dict
) -> None:
    devices["start"]("pi-1", cost=0.0)
    devices["start"]("pi-2", cost=1.0)
    fleet = Fleet()
    graph = TaskGraph("remote")
    graph.add_subtask("half", agent="resizer-pi-1", inputs={"size": 10})
    graph.add_subtask("other", agent="resizer-pi-2", inputs={"size": 4})
    graph.add_subtask("sum", skill="add")
    graph.add_dependency("half", "sum", kind="data", input="a")
    graph.add_dependency("other", "sum", kind="data", input="b")
    async with MqttFleetLink(fleet, broker, dead_after_s=2) as link:
        await link.wait_for_agents("resizer-pi-1", "resizer-pi-2", "adder-pi-1", "adder-pi-2")
        result = await fleet.run(graph)

    assert result.status == "done", result.errors
    assert result.outputs == {"half": 5, "other": 2, "sum": 7}
    assert result.graph.state("sum").agent == "adder-pi-1@pi-1"  # the cheaper device's adder
    assert sorted(calls(devices["log"])) == ["pi-1 add", "pi-1 resize 10", "pi-2 resize 4"]


async def test_killing_a_device_mid_subtask_reassigns_it(
    broker: BrokerAddress, devices: dict
) -> None:
    doomed = devices["start"]("pi-1", cost=0.0, hang=True)
    devices["start"]("pi-2", cost=1.0)
    fleet = Fleet()
    graph = TaskGraph("failover")
    graph.add_subtask("shrink", skill="resize", inputs={"size": 2})
    async with MqttFleetLink(fleet, broker, dead_after_s=1.5) as link:
        await link.wait_for_agents("resizer-pi-1", "resizer-pi-2")
        async with fleet:
            handle = fleet.submit(graph)
            async for event in handle.events():
                if event.kind == "subtask_started":
                    assert event.agent == "resizer-pi-1@pi-1"
                if event.kind == "subtask_progress":  # the device is at work: kill it now
                    break
            os.kill(doomed.pid, signal.SIGKILL)  # the broker publishes its last will
            result = await handle.result()

    assert result.status == "done", result.errors
    assert result.outputs == {"shrink": 1}
    assert result.graph.state("shrink").agent == "resizer-pi-2@pi-2"
    reassigned = [e for e in result.graph.log if e.kind == "subtask_reassigned"]
    assert [e.agent for e in reassigned] == ["resizer-pi-1@pi-1"]
    assert link.devices["pi-1"].online is False


@agent(id="slow-echo")
async def slow_echo(text: str) -> str:
    await asyncio.sleep(0.5)
    return text


async def test_results_from_the_wrong_device_unknown_ids_and_replays_change_nothing(
    broker: BrokerAddress,
) -> None:
    topics = Topics()
    device = DeviceRuntime("honest", [slow_echo], broker, heartbeat_s=0.5)
    fleet = Fleet()
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        async with (
            MqttFleetLink(fleet, broker) as link,
            MqttConnection(broker, "fm-rogue") as rogue,
        ):
            await link.wait_for_agents("slow-echo")
            await rogue.subscribe(topics.device_inbox("honest"))
            graph = TaskGraph("injection")
            graph.add_subtask("echo", agent="slow-echo", inputs={"text": "genuine"})
            async with fleet:
                handle = fleet.submit(graph)
                dispatch = None
                async for message in rogue.messages():  # the rogue sees the dispatch's id
                    dispatch = json.loads(message.payload)
                    if dispatch["kind"] == "dispatch":
                        break
                assert dispatch is not None
                forged = ResultPayload(
                    task_id=handle.task_id, subtask_id="echo", status="done", output="forged"
                )
                # From another device, on its own topic, for the real dispatch id:
                await rogue.publish(
                    topics.device_out("rogue"),
                    new_envelope(
                        "result", "rogue", forged, correlation_id=dispatch["id"]
                    ).to_bytes(),
                )
                # Claiming to be the honest device, but on the rogue's own topic:
                await rogue.publish(
                    topics.device_out("rogue"),
                    new_envelope(
                        "result", "honest", forged, correlation_id=dispatch["id"]
                    ).to_bytes(),
                )
                # For an unknown dispatch id:
                await rogue.publish(
                    topics.device_out("honest"),
                    new_envelope("result", "honest", forged, correlation_id="nope").to_bytes(),
                )
                result = await handle.result()
                # A replay of the real result after the subtask finished:
                late = ResultPayload(
                    task_id=handle.task_id, subtask_id="echo", status="done", output="replayed"
                )
                await rogue.publish(
                    topics.device_out("honest"),
                    new_envelope(
                        "result", "honest", late, correlation_id=dispatch["id"]
                    ).to_bytes(),
                )
                await asyncio.sleep(0.2)
            ignored = list(link.ignored)
        serving.cancel()

    assert result.outputs == {"echo": "genuine"}
    # The rogue speaking for the honest device on its own topic is refused outright; its own
    # answer, the unknown id and the late replay are not taken for the dispatch (they are kept
    # only as answers a resumed engine may ask for by name, from the device it asked).
    assert any("sent by honest" in why for why in ignored)


async def test_device_answers_malformed_and_duplicate_messages_and_keeps_serving(
    broker: BrokerAddress,
) -> None:
    topics = Topics()
    runs: list[str] = []

    @agent(id="counter")
    async def counter(text: str) -> str:
        runs.append(text)
        return text.upper()

    device = DeviceRuntime("dev", [counter], broker, heartbeat_s=0.5)
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        await device.ready.wait()
        async with MqttConnection(broker, "fm-test-orchestrator") as orchestrator:
            await orchestrator.subscribe(topics.device_out("dev"))
            inbox = topics.device_inbox("dev")
            await orchestrator.publish(inbox, b"{not json")
            await orchestrator.publish(
                inbox, json.dumps({"v": 9, "kind": "dispatch", "id": "x"}).encode()
            )
            job = DispatchPayload(
                task_id="t1", agent="counter", subtask={"id": "s"}, inputs={"text": "hi"}
            )
            dispatch = new_envelope("dispatch", "orchestrator", job)
            await orchestrator.publish(inbox, dispatch.to_bytes())
            await orchestrator.publish(inbox, dispatch.to_bytes())  # a redelivered duplicate
            replies = []
            async for message in orchestrator.messages():
                replies.append(json.loads(message.payload))
                if replies[-1]["kind"] == "result":
                    break
        serving.cancel()

    kinds = [r["kind"] for r in replies]
    assert kinds == ["error", "error", "result"]
    assert "not JSON" in replies[0]["payload"]["error"]["message"]
    assert replies[1]["payload"]["error"]["type"] == "UnsupportedVersion"
    assert replies[1]["correlation_id"] == "x"
    assert replies[2]["payload"]["output"] == "HI"
    assert runs == ["hi"]  # the duplicate had no second effect


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients missing")
async def test_the_documented_shell_device_joins_and_does_a_subtask(
    broker: BrokerAddress,
) -> None:
    script = EXAMPLES / "shell_device.sh"
    fleet = Fleet()
    async with MqttFleetLink(fleet, broker) as link:
        shell = await asyncio.create_subprocess_exec(
            "sh",
            str(script),
            "127.0.0.1",
            str(broker.port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await link.wait_for_agents("shout", timeout_s=20)
            graph = TaskGraph("shell")
            graph.add_subtask("loud", agent="shout", inputs={"text": "hello from python"})
            result = await fleet.run(graph)
            _, stderr = await asyncio.wait_for(shell.communicate(), 20)
        finally:
            if shell.returncode is None:
                shell.kill()
                await shell.wait()
    assert shell.returncode == 0, stderr.decode()
    assert result.outputs == {"loud": "HELLO FROM PYTHON"}


@needs_mosquitto("persistence across a restart")
async def test_a_broker_restart_in_the_middle_of_a_task_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "persistent.conf"
    # Mosquitto started as root drops to its own user, which cannot enter pytest's private
    # temporary directories: its database goes to a directory it may write.
    store = Path(tempfile.mkdtemp(prefix="fleetmind-mosquitto-"))
    os.chmod(store, 0o777)
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {store}/\nautosave_interval 1\n"
    )

    def start_broker() -> subprocess.Popen:
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process
            except OSError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)

    gate = asyncio.Event()
    started = asyncio.Event()

    @agent(id="patient")
    async def patient(text: str) -> str:
        started.set()
        await gate.wait()
        return text[::-1]

    address = BrokerAddress("127.0.0.1", port)
    broker = start_broker()
    try:
        device = DeviceRuntime("steady", [patient], address, heartbeat_s=0.5)
        fleet = Fleet()
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(device.run())
            async with MqttFleetLink(fleet, address, dead_after_s=5) as link:
                await link.wait_for_agents("patient")
                graph = TaskGraph("restart")
                graph.add_subtask("flip", agent="patient", inputs={"text": "abc"})
                graph.add_subtask(
                    "again", agent="patient", inputs={"text": "xyz"}, depends_on=["flip"]
                )
                async with fleet:
                    handle = fleet.submit(graph)
                    await started.wait()
                    # Mosquitto saves its state (sessions, queued QoS 1 messages) on shutdown.
                    broker.terminate()
                    broker.wait(timeout=10)
                    gate.set()  # the result is published while the broker is down
                    await asyncio.sleep(0.3)
                    broker = start_broker()
                    result = await asyncio.wait_for(handle.result(), 30)
            serving.cancel()
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        shutil.rmtree(store, ignore_errors=True)

    assert result.status == "done", result.errors
    assert result.outputs == {"flip": "cba", "again": "zyx"}
    assert not [e for e in result.graph.log if e.kind == "subtask_reassigned"]


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"], indirect=True)
def test_cli_serves_a_device_lists_it_and_runs_a_task_on_it(
    tmp_path: Path, broker: BrokerAddress, devices: dict
) -> None:
    serve = devices["start"]("pi-9", cost=0.0)
    url = f"mqtt://127.0.0.1:{broker.port}"
    task = tmp_path / "remote.yaml"
    task.write_text(
        "name: remote\nsubtasks:\n"
        "  - {id: half, agent: resizer-pi-9, inputs: {size: 8}}\n"
        "  - {id: plus, agent: adder-pi-9, inputs: {a: '${half}', b: 1}}\n"
    )
    deadline = time.monotonic() + 30
    while True:  # the device process announces itself once it has started
        listed = subprocess.run(
            [FLEETMIND, "devices", "--broker", url], capture_output=True, text=True, timeout=60
        )
        if "online" in listed.stdout or time.monotonic() > deadline:
            break
    assert listed.returncode == 0, listed.stderr
    assert "pi-9" in listed.stdout and "online" in listed.stdout
    assert "resizer-pi-9 v1" in listed.stdout

    ran = subprocess.run(
        [FLEETMIND, "run", str(task), "--broker", url, "--json", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"] == {"half": 4, "plus": 5}
    assert serve.poll() is None  # still serving

    unreachable = subprocess.run(
        [FLEETMIND, "devices", "--broker", "ftp://nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 2
    assert unreachable.stderr.strip() == (
        "fleetmind: error: broker URL 'ftp://nowhere' must look like mqtt://HOST:PORT or mqtts://..."
    )


@needs_mosquitto("passwords and ACLs")
async def test_a_fleet_on_the_broker_config_fleetmind_generates(tmp_path: Path) -> None:
    from fleetmind.errors import ConfigError
    from fleetmind.testing import start_test_broker

    @agent(id="camera")
    async def camera(n: int) -> int:
        return n * 3

    handle, port, credentials = start_test_broker(
        tmp_path, devices={"pi-7": ["camera"], "pi-8": ["thermo"]}, fleet="home"
    )
    with handle:

        def login(user: str) -> BrokerAddress:
            return BrokerAddress("127.0.0.1", port, username=user, password=credentials[user])

        device = DeviceRuntime("pi-7", [camera], login("pi-7"), fleet="home", heartbeat_s=0.5)
        fleet = Fleet()
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(device.run())
            async with MqttFleetLink(fleet, login("orchestrator"), fleet_name="home") as link:
                await link.wait_for_agents("camera")
                graph = TaskGraph("acl")
                graph.add_subtask("shot", agent="camera", inputs={"n": 2})
                result = await fleet.run(graph)
            serving.cancel()
        wrong = BrokerAddress("127.0.0.1", port, username="pi-7", password="guess")
        with pytest.raises(ConfigError, match="refused the login of pi-7"):
            async with MqttConnection(wrong, "fm-intruder"):
                pass

    assert result.outputs == {"shot": 6}


def test_orchestrator_killed_then_resumed_picks_up_the_result_that_arrived_meanwhile(
    tmp_path: Path, broker: BrokerAddress
) -> None:
    (tmp_path / "agents.py").write_text(
        "import asyncio, os, pathlib\n"
        "from fleetmind import agent\n"
        "LOG = pathlib.Path(os.environ['FM_LOG'])\n"
        "GATE = pathlib.Path(os.environ['FM_GATE'])\n"
        "@agent(id='slow-double')\n"
        "async def slow_double(n: int) -> int:\n"
        "    with LOG.open('a') as f:\n"
        "        f.write(f'start {n}\\n')\n"
        "    while not GATE.exists():\n"
        "        await asyncio.sleep(0.02)\n"
        "    return 2 * n\n"
    )
    (tmp_path / "task.yaml").write_text(
        "name: survive\nsubtasks:\n  - {id: twice, agent: slow-double, inputs: {n: 21}}\n"
    )
    log, gate, home = tmp_path / "calls.log", tmp_path / "gate", tmp_path / "home"
    env = {**os.environ, "FM_LOG": str(log), "FM_GATE": str(gate)}
    url = f"mqtt://127.0.0.1:{broker.port}"
    device = subprocess.Popen(
        [
            FLEETMIND,
            "agent",
            "serve",
            str(tmp_path / "agents.py"),
            "--broker",
            url,
            "--device-id",
            "pi-1",
            "--heartbeat",
            "0.5",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    orchestrator = None
    try:
        orchestrator = subprocess.Popen(
            [
                FLEETMIND,
                "run",
                str(tmp_path / "task.yaml"),
                "--broker",
                url,
                "--no-live",
                "--data-dir",
                str(home),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 40
        while not (log.exists() and "start 21" in log.read_text()):
            assert time.monotonic() < deadline, "the subtask never reached the device"
            time.sleep(0.02)
        os.kill(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait(timeout=10)
        gate.touch()  # the device finishes while no orchestrator is connected
        time.sleep(0.5)

        from fleetmind.orchestrator import SQLiteStore

        store = SQLiteStore(home / "fleetmind.db")
        (record,) = store.tasks()
        store.close()
        resumed = subprocess.run(
            [FLEETMIND, "resume", record.id, "--broker", url, "--json", "--data-dir", str(home)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for process in (orchestrator, device):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"twice": 42}
    assert log.read_text().splitlines() == ["start 21"]  # it ran once: the result was picked up


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"], indirect=True)
async def test_a_task_submitted_over_the_broker_runs_on_an_orchestrator(
    broker: BrokerAddress,
) -> None:
    from fleetmind.serve import submit_via_broker

    @agent(id="doubler")
    async def doubler(n: int) -> int:
        return 2 * n

    device = DeviceRuntime("pi-1", [doubler], broker, heartbeat_s=0.5)
    fleet = Fleet()
    graph = TaskGraph("double")
    graph.add_subtask("twice", agent="doubler", inputs={"n": 21})
    async with asyncio.TaskGroup() as tasks:
        serving = tasks.create_task(device.run())
        # The link is entered before the fleet, as `fleetmind orchestrator serve` does: a task
        # that arrives first waits for the fleet to open.
        async with (
            MqttFleetLink(
                fleet, broker, client_id="fm-orch-x", share_group="crew", accept_tasks=True
            ) as link,
            fleet,
        ):
            await link.wait_for_agents("doubler")
            result = await submit_via_broker(broker, graph, timeout_s=30)
        serving.cancel()
    assert result.ok and result.outputs == {"twice": 42}
    assert result.replica == "fm-orch-x"


def test_devices_watch_follows_a_device_coming_and_going(
    broker: BrokerAddress, devices: dict
) -> None:
    watcher = subprocess.Popen(
        [FLEETMIND, "devices", "--watch", "--broker", f"mqtt://127.0.0.1:{broker.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()
        assert "no devices have announced themselves" in first, first
        device = devices["start"]("pi-3", cost=0.0)
        seen: list[str] = []
        while not any("pi-3" in line and "online" in line for line in seen):
            line = watcher.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        assert any("resizer-pi-3 v1" in line for line in seen)
        os.kill(device.pid, signal.SIGKILL)  # its last will says offline
        while not any("pi-3" in line and "offline" in line for line in seen):
            line = watcher.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=15)
        assert watcher.returncode == 0, err
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()

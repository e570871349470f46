"""One trial of benchmarks/fleet_faults.py: inject the fault at its moment, with the orchestrator
in this process or as the command line (``fleetmind run``, then ``fleetmind resume``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import subprocess
import time
from pathlib import Path

from _fleet_faults_setup import (
    DEAD_AFTER_S,
    DEVICES,
    ENDS_BEFORE_FAULT,
    FLEETMIND_CLI,
    LIMIT_S,
    SETTLE_S,
    VICTIM,
    Devices,
    Mosquitto,
    Watcher,
    _kill_group,
    rig,
)
from _fleet_faults_trials import (
    Fault,
    LogLines,
    Trial,
    _entries,
    agent_of,
    counts,
    detection,
    injection_delay_s,
    read_audit,
    running_on,
    subtask_plan,
    task_graph,
    task_yaml,
)
from _harness import _spawn, until

from fleetmind import Fleet, TaskGraph
from fleetmind.orchestrator import SkillRouter, SQLiteStore
from fleetmind.serve import MqttFleetLink


async def inject(
    fault: Fault,
    trial: Trial,
    *,
    t0: float,
    broker: Mosquitto,
    devices: Devices,
    link: MqttFleetLink,
    fleet: Fleet,
    outage_s: float,
) -> None:
    """Wait for the moment, then inject the fault (in-process orchestrator)."""

    def ended() -> int:
        return sum(counts(read_audit(devices.audit), "end").values())

    def victim_busy() -> bool:
        return ended() >= ENDS_BEFORE_FAULT and bool(running_on(read_audit(devices.audit), VICTIM))

    def any_busy() -> bool:
        marks = read_audit(devices.audit)
        return ended() >= ENDS_BEFORE_FAULT and any(running_on(marks, d) for d in DEVICES)

    def victim_agents() -> int:
        return len({agent_of(k) for k in running_on(read_audit(devices.audit), VICTIM)})

    if fault.device_fault:
        if not await until(victim_busy, 60):
            trial.problems.append(
                f"{VICTIM} never held running work after {ENDS_BEFORE_FAULT} ends"
            )
            return
        # A device with several agents: work of two agents at least, of all three if that
        # comes within 5 s.
        several = fault.key == "multi-agent-kill"
        if several and not await until(lambda: victim_agents() >= 3, 5):
            await until(lambda: victim_agents() >= 2, 30)
        await asyncio.sleep(injection_delay_s(fault, trial.trial))
        trial.held = running_on(read_audit(devices.audit), VICTIM)
        old = link.devices.get(VICTIM)
        old_boot = old.boot if old is not None else None
        trial.fault_at_s = time.perf_counter() - t0
        trial.fault_wall = time.time()
        devices.kill(VICTIM)
        trial.injected, trial.hit = True, bool(trial.held)
        if fault.key == "device-slow":
            names = [f"{a}@{VICTIM}" for a in fault.agents]
            dead = await until(
                lambda: all(fleet.agent(n) is None for n in names), DEAD_AFTER_S + 30
            )
            trial.declared_dead_s = time.time() - trial.fault_wall
            if not dead:
                trial.problems.append(
                    f"{VICTIM} was not declared dead within {DEAD_AFTER_S + 30} s"
                )
            await asyncio.sleep(1.0)
        trial.restart_wall = time.time()
        devices.start(VICTIM)

        def back() -> bool:
            state = link.devices.get(VICTIM)
            return state is not None and state.online and state.boot != old_boot

        if await until(back, 60):
            trial.back_online_s = time.time() - trial.fault_wall
            if fault.key != "device-slow" and trial.back_online_s > DEAD_AFTER_S:
                trial.problems.append(
                    f"the restarted device was back only after {trial.back_online_s:.1f} s, "
                    f"beyond the {DEAD_AFTER_S:g} s grace period"
                )
        else:
            trial.problems.append(f"the restarted {VICTIM} was not seen online within 60 s")
        return
    # Broker faults.
    if not await until(any_busy, 60):
        trial.problems.append(f"no device held running work after {ENDS_BEFORE_FAULT} ends")
        return
    await asyncio.sleep(injection_delay_s(fault, trial.trial))
    trial.held = sorted({k for d in DEVICES for k in running_on(read_audit(devices.audit), d)})
    trial.fault_at_s = time.perf_counter() - t0
    trial.fault_wall = time.time()
    await asyncio.to_thread(broker.stop)
    trial.injected, trial.hit = True, bool(trial.held)
    if fault.key == "broker-outage":
        await asyncio.sleep(outage_s)
    await asyncio.to_thread(broker.start)


async def finish_injection(injector: asyncio.Task[None], trial: Trial) -> None:
    """Let an injected fault play out (a restarted device comes back before the audit is
    read); cancel one that never found its moment."""
    if trial.fault_wall is None and not injector.done():
        injector.cancel()
        trial.problems.append("the task ended before the fault was injected")
    try:
        await injector
    except asyncio.CancelledError:
        if trial.fault_wall is not None:
            raise
    except Exception as exc:
        trial.problems.append(f"injecting the fault failed: {type(exc).__name__}: {exc}")


class _Abandon(Exception):
    """The task did not finish in time: leave the fleet (its drivers are cancelled)."""


async def run_in_process(fault: Fault, number: int, outage_s: float) -> Trial:
    """One trial with the orchestrator in this process."""
    task_id = f"{fault.key}-{number:02d}-{secrets.token_hex(3)}"
    trial = Trial(fault.key, number, task_id, [k for k, _, _ in subtask_plan(fault.agents)])
    watcher: Watcher | None = None
    with rig(fault.key, fault.agents) as setup:
        broker, devices = setup.broker, setup.devices
        await asyncio.to_thread(broker.start)
        for device in DEVICES:
            devices.start(device)
        fleet = Fleet(router=SkillRouter())
        with LogLines() as logs, contextlib.suppress(_Abandon):
            async with MqttFleetLink(fleet, broker.address, dead_after_s=DEAD_AFTER_S) as link:
                wanted = [f"{a}@{d}" for a in fault.agents for d in DEVICES]
                await link.wait_for_agents(*wanted, timeout_s=60)
                if fault.device_fault:
                    watcher = setup.watcher = Watcher(
                        broker.port, "fleetmind/default/devices/+/inbox"
                    )
                    await watcher.ready()
                async with fleet:
                    t0 = time.perf_counter()
                    handle = fleet.submit(task_graph(fault.agents), task_id=task_id)
                    injector = None
                    if not fault.is_baseline:
                        injector = asyncio.create_task(
                            inject(
                                fault,
                                trial,
                                t0=t0,
                                broker=broker,
                                devices=devices,
                                link=link,
                                fleet=fleet,
                                outage_s=outage_s,
                            )
                        )
                    limit = LIMIT_S + (outage_s if fault.key == "broker-outage" else 0)
                    try:
                        result = await asyncio.wait_for(handle.result(), limit)
                    except TimeoutError:
                        result = None
                        trial.problems.append(f"the task had not ended after {limit:g} s")
                    else:
                        trial.finish_s = time.perf_counter() - t0
                        trial.status = result.status
                        trial.errors = {
                            k: f"{v.get('type')}: {v.get('message')}"
                            for k, v in result.errors.items()
                        }
                        trial.outputs = dict(result.outputs)
                    if injector is not None:
                        await finish_injection(injector, trial)
                    await asyncio.sleep(SETTLE_S)
                    graph = handle.graph
                    trial.done_keys = [k for k in trial.keys if graph.state(k).status == "done"]
                    trial.log_entries = _entries(graph)
                    if result is None:
                        raise _Abandon
        trial.orchestrator_log = logs.lines
        trial.marks = read_audit(devices.audit)
        if fault.device_fault and watcher is not None:
            detection(trial, watcher.snapshot())
    return trial


def _spawn_cli(
    command: list[str], log: Path, stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """A command-line process in its own process group; stderr (and stdout) to files."""
    return _spawn(command, log, stdout, start_new_session=True)


async def _wait_process(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit code, or None if it still runs after ``timeout_s`` (it is then killed)."""
    if await until(lambda: process.poll() is not None, timeout_s, step_s=0.05):
        return process.returncode
    _kill_group(process)
    return None


def _task_id_from(log: Path, home: Path) -> str:
    found = re.search(r"fleetmind resume (\S+)", log.read_text(errors="replace"))
    if found:
        return found.group(1)
    store = SQLiteStore(home / "fleetmind.db")
    try:
        (record,) = store.tasks()
    finally:
        store.close()
    return record.id


def _tail(path: Path, lines: int = 40) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


async def run_cli(fault: Fault, number: int) -> Trial:
    """One trial with the command line as the orchestrator."""
    trial = Trial(fault.key, number, "?", [k for k, _, _ in subtask_plan(fault.agents)])
    with rig(fault.key, fault.agents) as setup:
        work, broker, devices, processes = setup.work, setup.broker, setup.devices, setup.processes
        await asyncio.to_thread(broker.start)
        watcher = setup.watcher = Watcher(broker.port, "fleetmind/default/devices/+/presence")
        await watcher.ready()
        for device in DEVICES:
            devices.start(device)

        def online() -> bool:
            states = {
                t.split("/")[3]: e.get("payload", {}).get("state") for _, t, e in watcher.snapshot()
            }
            return all(states.get(d) == "online" for d in DEVICES)

        if not await until(online, 60, step_s=0.05):
            raise RuntimeError("the devices did not come online")
        (work / "task.yaml").write_text(task_yaml(fault.agents))
        home = work / "home"
        run_log = work / "run.log"
        t0 = time.perf_counter()
        run = [FLEETMIND_CLI, "run", str(work / "task.yaml"), "--broker", broker.url]
        orchestrator = _spawn_cli([*run, "--no-live", "--data-dir", str(home)], run_log)
        processes.append(orchestrator)
        if fault.is_baseline:
            code = await _wait_process(orchestrator, LIMIT_S)
            if code is None:
                trial.problems.append(f"fleetmind run had not ended after {LIMIT_S:g} s")
            else:
                trial.finish_s = time.perf_counter() - t0
            trial.task_id = _task_id_from(run_log, home)
            store = SQLiteStore(home / "fleetmind.db")
            try:
                record, entries = store.load(trial.task_id)
                graph = TaskGraph.from_log(entries, name=record.name)
            finally:
                store.close()
            trial.status = record.status if code is not None else "not finished"
            trial.done_keys = [k for k in trial.keys if graph.state(k).status == "done"]
            trial.outputs = {k: graph.state(k).output for k in trial.done_keys}
            trial.log_entries = _entries(graph)
            trial.orchestrator_log = _tail(run_log)
        else:

            def answered() -> bool:
                marks = read_audit(devices.audit)
                return sum(counts(marks, "end").values()) >= ENDS_BEFORE_FAULT and any(
                    running_on(marks, d) for d in DEVICES
                )

            if not await until(answered, 60):
                trial.problems.append("no moment with some subtasks ended and others running")
            await asyncio.sleep(injection_delay_s(fault, number))
            trial.held = sorted(
                {k for d in DEVICES for k in running_on(read_audit(devices.audit), d)}
            )
            trial.fault_at_s = time.perf_counter() - t0
            trial.fault_wall = time.time()
            _kill_group(orchestrator)
            trial.injected, trial.hit = True, bool(trial.held)

            def settled() -> bool:
                marks = read_audit(devices.audit)
                return not any(running_on(marks, d) for d in DEVICES)

            if not await until(settled, 30):
                trial.problems.append("the devices had not ended their work 30 s after the kill")
            trial.task_id = _task_id_from(run_log, home)
            resume_log = work / "resume.log"
            resume_out = work / "resume.json"
            command = [FLEETMIND_CLI, "resume", trial.task_id, "--broker", broker.url, "--json"]
            command += ["--data-dir", str(home)]
            resumed = _spawn_cli(command, resume_log, stdout=resume_out)
            processes.append(resumed)
            code = await _wait_process(resumed, LIMIT_S)
            trial.orchestrator_log = [
                *(f"run: {line}" for line in _tail(run_log, 15)),
                *(f"resume: {line}" for line in _tail(resume_log, 25)),
            ]
            if code is None:
                trial.problems.append(f"fleetmind resume had not ended after {LIMIT_S:g} s")
            else:
                trial.finish_s = time.perf_counter() - t0
                try:
                    document = json.loads(resume_out.read_text())
                except ValueError:
                    trial.problems.append(f"fleetmind resume exited {code} without JSON")
                    document = {}
                trial.status = document.get("status", f"exit {code}")
                trial.outputs = document.get("outputs") or {}
                trial.errors = {
                    k: f"{v.get('type')}: {v.get('message')}"
                    for k, v in (document.get("errors") or {}).items()
                }
                trial.done_keys = [k for k in trial.keys if k in trial.outputs]
                store = SQLiteStore(home / "fleetmind.db")
                try:
                    record, entries = store.load(trial.task_id)
                    trial.log_entries = _entries(TaskGraph.from_log(entries, name=record.name))
                finally:
                    store.close()
        await asyncio.sleep(SETTLE_S)
        trial.marks = read_audit(devices.audit)
    return trial

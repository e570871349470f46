"""Take the screenshots of the fleet console that the README and docs/console.md show.

It starts ``fleetmind console`` on a small demo fleet (written to a scratch directory), runs a
release task from the page, and photographs the task graph while it runs and once it is done;
then it starts Mosquitto with three devices serving the demo fleet's agents, stops one, and
photographs the devices panel. It needs the dev extra (Playwright) and the system's Chromium.

    .venv/bin/python scripts/console_screenshots.py            # writes docs/console-*.png
    .venv/bin/python scripts/console_screenshots.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
FLEETMIND = str(Path(sys.executable).parent / "fleetmind")
WAIT_MS = 180_000
URL = re.compile(r"^(http://\S+/\?token=\S+)$", re.MULTILINE)

DEMO_FLEET = '''"""A demo fleet for the console's screenshots: agents that take a little while."""

import asyncio

from fleetmind import agent
from fleetmind.orchestrator import Fleet, SkillRouter

_failed: set[str] = set()


@agent(id="builder", skills=["build"])
async def builder(step: str = "build", seconds: float = 1.0, after: str = "") -> str:
    """Build or package something."""
    await asyncio.sleep(seconds)
    return f"{step} ok"


@agent(id="tester", skills=["test"])
async def tester(suite: str = "unit", seconds: float = 1.0, after: str = "") -> str:
    """Run a test suite; the integration suite fails its first attempt."""
    await asyncio.sleep(seconds)
    if suite == "integration" and suite not in _failed:
        _failed.add(suite)
        raise RuntimeError("integration: the database was not up yet")
    return f"{suite} passed"


@agent(id="scanner", skills=["scan"])
async def scanner(path: str = ".", seconds: float = 0.3, after: str = "") -> str:
    """Scan one file for licences and secrets."""
    await asyncio.sleep(seconds)
    return f"{path} clean"


@agent(id="reporter", skills=["report"])
async def reporter(seconds: float = 0.5, after: str = "") -> str:
    """Write the release notes."""
    await asyncio.sleep(seconds)
    return "release notes written"


fleet = Fleet([AGENTS], router=SkillRouter())
'''

ALL_AGENTS = ["builder", "tester", "scanner", "reporter"]


def fleet_module(agents: Sequence[str]) -> str:
    """The demo fleet's module, with these of its agents."""
    return DEMO_FLEET.replace("[AGENTS]", f"[{', '.join(agents)}]")


FILES = 24


def release_task() -> str:
    """A release: checkout, checks in parallel, a 24-file scan (folded), package, deploy."""
    lines = [
        "name: release-1.4",
        "subtasks:",
        "  - {id: checkout, skill: build, inputs: {step: checkout, seconds: 1.5}}",
        "  - {id: lint, skill: test, inputs: {suite: lint, seconds: 2, after: '${checkout}'}}",
        "  - {id: typecheck, skill: test,"
        " inputs: {suite: types, seconds: 3, after: '${checkout}'}}",
        "  - {id: unit, skill: test, inputs: {suite: unit, seconds: 4, after: '${checkout}'}}",
        "  - {id: integration, skill: test,"
        " inputs: {suite: integration, seconds: 3, after: '${checkout}'}}",
        "  - {id: scan, skill: build,"
        " inputs: {step: list files, seconds: 1, after: '${checkout}'}}",
    ]
    for n in range(FILES):
        lines.append(
            f"  - {{id: scan-{n:02d}, skill: scan, inputs: {{path: src/m{n}.py,"
            f" seconds: {0.4 + (n % 5) * 0.3:.1f}}}, depends_on: [scan]}}"
        )
    checks = ["lint", "typecheck", "unit", "integration", *(f"scan-{n:02d}" for n in range(FILES))]
    lines += [
        "  - {id: package, skill: build, inputs: {step: package, seconds: 2},"
        f" depends_on: [{', '.join(checks)}]}}",
        "  - {id: deploy-staging, skill: build,"
        " inputs: {step: deploy, seconds: 2, after: '${package}'}}",
        "  - {id: smoke, skill: test,"
        " inputs: {suite: smoke, seconds: 2, after: '${deploy-staging}'}}",
        "  - {id: notes, skill: report, inputs: {seconds: 1, after: '${smoke}'}}",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def started(argv: Sequence[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process for the demo, stopped (Ctrl-C, then kill) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def console_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    """The URL (with its token) that a console printed."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        found = URL.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"the console printed no URL:\n{log.read_text(errors='replace')}")


ROW_COUNTS = """(pattern) => new RegExp(pattern).test(
    document.querySelector('[data-testid="task-row"] .task-meta span')?.textContent ?? '')"""
"""The task list's counts match ``pattern`` (they follow the graph a moment later)."""


def wait(page: Page, expression: str, arg: object = None) -> None:
    page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)


def shoot_task(page: Page, url: str, out: Path) -> None:
    """The graph mid-run and done (with a node's hover box)."""
    page.goto(url)
    wait(page, "() => window.fleetmindConsole?.connected()")
    page.get_by_test_id("submit-file").set_input_files(
        {
            "name": "release.yaml",
            "mimeType": "application/x-yaml",
            "buffer": release_task().encode(),
        }
    )
    wait(page, "() => window.fleetmindConsole.openTaskId()")
    wait(
        page,
        """() => {
            const s = window.fleetmindConsole.graphNodes().map((n) => n.status);
            return s.includes('done') && s.filter((x) => x === 'running').length >= 3;
        }""",
    )
    wait(page, "() => window.fleetmindConsole.layoutStats().layouts > 0")
    wait(page, ROW_COUNTS, "^[1-9][0-9]*/\\d+ done · [1-9]")
    page.screenshot(path=out / "console-running.png")
    wait(
        page,
        """() => document.querySelector('[data-testid="task-row"]')?.dataset.status === 'done'
            && window.fleetmindConsole.graphNodes().every((n) => n.status === 'done')""",
    )
    wait(page, ROW_COUNTS, "^(\\d+)/\\1 done")
    at = page.evaluate("() => window.fleetmindConsole.nodeScreenPosition('package')")
    if at:
        page.mouse.move(at["x"], at["y"])
        wait(page, "() => !document.querySelector('[data-testid=\"tooltip\"]').hidden")
    page.screenshot(path=out / "console-done.png")


def shoot_devices(page: Page, scratch: Path, out: Path, stack: ExitStack) -> None:
    """The devices panel of a fleet on Mosquitto: two devices online, one gone."""
    from fleetmind.testing import start_test_broker

    devices = {
        "pi-kitchen": ["builder", "scanner"],
        "jetson-lab": ["tester", "reporter"],
        "old-laptop": ["builder", "tester"],
    }
    broker = start_test_broker(scratch, devices, fleet="home", embedded=False)
    stack.callback(broker.handle.stop)
    url = f"mqtt://127.0.0.1:{broker.port}"

    def login(user: str) -> list[str]:
        password = scratch / f"{user}.pw"
        password.write_text(broker.credentials[user])
        return ["--username", user, "--password-file", str(password)]

    served = {}
    for device in devices:
        module = scratch / f"{device.replace('-', '_')}.py"
        module.write_text(fleet_module(devices[device]))
        argv = [FLEETMIND, "agent", "serve", str(module), "--broker", url, "--fleet-name", "home"]
        served[device] = stack.enter_context(
            started([*argv, *login(device)], scratch / f"{device}.log", scratch)
        )
    log = scratch / "broker-console.log"
    argv = [FLEETMIND, "console", "--broker", url, "--fleet-name", "home", "--port", "0"]
    console = stack.enter_context(
        started([*argv, *login("orchestrator"), "--data-dir", str(scratch / "b")], log, scratch)
    )
    page.goto(console_url(console, log))
    wait(page, "() => document.querySelectorAll('.device-row[data-online=\"true\"]').length === 3")
    served["old-laptop"].kill()  # gone without a goodbye
    gone = "(id) => document.querySelector(`[data-device-id='${id}']`)?.dataset.online === 'false'"
    wait(page, gone, "old-laptop")
    page.locator("aside.side").screenshot(path=out / "console-devices.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    chromium = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        demo = scratch / "demo_fleet.py"
        demo.write_text(fleet_module(ALL_AGENTS))
        log = scratch / "console.log"
        argv = [FLEETMIND, "console", "--fleet", str(demo), "--port", "0"]
        console = stack.enter_context(
            started([*argv, "--data-dir", str(scratch / "data")], log, scratch)
        )
        url = console_url(console, log)
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": 1600, "height": 860})
        shoot_task(page, url, out)
        devices_page = browser.new_page(viewport={"width": 1600, "height": 860})
        shoot_devices(devices_page, scratch, out, stack)
    for shot in sorted(out.glob("console-*.png")):
        print(f"{shot}: {shot.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

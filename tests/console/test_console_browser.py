"""The console's page in a real headless Chromium, against real `fleetmind console` processes:
the printed URL signs in and a wrong token is refused; a task submitted from the page runs and
every subtask reaches done on it, with a live edit appearing while it runs; cancel from the
page; a device going offline; a malformed task file's one line; a server restart the page
rides out by itself; and a 1,000-subtask graph the page lays out while it keeps answering."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser import ConsolePage, browser_missing, open_browser
from conftest import (
    CONSOLE_FLEET,
    COOKIE,
    DEVICE,
    FLEET,
    FLEETMIND,
    RunningConsole,
    login_args,
    process,
)

from fleetmind.orchestrator import SQLiteStore
from fleetmind.testing import LocalBroker

if TYPE_CHECKING:  # Playwright may be missing: the tests then skip
    from playwright.sync_api import Browser

Console = Callable[..., RunningConsole]
DEADLINE_S = 120.0

GROWS = (
    "name: grows\n"
    "subtasks:\n"
    "  - {id: wait, agent: slow, inputs: {key: w}}\n"
    "  - {id: grow, agent: expander, inputs: {count: 3}, depends_on: [wait]}\n"
)
"""``wait`` holds until the gate opens; ``grow`` then adds three subtasks to the graph."""

HELD = "name: held\nsubtasks:\n  - {id: wait, agent: slow, inputs: {key: w}}\n"

QUICK = "name: quick\nsubtasks:\n  - {id: a, agent: quick, inputs: {text: hi}}\n"


def big_task(fan_out: int = 599, chains: int = 20, length: int = 20) -> str:
    """1,000 subtasks: a held root with a wide fan-out, and chains beside it."""
    lines = ["name: big", "subtasks:", "  - {id: root, agent: slow, inputs: {key: r}}"]
    lines += [f"  - {{id: f{n}, agent: quick, depends_on: [root]}}" for n in range(fan_out)]
    for chain in range(chains):
        for link in range(length):
            after = f", depends_on: [c{chain}-{link - 1}]" if link else ""
            lines.append(f"  - {{id: c{chain}-{link}, agent: quick{after}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """The system's Chromium, headless (skipped with the reason where it is missing)."""
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    with open_browser() as browser:
        yield browser


@pytest.fixture
def tab(chromium: Browser) -> Iterator[ConsolePage]:
    """A fresh browser context (no cookies) and a page in it; the test fails if the page's
    Content-Security-Policy refused anything of the console's own (a script, a style, the
    layout worker)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    refused: list[str] = []
    try:
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        yield ConsolePage(page)
    finally:
        context.close()
    assert refused == []


def sign_in(tab: ConsolePage, running: RunningConsole) -> None:
    """Open the URL the console printed, as its user would, and wait for the live page (the
    token signs in once: once spent, the tab is given the session it was traded for)."""
    if running.session is None:
        answer = tab.page.goto(running.login_url)
        assert answer is not None and answer.status == 200
        assert tab.page.url == f"{running.base_url}/"  # the token left the address bar
        [cookie] = tab.page.context.cookies()
        running.session = cookie["value"]
    else:
        session = {"name": COOKIE, "value": running.session, "url": running.base_url}
        tab.page.context.add_cookies([session])  # type: ignore[list-item]
        answer = tab.page.goto(f"{running.base_url}/")
        assert answer is not None and answer.status == 200
    tab.connected()


def test_the_printed_url_signs_in_and_a_wrong_token_is_refused(
    console_factory: Console, tab: ConsolePage
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    wrong = tab.page.goto(f"{running.base_url}/?token=not-the-token")
    assert wrong is not None and wrong.status == 401
    assert "wrong or expired token" in tab.page.content()
    assert tab.page.context.cookies() == []

    sign_in(tab, running)
    [cookie] = tab.page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "fleetmind_console",
        True,
        "Strict",
    )
    assert tab.page.get_by_test_id("mode").text_content() == "fleet"
    again = tab.page.goto(running.login_url)  # the printed URL is spent
    assert again is not None and again.status == 401
    assert "Traceback" not in running.log_text()


XSS = '<img src=x onerror="window.injected=1">'
"""Markup that runs a script if a page ever renders a name or description as HTML."""


def test_names_and_descriptions_are_shown_as_text_never_as_markup(
    console_factory: Console, tab: ConsolePage
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    task = (
        f"name: {json.dumps(XSS)}\n"
        "subtasks:\n"
        f"  - {{id: a, agent: quick, description: {json.dumps(XSS)}, inputs: {{text: hi}}}}\n"
    )
    tab.submit_file("xss.yaml", task)
    task_id = tab.opened_task()
    tab.wait_row(task_id, "done")
    tab.wait_statuses({"a": "done"})
    row = tab.page.locator(f'[data-testid="task-row"][data-task-id="{task_id}"]')
    assert XSS in (row.text_content() or "")
    at = tab.page.evaluate("() => window.fleetmindConsole.nodeScreenPosition('a')")
    tab.page.mouse.move(at["x"], at["y"])
    tip = tab.wait(
        """() => {
            const tip = document.querySelector('[data-testid="tooltip"]');
            return tip && !tip.hidden && tip.textContent ? tip.textContent : null;
        }""",
        what="the subtask's tooltip",
    )
    assert XSS in tip
    assert tab.page.evaluate("() => document.querySelectorAll('img').length") == 0
    assert tab.page.evaluate("() => window.injected") is None


def test_a_page_whose_session_is_gone_says_so_and_stops_retrying(
    console_factory: Console, tab: ConsolePage, tmp_path: Path
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    port = int(running.base_url.rsplit(":", 1)[1])
    assert running.stop() == 0
    tab.wait("() => !window.fleetmindConsole.connected()", what="the stream lost")
    # Back on the same port, with other sessions: the page's cookie opens nothing there.
    console_factory("--fleet", str(CONSOLE_FLEET), port=port, data_dir=tmp_path / "other")
    tab.wait("() => window.fleetmindConsole.signedOut()", what="the page signed out")
    assert tab.error_line() == "session expired: open the URL that `fleetmind console` printed"


def test_a_task_from_the_page_runs_to_done_and_a_live_edit_appears(
    console_factory: Console, tab: ConsolePage
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    tab.submit_file("grows.yaml", GROWS)
    task_id = tab.opened_task()
    tab.wait_statuses({"wait": "running", "grow": "pending"})
    tab.wait_row(task_id, "running")

    running.gate.touch()  # let ``wait`` finish: ``grow`` runs and adds its subtasks
    done = {"wait": "done", "grow": "done", **{f"grow-more-{n}": "done" for n in range(3)}}
    tab.wait_statuses(done)
    tab.wait_row(task_id, "done")
    edges = tab.page.evaluate("() => window.fleetmindConsole.graphEdges()")
    assert {(e["source"], e["target"]) for e in edges} == {
        ("wait", "grow"),
        *(("grow", f"grow-more-{n}") for n in range(3)),
    }
    assert all(node["visible"] for node in tab.graph_nodes())
    assert running.client().get(f"/api/tasks/{task_id}").json()["status"] == "done"


def test_cancel_on_the_page_cancels_the_task(console_factory: Console, tab: ConsolePage) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    tab.submit_file("held.yaml", HELD)
    task_id = tab.opened_task()
    tab.wait_statuses({"wait": "running"})
    cancel = tab.page.get_by_test_id("cancel-button")
    cancel.click()  # waits until the button is enabled
    tab.wait_row(task_id, "cancelled")
    tab.wait(
        "() => document.querySelector('[data-testid=\"cancel-button\"]').disabled",
        what="the cancel button disabled",
    )
    assert running.stop() == 0

    store = SQLiteStore(running.data_dir / "fleetmind.db")
    try:
        record, _ = store.load(task_id)
    finally:
        store.close()
    assert record.status == "cancelled"


def test_a_malformed_task_file_gets_the_command_lines_one_line(
    console_factory: Console, tab: ConsolePage, tmp_path: Path
) -> None:
    bad = "name: bad\nsubtasks:\n  - {id: a, agnet: quick}\n"
    (tmp_path / "bad.yaml").write_text(bad)
    cli = subprocess.run(
        [FLEETMIND, "run", "bad.yaml", "--fleet", str(CONSOLE_FLEET), "--no-live"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert cli.returncode == 2
    line = cli.stderr.strip().removeprefix("fleetmind: error: ")
    assert "\n" not in line and "agnet" in line

    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    tab.submit_file("bad.yaml", bad)
    assert tab.error_line() == line
    assert tab.page.get_by_test_id("task-row").count() == 0

    tab.submit_file("quick.yaml", QUICK)  # a good file clears the line
    task_id = tab.opened_task()
    tab.wait_row(task_id, "done")
    assert tab.page.get_by_test_id("submit-error").is_hidden()


def test_the_page_rides_out_a_server_restart_and_catches_up(
    console_factory: Console, tab: ConsolePage, tmp_path: Path
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    tab.submit_file("quick.yaml", QUICK)
    first = tab.opened_task()
    tab.wait_row(first, "done")
    port = int(running.base_url.rsplit(":", 1)[1])
    assert running.stop() == 0
    tab.wait("() => !window.fleetmindConsole.connected()", what="the stream lost")

    # While the console is down, a task runs to its end on the same data directory.
    (tmp_path / "later.yaml").write_text(QUICK.replace("name: quick", "name: later"))
    cli = subprocess.run(
        [FLEETMIND, "run", "later.yaml", "--fleet", str(CONSOLE_FLEET), "--no-live", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "FLEETMIND_HOME": str(running.data_dir)},
    )
    assert cli.returncode == 0, cli.stderr
    later = json.loads(cli.stdout)["task_id"]

    again = console_factory("--fleet", str(CONSOLE_FLEET), port=port)
    assert again.base_url == running.base_url and again.token != running.token
    tab.connected()  # the page reconnected by itself, on the session it had
    tab.wait_row(later, "done")
    assert tab.row_status(first) == "done"
    tab.page.locator(f'[data-testid="task-row"][data-task-id="{later}"]').click()
    tab.wait_statuses({"a": "done"})
    assert tab.page.url.startswith(f"{running.base_url}/")  # never sent back to sign in


@pytest.mark.timeout(400)
def test_a_device_that_dies_shows_offline(
    broker: LocalBroker, console_factory: Console, tab: ConsolePage, tmp_path: Path
) -> None:
    url = f"mqtt://127.0.0.1:{broker.port}"
    running = console_factory(
        *("--broker", url, "--fleet-name", FLEET, *login_args(tmp_path, broker, "orchestrator"))
    )
    sign_in(tab, running)
    assert tab.page.get_by_test_id("mode").text_content() == "broker"
    device = [
        *(FLEETMIND, "agent", "serve", str(CONSOLE_FLEET), "--broker", url),
        *("--fleet-name", FLEET, "--heartbeat", "0.5", *login_args(tmp_path, broker, DEVICE)),
    ]
    with process(device, tmp_path / "device.log") as served:
        tab.wait_device(DEVICE, online=True)
        row = tab.page.locator(f'[data-testid="device-row"][data-device-id="{DEVICE}"]')
        tab.wait(
            "() => document.querySelectorAll('.device-row .agent-id').length === 4",
            what="the device's four agents",
        )
        assert "quick@pi-1" in (row.text_content() or "")
        served.kill()  # no goodbye: the broker tells the fleet it is gone
        served.wait(DEADLINE_S)
        tab.wait_device(DEVICE, online=False)
    assert "offline" in (row.text_content() or "")
    assert "Traceback" not in running.log_text()


@pytest.mark.timeout(600)
def test_a_thousand_subtask_graph_is_laid_out_while_the_page_answers(
    console_factory: Console, tab: ConsolePage
) -> None:
    running = console_factory("--fleet", str(CONSOLE_FLEET))
    sign_in(tab, running)
    tab.page.evaluate(
        """() => {
            window.frames_seen = 0;
            const tick = () => { window.frames_seen += 1; requestAnimationFrame(tick); };
            requestAnimationFrame(tick);
        }"""
    )
    tab.submit_file("big.yaml", big_task())
    task_id = tab.opened_task()

    # The page answers all along while it lays the graph out, and draws frames.
    answers: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    while True:
        count = tab.page.evaluate("() => window.fleetmindConsole.graphNodes().length")
        answers.append(count)
        laid_out = tab.page.evaluate(
            "() => window.fleetmindConsole.layoutStats().layouts > 0"
            " && Object.keys(window.fleetmindConsole.graphPositions()).length > 0"
        )
        if count == 1000 and laid_out:
            break
        assert time.monotonic() < deadline, f"the page's graph never got all 1,000: {answers[-5:]}"
    frames = tab.page.evaluate("() => window.frames_seen")
    assert frames > 0

    # The fan-out is folded into one "+N more" node; the chains beside it are drawn.
    nodes = {node["id"]: node for node in tab.graph_nodes()}
    assert len(nodes) == 1000
    assert not any(nodes[f"f{n}"]["visible"] for n in range(599))
    assert all(nodes[f"c{c}-{k}"]["visible"] for c in range(20) for k in range(20))
    drawn = tab.page.evaluate("() => Object.keys(window.fleetmindConsole.graphPositions())")
    assert "+more/root" in drawn and len(drawn) == 1 + 1 + 400
    tab.wait(
        """() => window.fleetmindConsole.graphNodes()
            .filter((n) => n.id.startsWith('c')).every((n) => n.status === 'done')""",
        what="every chain done",
    )

    # A click on the folded node opens the fan-out: all 600 children of root drawn.
    at = tab.page.evaluate("() => window.fleetmindConsole.nodeScreenPosition('+more/root')")
    tab.page.mouse.click(at["x"], at["y"])
    tab.wait(
        "() => window.fleetmindConsole.graphNodes().every((n) => n.visible)",
        what="the fan-out opened",
    )
    assert tab.page.evaluate("() => window.frames_seen") > frames

    running.gate.touch()  # the root ends: every subtask reaches done on the page
    tab.wait_statuses({node_id: "done" for node_id in nodes})
    tab.wait_row(task_id, "done")

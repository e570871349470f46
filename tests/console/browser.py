"""The console's page in a real headless browser: the system's Chromium driven by Playwright.

No browser is ever downloaded: the tests use the Chromium the system has (Debian's
``chromium``), and skip with the reason when it or Playwright is missing (fail under CI).
What the page shows is read from its ``data-testid`` elements and from
``window.fleetmindConsole`` (the graph is drawn on a canvas, so its model is read there).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WAIT_MS = 120_000
"""How long the page may take to show something: these machines can be very loaded."""

_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The system's Chromium, if it has one."""
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in _CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if importlib.util.find_spec("playwright") is None:
        return "needs Playwright's Python package (pip install -e '.[dev]')"
    if find_chromium() is None:
        return "needs Chromium (apt-get install chromium)"
    return None


@contextmanager
def open_browser() -> Iterator[Browser]:
    """A headless Chromium, closed at the end."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    assert executable is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class ConsolePage:
    """One tab on the console, with what the tests read and do on it."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def wait(self, expression: str, arg: Any = None, *, what: str) -> Any:
        """Wait until ``expression`` (a JS function of ``arg``) is truthy; its value."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            handle = self.page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)
        except PlaywrightTimeout:
            raise AssertionError(f"the page never showed {what}") from None
        return handle.json_value()

    def connected(self) -> None:
        """Wait for the page to follow the event stream."""
        self.wait("() => window.fleetmindConsole?.connected()", what="a live event stream")

    def submit_file(self, name: str, content: str) -> None:
        """Choose a task file in the page's submit box, as a user would."""
        self.page.get_by_test_id("submit-file").set_input_files(
            {"name": name, "mimeType": "application/x-yaml", "buffer": content.encode()}
        )

    def opened_task(self) -> str:
        """The id of the task the page opened (after a submit)."""
        found = self.wait(
            "() => window.fleetmindConsole.openTaskId()", what="a task opened after the submit"
        )
        assert isinstance(found, str)
        return found

    def graph_nodes(self) -> list[dict[str, Any]]:
        """Every subtask in the page's graph model: id, status, agent, visible."""
        nodes: list[dict[str, Any]] = self.page.evaluate(
            "() => window.fleetmindConsole.graphNodes()"
        )
        return nodes

    def wait_statuses(self, wanted: dict[str, str]) -> None:
        """Wait until the graph holds exactly these subtasks with these statuses."""
        self.wait(
            """(wanted) => {
                const nodes = window.fleetmindConsole.graphNodes();
                return nodes.length === Object.keys(wanted).length
                    && nodes.every((n) => wanted[n.id] === n.status);
            }""",
            wanted,
            what=f"the subtasks {wanted}",
        )

    def row_status(self, task_id: str) -> str | None:
        """The status the task list shows for a task (None when it is not listed)."""
        row = self.page.locator(f'[data-testid="task-row"][data-task-id="{task_id}"]')
        if row.count() == 0:
            return None
        return row.get_attribute("data-status")

    def wait_row(self, task_id: str, status: str) -> None:
        """Wait until the task list shows the task with this status."""
        self.wait(
            """([id, status]) => document.querySelector(
                `[data-testid="task-row"][data-task-id="${id}"]`)?.dataset.status === status""",
            [task_id, status],
            what=f"task {task_id} {status} in the list",
        )

    def wait_device(self, device_id: str, online: bool) -> None:
        """Wait until the devices panel shows the device online (or offline)."""
        self.wait(
            """([id, online]) => document.querySelector(
                `[data-testid="device-row"][data-device-id="${id}"]`)?.dataset.online === online""",
            [device_id, "true" if online else "false"],
            what=f"device {device_id} {'online' if online else 'offline'}",
        )

    def error_line(self) -> str:
        """Wait for the page's error line and return it."""
        text = self.wait(
            """() => {
                const line = document.querySelector('[data-testid="submit-error"]');
                return !line.hidden && line.textContent ? line.textContent : null;
            }""",
            what="an error line",
        )
        assert isinstance(text, str)
        return text

"""fleetmind/protocols/_a2a_client.py and cli/_a2a_agents.py against a real A2A server.

The remote agent is tests/fixtures/a2a_remote_agent.py, built with the bare a2a-sdk and run as
its own process: once streaming, once not (so the client polls), once behind a bearer token.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from a2a.client import ClientConfig, create_client
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    GetTaskRequest,
    TaskState,
)
from repo_paths import FIXTURES

from fleetmind import Fleet, RetryPolicy, TaskGraph, agent
from fleetmind.agents import SubtaskContext, Tier
from fleetmind.agents.remote import (
    A2AAgent,
    connect_a2a_agent,
    profile_from_card,
    slug,
)
from fleetmind.cli._a2a_agents import A2A_AGENTS_FILE, load_a2a_agents, read_entries
from fleetmind.cli._a2a_cmd import add, list_cmd, remove
from fleetmind.errors import ConfigError, SubtaskFailed
from fleetmind.orchestrator import Subtask, SubtaskProgressEvent, SubtaskStatus, TaskEvent
from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(60)

SERVER = FIXTURES / "a2a_remote_agent.py"
TOKEN = "s3cret-token"


@contextlib.contextmanager
def remote_agent(*args: str) -> Iterator[str]:
    """Run the fixture A2A agent on a free port until its card is served; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the A2A fixture exited: {log.read().decode()}")
                with contextlib.suppress(httpx.HTTPError):
                    card = httpx.get(f"{url}/.well-known/agent-card.json", timeout=1)
                    if card.status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the A2A fixture did not serve its card within 30 s")
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def streaming_url() -> Iterator[str]:
    with remote_agent("--streaming") as url:
        yield url


@pytest.fixture(scope="module")
def polling_url() -> Iterator[str]:
    with remote_agent("--no-streaming") as url:
        yield url


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    with remote_agent("--token", TOKEN) as url:
        yield url


@pytest.fixture(params=["streaming", "polling"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def local_agents() -> list[Any]:
    @agent(id="fetcher", skills=["fetch"])
    async def fetch() -> dict[str, str]:
        return {"text": "hello world"}

    @agent(id="shouter", skills=["shout"])
    async def shout(text: str) -> str:
        return text.upper() + "!"

    return [fetch, shout]


def three_step_graph() -> TaskGraph:
    graph = TaskGraph(name="greet in french")
    graph.add_subtask("fetch", description="fetch the greeting", skill="fetch")
    graph.add_subtask(
        "translate", description="Translate the greeting into French", skill="translate text"
    )
    graph.add_subtask("shout", description="shout it", skill="shout")
    graph.add_dependency("fetch", "translate", kind="data", output="text", input="text")
    graph.add_dependency("translate", "shout", kind="data", output="text", input="text")
    return graph


async def run_collecting(fleet: Fleet, graph: TaskGraph) -> tuple[Any, list[TaskEvent]]:
    async with fleet:
        handle = fleet.submit(graph)
        events = [e async for e in handle.events()]
        return await handle.result(), events


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def test_profile_from_card_takes_skills_description_version_and_slug_id() -> None:
    card = AgentCard(
        name="Weather Oracle 3000",
        description="Forecasts for any city.",
        version="3.4.1",
        skills=[
            AgentSkill(
                id="forecast",
                name="forecast weather",
                description="Forecast the weather for a city.",
                tags=["weather"],
                examples=["Will it rain in Oslo tomorrow?"],
            ),
            AgentSkill(id="alerts", name="forecast weather", tags=[]),
        ],
    )

    profile = profile_from_card(card)

    assert profile.id == "weather-oracle-3000"
    assert profile.name == "Weather Oracle 3000"
    assert profile.description == "Forecasts for any city."
    assert profile.tier is Tier.CLOUD
    assert profile.version == 3
    first, second = profile.skills
    assert first.name == "forecast weather"
    assert first.description == "Forecast the weather for a city."
    assert first.tags == ("weather", "forecast")
    assert first.examples == ("Will it rain in Oslo tomorrow?",)
    assert second.name == "forecast weather (alerts)"  # names stay unique
    assert profile.offers("forecast") and profile.offers("alerts")


def test_profile_from_card_overrides_and_odd_versions() -> None:
    card = AgentCard(name="X", version="beta")
    profile = profile_from_card(card, agent_id="my-x", tier="edge")
    assert (profile.id, profile.tier, profile.version) == ("my-x", Tier.EDGE, 1)
    assert profile_from_card(AgentCard(name="X", version="0.9.0")).version == 1
    assert profile_from_card(AgentCard(name="X", version="v12")).version == 12
    with pytest.raises(ConfigError, match="not valid"):
        profile_from_card(card, agent_id="no spaces please")
    with pytest.raises(ConfigError, match="unknown tier"):
        profile_from_card(card, tier="moon")


def test_slug() -> None:
    assert slug("Remote Translator") == "remote-translator"
    assert slug("  ..Ünïcode -- Agent!! ") == "unicode-agent"
    assert slug("***") == "a2a-agent"
    assert len(slug("a" * 200)) == 64


async def test_connect_reads_the_live_card(streaming_url: str, polling_url: str) -> None:
    async with await connect_a2a_agent(streaming_url) as streaming:
        assert isinstance(streaming, A2AAgent)
        assert streaming.id == "remote-translator"
        assert streaming.profile.version == 2
        assert streaming.profile.offers("translate text") and streaming.profile.offers("translate")
        assert streaming.streaming is True
    assert streaming.closed
    async with await connect_a2a_agent(polling_url + "/.well-known/agent-card.json") as polling:
        assert polling.streaming is False
        assert polling.url == polling_url


# ---------------------------------------------------------------------------------------------
# In a fleet
# ---------------------------------------------------------------------------------------------


async def test_a_fleet_routes_the_matching_subtask_to_the_a2a_agent(url: str) -> None:
    fleet = Fleet(local_agents())
    remote = await connect_a2a_agent(url)
    fleet.add(remote)
    fleet.on_close(remote.aclose)

    result, events = await run_collecting(fleet, three_step_graph())

    assert result.ok, result.errors
    assert result.graph.state("translate").agent == "remote-translator"
    assert result.outputs["translate"] == {"text": "bonjour monde", "language": "fr"}
    assert result.outputs["shout"] == "BONJOUR MONDE!"
    assert remote.closed  # the fleet closed it
    progress = [e.message for e in events if isinstance(e, SubtaskProgressEvent)]
    if remote.streaming:
        assert progress[-3:] == [
            "reading the request",
            "translated 1/2 words",
            "translated 2/2 words",
        ]


async def test_plain_words_reach_the_a2a_agent(streaming_url: str) -> None:
    fleet = Fleet(local_agents())
    async with await connect_a2a_agent(streaming_url) as remote:
        fleet.add(remote)
        graph = TaskGraph()
        graph.add_subtask(
            "t", description="Translate this English sentence into French", inputs={"text": "cat"}
        )

        decision = fleet.route(graph.subtask("t"))
        result = await fleet.run(graph)

    assert decision.candidates[0] == "remote-translator"
    assert result.outputs["t"] == {"text": "chat", "language": "fr"}


async def test_a_remote_failure_fails_the_subtask_with_its_message(url: str) -> None:
    async with await connect_a2a_agent(url) as remote:
        graph = TaskGraph()
        graph.add_subtask(
            "t",
            description="please fail",
            skill="translate",
            retry=RetryPolicy(max_attempts=2, initial_backoff_s=0),
        )
        result = await Fleet([remote]).run(graph)

    assert result.status == "failed"
    error = result.errors["t"]
    assert error["type"] == "SubtaskFailed"
    assert error["message"] == "A2A agent 'remote-translator' failed: the dictionary is missing"
    assert error["details"]["a2a_task_id"]
    assert result.graph.state("t").attempts == 2  # a remote failure may be transient


async def test_a_remote_question_becomes_input_required(url: str) -> None:
    async with await connect_a2a_agent(url) as remote:
        graph = TaskGraph()
        graph.add_subtask("t", description="ask me something", skill="translate")
        result = await Fleet([remote]).run(graph)

    error = result.errors["t"]
    assert error["type"] == "InputRequired"
    assert error["details"]["question"] == "Which language should I translate into?"
    assert result.graph.state("t").attempts == 1


@pytest.mark.parametrize(
    ("request_text", "message"),
    [
        ("please refuse", "rejected the subtask: I do not translate that"),
        ("login first", "needs authentication: sign in at https://example.com/login first"),
    ],
)
async def test_rejected_and_auth_required_are_not_retried(
    url: str, request_text: str, message: str
) -> None:
    async with await connect_a2a_agent(url) as remote:
        subtask = Subtask(id="t", description=request_text)
        with pytest.raises(SubtaskFailed) as info:
            await remote.run(subtask, SubtaskContext(task_id="t1", subtask=subtask, inputs={}))

    assert info.value.message == f"A2A agent 'remote-translator' {message}"
    assert info.value.retryable is False


async def test_cancelling_our_task_cancels_the_remote_task(url: str) -> None:
    remote = await connect_a2a_agent(url)
    fleet = Fleet([remote])
    fleet.on_close(remote.aclose)
    graph = TaskGraph()
    graph.add_subtask("long", description="run the slow job", skill="slow job")
    remote_task_id = ""

    async with fleet:
        handle = fleet.submit(graph)
        async for event in handle.events():
            if isinstance(event, SubtaskProgressEvent) and "slow job started" in event.message:
                found = re.search(r"\(task (\S+)\)", event.message)
                assert found is not None
                remote_task_id = found.group(1)
                break
        result = await handle.cancel()

    assert result.status == "cancelled"
    assert result.graph.state("long").status is SubtaskStatus.CANCELLED
    client = await create_client(url, client_config=ClientConfig(streaming=False))
    try:
        task = await client.get_task(GetTaskRequest(id=remote_task_id))
    finally:
        await client.close()
    assert task.status.state == TaskState.TASK_STATE_CANCELED


# ---------------------------------------------------------------------------------------------
# Credentials and bad addresses
# ---------------------------------------------------------------------------------------------


async def test_the_right_token_works_and_a_wrong_one_is_reported(token_url: str) -> None:
    graph = TaskGraph()
    graph.add_subtask("t", description="translate", skill="translate", inputs={"text": "good"})

    async with await connect_a2a_agent(token_url, token=TOKEN) as remote:
        good = await Fleet([remote]).run(graph)
    async with await connect_a2a_agent(token_url, token="wrong") as remote:
        bad = await Fleet([remote]).run(graph)
    async with await connect_a2a_agent(token_url) as remote:
        none = await Fleet([remote]).run(graph)

    assert good.outputs["t"] == {"text": "bon", "language": "fr"}
    for result in (bad, none):
        error = result.errors["t"]
        assert error["message"] == (
            f"A2A agent 'remote-translator' at {token_url} refused our credentials "
            "(HTTP 401); check its token"
        )
        assert error["retryable"] is False
        assert result.graph.state("t").attempts == 1


async def test_an_agent_that_went_away_fails_retryably(polling_url: str) -> None:
    # A card that points at a port where nothing listens: the agent is down after connecting.
    card = AgentCard(
        name="Gone",
        supported_interfaces=[
            AgentInterface(url=f"http://127.0.0.1:{free_port()}/", protocol_binding="JSONRPC")
        ],
        capabilities=AgentCapabilities(streaming=False),
        skills=[AgentSkill(id="vanish", name="vanish")],
    )
    client = await create_client(card, client_config=ClientConfig(streaming=False))
    gone = A2AAgent(card, client, url="http://gone.invalid")
    graph = TaskGraph()
    graph.add_subtask("t", skill="vanish", retry=RetryPolicy(max_attempts=2, initial_backoff_s=0))
    try:
        result = await Fleet([gone]).run(graph)
    finally:
        await gone.aclose()

    error = result.errors["t"]
    assert error["message"].startswith("A2A agent 'gone' at http://gone.invalid is unreachable")
    assert "\n" not in error["message"]
    assert error["retryable"] is True
    assert result.graph.state("t").attempts == 2


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    """A plain web server with a JSON file where an agent card should be (but is not)."""
    (tmp_path / ".well-known").mkdir()
    (tmp_path / ".well-known" / "agent-card.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "text" / ".well-known").mkdir(parents=True)
    (tmp_path / "text" / ".well-known" / "agent-card.json").write_text("<html>nope</html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_bad_urls_raise_config_error(static_site: str, streaming_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    cases = {
        "not a url": "is not an http(s) URL",
        "ftp://example.com/agent": "is not an http(s) URL",
        nowhere: f"no A2A agent card at {nowhere}/.well-known/agent-card.json: cannot connect",
        streaming_url + "/missing": "HTTP 404",
        static_site: "is not an A2A agent card: it has no name",
        static_site + "/text": "the answer is not JSON",
    }
    for bad, why in cases.items():
        with pytest.raises(ConfigError) as info:
            await connect_a2a_agent(bad)
        assert why in info.value.message, bad
        assert "\n" not in info.value.message


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def cli(*args: str) -> None:
    """Run the A2A commands as `fleetmind a2a ...` would (errors propagate, unprinted)."""
    app = typer.Typer()
    a2a = typer.Typer()
    a2a.command("add")(add)
    a2a.command("list")(list_cmd)
    a2a.command("remove")(remove)
    app.add_typer(a2a, name="a2a")

    @app.callback()
    def root() -> None:
        """fleetmind"""

    typer.main.get_command(app).main(args=list(args), prog_name="fleetmind", standalone_mode=False)


def test_cli_add_list_remove(
    tmp_path: Path, token_url: str, streaming_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "home"
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")

    cli("a2a", "list", "--data-dir", str(data))
    assert "no A2A agents yet" in capsys.readouterr().out

    cli("a2a", "add", token_url, "--token-file", str(token_file), "--data-dir", str(data))
    out = capsys.readouterr().out
    assert f"added A2A agent remote-translator (Remote Translator) at {token_url}" in out
    assert "- translate text: Translate English text into French" in out
    assert "- slow job" in out

    cli("a2a", "add", streaming_url, "--id", "open-translator", "--data-dir", str(data))
    stored = json.loads((data / A2A_AGENTS_FILE).read_text())
    assert stored["agents"] == [
        {"id": "remote-translator", "url": token_url, "token_file": str(token_file)},
        {"id": "open-translator", "url": streaming_url, "token_file": None},
    ]
    capsys.readouterr()

    cli("a2a", "list", "--data-dir", str(data))
    out = capsys.readouterr().out
    assert "remote-translator" in out and "open-translator" in out and token_url in out

    with pytest.raises(ConfigError, match="already added"):
        cli("a2a", "add", streaming_url, "--data-dir", str(data))
    with pytest.raises(ConfigError, match="HTTP 404"):
        cli("a2a", "add", streaming_url + "/nope", "--data-dir", str(data))
    with pytest.raises(ConfigError, match="cannot read token file"):
        cli("a2a", "add", token_url, "--token-file", str(tmp_path / "x"), "--data-dir", str(data))

    cli("a2a", "remove", "open-translator", "--data-dir", str(data))
    assert "removed A2A agent open-translator" in capsys.readouterr().out
    assert [e.id for e in read_entries(data)] == ["remote-translator"]
    with pytest.raises(ConfigError, match="no A2A agent with id 'open-translator'"):
        cli("a2a", "remove", "open-translator", "--data-dir", str(data))


async def test_load_a2a_agents_connects_what_was_added(tmp_path: Path, token_url: str) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN)
    entry = {"id": "fr", "url": token_url, "token_file": str(token_file)}
    (tmp_path / A2A_AGENTS_FILE).write_text(json.dumps({"version": 1, "agents": [entry]}))
    assert await load_a2a_agents(tmp_path / "empty") == []

    (remote,) = await load_a2a_agents(tmp_path)
    fleet = Fleet([remote])
    fleet.on_close(remote.aclose)
    graph = TaskGraph()
    graph.add_subtask("t", description="translate", agent="fr", inputs={"text": "hello"})
    async with fleet:
        result = await fleet.submit(graph).result()
    assert result.outputs["t"] == {"text": "bonjour", "language": "fr"}
    assert remote.closed

    token_file.unlink()
    with pytest.raises(ConfigError, match=r"A2A agent 'fr': cannot read token file .* remove fr"):
        await load_a2a_agents(tmp_path)
    (tmp_path / A2A_AGENTS_FILE).write_text("{broken")
    with pytest.raises(ConfigError, match="is not a valid A2A agents file"):
        await load_a2a_agents(tmp_path)


def test_cli_main_has_the_a2a_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fleetmind.cli import main
    from fleetmind.cli._app import app

    a2a = next((g.typer_instance for g in app.registered_groups if g.name == "a2a"), None)
    commands = {c.name for c in a2a.registered_commands} if a2a is not None else set()
    if not {"add", "list", "remove"} <= commands:
        pytest.skip("`fleetmind a2a add/list/remove` are not registered on the app yet")
    assert main(["a2a", "list", "--data-dir", str(tmp_path)]) == 0
    assert "no A2A agents yet" in capsys.readouterr().out
    assert main(["a2a", "remove", "nobody", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "fleetmind: error: no A2A agent with id 'nobody'; see: fleetmind a2a list"
    )


def test_importing_fleetmind_does_not_import_a2a() -> None:
    code = (
        "import sys, fleetmind, fleetmind.orchestrator, fleetmind.protocols; "
        "bad = sorted(m for m in sys.modules if m == 'a2a' or m.startswith('a2a.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

"""`fleetmind a2a check` and `fleetmind mcp check` against real servers in their own processes.

The console script probes `fleetmind a2a serve` and `fleetmind mcp serve` (with and without a
bearer token), the demo MCP server over stdio, a static web server whose cards are broken in
the ways a user meets (no card, not JSON, a binding that does not answer), and a port where
nothing listens. Each server is started on a free port and stopped by its fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from repo_paths import FIXTURES

from fleetmind.protocols import mcp_token_file
from fleetmind.testing import free_port

pytestmark = pytest.mark.timeout(180)
BIN = Path(sys.executable).parent
FLEETMIND = str(BIN / "fleetmind")
TOKEN = "s3cret-token-for-checks"


def fleetmind(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETMIND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def checked(*args: str, home: Path | None = None) -> tuple[int, dict[str, Any]]:
    """Run a check with --json (``home``: its FLEETMIND_HOME): its exit code and its report."""
    env = None if home is None else {**os.environ, "FLEETMIND_HOME": str(home)}
    done = subprocess.run(
        [FLEETMIND, *args, "--json", "--timeout", "100"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


def stop(process: subprocess.Popen[str]) -> None:
    """SIGINT, as a user's Ctrl-C; killed if it does not end."""
    if process.poll() is None:
        process.send_signal(2)
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@contextlib.contextmanager
def serve(argv: list[str], probe: str) -> Iterator[subprocess.Popen[str]]:
    """Run a server until ``probe`` answers (any HTTP status); stop it afterwards."""
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=FIXTURES
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(probe, timeout=1)
                break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:3]} did not start")
            time.sleep(0.1)
        yield process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token.txt"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def a2a_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`fleetmind a2a serve` of the fixture fleet, no token."""
    port = free_port()
    data = tmp_path_factory.mktemp("a2a")
    argv = [FLEETMIND, "a2a", "serve", "--fleet", str(FIXTURES / "a2a_fleet.py")]
    argv += ["--port", str(port), "--data-dir", str(data)]
    url = f"http://127.0.0.1:{port}"
    with serve(argv, f"{url}/.well-known/agent-card.json"):
        yield url


@pytest.fixture(scope="module")
def protected_a2a_agent(
    tmp_path_factory: pytest.TempPathFactory, token_file: Path
) -> Iterator[str]:
    """`fleetmind a2a serve --agent echo` behind a bearer token."""
    port = free_port()
    data = tmp_path_factory.mktemp("a2a-token")
    argv = [FLEETMIND, "a2a", "serve", "--fleet", str(FIXTURES / "a2a_fleet.py")]
    argv += ["--agent", "echo", "--port", str(port), "--data-dir", str(data)]
    argv += ["--token-file", str(token_file)]
    url = f"http://127.0.0.1:{port}"
    with serve(argv, f"{url}/.well-known/agent-card.json"):
        yield url


@pytest.fixture(scope="module")
def mcp_http(tmp_path_factory: pytest.TempPathFactory, token_file: Path) -> Iterator[str]:
    """`fleetmind mcp serve --http` behind a bearer token."""
    port = free_port()
    data = tmp_path_factory.mktemp("mcp")
    argv = [FLEETMIND, "mcp", "serve", "--fleet", str(FIXTURES / "mcp_fleet.py")]
    argv += ["--http", f"127.0.0.1:{port}", "--data-dir", str(data)]
    argv += ["--token-file", str(token_file)]
    url = f"http://127.0.0.1:{port}/mcp"
    with serve(argv, url):
        yield url


@pytest.fixture(scope="module")
def static_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain web server with broken agents: one whose card is not JSON, one whose card is
    JSON but no card, one whose card declares a JSON-RPC binding where nothing listens."""
    root = tmp_path_factory.mktemp("site")
    dead = free_port()
    cards = {
        "not-json": "<html>hello</html>",
        "not-a-card": json.dumps({"name": "x", "supportedInterfaces": "nowhere"}),
        "dead-binding": json.dumps(
            {
                "name": "ghost",
                "description": "A card whose binding does not answer.",
                "version": "1.0.0",
                "supportedInterfaces": [
                    {
                        "url": f"http://127.0.0.1:{dead}/",
                        "protocolBinding": "JSONRPC",
                        "protocolVersion": "1.0",
                    }
                ],
                "capabilities": {"streaming": False},
                "defaultInputModes": ["text/plain"],
                "defaultOutputModes": ["text/plain"],
                "skills": [],
            }
        ),
    }
    for name, text in cards.items():
        where = root / name / ".well-known"
        where.mkdir(parents=True)
        (where / "agent-card.json").write_text(text)
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(root)]
    url = f"http://127.0.0.1:{port}"
    with serve(argv, url + "/"):
        yield url


# A2A ----------------------------------------------------------------------------------------


def test_a2a_check_passes_on_every_binding_of_fleetmind_a2a_serve(a2a_agent: str) -> None:
    code, report = checked("a2a", "check", a2a_agent, "--message", "echo hello there")
    assert code == 0, report["problems"]
    assert report["ok"] is True
    card = report["card"]
    assert card["status"] == 200 and card["name"] == "fleetmind fleet"
    assert card["capabilities"]["streaming"] is True
    assert card["etag"]
    checks = by_name(report)
    assert checks["card"]["outcome"] == "ok"
    names = {"JSONRPC": "JSON-RPC", "HTTP+JSON": "HTTP+JSON", "GRPC": "gRPC"}
    declared = [names[b["binding"]] for b in card["bindings"]]
    assert "JSON-RPC" in declared
    for label in declared:  # each binding declared answered, sent and streamed
        for way in ("send", "stream"):
            check = checks[f"{label} {way}"]
            assert check["outcome"] == "ok", check
            assert check["state"] == "completed", check
            assert check["ms"] > 0
        assert "hello there" in checks[f"{label} send"]["line"]


def test_a2a_check_shows_one_screen_for_a_person(a2a_agent: str) -> None:
    done = fleetmind("a2a", "check", a2a_agent, "--timeout", "100")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"A2A agent {a2a_agent}/"
    text = done.stdout
    for expected in ("bindings", "capabilities", "streaming yes", "security", "none", "skills"):
        assert expected in text
    assert "JSON-RPC send" in text and "task " in text
    assert lines[-1].startswith("all ") and lines[-1].endswith("check(s) passed")
    assert len(lines) < 30


def test_a2a_check_of_a_protected_agent_without_a_token_says_so_and_stops(
    protected_a2a_agent: str,
) -> None:
    code, report = checked("a2a", "check", protected_a2a_agent)
    assert code == 1
    assert report["card"]["security_required"] is True
    assert "bearer" in report["card"]["security_schemes"]
    checks = by_name(report)
    assert checks["card"]["outcome"] == "ok"
    assert {c["outcome"] for n, c in checks.items() if n != "card"} == {"skipped"}
    (problem,) = report["problems"]
    assert "needs a bearer token" in problem and "--token" in problem


def test_a2a_check_with_the_token_passes_and_a_wrong_one_is_refused(
    protected_a2a_agent: str, token_file: Path
) -> None:
    code, report = checked("a2a", "check", protected_a2a_agent, "--token-file", str(token_file))
    assert code == 0, report["problems"]
    assert by_name(report)["JSON-RPC send"]["state"] == "completed"

    code, report = checked("a2a", "check", protected_a2a_agent, "--token", "wrong")
    assert code == 1
    refused = by_name(report)["JSON-RPC send"]
    assert refused["outcome"] == "failed"
    assert "token refused" in refused["line"]
    assert any("refused the token" in p for p in report["problems"])


def test_a2a_check_of_a_port_where_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = checked("a2a", "check", url)
    assert code == 1
    (check,) = report["checks"]
    assert check["name"] == "card" and check["outcome"] == "failed"
    assert check["line"] == "connection refused"
    assert "unreachable" in report["problems"][0]


def test_a2a_check_of_an_mcp_server_says_it_is_not_an_a2a_agent(mcp_http: str) -> None:
    base = mcp_http.removesuffix("/mcp")
    code, report = checked("a2a", "check", base)
    assert code == 1
    assert report["card"]["status"] == 401  # the MCP server asks every request for its token
    assert "needs a token (HTTP 401)" in report["problems"][0]

    code, report = checked("a2a", "check", base, "--token", TOKEN)
    assert code == 1
    assert report["card"]["status"] == 404
    assert "this is not an A2A agent" in report["problems"][0]


def test_a2a_check_of_broken_cards_and_a_dead_binding(static_site: str) -> None:
    code, report = checked("a2a", "check", f"{static_site}/not-json")
    assert code == 1
    assert "is not JSON" in report["problems"][0]

    code, report = checked("a2a", "check", f"{static_site}/not-a-card/")
    assert code == 1
    assert "not valid" in report["problems"][0]

    # The card's own URL works as well as the base URL.
    code, report = checked(
        "a2a", "check", f"{static_site}/dead-binding/.well-known/agent-card.json"
    )
    assert code == 1
    checks = by_name(report)
    assert checks["card"]["outcome"] == "ok"
    assert checks["JSON-RPC send"]["outcome"] == "failed"
    assert checks["JSON-RPC send"]["line"] == "no answer: connection refused"
    assert "JSON-RPC stream" not in checks  # the card offers no streaming
    (problem,) = report["problems"]
    assert problem.startswith("the JSON-RPC binding at http://127.0.0.1:")
    assert problem.endswith("does not answer: connection refused")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["ftp://example.com"], "an A2A agent's URL starts with http:// or https://"),
        (["http://:80"], "an A2A agent's URL starts with http:// or https://"),
        (["http://h:x/"], "has a bad port"),
        (["http://h/", "--token", "a", "--token-file", "f"], "give --token or --token-file"),
    ],
)
def test_a2a_check_of_a_bad_url_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = fleetmind("a2a", "check", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("fleetmind: error: ") and line in done.stderr
    assert len(done.stderr.splitlines()) == 1


# MCP ----------------------------------------------------------------------------------------


def test_mcp_check_over_stdio_lists_the_tools_and_calls_one() -> None:
    command = f"{sys.executable} {FIXTURES / 'mcp_demo_server.py'}"
    code, report = checked("mcp", "check", command, "--call", "add", "--arg", "a=1", "--arg", "b=2")
    assert code == 0, report["problems"]
    server = report["server"]
    assert server["name"] == "fleetmind-demo"
    assert server["protocol_version"]
    assert "tools" in server["capabilities"]
    assert {"add", "word_count", "crash"} <= set(report["lists"]["tools"])
    checks = by_name(report)
    assert checks["start"]["outcome"] == "ok"
    assert checks["ping"]["outcome"] == "ok"
    assert checks["call add"]["value"] == {"result": 3}


def test_mcp_check_reports_a_tool_that_fails() -> None:
    command = f"{sys.executable} {FIXTURES / 'mcp_demo_server.py'}"
    code, report = checked("mcp", "check", command, "--call", "fail", "--arg", "message=boom")
    assert code == 1
    assert by_name(report)["call fail"]["outcome"] == "failed"
    (problem,) = report["problems"]
    assert problem.startswith("the tool fail reported an error: ") and problem.endswith("boom")


def test_mcp_check_of_a_server_that_does_not_start_quotes_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "broken_server.py"
    script.write_text("import sys\nsys.exit('cannot open the database')\n")
    code, report = checked("mcp", "check", f"{sys.executable} {script}")
    assert code == 1
    assert by_name(report)["start"]["outcome"] == "failed"
    assert "cannot open the database" in report["problems"][0]


def test_mcp_check_over_http_needs_the_token(mcp_http: str, token_file: Path) -> None:
    code, report = checked("mcp", "check", mcp_http)
    assert code == 1
    assert report["auth"]["status"] == 401
    (problem,) = report["problems"]
    assert "needs a bearer token" in problem and "--token" in problem

    code, report = checked("mcp", "check", mcp_http, "--token", "wrong")
    assert code == 1
    assert "refused the token" in report["problems"][0]

    code, report = checked("mcp", "check", mcp_http, "--token-file", str(token_file))
    assert code == 0, report["problems"]
    assert report["server"]["name"] == "fleetmind"
    assert {"submit_task", "get_task", "list_agents"} <= set(report["lists"]["tools"])
    assert by_name(report)["auth"]["line"] == "token accepted"


def test_mcp_check_of_a_wrong_path_or_a_dead_port(mcp_http: str) -> None:
    wrong = mcp_http.removesuffix("/mcp") + "/nothing"
    code, report = checked("mcp", "check", wrong, "--token", TOKEN)
    assert code == 1
    assert "there is no MCP endpoint" in report["problems"][0]

    code, report = checked("mcp", "check", f"http://127.0.0.1:{free_port()}/mcp")
    assert code == 1
    assert report["problems"][0].endswith("is unreachable: connection refused")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["no-such-program-here --stdio"], "no program 'no-such-program-here' found"),
        (["http://"], "is not an http:// or https:// URL"),
        ([f"{sys.executable} x.py", "--token", "t"], "go with a URL"),
        (["http://h/mcp", "--arg", "a=1"], "name the tool with --call"),
        (["http://h/mcp", "--call", "t", "--arg", "oops"], "--arg expects key=value"),
    ],
)
def test_mcp_check_user_mistakes_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = fleetmind("mcp", "check", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("fleetmind: error: ") and line in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1


@pytest.fixture
def oauth_server() -> Iterator[str]:
    """An MCP server behind OAuth 2.1 (it prints ``READY URL`` once it listens)."""
    process = subprocess.Popen(
        [sys.executable, str(FIXTURES / "mcp_oauth_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # an empty line: it died before it listened
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        stop(process)


def test_mcp_check_of_an_oauth_server_names_the_login_command(oauth_server: str) -> None:
    code, report = checked("mcp", "check", oauth_server)
    assert code == 1
    auth = report["auth"]
    assert auth["status"] == 401
    assert auth["oauth"]["authorization_servers"]
    (problem,) = report["problems"]
    assert "needs OAuth authorization" in problem
    assert f"`fleetmind mcp login {oauth_server}`" in problem
    assert [c["name"] for c in report["checks"]] == ["auth"]  # nothing else was tried

    code, report = checked("mcp", "check", oauth_server, "--token", "not-a-real-token")
    assert code == 1
    assert "refused the token" in report["problems"][0]


def login_in_browser(url: str, data: Path) -> str:
    """`fleetmind mcp login URL` (the console script), its address opened as a user would
    (the authorization server's redirect followed to its listener): what it printed."""
    process = subprocess.Popen(
        [FLEETMIND, "mcp", "login", url, "--data-dir", str(data), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("  http"):
                answer = httpx.get(line.strip(), timeout=60)
                assert answer.status_code == 302, answer.text
                httpx.get(answer.headers["location"], timeout=60).raise_for_status()
                break
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    return out


def oauth_stats(url: str) -> dict[str, int]:
    return dict(httpx.get(url.removesuffix("/mcp") + "/test/stats", timeout=60).json())


def test_mcp_check_uses_the_token_mcp_login_saved(oauth_server: str, tmp_path: Path) -> None:
    code, report = checked("mcp", "check", oauth_server, home=tmp_path)
    assert code == 1
    assert by_name(report)["auth"]["line"] == (
        f"HTTP 401: needs authorization: run fleetmind mcp login {oauth_server} "
        f"--data-dir {tmp_path}"
    )

    assert login_in_browser(oauth_server, tmp_path).startswith(f"Authorized with {oauth_server}")
    code, report = checked("mcp", "check", oauth_server, home=tmp_path)
    assert code == 0, report["problems"]
    assert by_name(report)["auth"]["line"] == "authorized with a saved token (from mcp login)"
    assert report["auth"]["token"] == "saved"
    assert report["lists"]["tools"] == ["add"]

    # A saved token past its expiry is refreshed first, with no browser.
    saved = mcp_token_file(tmp_path / "mcp_auth", oauth_server)
    kept = json.loads(saved.read_text())
    kept["expires_at"] = time.time() - 60
    saved.write_text(json.dumps(kept))
    code, report = checked("mcp", "check", oauth_server, "--data-dir", str(tmp_path))
    assert code == 0, report["problems"]
    assert json.loads(saved.read_text())["expires_at"] > time.time()
    stats = oauth_stats(oauth_server)
    assert stats["grant:refresh_token"] == 1
    assert stats["authorizations"] == 1

    # --token wins over the saved token.
    code, report = checked("mcp", "check", oauth_server, "--token", "wrong", home=tmp_path)
    assert code == 1
    assert report["auth"]["token"] == "given"
    assert "refused the token" in report["problems"][0]


def test_mcp_check_of_a_saved_token_the_server_refuses_names_the_login_command(
    oauth_server: str, tmp_path: Path
) -> None:
    login_in_browser(oauth_server, tmp_path)
    httpx.post(
        oauth_server.removesuffix("/mcp") + "/test/expire", params={"refresh": "0"}, timeout=60
    ).raise_for_status()
    code, report = checked("mcp", "check", oauth_server, home=tmp_path)
    assert code == 1
    (problem,) = report["problems"]
    assert problem.startswith(f"{oauth_server} refused the token saved by `fleetmind mcp login`")
    assert problem.endswith(
        f"run `fleetmind mcp login {oauth_server} --data-dir {tmp_path}` to authorize again"
    )
    assert [c["name"] for c in report["checks"]] == ["auth"]

"""fleetmind's MCP client against a server that requires OAuth 2.1
(tests/fixtures/mcp_oauth_server.py, in its own process): discovery, registration, the
authorization code with PKCE and the resource indicator, tokens kept in the data directory,
refresh, and the errors a user reads.

The test plays the user's browser: it opens the authorization URL the client shows, and follows
the authorization server's redirect to the client's loopback listener.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from repo_paths import FIXTURES

from fleetmind import Fleet, SubtaskFailed, TaskGraph, agent
from fleetmind.agents import SubtaskContext
from fleetmind.cli._mcp_login import share_mcp_auth
from fleetmind.errors import ProtocolError
from fleetmind.protocols import MCPAuth, MCPConnection, MCPServerConfig
from fleetmind.protocols._mcp_auth import (
    MCPAuthError,
    MCPAuthorizationDenied,
    MCPAuthorizationRequired,
    mcp_token_file,
)
from fleetmind.tools import MCPToolSource, ToolRegistry

SERVER = FIXTURES / "mcp_oauth_server.py"
HTTP_TIMEOUT = 60.0  # a loaded machine must not fail a test by a slow answer


class OAuthServer:
    """The OAuth-protected MCP server, in a process of its own on a free port."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(SERVER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        # The server prints READY once it listens; an end of output means it died first.
        lines: list[str] = []
        for line in self.process.stdout:
            if line.startswith("READY "):
                break
            lines.append(line)
        else:
            self.stop()
            raise RuntimeError(f"the OAuth MCP server did not start: {''.join(lines)!r}")
        self.url = line.split()[1]
        self.base = self.url.removesuffix("/mcp")

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.base}/test/stats", timeout=HTTP_TIMEOUT).json())

    def control(self, endpoint: str, **params: str) -> None:
        httpx.post(
            f"{self.base}/test/{endpoint}", params=params, timeout=HTTP_TIMEOUT
        ).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    running = OAuthServer()
    try:
        yield running
    finally:
        running.stop()


class Browser:
    """Plays the user: opens each authorization URL it is shown and follows the redirect."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.visits: list[asyncio.Task[int]] = []

    def show(self, server: str, url: str) -> None:
        self.shown.append(url)
        self.visits.append(asyncio.get_running_loop().create_task(self._visit(url)))

    async def _visit(self, url: str) -> int:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            answer = await http.get(url)
            assert answer.status_code == 302, answer.text
            landing = await http.get(answer.headers["location"])
            return landing.status_code

    async def finish(self) -> list[int]:
        return list(await asyncio.gather(*self.visits))


def auth_for(data: Path, browser: Browser | None) -> MCPAuth:
    return MCPAuth(
        data / "mcp_auth",
        interactive=browser is not None,
        open_browser=False,
        wait_s=60,
        show=browser.show if browser is not None else None,
    )


def connect(server: OAuthServer, data: Path, browser: Browser | None) -> MCPConnection:
    """A connection to the protected server, its tokens kept under ``data``."""
    config = MCPServerConfig.parse(server.url, name="protected")
    return MCPConnection(config, auth=auth_for(data, browser))


async def sign_in(server: OAuthServer, data: Path) -> None:
    """A first connection, which the user authorizes in the browser: tokens are kept after."""
    browser = Browser()
    async with connect(server, data, browser) as connection:
        await connection.list_tools()
    await browser.finish()


async def test_the_client_authorizes_then_lists_and_calls_a_tool(
    server: OAuthServer, tmp_path: Path
) -> None:
    browser = Browser()
    async with connect(server, tmp_path, browser) as connection:
        tools = await connection.list_tools()
        result = await connection.call_tool("add", {"a": 2, "b": 3})
    assert [t.name for t in tools] == ["add"]
    assert result.structured == {"result": 5}
    assert await browser.finish() == [200]
    shown = parse_qs(urlsplit(browser.shown[0]).query)
    assert shown["code_challenge_method"] == ["S256"]
    assert shown["resource"] == [server.url]
    assert shown["redirect_uri"][0].startswith("http://127.0.0.1:")
    stats = server.stats()
    assert stats["registrations"] == 1
    assert stats["authorizations"] == 1
    assert stats["grant:authorization_code"] == 1


async def test_tokens_are_kept_private_and_reused_without_a_new_authorization(
    server: OAuthServer, tmp_path: Path
) -> None:
    await sign_in(server, tmp_path)

    saved = mcp_token_file(tmp_path / "mcp_auth", server.url)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert json.loads(saved.read_text())["tokens"]["access_token"]

    # A second connection, with nobody at a terminal: the kept token is enough.
    async with connect(server, tmp_path, None) as connection:
        result = await connection.call_tool("add", {"a": 1, "b": 1})
    assert result.structured == {"result": 2}
    stats = server.stats()
    assert stats["authorizations"] == 1
    assert stats["registrations"] == 1


async def test_a_token_the_server_expired_is_refreshed_without_the_user(
    server: OAuthServer, tmp_path: Path
) -> None:
    browser = Browser()
    async with connect(server, tmp_path, browser) as connection:
        await connection.list_tools()
        server.control("expire")
        result = await connection.call_tool("add", {"a": 4, "b": 4})
    await browser.finish()
    assert result.structured == {"result": 8}
    stats = server.stats()
    assert stats["grant:refresh_token"] == 1
    assert stats["authorizations"] == 1


async def test_a_kept_token_past_its_expiry_is_refreshed_before_it_is_sent(
    server: OAuthServer, tmp_path: Path
) -> None:
    await sign_in(server, tmp_path)
    saved = mcp_token_file(tmp_path / "mcp_auth", server.url)
    data = json.loads(saved.read_text())
    data["expires_at"] = time.time() - 60
    saved.write_text(json.dumps(data))

    async with connect(server, tmp_path, None) as connection:
        result = await connection.call_tool("add", {"a": 5, "b": 5})
    assert result.structured == {"result": 10}
    assert server.stats()["grant:refresh_token"] == 1
    assert json.loads(saved.read_text())["expires_at"] > time.time()


async def test_without_a_terminal_the_error_names_the_login_command(
    server: OAuthServer, tmp_path: Path
) -> None:
    async with connect(server, tmp_path, None) as connection:
        with pytest.raises(MCPAuthorizationRequired) as caught:
            await connection.list_tools()
    assert caught.value.message == (
        "MCP server 'protected' requires authorization and no terminal is here to give it: "
        f"run `fleetmind mcp login {server.url}` first"
    )
    assert server.stats().get("registrations", 0) == 0


async def test_a_refusal_at_the_authorization_server_is_a_clear_error(
    server: OAuthServer, tmp_path: Path
) -> None:
    server.control("deny", on="1")
    browser = Browser()
    async with connect(server, tmp_path, browser) as connection:
        with pytest.raises(MCPAuthorizationDenied) as caught:
            await connection.list_tools()
    assert await browser.finish() == [200]
    assert caught.value.message == (
        "MCP server 'protected': authorization was refused (access_denied: the user refused access)"
    )
    assert "tokens" not in json.loads(mcp_token_file(tmp_path / "mcp_auth", server.url).read_text())


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("resource", "protected resource metadata"),
        ("server", "authorization server metadata"),
    ],
)
async def test_malformed_metadata_is_named_in_the_error(
    server: OAuthServer, tmp_path: Path, document: str, named: str
) -> None:
    server.control("malformed", what=document)
    browser = Browser()
    async with connect(server, tmp_path, browser) as connection:
        with pytest.raises(MCPAuthError) as caught:
            await connection.list_tools()
    message = caught.value.message
    assert message.startswith(f"MCP server 'protected': its {named} at http://127.0.0.1:")
    assert "is malformed: " in message
    assert "\n" not in message
    assert browser.shown == []


# The fixture itself: it must refuse what a careless client would get away with -------------


def _register(base: str, redirect: str) -> str:
    answer = httpx.post(
        f"{base}/register",
        json={
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "tools",
        },
        timeout=HTTP_TIMEOUT,
    )
    answer.raise_for_status()
    return str(answer.json()["client_id"])


def _code(base: str, client_id: str, redirect: str, verifier: str, resource: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "state": "s",
        "code_challenge": challenge.rstrip("="),
        "code_challenge_method": "S256",
        "resource": resource,
        "scope": "tools",
    }
    answer = httpx.get(f"{base}/authorize?{urlencode(query)}", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def _exchange(base: str, **form: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", **form}
    return httpx.post(f"{base}/token", data=form, timeout=HTTP_TIMEOUT)


def test_the_fixture_refuses_a_wrong_pkce_verifier(server: OAuthServer) -> None:
    redirect = "http://127.0.0.1:9/callback"
    client_id = _register(server.base, redirect)
    verifier = secrets.token_urlsafe(48)
    common: dict[str, Any] = {"client_id": client_id, "redirect_uri": redirect}

    code = _code(server.base, client_id, redirect, verifier, server.url)
    wrong = _exchange(
        server.base,
        code=code,
        code_verifier=secrets.token_urlsafe(48),
        resource=server.url,
        **common,
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"

    code = _code(server.base, client_id, redirect, verifier, server.url)
    right = _exchange(server.base, code=code, code_verifier=verifier, resource=server.url, **common)
    assert right.status_code == 200
    assert right.json()["access_token"]


def test_the_fixture_refuses_a_token_request_for_another_resource(server: OAuthServer) -> None:
    redirect = "http://127.0.0.1:9/callback"
    client_id = _register(server.base, redirect)
    verifier = secrets.token_urlsafe(48)
    code = _code(server.base, client_id, redirect, verifier, server.url)
    answer = _exchange(
        server.base,
        code=code,
        code_verifier=verifier,
        resource=f"{server.base}/elsewhere",
        client_id=client_id,
        redirect_uri=redirect,
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_target"


async def test_a_fleet_built_in_python_uses_tokens_obtained_before(
    server: OAuthServer, tmp_path: Path
) -> None:
    await sign_in(server, tmp_path)

    @agent(id="adder")
    async def add(ctx: SubtaskContext) -> Any:
        result = await ctx.tools.call("add", {"a": 40, "b": 2})
        if not result.ok:
            raise SubtaskFailed(result.error or "add failed", retryable=False)
        return result.value

    fleet = Fleet([add])
    fleet.add_mcp_server(server.url, auth=MCPAuth(tmp_path / "mcp_auth", interactive=False))
    graph = TaskGraph("protected-tool")
    graph.add_subtask("add", agent="adder")
    try:
        result = await fleet.run(graph)
    finally:
        await fleet.aclose()
    assert result.ok, result.errors
    assert result.output == {"result": 42}
    assert server.stats()["authorizations"] == 1  # the token kept before: nobody was asked


# The command line: `fleetmind mcp login`, and the fleets it builds ---------------------------

FLEETMIND = str(Path(sys.executable).parent / "fleetmind")


def _login(server: OAuthServer, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FLEETMIND, "mcp", "login", server.url, "--data-dir", str(data), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _login_in_browser(
    server: OAuthServer, data: Path
) -> tuple[subprocess.Popen[str], str, str]:
    """`fleetmind mcp login`, its authorization address opened as the user would: the ended
    process, its output and its errors."""
    process = _login(server, data)
    try:
        await asyncio.to_thread(_browse_from, process)
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process, out, err


def _browse_from(process: subprocess.Popen[str]) -> list[str]:
    """Read stderr up to the authorization address, open it and follow the redirect."""
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("  http"):
            answer = httpx.get(line.strip(), timeout=HTTP_TIMEOUT)
            assert answer.status_code == 302, answer.text
            httpx.get(answer.headers["location"], timeout=HTTP_TIMEOUT).raise_for_status()
            break
    return seen


async def test_mcp_login_authorizes_ahead_of_a_run_with_no_terminal(
    server: OAuthServer, tmp_path: Path
) -> None:
    process, out, err = await _login_in_browser(server, tmp_path)
    saved = mcp_token_file(tmp_path / "mcp_auth", server.url)
    assert process.returncode == 0, err
    assert out == f"Authorized with {server.url} (1 tool); its tokens are kept in {saved}\n"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    again = await asyncio.to_thread(
        subprocess.run,
        [FLEETMIND, "mcp", "login", server.url, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"Already authorized with {server.url} (1 tool)")

    # What `fleetmind run` gives a fleet's MCP servers: the tokens of the data directory.
    registry = ToolRegistry()
    source = MCPToolSource(MCPServerConfig.parse(server.url, name="protected"))
    registry.add_source(source)
    share_mcp_auth(registry, tmp_path)
    try:
        assert source.connection.auth is not None
        assert source.connection.auth.token_dir == tmp_path / "mcp_auth"
        result = await registry.call("add", {"a": 20, "b": 22})
    finally:
        await registry.aclose()
    assert result.value == {"result": 42}
    assert server.stats()["authorizations"] == 1


async def test_mcp_login_reports_a_refusal_on_one_line(server: OAuthServer, tmp_path: Path) -> None:
    server.control("deny", on="1")
    process, out, err = await _login_in_browser(server, tmp_path)
    assert process.returncode == 2
    assert out == ""
    port = urlsplit(server.url).port
    assert err.lstrip("\n") == (
        f"fleetmind: error: MCP server '127.0.0.1-{port}': authorization was refused "
        "(access_denied: the user refused access)\n"
    )


async def test_a_fleet_with_no_terminal_is_told_which_command_to_run(
    server: OAuthServer, tmp_path: Path
) -> None:
    registry = ToolRegistry()
    registry.add_source(MCPToolSource(MCPServerConfig.parse(server.url, name="protected")))
    share_mcp_auth(registry, tmp_path / "data dir")
    try:
        with pytest.raises(ProtocolError) as caught:
            await registry.load()
    finally:
        await registry.aclose()
    quoted = shlex.quote(str(tmp_path / "data dir"))
    assert caught.value.message.endswith(
        f"run `fleetmind mcp login {server.url} --data-dir {quoted}` first"
    )


async def test_tokens_that_can_no_longer_be_refreshed_mid_session_are_a_clear_error(
    server: OAuthServer, tmp_path: Path
) -> None:
    await sign_in(server, tmp_path)

    async with connect(server, tmp_path, None) as connection:
        await connection.list_tools()
        server.control("expire", refresh="0")
        with pytest.raises(MCPAuthorizationRequired) as caught:
            await connection.call_tool("add", {"a": 1, "b": 2})
        with pytest.raises(MCPAuthorizationRequired) as again:
            await connection.call_tool("add", {"a": 1, "b": 2})
    assert caught.value.message.endswith(f"run `fleetmind mcp login {server.url}` first")
    assert again.value.message == caught.value.message
    assert connection.restarts == 0
    saved = json.loads(mcp_token_file(tmp_path / "mcp_auth", server.url).read_text())
    assert "tokens" not in saved  # dead tokens are not tried again by the next process
    assert "client" in saved


async def test_a_request_for_more_scope_is_authorized_again_with_both_scopes(
    server: OAuthServer, tmp_path: Path
) -> None:
    browser = Browser()
    async with connect(server, tmp_path, browser) as connection:
        await connection.list_tools()
        server.control("step-up", on="1")
        result = await connection.call_tool("add", {"a": 3, "b": 4})
    assert result.structured == {"result": 7}
    assert await browser.finish() == [200, 200]
    scopes = [parse_qs(urlsplit(url).query)["scope"][0] for url in browser.shown]
    assert scopes == ["tools", "tools admin"]
    stats = server.stats()
    assert stats["authorizations"] == 2
    assert stats["registrations"] == 1

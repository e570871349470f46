"""OAuth 2.1 for the MCP client: servers that answer 401 are authorized, and their tokens kept.

The MCP authorization flow (a 401 naming the protected resource metadata, then the
authorization server's metadata, client registration, an authorization code with PKCE S256
and the ``resource`` indicator, then tokens) is the MCP SDK's ``OAuthClientProvider``. This
module gives it what a fleet needs around it:

- :class:`MCPAuth`: where tokens are kept (one file per server, mode 0600, in a 0700 folder
  of the data directory) and whether a person is there to authorize;
- a loopback listener (RFC 8252) on 127.0.0.1 that receives the authorization code, while the
  authorization URL is shown to the user (and opened in a browser on a desktop);
- tokens refreshed before they expire and when the server refuses one, with the metadata
  that a refresh needs kept beside them, so a restarted fleet refreshes without a browser;
- one-line errors: authorization needed where nobody can give it (naming the command that
  gets the tokens beforehand), authorization refused, metadata that does not parse.

The ``mcp`` package is imported only when a server asks for authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shlex
import sys
import tempfile
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, ValidationError

from fleetmind._validation import describe_validation_error
from fleetmind.errors import MCPAuthError, MCPAuthorizationDenied, MCPAuthorizationRequired

if TYPE_CHECKING:
    import httpx2
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthToken

__all__ = [
    "MCP_TOKEN_DIR",
    "MCPAuth",
    "MCPAuthError",
    "MCPAuthorizationDenied",
    "MCPAuthorizationRequired",
    "MCPOAuthClient",
    "mcp_token_file",
    "saved_mcp_token",
]

logger = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

MCP_TOKEN_DIR = "mcp_auth"
"""The folder of the data directory that holds one token file per MCP server."""

_CALLBACK_PATH = "/callback"
_PLACEHOLDER_REDIRECT = "http://127.0.0.1/callback"  # replaced by the listener's before use


class MCPOAuthClient(BaseModel):
    """How fleetmind identifies itself to a server's authorization server, when not by
    registering itself (dynamic client registration is the default).

    Attributes:
        client_id: A client id registered beforehand with the authorization server.
        client_metadata_url: An HTTPS URL of fleetmind's client metadata document, used as the
            client id where the authorization server supports client ID metadata documents.
        redirect_port: The loopback port for the redirect (``http://127.0.0.1:PORT/callback``),
            for an authorization server that allows only the redirect URI it registered.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str | None = Field(default=None, min_length=1)
    client_metadata_url: str | None = Field(default=None, pattern=r"^https://[^/]+/.+")
    redirect_port: int | None = Field(default=None, gt=0, lt=65536)


@dataclass(frozen=True)
class MCPAuth:
    """Where a connection keeps OAuth tokens, and how it asks the user for authorization.

    Attributes:
        token_dir: The folder of token files (``<data dir>/mcp_auth`` for the command line).
        interactive: Whether a person can authorize now; ``None``: when stderr is a terminal.
            Without one, a server that needs authorization fails with
            :class:`MCPAuthorizationRequired`, naming ``login_command``.
        open_browser: Open the authorization URL in a browser on a desktop.
        wait_s: How long to wait for the browser to come back with the authorization.
        show: Shows the authorization URL to the user (default: printed on stderr).
        login_command: The command that authorizes ahead of time, ``{url}`` standing for
            the server's URL.
    """

    token_dir: Path
    interactive: bool | None = None
    open_browser: bool = True
    wait_s: float = 300.0
    show: Callable[[str, str], None] | None = None
    login_command: str = "fleetmind mcp login {url}"

    def is_interactive(self) -> bool:
        """Whether a person is there to open the authorization URL."""
        if self.interactive is not None:
            return self.interactive
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False


def mcp_token_file(token_dir: Path, url: str) -> Path:
    """The file that keeps the tokens for the MCP server at ``url``.

    One per server URL (scheme and host lower-cased, fragment dropped), whatever name a
    fleet gives the server, so a login for the URL serves every fleet that uses it.
    """
    canonical = _canonical_url(url)
    parts = urlsplit(canonical)
    host = parts.hostname or "server"
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{host}-{parts.port}" if parts.port else host)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return token_dir / f"{slug.strip('-.')[:48]}-{digest}.json"


def _canonical_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), fragment="")
    )


async def saved_mcp_token(auth: MCPAuth, url: str, *, timeout_s: float = 30.0) -> str | None:
    """The access token kept in ``auth.token_dir`` for the MCP server at ``url`` (by
    ``fleetmind mcp login`` or an earlier run), refreshed first when it has expired.

    Nobody is asked, whatever ``auth.interactive`` says: this is for a look at a server (a
    check) that must never start a browser flow. None when no token is kept, or when the kept
    one has expired and cannot be refreshed (the authorization server refused the refresh).

    Raises:
        MCPAuthError: The token file cannot be read, or the authorization server cannot be
            reached to refresh the token.
    """
    if not mcp_token_file(auth.token_dir, url).exists():
        return None
    import httpx2

    provider = _provider_class()(url, url, replace(auth, interactive=False), MCPOAuthClient())
    await provider._initialize()
    context = provider.context
    if context.current_tokens is None:
        return None
    if not context.is_token_valid():
        if not context.can_refresh_token():
            return None
        try:
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(timeout_s)) as http:
                response = await http.send(await provider._refresh_token())
        except httpx2.HTTPError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise MCPAuthError(
                f"cannot refresh the saved token for MCP server {url}: {reason}",
                details={"url": url},
            ) from exc
        if not await provider._handle_refresh_response(response):
            return None
    tokens = context.current_tokens
    return tokens.access_token if tokens is not None else None


# Token storage -----------------------------------------------------------------------------


class _TokenFile:
    """The SDK's token storage, as one JSON file per server, written atomically, mode 0600.

    Beside the tokens it keeps when the access token expires and the metadata a refresh
    needs (the token endpoint, the resource), so that a new process refreshes an expired
    token without going through the browser again.
    """

    def __init__(self, path: Path, url: str, preset: OAuthClientInformationFull | None) -> None:
        self.path = path
        self.url = url
        self.preset = preset
        self.context: Any = None  # the provider's OAuthContext, read when tokens are saved
        self.data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise MCPAuthError(
                f"cannot read MCP token file {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            data = json.loads(text)
        except ValueError:
            logger.warning(
                "MCP token file %s is not JSON; it is ignored and will be replaced", self.path
            )
            return {}
        if not isinstance(data, dict) or data.get("server") != self.url:
            return {}
        return data

    async def get_tokens(self) -> OAuthToken | None:
        from mcp.shared.auth import OAuthToken

        return self._model(OAuthToken, "tokens")

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        context = self.context
        if context is not None:
            self.data["expires_at"] = context.token_expiry_time
            for key, value in (
                ("resource_metadata", context.protected_resource_metadata),
                ("server_metadata", context.oauth_metadata),
            ):
                if value is not None:
                    self.data[key] = value.model_dump(mode="json", exclude_none=True)
        self._write()

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        from mcp.shared.auth import OAuthClientInformationFull

        stored = self._model(OAuthClientInformationFull, "client")
        if self.preset is not None and (
            stored is None or stored.client_id != self.preset.client_id
        ):
            return self.preset
        return stored

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.data["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._write()

    def forget_client(self) -> None:
        """Drop a registration whose redirect URI can no longer be served."""
        self.data.pop("client", None)

    def forget_tokens(self) -> None:
        """Drop tokens the authorization server no longer refreshes (the registration stays)."""
        if self.data.pop("tokens", None) is not None:
            self.data.pop("expires_at", None)
            self._write()

    def restore(self, context: Any) -> None:
        """Give the provider's context what the SDK does not keep: expiry and metadata."""
        from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata

        self.context = context
        expires_at = self.data.get("expires_at")
        if isinstance(expires_at, int | float) and context.current_tokens is not None:
            context.token_expiry_time = float(expires_at)
        if context.protected_resource_metadata is None:
            context.protected_resource_metadata = self._model(
                ProtectedResourceMetadata, "resource_metadata"
            )
        if context.oauth_metadata is None:
            context.oauth_metadata = self._model(OAuthMetadata, "server_metadata")

    def _model(self, model: type[_Model], key: str) -> _Model | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except ValidationError:
            logger.warning("MCP token file %s: %r is not valid; it is ignored", self.path, key)
            return None

    def _write(self) -> None:
        self.data["server"] = self.url
        write_private(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600, folder 0700)."""
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix" and folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                if os.name == "posix":
                    os.fchmod(handle.fileno(), 0o600)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as exc:
        raise MCPAuthError(f"cannot write MCP token file {path}: {exc.strerror or exc}") from exc


# The loopback redirect ---------------------------------------------------------------------


class _Listener:
    """An HTTP listener on 127.0.0.1 that waits for the authorization server's redirect."""

    def __init__(self, server: asyncio.Server, port: int) -> None:
        self.server = server
        self.port = port
        self.state: str | None = None
        self.result: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{_CALLBACK_PATH}"

    @classmethod
    async def open(cls, ports: list[int]) -> _Listener:
        """Listen on the first of ``ports`` that is free (0: any free port)."""
        holder: list[_Listener] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._serve(reader, writer)

        last: OSError | None = None
        for port in ports:
            try:
                server = await asyncio.start_server(handle, "127.0.0.1", port)
            except OSError as exc:
                last = exc
                continue
            listener = cls(server, server.sockets[0].getsockname()[1])
            holder.append(listener)
            return listener
        raise MCPAuthError(
            f"cannot listen on 127.0.0.1 port {ports[-1]} for the authorization redirect: "
            f"{last.strerror if last else 'no port given'}"
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if method != "GET" or parts.path != _CALLBACK_PATH:
                await _answer(writer, 404, "Not found.")
            elif self.result.done():
                await _answer(writer, 409, "This authorization was already received.")
            elif self.state is not None and query.get("state") != self.state:
                await _answer(writer, 400, "This is not the authorization fleetmind asked for.")
            else:
                self.result.set_result(query)
                if "error" in query:
                    await _answer(
                        writer, 200, "Authorization was refused. You may close this page."
                    )
                else:
                    await _answer(writer, 200, "fleetmind is authorized. You may close this page.")
        except (
            OSError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        self.server.close()
        with contextlib.suppress(OSError):
            await self.server.wait_closed()


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}[status]
    body = f"<!doctype html><title>fleetmind</title><p>{text}</p>\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


def _on_desktop() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _show_on_stderr(server: str, url: str) -> None:
    print(
        f"MCP server {server!r} asks you to authorize fleetmind. Open this address in a browser:"
        f"\n\n  {url}\n",
        file=sys.stderr,
        flush=True,
    )


# The provider ------------------------------------------------------------------------------


def oauth_provider(
    name: str, url: str, auth: MCPAuth, client: MCPOAuthClient | None
) -> httpx2.Auth:
    """The ``httpx2`` auth that authorizes requests to the MCP server ``name`` at ``url``."""
    _quiet_sdk_flow_log()
    return _provider_class()(name, url, auth, client or MCPOAuthClient())


def _quiet_sdk_flow_log() -> None:
    """The SDK logs every failed flow with a traceback; the failure is ours to report."""
    sdk_logger = logging.getLogger("mcp.client.auth.oauth2")
    if not any(isinstance(f, _DropFlowTraceback) for f in sdk_logger.filters):
        sdk_logger.addFilter(_DropFlowTraceback())


class _DropFlowTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "OAuth flow error"


@functools.cache
def _provider_class() -> Callable[[str, str, MCPAuth, MCPOAuthClient], OAuthClientProvider]:
    from mcp.client.auth import OAuthClientProvider, OAuthFlowError
    from mcp.shared.auth import (
        AuthorizationCodeResult,
        OAuthClientInformationFull,
        OAuthClientMetadata,
        OAuthMetadata,
        ProtectedResourceMetadata,
    )

    documents: list[tuple[str, str, type[BaseModel]]] = [
        (
            "/.well-known/oauth-protected-resource",
            "protected resource metadata",
            ProtectedResourceMetadata,
        ),
        ("/.well-known/oauth-authorization-server", "authorization server metadata", OAuthMetadata),
        ("/.well-known/openid-configuration", "OpenID configuration", OAuthMetadata),
    ]

    class FleetmindOAuth(OAuthClientProvider):
        """The SDK's provider, with fleetmind's storage, listener, refresh and errors."""

        def __init__(self, name: str, url: str, auth: MCPAuth, client: MCPOAuthClient) -> None:
            preset = None
            if client.client_id is not None:
                preset = OAuthClientInformationFull(
                    client_id=client.client_id,
                    token_endpoint_auth_method="none",
                    redirect_uris=None,
                )
            self.name = name
            self.url = url
            self.auth = auth
            self.client = client
            self.store = _TokenFile(
                mcp_token_file(auth.token_dir, url), _canonical_url(url), preset
            )
            self.listener: _Listener | None = None
            self.failure: MCPAuthError | None = None
            """Why the last flow failed: the transport reports it only as a closed connection."""
            super().__init__(
                server_url=url,
                client_metadata=OAuthClientMetadata(
                    client_name="fleetmind",
                    redirect_uris=[AnyUrl(_PLACEHOLDER_REDIRECT)],
                    token_endpoint_auth_method="none",
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"],
                ),
                storage=self.store,
                redirect_handler=self._redirect,
                callback_handler=self._callback,
                client_metadata_url=client.client_metadata_url,
            )

        async def _initialize(self) -> None:
            await super()._initialize()
            self.store.restore(self.context)

        async def _auth_flow(
            self, request: httpx2.Request
        ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
            flow = super()._auth_flow(request)
            retried = False
            try:
                outgoing = await flow.__anext__()
                while True:
                    response = yield outgoing
                    if outgoing is request:
                        if _refused(response) and not retried and self._may_refresh(request):
                            # A token the server no longer takes (revoked, or expired sooner
                            # than it said) is refreshed before anyone is asked again.
                            retried = True
                            refresh = yield await self._refresh_token()
                            if await self._handle_refresh_response(refresh):
                                self._add_auth_header(request)
                                response = yield request
                        if _refused(response) or _step_up(response):
                            await self._prepare_authorization()
                    else:
                        await self._check_document(outgoing, response)
                    outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            except MCPAuthError as exc:
                self.failure = exc
                raise
            except OAuthFlowError as exc:
                self.failure = MCPAuthError(
                    f"authorizing with MCP server {self.name!r} failed: {exc}"
                )
                raise self.failure from exc
            finally:
                await flow.aclose()
                if self.listener is not None:
                    await self.listener.aclose()
                    self.listener = None

        async def _handle_refresh_response(self, response: httpx2.Response) -> bool:
            refreshed = await super()._handle_refresh_response(response)
            if not refreshed:
                self.store.forget_tokens()  # else every new process would try them again
            return refreshed

        def _may_refresh(self, request: httpx2.Request) -> bool:
            return "Authorization" in request.headers and self.context.can_refresh_token()

        async def _prepare_authorization(self) -> None:
            """Check that someone can authorize, and listen for the redirect before the SDK
            registers the client (the registration names the redirect URI)."""
            if not self.auth.is_interactive():
                command = self.auth.login_command.format(url=shlex.quote(self.url))
                raise MCPAuthorizationRequired(
                    f"MCP server {self.name!r} requires authorization and no terminal is here "
                    f"to give it: run `{command}` first",
                    details={"server": self.name, "url": self.url},
                )
            if self.listener is not None:
                return
            ports = self._ports()
            self.listener = await _Listener.open(ports)
            if self.client.client_id is None and self.listener.port != ports[0] != 0:
                # Registered for a port that is taken now: register again for this one.
                self.store.forget_client()
                self.context.client_info = None
            self.context.client_metadata.redirect_uris = [AnyUrl(self.listener.redirect_uri)]

        def _ports(self) -> list[int]:
            if self.client.redirect_port is not None:
                return [self.client.redirect_port]
            info = self.context.client_info
            for uri in (info.redirect_uris or []) if info is not None else []:
                parts = urlsplit(str(uri))
                if parts.hostname == "127.0.0.1" and parts.port:
                    return [parts.port, 0]
            return [0]

        async def _redirect(self, authorization_url: str) -> None:
            assert self.listener is not None
            self.listener.state = parse_qs(urlsplit(authorization_url).query).get("state", [None])[
                0
            ]
            (self.auth.show or _show_on_stderr)(self.name, authorization_url)
            if self.auth.open_browser and _on_desktop():
                import webbrowser

                with contextlib.suppress(Exception):
                    await asyncio.to_thread(webbrowser.open, authorization_url)

        async def _callback(self) -> AuthorizationCodeResult:
            assert self.listener is not None
            try:
                async with asyncio.timeout(self.auth.wait_s):
                    query = await asyncio.shield(self.listener.result)
            except TimeoutError:
                raise MCPAuthError(
                    f"MCP server {self.name!r}: no authorization came back from the browser "
                    f"within {self.auth.wait_s:g} s",
                    details={"server": self.name},
                ) from None
            if "error" in query:
                reason = query["error"]
                if query.get("error_description"):
                    reason += f": {query['error_description']}"
                raise MCPAuthorizationDenied(
                    f"MCP server {self.name!r}: authorization was refused ({reason})",
                    details={"server": self.name, "error": query["error"]},
                )
            return AuthorizationCodeResult(
                code=query.get("code", ""), state=query.get("state"), iss=query.get("iss")
            )

        async def _check_document(self, request: httpx2.Request, response: httpx2.Response) -> None:
            """A metadata document that is served but does not parse is an error of its own,
            not a reason to quietly try the next place."""
            if response.status_code != 200 or request.method != "GET":
                return
            path = request.url.path
            for marker, what, model in documents:
                if marker in path:
                    body = await response.aread()
                    try:
                        model.model_validate_json(body)
                    except ValidationError as exc:
                        problem = describe_validation_error(exc, noun="field")
                        raise MCPAuthError(
                            f"MCP server {self.name!r}: its {what} at {request.url} is malformed: "
                            f"{' '.join(problem.split())}",
                            details={"server": self.name, "document": str(request.url)},
                        ) from exc
                    return

    return FleetmindOAuth


def _refused(response: httpx2.Response) -> bool:
    return response.status_code == 401


def _step_up(response: httpx2.Response) -> bool:
    """A 403 asking for more scope: the SDK authorizes again with the scopes it names."""
    challenge = response.headers.get("WWW-Authenticate", "")
    return (
        response.status_code == 403
        and re.search(r'error="?insufficient_scope', challenge) is not None
    )


def take_auth_failure(oauth: Any) -> MCPAuthError | None:
    """Why the provider ``oauth`` last failed to authorize a request, once (then forgotten)."""
    failure: MCPAuthError | None = getattr(oauth, "failure", None)
    if failure is not None:
        oauth.failure = None
    return failure


def find_auth_error(exc: BaseException) -> MCPAuthError | None:
    """The :class:`MCPAuthError` behind ``exc`` (in a group, a cause or a context), if any."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, MCPAuthError):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return None

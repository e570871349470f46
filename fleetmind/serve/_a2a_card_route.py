"""The Agent Card at ``/.well-known/agent-card.json``, with what HTTP caches need.

Clients read the card before every conversation, so it is cacheable: it carries an ``ETag`` (a
hash of its JSON), a ``Last-Modified`` (when the card was built: the server's start) and
``Cache-Control: public, max-age=N``; a request with a matching ``If-None-Match``, or else an
``If-Modified-Since`` no older than the card, is answered ``304 Not Modified`` without a body.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import AgentCard
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CARD_MAX_AGE_S = 300
"""How long a client may use a card it has read without asking again. Short, because a server
started again may offer other ports (a gRPC port picked at random, for one)."""


def card_route(card: AgentCard, *, max_age_s: int = CARD_MAX_AGE_S) -> Route:
    """The route that serves ``card`` (GET and HEAD), built now: its ``Last-Modified``."""
    body = json.dumps(agent_card_to_dict(card), separators=(",", ":")).encode()
    built = datetime.now(UTC).replace(microsecond=0)  # HTTP dates count whole seconds
    headers = {
        "ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
        "Last-Modified": format_datetime(built, usegmt=True),
        "Cache-Control": f"public, max-age={max_age_s}",
    }

    async def serve_card(request: Request) -> Response:
        if _not_modified(request, headers["ETag"], built):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    return Route(AGENT_CARD_WELL_KNOWN_PATH, serve_card, methods=["GET"])


def _not_modified(request: Request, etag: str, built: datetime) -> bool:
    """Whether the client's copy is current (RFC 9110 §13.2.2: If-None-Match decides when
    given, If-Modified-Since only without it)."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored
    if since.tzinfo is None:  # "-0000": a date in UTC
        since = since.replace(tzinfo=UTC)
    return built <= since

"""Agent Cards and AgentProfiles, both directions of one mapping.

:func:`agent_card` is the A2A Agent Card of one agent or of a whole fleet, derived from
AgentProfiles; :func:`profile_from_card` is the fleetmind profile of an A2A agent read from its
card.

The card is what an A2A client reads before it talks to us, so everything on it comes from the
profiles the router also reads: one profile skill becomes one card skill, with its name,
description, tags and examples. Serving a whole fleet, skill ids are prefixed with the agent id
(``agent/skill``) so that two agents may offer skills of the same name. An agent without skills
still appears, as one skill that stands for the agent itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)

from fleetmind._ids import is_valid_id
from fleetmind._version import __version__
from fleetmind.agents import AgentProfile, Skill, Tier
from fleetmind.errors import ConfigError

A2A_PROTOCOL_VERSION = "1.0"
"""The A2A protocol version the card declares for each of its interfaces."""

JSONRPC_BINDING = "JSONRPC"
HTTP_JSON_BINDING = "HTTP+JSON"
GRPC_BINDING = "GRPC"
BEARER_SCHEME = "bearer"
"""The name of the bearer security scheme on the card, when a token guards the server."""

INPUT_MODES = ("text/plain", "application/json")
"""Text becomes a one-subtask task; JSON (a data part) may carry a whole task graph. A part of
any other media type is refused (``ContentTypeNotSupportedError``); a part that states none is
taken as what it holds."""
OUTPUT_MODES = ("text/plain", "application/json")
"""Text outputs travel as text parts, every other output as a data part."""


def agent_card(
    profiles: Iterable[AgentProfile],
    *,
    name: str | None = None,
    description: str | None = None,
    url: str | None,
    rest_url: str | None = None,
    grpc_url: str | None = None,
    streaming: bool = True,
    bearer_auth: bool = False,
    version: str | None = None,
    push_notifications: bool = False,
    input_modes: Sequence[str] | None = None,
) -> AgentCard:
    """The Agent Card for one agent (one profile) or for a fleet (several profiles).

    Each endpoint given becomes one of the card's interfaces, in the order JSON-RPC, HTTP+JSON,
    gRPC (a client that speaks several takes the first).

    Args:
        profiles: The profiles of the agents behind the endpoint.
        name: The card's name (default: the agent's name, or "fleetmind fleet").
        description: What the agent does (default: the agent's description, or a summary of
            the fleet's agents).
        url: Where the JSON-RPC endpoint is, as clients should reach it (None: not served).
        rest_url: Where the HTTP+JSON (REST) endpoints are rooted (None: not served).
        grpc_url: Where the gRPC service is, as ``host:port`` (None: not served).
        streaming: Whether ``SendStreamingMessage`` is offered.
        bearer_auth: Declare a bearer-token security scheme and require it.
        version: The card's version (default: the profile's version for one agent, the
            fleetmind version for a fleet).
        push_notifications: Whether task updates can be pushed to a client's webhook.
        input_modes: The media types a message's parts may have (default: ``INPUT_MODES``).

    Raises:
        ConfigError: No profile or no endpoint was given, or an HTTP endpoint's URL is not an
            http(s) URL.
    """
    members = sorted(profiles, key=lambda p: p.id)
    if not members:
        raise ConfigError("an A2A agent card needs at least one agent")
    endpoints = [(url, JSONRPC_BINDING), (rest_url, HTTP_JSON_BINDING), (grpc_url, GRPC_BINDING)]
    interfaces = [
        AgentInterface(url=where, protocol_binding=binding, protocol_version=A2A_PROTOCOL_VERSION)
        for where, binding in endpoints
        if where is not None
    ]
    if not interfaces:
        raise ConfigError("an A2A agent card needs at least one endpoint")
    for where in (url, rest_url):
        if where is not None and not where.startswith(("http://", "https://")):
            raise ConfigError(f"the A2A endpoint URL must be http(s)://..., got {where!r}")
    single = len(members) == 1
    card = AgentCard(
        name=name or (members[0].display_name if single else "fleetmind fleet"),
        description=description or _describe(members),
        version=version or _version(members),
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(
            streaming=streaming,
            push_notifications=push_notifications,
            extended_agent_card=False,
        ),
        default_input_modes=list(INPUT_MODES if input_modes is None else input_modes),
        default_output_modes=list(OUTPUT_MODES),
        skills=[skill for p in members for skill in _skills(p, prefixed=not single)],
    )
    if bearer_auth:
        card.security_schemes[BEARER_SCHEME].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer", description="The token given to `fleetmind a2a serve`."
                )
            )
        )
        card.security_requirements.append(
            SecurityRequirement(schemes={BEARER_SCHEME: StringList()})
        )
    return card


def _skills(profile: AgentProfile, *, prefixed: bool) -> list[AgentSkill]:
    """One card skill per profile skill; a skill-less agent becomes one skill of its own."""
    fallback = profile.description or f"Agent {profile.display_name} ({profile.tier.value})."
    if not profile.skills:
        return [
            AgentSkill(
                id=profile.id,
                name=profile.display_name,
                description=fallback,
                tags=[profile.id],
            )
        ]
    return [
        AgentSkill(
            id=f"{profile.id}/{skill.name}" if prefixed else skill.name,
            name=skill.name,
            description=skill.description or fallback,
            # The card requires tags; a skill without any is found by its own name.
            tags=list(skill.tags) or [skill.name],
            examples=list(skill.examples),
        )
        for skill in profile.skills
    ]


def _describe(members: list[AgentProfile]) -> str:
    if len(members) == 1:
        only = members[0]
        return only.description or f"The fleetmind agent {only.display_name}."
    names = ", ".join(p.display_name for p in members)
    return f"A fleetmind fleet of {len(members)} agents ({names}) that runs tasks as task graphs."


def _version(members: list[AgentProfile]) -> str:
    return str(members[0].version) if len(members) == 1 else __version__


# Card -> profile ------------------------------------------------------------------------------


def profile_from_card(
    card: AgentCard, *, agent_id: str | None = None, tier: Tier | str | None = None
) -> AgentProfile:
    """The fleetmind profile of an A2A agent, read from its Agent Card.

    The card's skills become the profile's skills (with their descriptions, tags and examples;
    a skill's id is added as a tag so that ``skill=`` finds it by id too). The id is a slug of
    the card's name unless ``agent_id`` is given; the tier is ``cloud`` unless ``tier`` says
    otherwise, since a card alone does not tell where the agent runs.

    Raises:
        ConfigError: ``agent_id`` or ``tier`` is not valid.
    """
    if agent_id is not None and not is_valid_id(agent_id):
        raise ConfigError(
            f"agent id {agent_id!r} is not valid: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    try:
        the_tier = Tier(tier) if tier is not None else Tier.CLOUD
    except ValueError:
        raise ConfigError(f"unknown tier {tier!r}; use device, edge or cloud") from None
    return AgentProfile(
        id=agent_id or slug(card.name),
        name=card.name,
        description=card.description,
        skills=_profile_skills(card),
        tier=the_tier,
        version=_card_version(card.version),
    )


def slug(name: str) -> str:
    """A valid agent id made from a display name (``"Translate Bot 2"`` -> ``translate-bot-2``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9._-]+", "-", ascii_name.casefold())
    text = re.sub(r"-{2,}", "-", text).lstrip("._-")[:64].rstrip("._-")
    return text or "a2a-agent"


def _profile_skills(card: AgentCard) -> tuple[Skill, ...]:
    skills: list[Skill] = []
    seen: set[str] = set()
    for remote in card.skills:
        name = remote.name.strip() or remote.id.strip()
        if not name:
            continue
        if name.casefold() in seen:
            # Profiles need unique skill names; a card may repeat a display name.
            name = f"{name} ({remote.id})" if remote.id else f"{name} {len(skills) + 1}"
        seen.add(name.casefold())
        tags = list(dict.fromkeys(t for t in remote.tags if t))
        if remote.id and remote.id != name and remote.id not in tags:
            tags.append(remote.id)
        skills.append(
            Skill(
                name=name,
                description=remote.description,
                tags=tuple(tags),
                examples=tuple(e for e in remote.examples if e),
            )
        )
    return tuple(skills)


def _card_version(version: str) -> int:
    """A card's version as a profile version: its leading (major) number, at least 1."""
    match = re.match(r"\s*v?(\d+)", version)
    return max(int(match.group(1)), 1) if match else 1

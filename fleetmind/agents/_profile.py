"""AgentProfile: what an agent can do, what it costs, and what it must not do.

The profile is the agent's self-description. Routing reads it (skills and tags now; embedded as a
capability vector later), remote agents announce it, and an A2A Agent Card is derived from it.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleetmind._ids import AgentId


class Tier(enum.StrEnum):
    """Where an agent runs: on a small device, on an edge box, or in the cloud."""

    DEVICE = "device"
    EDGE = "edge"
    CLOUD = "cloud"


class Skill(BaseModel):
    """One thing an agent can do, described for people and for routing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


class AgentLimits(BaseModel):
    """What an agent can take on at once, and what data may not leave it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrency: int = Field(default=4, ge=1)
    context_tokens: int | None = Field(default=None, ge=1)
    local_data: tuple[str, ...] = ()
    """Names of data sets that live on this agent's device and must stay there."""


class AgentProfile(BaseModel):
    """An agent's self-description: identity, skills, tier, cost, latency, limits, version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: AgentId
    name: str = ""
    description: str = ""
    skills: tuple[Skill, ...] = ()
    tier: Tier = Tier.DEVICE
    cost_per_call: float = Field(default=0.0, ge=0)
    typical_latency_s: float = Field(default=0.0, ge=0)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    version: int = Field(default=1, ge=1)
    device: str | None = Field(default=None, max_length=64)
    """The device the agent runs on (None: this process). Remote agents get it from their
    device; a subtask's ``device`` constraint routes to the agents of one device."""

    @field_validator("skills")
    @classmethod
    def _unique_skill_names(cls, skills: tuple[Skill, ...]) -> tuple[Skill, ...]:
        names = [s.name for s in skills]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"skill names must be unique; repeated: {', '.join(duplicates)}")
        return skills

    @property
    def display_name(self) -> str:
        """The name to show people: ``name`` when set, otherwise the id."""
        return self.name or self.id

    def offers(self, skill: str) -> bool:
        """Whether a skill name or tag of this agent matches ``skill`` (case-insensitive)."""
        wanted = skill.casefold()
        return any(
            s.name.casefold() == wanted or any(t.casefold() == wanted for t in s.tags)
            for s in self.skills
        )

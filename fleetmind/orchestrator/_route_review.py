"""A language model's second look at a routing decision: pick one of the top candidates, or
refuse.

Embedding similarity finds the agents whose cards are *about* the same things as a subtask; it
cannot tell whether one of them can actually *do* it ("fix the leaking pipe" is close to a
smart-home hub's leak sensor). When a fleet configures a reviewer, the router sends the subtask
and its few best candidates' profiles to the model, which answers with one candidate's id and
a reason, or with no id and the reason none fits. The answer reorders or refuses the decision;
the reason becomes part of the routing explanation (``fleetmind route``, the task log).

The model is asked once per distinct subtask text and candidate list, before the subtask is
dispatched (the engine awaits :meth:`RouteReviewer.review` for new subtasks together, a few at
a time). A model that cannot be reached or answers badly leaves the embedding decision as it
was, with the failure noted: the fleet keeps routing without its reviewer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile, ChatMessage, LLMClient
from fleetmind.errors import FleetmindError

log = logging.getLogger(__name__)

_INSTRUCTIONS = (
    "You check a router's choice in a fleet of software agents. You get one subtask and the "
    "few agents whose profiles match it best. Choose the one agent that can carry out the "
    "subtask itself, as asked, with the skills its profile lists; prefer the more specific "
    "agent when two could. If none of them can do it (the subtask needs something no profile "
    "offers, such as physical work, a skill that is only related, or a different domain), "
    'choose none. Answer with JSON: {"agent": "<one candidate id>" or null, "reason": "<one '
    'short sentence>"}.'
)


class _Answer(BaseModel):
    agent: str | None = None
    reason: str = Field(default="", max_length=500)


@dataclass(frozen=True)
class RouteVerdict:
    """What the reviewer said about one subtask's candidates."""

    agent: str | None
    """The candidate it chose, or None: it refused (or could not answer, see ``failed``)."""
    reason: str
    model: str
    cost: float = 0.0
    tokens: int = 0
    latency_s: float = 0.0
    failed: bool = False
    """The model could not be asked or answered badly; the embedding decision stands."""

    @property
    def refused(self) -> bool:
        """Whether the reviewer said no candidate can do the subtask."""
        return self.agent is None and not self.failed

    def as_dict(self) -> dict[str, object]:
        """For the task log and ``--json`` output."""
        return {
            "agent": self.agent,
            "reason": self.reason,
            "model": self.model,
            "cost": round(self.cost, 8),
            "tokens": self.tokens,
            "failed": self.failed,
        }


class RouteReviewer:
    """Asks a chat model to confirm, change or refuse the router's top candidates.

    Args:
        client: The model to ask (any :class:`LLMClient`; a fleet's cloud tier is typical).
        candidates: How many of the best candidates the model sees.
        max_concurrency: Questions in flight at once.
        max_tokens: Longest answer.
    """

    def __init__(
        self,
        client: LLMClient,
        *,
        candidates: int = 5,
        max_concurrency: int = 4,
        max_tokens: int = 200,
    ) -> None:
        if candidates < 1:
            raise ValueError("a reviewer needs at least one candidate to look at")
        self.client = client
        self.candidates = candidates
        self.max_tokens = max_tokens
        self._gate = asyncio.Semaphore(max_concurrency)
        self.questions = 0
        """Questions asked so far (for cost per routed subtask)."""
        self.cost = 0.0
        self.tokens = 0

    async def review(
        self, subtask: Subtask, candidates: Sequence[str], agents: Mapping[str, AgentProfile]
    ) -> RouteVerdict:
        """The model's verdict on ``subtask`` among the first few ``candidates``."""
        shown = [a for a in candidates[: self.candidates] if a in agents]
        messages = [
            ChatMessage.system(_INSTRUCTIONS),
            ChatMessage.user(_question(subtask, [agents[a] for a in shown])),
        ]
        started = time.perf_counter()
        async with self._gate:
            try:
                answer, completions = await self.client.structured(
                    messages, _Answer, max_tokens=self.max_tokens, temperature=0.0
                )
            except FleetmindError as exc:
                log.warning("route review of subtask %r failed: %s", subtask.id, exc)
                return RouteVerdict(None, f"review failed: {exc}", self._model_name(), failed=True)
        cost = sum(c.cost for c in completions)
        tokens = sum(c.usage.total_tokens for c in completions)
        self.questions += 1
        self.cost += cost
        self.tokens += tokens
        model = completions[-1].model or self._model_name()
        latency = time.perf_counter() - started
        reason = answer.reason.strip() or "no reason given"
        if answer.agent is not None and answer.agent not in shown:
            # An id the model made up is not a refusal: keep the embedding order.
            return RouteVerdict(
                None,
                f"review failed: the model chose {answer.agent!r}, not a candidate",
                model,
                cost,
                tokens,
                latency,
                failed=True,
            )
        return RouteVerdict(answer.agent, reason, model, cost, tokens, latency)

    def _model_name(self) -> str:
        return self.client.model_name or self.client.name


def _question(subtask: Subtask, profiles: Sequence[AgentProfile]) -> str:
    lines = [f"Subtask: {subtask.description or subtask.skill or subtask.id}"]
    constraints = {k: v for k, v in subtask.constraints.items() if k != "weights"}
    if constraints:
        met = json.dumps(constraints)
        lines.append(f"Its requirements (every candidate meets them): {met}")
    lines.append("Candidates:")
    for profile in profiles:
        lines.append(f"- id: {profile.id}")
        lines.append(f"  about: {profile.display_name}. {profile.description}".rstrip())
        for skill in profile.skills:
            examples = "; ".join(skill.examples[:2])
            tail = f" (e.g. {examples})" if examples else ""
            lines.append(f"  skill {skill.name}: {skill.description}{tail}".rstrip())
    return "\n".join(lines)

"""Semantic routing: hard constraints first, then a cost-biased score over capability vectors.

For each subtask the router:

1. honours an explicit agent id (it always wins) or an exact skill name/tag when one is given;
2. applies the hard constraints of the subtask — tier, online, data locality, cost and latency
   ceilings, free concurrency — and records why each excluded agent was excluded;
3. ranks what is left by a weighted score of similarity to the subtask's text, cost, latency,
   current load and the agent's past success on similar subtasks;
4. refuses, with the nearest candidates, when even the best match is below a calibrated
   similarity: no capable agent is better than a wrong one.

Constraints are read from ``Subtask.constraints``: ``tier`` (a tier or a list), ``max_cost``,
``max_latency_s``, ``data`` (data sets that must stay where they are: only agents whose
``limits.local_data`` holds all of them qualify), and ``weights`` (per-subtask score weights).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fleetmind._task_log import (
    AddSubtask,
    SubtaskFinished,
    SubtaskReassigned,
    SubtaskStarted,
    UpdateSubtask,
)
from fleetmind._task_model import Subtask
from fleetmind.agents import AgentProfile
from fleetmind.errors import ConfigError, NoCapableAgent, blames_agent
from fleetmind.orchestrator._capindex import CapabilityIndex
from fleetmind.orchestrator._constraints import (
    Online,
    explicit_candidates,
    tiers_of,
    unsatisfied,
    violation,
)
from fleetmind.orchestrator._embedding import CachedEmbedder, Embedder, SentenceEmbedder
from fleetmind.orchestrator._route_review import RouteReviewer, RouteVerdict
from fleetmind.orchestrator._router import Router, RouterContext, RoutingDecision
from fleetmind.orchestrator._store import Store

DEFAULT_MIN_SIMILARITY = 0.24
"""The refusal threshold for an embedder fleetmind does not know (the packaged models carry
their own calibrated ``refusal_similarity``)."""


@dataclass(frozen=True)
class RoutingWeights:
    """How much each part of the score counts. Similarity dominates; the rest break near-ties.

    ``support`` weighs the second-best similarity among the agent's texts (see
    ``CapabilityMatch``): on the labeled benchmark, counting it at half the best lifts top-1 by
    four to five points with either model.
    Cost and latency enter as ``log1p`` of dollars and seconds, load as the busy fraction of
    the agent's slots, success as the (smoothed) success rate on similar past subtasks minus
    one half. The defaults are small on purpose: on the labeled routing benchmark, heavier cost
    and latency weights cost 2-3 points of top-1 accuracy (0.5 / 0.02: 53.6% vs 55.6%).
    """

    similarity: float = 1.0
    support: float = 0.5
    cost: float = 0.1
    latency: float = 0.002
    load: float = 0.05
    success: float = 0.1

    def merged(self, overrides: Mapping[str, Any] | None) -> RoutingWeights:
        """These weights with a subtask's overrides applied."""
        if not overrides:
            return self
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown routing weight(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: float(v) for k, v in overrides.items()})


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One candidate's score and its parts."""

    agent_id: str
    score: float
    similarity: float
    via: str
    support: float
    cost: float
    latency_s: float
    load: float
    success_rate: float


@dataclass
class _Outcomes:
    vectors: list[np.ndarray] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)


class OutcomeHistory:
    """Which agent succeeded or failed on which kind of subtask (by the subtask's vector)."""

    def __init__(self, neighbourhood: float = 0.6) -> None:
        self._by_agent: dict[str, _Outcomes] = {}
        self._neighbourhood = neighbourhood
        self._lock = threading.Lock()

    def record(self, agent_id: str, vector: np.ndarray, ok: bool) -> None:
        """Remember one outcome."""
        with self._lock:
            entry = self._by_agent.setdefault(agent_id, _Outcomes())
            entry.vectors.append(vector)
            entry.ok.append(ok)

    def success_rate(self, agent_id: str, vector: np.ndarray) -> float:
        """Smoothed success rate on past subtasks similar to ``vector`` (0.5 with no history)."""
        with self._lock:
            entry = self._by_agent.get(agent_id)
            if entry is None or not entry.vectors:
                return 0.5
            sims = np.stack(entry.vectors) @ vector
            near = sims >= self._neighbourhood
            successes = int(np.count_nonzero(np.asarray(entry.ok)[near]))
            return (successes + 1) / (int(np.count_nonzero(near)) + 2)


class SemanticRouter(Router):
    """Routes subtasks to agents by what they say they can do, under hard constraints.

    Args:
        embedder: Embeds capability texts and subtasks; defaults to the packaged
            ``embedding_model``, cached on disk under ``data_dir`` when one is given.
        embedding_model: Which packaged model the default embedder uses (a name or alias:
            ``all-mpnet-base-v2``, the default, or ``all-MiniLM-L6-v2``, the light one);
            default ``FLEETMIND_EMBEDDING_MODEL``.
        data_dir: Where the embedding cache and the persisted index live.
        weights: Score weights for the fleet (a subtask may override them).
        min_similarity: Below this best similarity, routing refuses the subtask.
        top_k: How many nearest agents are considered before constraints are applied.
        reviewer: A language model that checks the top candidates of subtasks routed by
            their words, picking one or refusing with a reason (see ``RouteReviewer``).
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        embedding_model: str | None = None,
        data_dir: str | Path | None = None,
        weights: RoutingWeights | None = None,
        min_similarity: float | None = None,
        top_k: int = 32,
        reviewer: RouteReviewer | None = None,
    ) -> None:
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self.data_dir = self._data_dir
        if embedder is None:
            embedder = SentenceEmbedder(embedding_model)
        elif embedding_model is not None:
            raise ConfigError("give either an embedder or an embedding_model, not both")
        self._base_embedder = embedder
        if self._data_dir is not None and not isinstance(embedder, CachedEmbedder):
            embedder = CachedEmbedder(embedder, self._data_dir / "embeddings.db")
        self.embedder: Embedder = embedder
        self.weights = weights or RoutingWeights()
        calibrated = embedder.refusal_similarity
        self.min_similarity = (
            min_similarity
            if min_similarity is not None
            else calibrated
            if calibrated is not None
            else DEFAULT_MIN_SIMILARITY
        )
        self.top_k = top_k
        self.reviewer = reviewer
        self._verdicts: dict[str, RouteVerdict] = {}
        self.history = OutcomeHistory()
        self._index: CapabilityIndex | None = None
        self._profiles: dict[str, AgentProfile] = {}
        self._stale: dict[str, AgentProfile] = {}
        self._removed: set[str] = set()
        self._queries: dict[str, np.ndarray] = {}
        self._past: Store | None = None
        self._load_of: Callable[[str], tuple[int, int]] | None = None
        self._online: Online | None = None
        self._lock = threading.RLock()

    @property
    def base_embedder(self) -> Embedder:
        """The embedder as given, without the router's on-disk cache around it."""
        return self._base_embedder

    def with_data_dir(self, data_dir: str | Path) -> SemanticRouter:
        """The same router, caching embeddings and persisting its index under ``data_dir``."""
        router = SemanticRouter(
            self._base_embedder,
            data_dir=data_dir,
            weights=self.weights,
            min_similarity=self.min_similarity,
            top_k=self.top_k,
            reviewer=self.reviewer,
        )
        router.agents_changed(added=list(self._profiles.values()))
        return router

    # Fleet membership (called by the Fleet) ---------------------------------------------------

    def bind(self, context: RouterContext) -> None:
        """Where the router reads agents' load, presence (remote agents) and past outcomes."""
        self._load_of = context.load_of
        self._online = context.online
        self._past = context.store

    def _learn_from_store(self, recent_tasks: int = 200) -> None:
        """Seed the outcome history from the store's recent tasks (once, on first need)."""
        store, self._past = self._past, None
        if store is None:
            return
        outcomes: list[tuple[str, str, bool]] = []
        for record in store.tasks(recent_tasks):
            _, entries = store.load(record.id)
            subtasks: dict[str, Subtask] = {}
            agents: dict[str, str] = {}
            for entry in entries:
                if isinstance(entry, AddSubtask | UpdateSubtask):
                    subtasks[entry.subtask.id] = entry.subtask
                elif isinstance(entry, SubtaskStarted):
                    agents[entry.subtask_id] = entry.agent
                elif isinstance(entry, SubtaskReassigned):
                    text = query_text(subtasks[entry.subtask_id])
                    outcomes.append((text, entry.agent, False))
                elif isinstance(entry, SubtaskFinished) and entry.subtask_id in agents:
                    if not blames_agent(entry.error or {}):
                        continue  # no agent could have done better: nothing to learn
                    text = query_text(subtasks[entry.subtask_id])
                    outcomes.append((text, agents[entry.subtask_id], entry.status == "done"))
        outcomes = [o for o in outcomes if o[0]]
        if not outcomes:
            return
        texts = list(dict.fromkeys(text for text, _, _ in outcomes))
        vectors = dict(zip(texts, self.embedder.embed(texts), strict=True))
        for text, agent_id, ok in outcomes:
            self.history.record(agent_id, vectors[text], ok)

    def agents_changed(
        self, added: Sequence[AgentProfile] = (), removed: Sequence[str] = ()
    ) -> None:
        """Agents joined, changed version, or left. Embedding waits until a query needs it."""
        with self._lock:
            for agent_id in removed:
                self._profiles.pop(agent_id, None)
                self._stale.pop(agent_id, None)
                self._removed.add(agent_id)
            for profile in added:
                self._profiles[profile.id] = profile
                self._stale[profile.id] = profile
                self._removed.discard(profile.id)

    @property
    def index(self) -> CapabilityIndex:
        """The capability index, brought up to date with the fleet (embeds what changed)."""
        with self._lock:
            if self._index is None:
                self._index = self._open_index()
            if self._removed:
                for agent_id in self._removed:
                    self._index.remove(agent_id)
                self._removed.clear()
            if self._stale:
                stale, self._stale = list(self._stale.values()), {}
                self._index.upsert(stale)
            return self._index

    def _open_index(self) -> CapabilityIndex:
        if self._data_dir is not None:
            index = CapabilityIndex.load(self._data_dir / "capability-index", self.embedder)
            for agent_id in [a for a in list(index._agents) if a not in self._profiles]:
                index.remove(agent_id)
            return index
        return CapabilityIndex(self.embedder)

    def save(self) -> None:
        """Persist the index beside the store (when the router has a data directory)."""
        if self._data_dir is not None and self._index is not None:
            self.index.save(self._data_dir / "capability-index")

    def prepare(self, subtasks: Sequence[Subtask]) -> None:
        """Embed the texts of many subtasks in one batch before they are routed."""
        texts = [
            t for t in (query_text(s) for s in subtasks if s.agent is None and s.skill is None) if t
        ]
        missing = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if missing and self._needs_semantics(subtasks):
            for text, vector in zip(missing, self.embedder.embed(missing), strict=True):
                self._queries[text] = vector

    def _needs_semantics(self, subtasks: Sequence[Subtask]) -> bool:
        """Whether some subtask will be matched by its text (so embedding them is worth it)."""
        return any(s.agent is None and s.skill is None for s in subtasks)

    def _query_vector(self, text: str) -> np.ndarray:
        vector = self._queries.get(text)
        if vector is None:
            vector = self.embedder.embed([text])[0]
            self._queries[text] = vector
        return vector

    # Routing ----------------------------------------------------------------------------------

    def route(self, subtask: Subtask, agents: Mapping[str, AgentProfile]) -> RoutingDecision:
        decision = self._route_unreviewed(subtask, agents)
        if subtask.agent is None and subtask.skill is None:
            return self._reviewed(subtask, decision)  # routed by its words: a model may check
        return decision

    def _route_unreviewed(
        self, subtask: Subtask, agents: Mapping[str, AgentProfile]
    ) -> RoutingDecision:
        if subtask.agent is not None:
            named, ruled_out = explicit_candidates(subtask, agents, self._online)
            if len(named) == 1:
                return RoutingDecision((named[0],), ruled_out)
            # The same agent on several devices: the score orders them.
            constraints = dict(subtask.constraints)
            weights = self.weights.merged(constraints.pop("weights", None))
            pool = dict.fromkeys(named, 1.0)
            vias = dict.fromkeys(named, "agent")
            decision = self._rank(
                subtask, agents, pool, pool, vias, constraints, weights, None, named
            )
            return replace(decision, excluded={**ruled_out, **decision.excluded})
        constraints = dict(subtask.constraints)
        weights = self.weights.merged(constraints.pop("weights", None))
        exact = self._exact_skill(subtask, agents)
        if subtask.skill is not None and exact is None:
            # A named skill is a requirement, like an agent id: nobody offering it is an
            # error, not an invitation to guess.
            reason = f"no agent in the fleet offers skill {subtask.skill!r}"
            raise NoCapableAgent(
                f"{reason} (needed by subtask {subtask.id!r})", details={"reason": reason}
            )
        text = query_text(subtask)
        if exact is not None:
            # The skill was named: every agent offering it matches fully, and cost, latency,
            # load and past success order them. No embedding is needed.
            pool = dict.fromkeys(exact, 1.0)
            support = pool
            vias = dict.fromkeys(exact, f"skill:{subtask.skill}")
            vector = None
        else:
            if not text:
                reason = "it has no description, agent or skill to route by"
                raise NoCapableAgent(
                    f"subtask {subtask.id!r}: {reason}", details={"reason": reason}
                )
            tiers = tiers_of(constraints.get("tier"))  # a bad tier fails before any embedding
            vector = self._query_vector(text)
            index = self.index
            k = self.top_k
            while True:
                # Widen the search until some agent passes the constraints, or all were seen.
                matches = index.search(vector, k=k, tiers=tiers)
                pool = {m.agent_id: m.similarity for m in matches if m.agent_id in agents}
                support = {m.agent_id: m.support for m in matches}
                vias = {m.agent_id: m.via for m in matches}
                if len(matches) < k or any(
                    violation(agents[a], constraints, self._online) is None for a in pool
                ):
                    break
                k *= 8
        return self._rank(subtask, agents, pool, support, vias, constraints, weights, vector, exact)

    # Review by a language model -----------------------------------------------------------------

    async def review(self, subtasks: Sequence[Subtask], agents: Mapping[str, AgentProfile]) -> None:
        """Have the reviewer (when the router has one) judge the candidates of subtasks that
        are routed by their words; :meth:`route` applies the verdicts from then on.

        A verdict holds for the same words, requirements and shortlist: when agents join or
        leave and the shortlist changes, the model is asked again (a refusal does not outlive
        an agent that can do the work); a failed review is asked again next time."""
        if self.reviewer is None:
            return
        reviewer = self.reviewer
        todo: dict[str, tuple[Subtask, tuple[str, ...]]] = {}
        for subtask in subtasks:
            if subtask.agent is not None or subtask.skill is not None:
                continue
            try:
                decision = self._route_unreviewed(subtask, agents)
            except (NoCapableAgent, ConfigError):
                continue  # refused or invalid already: the engine reports it when it routes
            key = _review_key(subtask, decision.candidates[: reviewer.candidates])
            known = self._verdicts.get(key)
            if (known is not None and not known.failed) or key in todo:
                continue
            todo[key] = (subtask, decision.candidates)

        async def one(key: str, subtask: Subtask, candidates: tuple[str, ...]) -> None:
            self._verdicts[key] = await reviewer.review(subtask, candidates, agents)

        async with asyncio.TaskGroup() as group:
            for key, (subtask, candidates) in todo.items():
                group.create_task(one(key, subtask, candidates))

    def _reviewed(self, subtask: Subtask, decision: RoutingDecision) -> RoutingDecision:
        """The decision with the reviewer's verdict on this subtask applied, if it has one."""
        if not self._verdicts or self.reviewer is None:
            return decision
        shown = decision.candidates[: self.reviewer.candidates]
        verdict = self._verdicts.get(_review_key(subtask, shown))
        if verdict is None:
            return decision
        if verdict.refused:
            reason = (
                f"the {verdict.model} reviewer refused its candidates "
                f"({', '.join(shown[:3])}): {verdict.reason}"
            )
            raise NoCapableAgent(
                f"no capable agent for subtask {subtask.id!r}: {reason}",
                details={"reason": reason, "review": verdict.as_dict()},
            )
        candidates = decision.candidates
        scores = decision.scores
        if verdict.agent in candidates:
            candidates = (verdict.agent, *(a for a in candidates if a != verdict.agent))
            scores = tuple(sorted(scores, key=lambda s: 0 if s.agent_id == verdict.agent else 1))
        return replace(decision, candidates=candidates, scores=scores, review=verdict.as_dict())

    def _exact_skill(
        self, subtask: Subtask, agents: Mapping[str, AgentProfile] | None = None
    ) -> list[str] | None:
        if subtask.skill is None:
            return None
        profiles = agents if agents is not None else self._profiles
        offering = [a.id for a in profiles.values() if a.offers(subtask.skill)]
        return offering or None

    def _rank(
        self,
        subtask: Subtask,
        agents: Mapping[str, AgentProfile],
        pool: dict[str, float],
        support: dict[str, float],
        vias: dict[str, str],
        constraints: dict[str, Any],
        weights: RoutingWeights,
        vector: np.ndarray | None,
        exact: list[str] | None,
    ) -> RoutingDecision:
        excluded: dict[str, str] = {}
        allowed: list[str] = []
        for agent_id in sorted(pool, key=lambda a: -pool[a]):
            reason = violation(agents[agent_id], constraints, self._online)
            if reason is None:
                allowed.append(agent_id)
            else:
                excluded[agent_id] = reason
        # Free concurrency: busy agents give way while some candidate has a free slot.
        if self._load_of is not None and allowed:
            free = [a for a in allowed if _busy(self._load_of(a)) < 1.0]
            if free and len(free) < len(allowed):
                for agent_id in allowed:
                    if agent_id not in free:
                        excluded[agent_id] = "no free slot (every slot is busy)"
                allowed = free
        if not allowed:
            if excluded:
                raise unsatisfied(subtask, excluded)
            if not agents:
                reason = "the fleet has no agents"
            else:
                tiers = tiers_of(constraints.get("tier"))
                reason = (
                    f"the fleet has no {'/'.join(t.value for t in tiers)}-tier agent"
                    if tiers
                    else "no agent matched it"
                )
            raise NoCapableAgent(
                f"no capable agent for subtask {subtask.id!r}: {reason}",
                details={"reason": reason, "excluded": excluded},
            )
        best_similarity = max(pool[a] for a in allowed)
        if exact is None and best_similarity < self.min_similarity:
            nearest = ", ".join(f"{a} ({pool[a]:.2f})" for a in allowed[:3])
            reason = (
                f"no agent's profile is close enough (best similarity {best_similarity:.2f}, "
                f"below {self.min_similarity:.2f}); nearest: {nearest}"
            )
            raise NoCapableAgent(
                f"no capable agent for subtask {subtask.id!r}: {reason}",
                details={
                    "reason": reason,
                    "nearest": {a: pool[a] for a in allowed[:3]},
                    "excluded": excluded,
                },
            )
        scores = [
            self._score(
                agents[a], pool[a], support.get(a, pool[a]), vias.get(a, ""), weights, vector
            )
            for a in allowed
        ]
        scores.sort(key=lambda s: -s.score)
        return RoutingDecision(
            tuple(s.agent_id for s in scores),
            excluded,
            scores=tuple(scores[:10]),
        )

    def _score(
        self,
        profile: AgentProfile,
        similarity: float,
        support: float,
        via: str,
        weights: RoutingWeights,
        vector: np.ndarray | None,
    ) -> CandidateScore:
        load = _busy(self._load_of(profile.id)) if self._load_of is not None else 0.0
        if vector is not None and self._past is not None:
            self._learn_from_store()
        success = self.history.success_rate(profile.id, vector) if vector is not None else 0.5
        score = (
            weights.similarity * similarity
            + weights.support * support
            - weights.cost * math.log1p(profile.cost_per_call)
            - weights.latency * math.log1p(profile.typical_latency_s)
            - weights.load * load
            + weights.success * (success - 0.5)
        )
        return CandidateScore(
            profile.id,
            score,
            similarity,
            via,
            support,
            profile.cost_per_call,
            profile.typical_latency_s,
            load,
            success,
        )

    def observe(self, subtask: Subtask, agent_id: str, ok: bool) -> None:
        """Learn from an outcome: it shapes the agent's success rate on similar subtasks."""
        text = query_text(subtask)
        vector = self._queries.get(text) if text else None
        if vector is not None:
            self.history.record(agent_id, vector, ok)


def _review_key(subtask: Subtask, shortlist: Sequence[str]) -> str:
    """Subtasks with the same words and requirements, and the same shortlist, get the same
    verdict."""
    constraints = json.dumps(subtask.constraints, sort_keys=True, default=str)
    return f"{query_text(subtask)}\0{constraints}\0{','.join(shortlist)}"


def query_text(subtask: Subtask) -> str:
    """What a subtask is matched by: its description, else its skill."""
    return (subtask.description or subtask.skill or "").strip()


def _busy(load: tuple[int, int]) -> float:
    in_use, limit = load
    return in_use / limit if limit else 1.0

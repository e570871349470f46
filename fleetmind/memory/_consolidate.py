"""Consolidation: what recurs across episodes becomes a fact.

One episode is an anecdote; the same request handled the same way in several tasks is
knowledge ("summarising a log is done by pi-2, 4 of 5 times successfully"). Consolidation
groups similar episodes of the same kind and namespace that come from at least two tasks and
states each group as one *recurring fact*, with every episode in its provenance. A later
episode like a group's members joins the group, and the fact is restated (the older version
stays in its history). Nothing here calls a model: the fact is the group's most central
episode, prefixed with how often it recurred and how it ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fleetmind.memory._items import StoredItem

RECURRING_KIND = "recurring"
"""The ``kind`` of a fact made by consolidation (its ``key`` names its group)."""
_CLIP = 600


@dataclass
class Group:
    """Similar episodes that recur; ``key`` is stable while the group grows."""

    key: str
    episode_ids: list[str]


def group_recurring(
    pending: Sequence[StoredItem],
    neighbours: Callable[[StoredItem], list[StoredItem]],
    groups: dict[str, Group],
    *,
    min_episodes: int,
) -> set[str]:
    """Put each pending episode in a group (an existing one a neighbour belongs to, or a new
    one of ungrouped neighbours); return the keys of the groups that changed."""
    member_of = {eid: g.key for g in groups.values() for eid in g.episode_ids}
    changed: set[str] = set()
    for episode in pending:
        if episode.id in member_of:
            continue
        near = neighbours(episode)
        joined = next((member_of[n.id] for n in near if n.id in member_of), None)
        if joined is not None:
            groups[joined].episode_ids.append(episode.id)
            member_of[episode.id] = joined
            changed.add(joined)
            continue
        free = [episode, *(n for n in near if n.id not in member_of)]
        tasks = {e.task_id or e.id for e in free}
        if len(free) >= min_episodes and len(tasks) >= 2:
            key = f"{RECURRING_KIND}:{episode.id}"
            groups[key] = Group(key, [e.id for e in free])
            member_of.update((e.id, key) for e in free)
            changed.add(key)
    return changed


def central(episodes: Sequence[StoredItem], vectors: np.ndarray) -> StoredItem:
    """The episode most similar, on average, to the others (the group's best wording)."""
    similarity = vectors @ vectors.T
    return episodes[int(np.argmax(similarity.sum(axis=1)))]


def recurring_text(episodes: Sequence[StoredItem], representative: StoredItem) -> str:
    """The fact a group states: how often, how it ended, who acted, and what happened."""
    tasks = len({e.task_id or e.id for e in episodes})
    outcomes = Counter(e.outcome or "unknown" for e in episodes)
    agents = Counter(e.agent_id for e in episodes if e.agent_id)
    ended = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.most_common())
    by = f"; agents: {', '.join(a for a, _ in agents.most_common(5))}" if agents else ""
    body = representative.text
    if len(body) > _CLIP:
        body = body[:_CLIP] + "…"
    how_often = f"recurs in {len(episodes)} {representative.kind} episodes over {tasks} tasks"
    return f"{how_often} ({ended}{by}): {body}"

"""Training and scoring step routers: from files of model outcomes, or from the fleet's own
recorded steps.

This is where a learned router meets the embedding model the orchestrator ships (the agents
room cannot import it): rows are featurised here, fitted with ``fit_step_router``, and scored
with one protocol that ``fleetmind router eval`` and ``benchmarks/step_routing.py`` share —
train on some groups of prompts (MMLU domains), score the others, never a prompt twice.

Labels follow Hera's imitation stage: a state needs the cloud when the device model's action
would not match the cloud's — on outcome files, when the cloud model was right and the device
model was not; on recorded steps, when a shadowed step's two models disagreed, or a device
step failed (an escalated draft, an invalid answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from fleetmind._task_log import SubtaskFinished, SubtaskProgressed
from fleetmind.agents import (
    DRAFT_FEATURES,
    STRUCTURAL_FEATURES,
    LearnedStepRouter,
    OutcomeSet,
    StepRecord,
    StepRouterModel,
    draft_features,
    fit_step_router,
    hashed_matrix,
    hashed_ngrams,
    prompt_state,
    structural_features,
)
from fleetmind.orchestrator._embedding import CachedEmbedder, Embedder, SentenceEmbedder
from fleetmind.orchestrator._store import Store

TextFeatures = Literal["none", "hashed", "embedding"]


@dataclass
class StepRows:
    """Featurised rows: numeric features, optional text features, labels (True: needs cloud)."""

    numeric: np.ndarray
    text: np.ndarray | None
    labels: np.ndarray
    text_kind: str = "none"

    def take(self, mask: np.ndarray) -> StepRows:
        return StepRows(
            self.numeric[mask],
            None if self.text is None else self.text[mask],
            self.labels[mask],
            self.text_kind,
        )


def embedder_for(model: str | None = None, cache: str | Path | None = None) -> Embedder:
    """The orchestrator's sentence embedder (the default model unless named), optionally with
    an on-disk cache of embeddings (re-scoring a file of thousands of prompts is then free)."""
    inner = SentenceEmbedder(model)
    return CachedEmbedder(inner, cache) if cache is not None else inner


def _text_kind(text: TextFeatures, embedder: Embedder | None) -> str:
    if text == "embedding":
        return f"embedding:{embedder.name if embedder is not None else 'all-mpnet-base-v2'}"
    return text


def _text_matrix(
    texts: Sequence[str], text: TextFeatures, embedder: Embedder | None
) -> np.ndarray | None:
    if text == "none":
        return None
    if text == "hashed":
        return hashed_matrix([hashed_ngrams(t) for t in texts])
    if embedder is None:
        raise ValueError("embedding features need an embedder")
    return np.asarray(embedder.embed(list(texts)), dtype=np.float32)


def outcome_rows(
    outcomes: OutcomeSet, *, text: TextFeatures = "embedding", embedder: Embedder | None = None
) -> StepRows:
    """One row per prompt: the prompt as a one-step state; label: cloud right, device not."""
    numeric = np.array(
        [
            [structural_features(prompt_state(p))[f] for f in STRUCTURAL_FEATURES]
            for p in outcomes.prompts
        ]
    )
    return StepRows(
        numeric,
        _text_matrix(outcomes.prompts, text, embedder),
        outcomes.cloud_ok & ~outcomes.device_ok,
        _text_kind(text, embedder),
    )


def draft_rows(outcomes: OutcomeSet) -> StepRows:
    """One row per prompt with the device model's answer as the draft; label: the draft is
    wrong (what a cascade must catch)."""
    if outcomes.device_responses is None:
        raise ValueError("these outcomes hold no device responses to read as drafts")
    numeric = np.array(
        [
            [draft_features(r, p)[f] for f in DRAFT_FEATURES]
            for r, p in zip(outcomes.device_responses, outcomes.prompts, strict=True)
        ]
    )
    return StepRows(numeric, None, ~outcomes.device_ok, "none")


def train_step_router(
    rows: StepRows,
    *,
    kind: Literal["step", "draft"] = "step",
    cloud_share: float = 0.4,
    l2: float | None = None,
    source: str = "",
) -> StepRouterModel:
    """Fit a router on featurised rows (``l2`` default: stronger with text features)."""
    strength = l2 if l2 is not None else (10.0 if rows.text is not None else 1.0)
    return fit_step_router(
        rows.numeric,
        rows.labels,
        kind=kind,
        features=STRUCTURAL_FEATURES if kind == "step" else DRAFT_FEATURES,
        text=rows.text,
        text_kind=rows.text_kind,
        cloud_share=cloud_share,
        l2=strength,
        trained_on={"source": source} if source else None,
    )


def held_out_scores(
    rows: StepRows,
    groups: Sequence[str],
    *,
    seed: int = 0,
    kind: Literal["step", "draft"] = "step",
) -> tuple[np.ndarray, np.ndarray]:
    """Train on a seeded half of the groups, score the other half.

    Returns (scores of the held-out rows, mask of those rows). With one group only, the rows
    themselves are split in two halves, each scored by a model trained on the other.
    """
    names = sorted(set(groups))
    group_of = np.asarray(groups)
    rng = np.random.default_rng(seed)
    if len(names) > 1:
        order = list(names)
        rng.shuffle(order)
        train = np.isin(group_of, order[: len(order) // 2])
        model = train_step_router(rows.take(train), kind=kind)
        test = ~train
        return model.scores(
            rows.numeric[test], None if rows.text is None else rows.text[test]
        ), test
    index = rng.permutation(len(group_of))
    half = np.zeros(len(group_of), dtype=bool)
    half[index[: len(index) // 2]] = True
    scores = np.zeros(len(group_of))
    for fit_on in (half, ~half):
        model = train_step_router(rows.take(fit_on), kind=kind)
        score_on = ~fit_on
        text = None if rows.text is None else rows.text[score_on]
        scores[score_on] = model.scores(rows.numeric[score_on], text)
    return scores, np.ones(len(group_of), dtype=bool)


# From the store ----------------------------------------------------------------------------


def recorded_step_rows(store: Store, *, limit: int = 10_000) -> StepRows:
    """Rows from the steps LLM agents recorded in ``store`` (their hashed text features).

    Labelled: a shadowed step (both models answered) by whether the two disagreed; a device
    step by its outcome — an escalated draft or an invalid answer needed the cloud; a step of
    a subtask that finished done did not. Other steps (cloud steps without a shadow, steps of
    failed subtasks) teach nothing about the device and are skipped.
    """
    numeric: list[list[float]] = []
    buckets: list[tuple[int, ...]] = []
    labels: list[bool] = []
    for record in store.tasks(limit=limit):
        _, entries = store.load(record.id)
        finished = {e.subtask_id: e.status for e in entries if isinstance(e, SubtaskFinished)}
        for entry in entries:
            if not isinstance(entry, SubtaskProgressed) or not entry.step:
                continue
            step = StepRecord.from_dict(entry.step)
            label = _label(step, finished.get(entry.subtask_id))
            if label is None or not step.features:
                continue
            numeric.append([float(step.features.get(f, 0.0)) for f in STRUCTURAL_FEATURES])
            buckets.append(step.text_buckets)
            labels.append(label)
    return StepRows(
        np.array(numeric, dtype=np.float64).reshape(-1, len(STRUCTURAL_FEATURES)),
        hashed_matrix(buckets),
        np.array(labels, dtype=bool),
        "hashed",
    )


def _label(step: StepRecord, finished: str | None) -> bool | None:
    if step.outcome == "shadow":
        return None  # the shadowed step's own record carries the label
    if step.agreement is not None:
        return not step.agreement
    if step.tier != "device":
        return None
    if step.outcome in ("escalated", "error"):
        return True
    if finished == "done":
        return False
    return None


def load_step_router(
    path: str | Path,
    *,
    cloud_share: float | None = None,
    embedder: Embedder | None = None,
) -> LearnedStepRouter:
    """A learned router from its file, with the embedder its text features need."""
    model = StepRouterModel.load(path)
    wanted = model.needs_embedder
    if wanted is not None and embedder is None:
        embedder = SentenceEmbedder(wanted)
    return LearnedStepRouter(model, embedder=embedder, cloud_share=cloud_share)


def labeled_rows_from(values: Iterable[tuple[str, bool]]) -> OutcomeSet:
    """An outcome set from (prompt, needs cloud) pairs (a file of labeled rows)."""
    prompts, needs = [], []
    for prompt, label in values:
        prompts.append(prompt)
        needs.append(bool(label))
    wanted = np.array(needs, dtype=bool)
    return OutcomeSet(
        prompts=prompts,
        device_ok=~wanted,
        cloud_ok=np.ones(len(prompts), dtype=bool),
        groups=["rows"] * len(prompts),
    )

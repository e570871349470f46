"""Single steps in benchmarks/step_routing.py: embeddings and features of the prompts, the
learned routers and their variations on held-out MMLU domains and GSM8K, cascades, and costs."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleetmind.agents import (
    OutcomeSet,
    RoutingCurve,
    default_draft_model,
    hashed_matrix,
    hashed_ngrams,
    routing_curve,
)
from fleetmind.orchestrator import (
    CachedEmbedder,
    SentenceEmbedder,
    StepRows,
    draft_rows,
    held_out_scores,
    outcome_rows,
    train_step_router,
)

GOAL_APGR = 0.65

L2_GRID = (1.0, 10.0, 100.0, 1000.0, 10000.0)
"""L2 strengths the cross-validated variation chooses from (on the training domains only)."""
INNER_FOLDS = 3
EMBED_CHUNK = 256

_START = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _START:6.0f} s] {message}", file=sys.stderr, flush=True)


# Embeddings ----------------------------------------------------------------------------------


class ProgressEmbedder:
    """Embeds in chunks of similar length (little padding), reporting progress on stderr;
    every chunk goes through the on-disk cache, so an interrupted first run keeps its work."""

    def __init__(self, inner: Any, label: str = "") -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.label = label

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        started = time.monotonic()
        last = 0.0
        for start in range(0, len(order), EMBED_CHUNK):
            index = order[start : start + EMBED_CHUNK]
            out[index] = self.inner.embed([texts[i] for i in index])
            done = min(start + EMBED_CHUNK, len(order))
            now = time.monotonic()
            if now - last > 15 or done == len(order):
                last = now
                hits = getattr(self.inner, "hits", None)
                cached = f", {hits} from the cache so far" if hits is not None else ""
                progress(
                    f"embedding {self.label} with {self.name}: {done}/{len(order)} "
                    f"({now - started:.0f} s{cached})"
                )
        return out


def make_embedder(model: str, cache: Path | None) -> Any:
    """What ``embedder_for(model, cache)`` builds, with batches of 16 (faster than 64 on a
    CPU for prompts of a few hundred tokens)."""
    inner = SentenceEmbedder(model, batch_size=16)
    return CachedEmbedder(inner, cache) if cache is not None else inner


# Features ------------------------------------------------------------------------------------


def featurise(outcomes: OutcomeSet, embedder: Any, label: str) -> dict[str, StepRows]:
    """The rows ``outcome_rows`` makes for each text kind, with the structural features
    computed once and shared."""
    progress(f"structural features of {len(outcomes)} {label} prompts")
    base = outcome_rows(outcomes, text="none")
    progress(f"hashed n-grams of {label}")
    hashed = hashed_matrix([hashed_ngrams(p) for p in outcomes.prompts])
    vectors = ProgressEmbedder(embedder, label).embed(outcomes.prompts)
    return {
        "struct": base,
        "hashed": StepRows(base.numeric, hashed, base.labels, "hashed"),
        "embedding": StepRows(base.numeric, vectors, base.labels, f"embedding:{embedder.name}"),
    }


def domain_split(groups: Sequence[str], seed: int) -> np.ndarray:
    """The training half of ``held_out_scores``: a seeded half of the sorted group names."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = list(names)
    rng.shuffle(order)
    return np.isin(np.asarray(groups), order[: len(order) // 2])


def scores_of(model: Any, rows: StepRows, mask: np.ndarray | None = None) -> np.ndarray:
    if mask is None:
        return model.scores(rows.numeric, rows.text)
    return model.scores(rows.numeric[mask], None if rows.text is None else rows.text[mask])


def with_labels(rows: StepRows, labels: np.ndarray) -> StepRows:
    return StepRows(rows.numeric, rows.text, labels, rows.text_kind)


def choose_l2(
    rows: StepRows,
    groups: np.ndarray,
    device_ok: np.ndarray,
    cloud_ok: np.ndarray,
    seed: int,
) -> tuple[float, dict[str, float]]:
    """The L2 strength with the best mean APGR over folds of the training domains."""
    names = np.array(sorted(set(groups.tolist())))
    folds = np.array_split(np.random.default_rng(seed).permutation(names), INNER_FOLDS)
    means: dict[str, float] = {}
    for l2 in L2_GRID:
        values = []
        for fold in folds:
            hold = np.isin(groups, fold)
            model = train_step_router(rows.take(~hold), l2=l2)
            curve = routing_curve(scores_of(model, rows, hold), device_ok[hold], cloud_ok[hold])
            values.append(curve.apgr)
        means[f"{l2:g}"] = float(np.mean(values))
    best = max(L2_GRID, key=lambda v: means[f"{v:g}"])
    return best, means


# Single step ---------------------------------------------------------------------------------

POLICIES: dict[str, str] = {
    "random": "random (expected)",
    "oracle": "oracle",
    "struct": "learned, structural features",
    "hashed": "learned + hashed n-grams",
    "embedding": "learned + embeddings",
    "emb_cv": "extra: embeddings, L2 by inner CV",
    "emb_gain": "extra: embeddings, expected-gain score",
    "cascade_default": "cascade, hand-set draft signs",
    "cascade_learned": "cascade, learned draft model",
}
LEARNED = ("struct", "hashed", "embedding")
EXTRAS = ("emb_cv", "emb_gain")
CASCADES = ("cascade_default", "cascade_learned")


def figures(curve: RoutingCurve) -> dict[str, float]:
    return {"apgr": curve.apgr, "cpt50": curve.cpt(0.5), "cpt80": curve.cpt(0.8)}


def summary(values: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("apgr", "cpt50", "cpt80"):
        column = np.array([v[key] for v in values], dtype=np.float64)
        out[key] = {
            "mean": float(np.mean(column)),
            "sd": float(np.std(column, ddof=1)) if column.size > 1 else 0.0,
            "per_seed": column.tolist(),
        }
    return out


def sampled(curve: RoutingCurve, points: int = 101) -> dict[str, list[float]]:
    shares = np.linspace(0, 1, points)
    return {
        "cloud_share": shares.round(4).tolist(),
        "accuracy": [round(curve.accuracy_at(s), 5) for s in shares],
    }


@dataclass
class SingleStep:
    per_seed: dict[str, dict[str, list[dict[str, float]]]]
    curves: dict[str, dict[str, RoutingCurve]]  # first seed
    chosen_l2: list[float]
    inner_cv: list[dict[str, float]]
    pool_scores: dict[str, dict[str, np.ndarray]]  # first seed: mmlu held-out, gsm8k
    pool_mask: np.ndarray  # first seed's held-out MMLU rows


def single_step(
    mmlu: OutcomeSet,
    gsm: OutcomeSet,
    rows: dict[str, StepRows],
    gsm_rows: dict[str, StepRows],
    seeds: Sequence[int],
) -> SingleStep:
    groups = np.asarray(mmlu.groups)
    drafts = draft_rows(gsm)
    default_risk = default_draft_model().scores(drafts.numeric)
    gain_labels = mmlu.device_ok & ~mmlu.cloud_ok
    per_seed: dict[str, dict[str, list[dict[str, float]]]] = {
        p: {"mmlu": [], "gsm8k": []} for p in POLICIES
    }
    curves: dict[str, dict[str, RoutingCurve]] = {}
    chosen_l2: list[float] = []
    inner_cv: list[dict[str, float]] = []
    pool_scores: dict[str, dict[str, np.ndarray]] = {}
    pool_mask = np.zeros(len(mmlu), dtype=bool)

    for n, seed in enumerate(seeds):
        train = domain_split(mmlu.groups, seed)
        test = ~train
        dev_t, cloud_t = mmlu.device_ok[test], mmlu.cloud_ok[test]
        scores: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
        for key in LEARNED:
            progress(f"seed {seed}: training {POLICIES[key]} on {train.sum()} MMLU prompts")
            model = train_step_router(rows[key].take(train))
            scores[key] = (scores_of(model, rows[key], test), scores_of(model, gsm_rows[key]))
            if n == 0 and key == "struct":
                # The shared protocol: the same split and the same scores as held_out_scores.
                check, mask = held_out_scores(rows[key], mmlu.groups, seed=seed)
                if not (np.array_equal(mask, test) and np.allclose(check, scores[key][0])):
                    raise SystemExit("the split differs from held_out_scores'")
        emb = rows["embedding"]
        progress(f"seed {seed}: choosing L2 by {INNER_FOLDS}-fold CV over the training domains")
        l2, means = choose_l2(
            emb.take(train), groups[train], mmlu.device_ok[train], mmlu.cloud_ok[train], seed
        )
        chosen_l2.append(l2)
        inner_cv.append(means)
        model = train_step_router(emb.take(train), l2=l2)
        scores["emb_cv"] = (scores_of(model, emb, test), scores_of(model, gsm_rows["embedding"]))
        progress(f"seed {seed}: expected-gain variation")
        other = train_step_router(with_labels(emb, gain_labels).take(train))
        base_m, base_g = scores["embedding"]
        assert base_m is not None and base_g is not None
        scores["emb_gain"] = (
            base_m - scores_of(other, emb, test),
            base_g - scores_of(other, gsm_rows["embedding"]),
        )
        scores["random"] = (np.zeros(int(test.sum())), np.zeros(len(gsm)))
        scores["oracle"] = (
            cloud_t.astype(float) - dev_t.astype(float),
            gsm.cloud_ok.astype(float) - gsm.device_ok.astype(float),
        )
        progress(f"seed {seed}: cascade draft model, cross-fitted over two halves of GSM8K")
        learned_risk, _ = held_out_scores(drafts, gsm.groups, seed=seed, kind="draft")
        scores["cascade_default"] = (None, default_risk)
        scores["cascade_learned"] = (None, learned_risk)

        for key, (on_mmlu, on_gsm) in scores.items():
            seed_curves = {}
            if on_mmlu is not None:
                seed_curves["mmlu"] = routing_curve(on_mmlu, dev_t, cloud_t)
            if on_gsm is not None:
                seed_curves["gsm8k"] = routing_curve(on_gsm, gsm.device_ok, gsm.cloud_ok)
            for where, curve in seed_curves.items():
                per_seed[key][where].append(figures(curve))
            if n == 0:
                curves[key] = seed_curves
        if n == 0:
            pool_mask = test
            pool_scores = {
                key: {"mmlu": m, "gsm8k": g}
                for key, (m, g) in scores.items()
                if key in (*LEARNED, "cascade_learned")
            }
        best = max(per_seed[k]["mmlu"][-1]["apgr"] for k in LEARNED)
        progress(f"seed {seed}: done (best learned APGR on held-out MMLU {best:.3f})")
    return SingleStep(per_seed, curves, chosen_l2, inner_cv, pool_scores, pool_mask)


def cost_rows(
    result: SingleStep, gsm: OutcomeSet, device_price: float, cloud_price: float
) -> list[dict[str, Any]]:
    """Cost per GSM8K prompt at each policy's CPT(80%), averaged over seeds."""
    dev, cloud = float(gsm.device_ok.mean()), float(gsm.cloud_ok.mean())
    rows: list[dict[str, Any]] = [
        {"policy": "all device", "cloud_share": 0.0, "accuracy": dev, "cost": device_price},
        {"policy": "all cloud", "cloud_share": 1.0, "accuracy": cloud, "cost": cloud_price},
    ]
    target = dev + 0.8 * (cloud - dev)
    for key, label, device_always in (
        ("embedding", "learned router + embeddings @ CPT(80%)", False),
        ("cascade_learned", "cascade, learned draft model @ CPT(80%)", True),
        ("cascade_default", "cascade, hand-set draft signs @ CPT(80%)", True),
        ("oracle", "oracle @ CPT(80%)", False),
    ):
        shares = np.array([v["cpt80"] for v in result.per_seed[key]["gsm8k"]])
        share = float(np.mean(shares))
        device_calls = 1.0 if device_always else 1.0 - share
        rows.append(
            {
                "policy": label,
                "cloud_share": share,
                "accuracy": target,
                "cost": device_calls * device_price + share * cloud_price,
                "device_call_on_every_prompt": device_always,
            }
        )
    for row in rows:
        row["saving_vs_all_cloud"] = cloud_price / row["cost"]
    return rows

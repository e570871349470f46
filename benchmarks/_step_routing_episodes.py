"""Multi-step episodes in benchmarks/step_routing.py (Hera's setting): episodes of real prompts,
steps or whole episodes moved to the cloud in each policy's order, success against cloud share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from _step_routing_single import LEARNED, SingleStep, progress

from fleetmind.agents import OutcomeSet

GOAL_RELATIVE = 0.95
GOAL_SHARE = 0.40
HERA = (0.463, 0.925)
"""Hera's reported point: 92.5% of cloud-only success with 46.3% of steps on the cloud."""

# Multi-step ----------------------------------------------------------------------------------


@dataclass
class Episodes:
    pool_index: np.ndarray  # per step instance: which pool prompt
    episode: np.ndarray  # per step instance: which episode
    lengths: np.ndarray  # per episode: K

    @property
    def steps(self) -> int:
        return int(self.pool_index.size)


def make_episodes(pool_size: int, count: int, seed: int) -> Episodes:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 11, size=count)
    index = [rng.choice(pool_size, size=int(k), replace=False) for k in lengths]
    return Episodes(
        np.concatenate(index),
        np.repeat(np.arange(count), lengths),
        lengths,
    )


@dataclass
class EpisodeCurve:
    """Outcomes as cloud steps are added: one point per step (or per episode, per task)."""

    cloud_steps: np.ndarray
    strict: np.ndarray  # episodes that succeed
    retry: np.ndarray  # episodes that succeed with one retry on the cloud
    retries: np.ndarray  # retries made (episodes with a failed step)


def simulate(
    eps: Episodes,
    device_ok: np.ndarray,
    cloud_ok: np.ndarray,
    order: np.ndarray,
    *,
    whole_episodes: bool = False,
) -> EpisodeCurve:
    """Move steps (or whole episodes) to the cloud in ``order``, tracking every episode's
    failed steps and whether its only failure could be rescued by a cloud retry."""
    d = device_ok[eps.pool_index].tolist()
    c = cloud_ok[eps.pool_index].tolist()
    ep = eps.episode.tolist()
    n_episodes = eps.lengths.size
    failed = np.bincount(eps.episode, weights=~device_ok[eps.pool_index], minlength=n_episodes)
    rescuable = np.bincount(
        eps.episode,
        weights=~device_ok[eps.pool_index] & cloud_ok[eps.pool_index],
        minlength=n_episodes,
    )
    f = failed.astype(int).tolist()
    r = rescuable.astype(int).tolist()
    strict = sum(1 for x in f if x == 0)
    retry = sum(1 for x, y in zip(f, r, strict=True) if x == 0 or (x == 1 and y == 1))
    retries = sum(1 for x in f if x >= 1)
    points = [(0, strict, retry, retries)]
    members: list[list[int]] = [[] for _ in range(n_episodes)]
    if whole_episodes:
        for i, e in enumerate(ep):
            members[e].append(i)
    moved = 0
    for item in order.tolist():
        instances = members[item] if whole_episodes else [item]
        for i in instances:
            e = ep[i]
            fe, re_ = f[e], r[e]
            strict -= fe == 0
            retry -= fe == 0 or (fe == 1 and re_ == 1)
            retries -= fe >= 1
            fe += (not c[i]) - (not d[i])
            if not d[i] and c[i]:
                re_ -= 1
            f[e], r[e] = fe, re_
            strict += fe == 0
            retry += fe == 0 or (fe == 1 and re_ == 1)
            retries += fe >= 1
            moved += 1
            if not whole_episodes:
                points.append((moved, strict, retry, retries))
        if whole_episodes:
            points.append((moved, strict, retry, retries))
    array = np.array(points, dtype=np.float64)
    return EpisodeCurve(array[:, 0], array[:, 1], array[:, 2], array[:, 3])


def value_at(share: np.ndarray, value: np.ndarray, target: float) -> float | None:
    """``value`` at ``target`` share, linear between the neighbouring points (None below the
    smallest share reachable: with retries, the retries alone are cloud steps)."""
    x = np.maximum.accumulate(share)
    if target < x[0] - 1e-12:
        return None
    i = int(np.searchsorted(x, target, side="left"))
    if i == 0:
        return float(value[0])
    if i >= x.size:
        return float(value[-1])
    if x[i] == x[i - 1]:
        return float(value[i])
    t = (target - x[i - 1]) / (x[i] - x[i - 1])
    return float(value[i - 1] + t * (value[i] - value[i - 1]))


def percentile_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value's rank percentile within its own group (ties: average rank)."""
    from scipy.stats import rankdata

    out = np.zeros(values.size)
    for g in np.unique(groups):
        mask = groups == g
        out[mask] = rankdata(values[mask]) / mask.sum()
    return out


STEP_POLICIES: dict[str, str] = {
    "per_task": "per task (emb)",
    "random": "step: random",
    "struct": "step: struct",
    "hashed": "step: hashed",
    "embedding": "step: emb",
    "emb_cascade": "step: emb+casc",
    "oracle": "step: oracle",
}
SHORT: dict[str, str] = {
    "per_task": "per-task",
    "random": "random",
    "struct": "struct",
    "hashed": "hashed",
    "embedding": "emb",
    "emb_cascade": "emb+casc",
    "oracle": "oracle",
}


def multi_step(
    mmlu: OutcomeSet,
    gsm: OutcomeSet,
    single: SingleStep,
    count: int,
    seed: int,
) -> dict[str, Any]:
    mask = single.pool_mask
    device_ok = np.concatenate([mmlu.device_ok[mask], gsm.device_ok])
    cloud_ok = np.concatenate([mmlu.cloud_ok[mask], gsm.cloud_ok])
    source = np.array(["mmlu"] * int(mask.sum()) + ["gsm8k"] * len(gsm))
    pool = {
        key: np.concatenate([single.pool_scores[key]["mmlu"], single.pool_scores[key]["gsm8k"]])
        for key in LEARNED
    }
    rng = np.random.default_rng(seed + 1)
    mixed = np.concatenate(
        [single.pool_scores["embedding"]["mmlu"], single.pool_scores["cascade_learned"]["gsm8k"]]
    )
    pool["emb_cascade"] = percentile_within(mixed, source)
    pool["random"] = rng.random(device_ok.size)
    gain = cloud_ok.astype(float) - device_ok.astype(float)
    pool["oracle"] = gain + 0.5 * rng.random(device_ok.size)  # ties broken at random
    eps = make_episodes(device_ok.size, count, seed)
    progress(
        f"episodes: {count} over a pool of {device_ok.size} prompts "
        f"({int(mask.sum())} held-out MMLU, {len(gsm)} GSM8K), {eps.steps} steps"
    )
    tie_break = rng.random(eps.steps)
    curves: dict[str, EpisodeCurve] = {}
    for key in STEP_POLICIES:
        if key == "per_task":
            per_episode = np.bincount(
                eps.episode, weights=pool["embedding"][eps.pool_index]
            ) / eps.lengths.astype(float)
            order = np.lexsort((rng.random(eps.lengths.size), -per_episode))
            curves[key] = simulate(eps, device_ok, cloud_ok, order, whole_episodes=True)
        else:
            order = np.lexsort((tie_break, -pool[key][eps.pool_index]))
            curves[key] = simulate(eps, device_ok, cloud_ok, order)
    steps = eps.steps
    cloud_only = curves["random"].strict[-1]
    device_only = curves["random"].strict[0]
    device_only_retry = curves["random"].retry[0]
    targets = sorted({round(x, 2) for x in np.arange(0, 1.0001, 0.05)} | {GOAL_SHARE})
    variants: dict[str, Any] = {}
    for variant in ("strict", "retry"):
        per_policy: dict[str, Any] = {}
        for key, curve in curves.items():
            if variant == "strict":
                share = curve.cloud_steps / steps
                success = curve.strict
            else:
                share = (curve.cloud_steps + curve.retries) / (steps + curve.retries)
                success = curve.retry
            relative = success / cloud_only
            stride = max(1, share.size // 400)
            reached = np.flatnonzero(relative >= GOAL_RELATIVE)
            per_policy[key] = {
                "label": STEP_POLICIES[key],
                "relative_at": {f"{t:.2f}": value_at(share, relative, t) for t in targets},
                "smallest_share_95": float(share[reached[0]]) if reached.size else None,
                "relative_at_40": value_at(share, relative, GOAL_SHARE),
                "curve": {
                    "cloud_share": [*share[::stride].round(5).tolist(), float(share[-1])],
                    "relative_success": [*relative[::stride].round(5).tolist(), relative[-1]],
                },
            }
        candidates = [k for k in per_policy if k not in ("oracle", "random")]
        best = max(candidates, key=lambda k: per_policy[k]["relative_at_40"] or 0.0)
        variants[variant] = {
            "policies": per_policy,
            "best_policy": best,
            "best_relative_at_40": per_policy[best]["relative_at_40"],
            "goal_met": (per_policy[best]["relative_at_40"] or 0.0) >= GOAL_RELATIVE,
            # The same for every policy: all steps on the device, retries only.
            "all_device_share": float(share[0]),
        }
    return {
        "episodes": count,
        "steps": steps,
        "mean_k": float(eps.lengths.mean()),
        "pool": {"mmlu": int(mask.sum()), "gsm8k": len(gsm)},
        "cloud_only_success": cloud_only / count,
        "device_only_success": device_only / count,
        "device_only_success_retry": device_only_retry / count,
        "variants": variants,
    }

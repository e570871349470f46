"""Step routing on real model outcomes: does a step go to the device model or the cloud model,
one step at a time (RouteLLM's setting) and in episodes of several steps (Hera's setting)?

The data
    RouteLLM's published outcomes (``--data``, default ``../shared/data/routellm`` beside the
    repository; see its README): for every MMLU question (57 domain files) and every GSM8K
    problem, whether Mixtral-8x7B (the device model here) and GPT-4 (the cloud model) answered
    it correctly, and for GSM8K Mixtral's full answers. ``load_outcomes`` leaves out the prompts
    listed in the contaminated files, so nothing here is ever trained or scored on them.

Single step (RouteLLM's metrics)
    A router scores each prompt; sweeping its threshold from all-device to all-cloud gives
    accuracy against the share of cloud calls. APGR = area of that curve above the device's
    accuracy over the cloud's gap (random 0.5); CPT(x%) = the smallest cloud share reaching the
    device's accuracy plus x% of the gap.

    - held-out MMLU domains: for each seed (``--seeds``), the 57 domain names are shuffled with
      that seed and a router is trained on half of the domains (labels from ``outcome_rows``:
      the cloud model right and the device model wrong) and scored on the other half, the
      protocol of ``held_out_scores`` (checked to give the same split and scores);
    - GSM8K: every problem, scored by the same per-seed routers (trained on the MMLU training
      half only: no prompt router ever sees GSM8K).

    Policies: random (all scores tied: the expected straight line, APGR exactly 0.5); the
    oracle (score = cloud right - device right); learned logistic routers on structural
    features only, plus hashed word n-grams (the router a device without torch can run), plus
    sentence embeddings (all-mpnet-base-v2, or all-MiniLM-L6-v2 with ``--light``/``--quick``).
    Two variations of the embedding router that use training data only are reported as extra
    rows: the L2 strength chosen by 3-fold cross-validation over the training domains (by
    APGR), and an expected-gain score (a second model for "device right, cloud wrong"; score =
    P(cloud only right) - P(device only right), which is what APGR rewards).

    Cascade (GSM8K only, where the device's real answers exist): the device answers every
    problem and its draft is escalated to the cloud when its warning signs score high. The
    curve's cloud share is the share of escalations; the device call is paid on every prompt.
    Two draft models: ``default_draft_model()`` (hand-set signs, no training) and a learned one,
    cross-fitted over two halves of the problems per seed (``held_out_scores(kind="draft")``).
    Costs per prompt use ``--device-price`` and ``--cloud-price`` (per call, assumed; defaults
    $0.0006 and $0.03, about RouteLLM's Mixtral vs GPT-4 ratio).

    RouteLLM's own figures (arXiv 2406.18665) are shown beside ours, where they could be
    sourced; see ``ROUTELLM_QUOTED`` for what they are and how sure they are. Their test sets
    are the whole of MMLU and GSM8K (minus contaminated prompts) and their routers were trained
    on Chatbot Arena preferences (plus, in the augmented rows, MMLU's validation split with
    golden labels), so the comparison is indicative only.

Multi-step episodes (Hera's setting)
    A pool of real prompts: the held-out MMLU prompts of the first seed plus every GSM8K
    problem, each with both models' outcomes and every policy's score (the first seed's
    routers). ``--episodes`` episodes (seeded): K uniform in 3..10, steps drawn from the pool
    without replacement within an episode. An episode succeeds when every step is answered
    correctly; in the one-retry variant, the first failed step is retried once on the cloud
    (one more cloud step, paid whether or not it helps; the data holds one cloud outcome per
    prompt, so a step the cloud got wrong stays wrong) and the episode succeeds if that was its
    only failure and the retry succeeded.

    Policies compared at matched shares of cloud steps (retries included in the retry variant):
    per task (an episode's score is the mean of its steps' embedding-router scores; whole
    episodes go to the cloud, best-scored first, interpolated between neighbouring episode
    counts); step level with one global threshold, for random scores, each learned router, and
    "learned + cascade" (GSM8K steps scored by the learned draft model's risk, MMLU steps by
    the embedding router; each converted to its rank percentile within its own source in the
    pool before mixing, since the two scores are not on one scale; the device call is then paid
    on every GSM8K step); and the step-level oracle (steps the device gets wrong and the cloud
    right first, then the others at random, steps the cloud gets wrong and the device right
    last). Figures: success relative to cloud-only against the share of cloud steps.

Goals (from the issue)
    APGR >= 0.65 on held-out MMLU domains and on GSM8K; in episodes, >= 95% of cloud-only
    success with <= 40% of steps on the cloud (Hera reports 92.5% at 46.3% in its own setting).

How to run
    .venv/bin/python benchmarks/step_routing.py                  # 5 seeds, 4000 episodes
    .venv/bin/python benchmarks/step_routing.py --quick          # 1 seed, 1000 episodes, MiniLM
    .venv/bin/python benchmarks/step_routing.py --json out.json --plots out/

    Embedding ~15,300 prompts is the slow part (all-mpnet-base-v2 on two CPU cores: tens of
    minutes the first time, about five times faster with MiniLM); embeddings are kept in an
    on-disk cache (``--cache``, default ``~/.cache/fleetmind-bench/embeddings.sqlite``), so
    later runs take a few minutes. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _harness import machine_base
from _step_routing_episodes import multi_step
from _step_routing_report import (
    ROUTELLM_NOTE,
    ROUTELLM_QUOTED,
    clean,
    goals,
    plot,
    print_goals,
    print_multi,
    print_single,
)
from _step_routing_single import (
    _START,
    INNER_FOLDS,
    L2_GRID,
    POLICIES,
    cost_rows,
    domain_split,
    featurise,
    make_embedder,
    progress,
    sampled,
    single_step,
    summary,
)

from fleetmind.agents import load_outcomes

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm"
DEFAULT_CACHE = Path.home() / ".cache" / "fleetmind-bench" / "embeddings.sqlite"
DEFAULT_MODEL = "all-mpnet-base-v2"
LIGHT_MODEL = "all-MiniLM-L6-v2"

# The run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_base()
    model = LIGHT_MODEL if args.light else DEFAULT_MODEL
    print(
        f"step_routing: python {machine['python']}, {machine['cpu_count']} CPU(s), load "
        f"{' '.join(f'{x:.2f}' for x in machine['load_average'])}; embeddings {model}; data "
        f"{args.data}"
    )
    sys.stdout.flush()
    mmlu = load_outcomes(args.data / "mmlu" / "responses")
    gsm = load_outcomes(args.data / "gsm8k" / "gsm8k_responses.csv")
    if gsm.device_responses is None or gsm.device_model != mmlu.device_model:
        raise SystemExit("unexpected data: GSM8K needs the device model's responses")
    if args.max_per_domain:
        keep = np.zeros(len(mmlu), dtype=bool)
        seen: dict[str, int] = {}
        for i, group in enumerate(mmlu.groups):
            seen[group] = seen.get(group, 0) + 1
            keep[i] = seen[group] <= args.max_per_domain
        left_out = mmlu.left_out
        mmlu = mmlu.subset(keep)
        mmlu.left_out = left_out
    progress(
        f"{len(mmlu)} MMLU prompts in {len(set(mmlu.groups))} domains and {len(gsm)} GSM8K "
        f"problems ({mmlu.left_out} + {gsm.left_out} contaminated left out); device "
        f"{mmlu.device_model}, cloud {mmlu.cloud_model}"
    )
    embedder = make_embedder(model, None if args.no_cache else args.cache)
    timings: dict[str, float] = {}
    started = time.monotonic()
    rows = featurise(mmlu, embedder, "MMLU")
    gsm_rows = featurise(gsm, embedder, "GSM8K")
    timings["features_s"] = time.monotonic() - started

    started = time.monotonic()
    seeds = list(range(args.seeds))
    single = single_step(mmlu, gsm, rows, gsm_rows, seeds)
    timings["single_step_s"] = time.monotonic() - started

    policies: dict[str, Any] = {}
    for key, label in POLICIES.items():
        if key == "embedding":
            label = f"{label} ({model})"
        entry: dict[str, Any] = {"label": label}
        for where in ("mmlu", "gsm8k"):
            values = single.per_seed[key][where]
            if values:
                entry[where] = summary(values)
                entry[where]["curve_seed0"] = sampled(single.curves[key][where])
        policies[key] = entry
    test_sizes, test_dev, test_cloud = [], [], []
    for seed in seeds:
        test = ~domain_split(mmlu.groups, seed)
        test_sizes.append(int(test.sum()))
        test_dev.append(float(mmlu.device_ok[test].mean()))
        test_cloud.append(float(mmlu.cloud_ok[test].mean()))
    doc: dict[str, Any] = {
        "benchmark": "step_routing",
        "machine": machine,
        "config": {
            "data": str(args.data),
            "embedding_model": model,
            "seeds": seeds,
            "episodes": args.episodes,
            "device_price": args.device_price,
            "cloud_price": args.cloud_price,
            "l2_grid": list(L2_GRID),
            "inner_folds": INNER_FOLDS,
            "max_per_domain": args.max_per_domain,
            "device_model": mmlu.device_model,
            "cloud_model": mmlu.cloud_model,
            "contaminated_left_out": {"mmlu": mmlu.left_out, "gsm8k": gsm.left_out},
        },
        "single_step": {
            "mmlu": {
                "domains": len(set(mmlu.groups)),
                "prompts": len(mmlu),
                "test_prompts_mean": float(np.mean(test_sizes)),
                "device_accuracy_mean": float(np.mean(test_dev)),
                "cloud_accuracy_mean": float(np.mean(test_cloud)),
            },
            "gsm8k": {
                "prompts": len(gsm),
                "device_accuracy": float(gsm.device_ok.mean()),
                "cloud_accuracy": float(gsm.cloud_ok.mean()),
            },
            "policies": policies,
            "inner_cv_l2": single.chosen_l2,
            "inner_cv_apgr": single.inner_cv,
            "costs": cost_rows(single, gsm, args.device_price, args.cloud_price),
        },
        "routellm_quoted": {**ROUTELLM_QUOTED, "note": ROUTELLM_NOTE},
    }
    started = time.monotonic()
    doc["multi_step"] = multi_step(mmlu, gsm, single, args.episodes, seed=0)
    timings["multi_step_s"] = time.monotonic() - started
    doc["goals"] = goals(doc)
    print_single(doc)
    print_multi(doc)
    print_goals(doc)
    paths = plot(doc, single, args.plots)
    doc["plots"] = [str(p) for p in paths]
    timings["total_s"] = time.monotonic() - _START
    doc["timings"] = timings
    print()
    for path in paths:
        print(f"plot: {path}")
    print(
        f"whole run: {timings['total_s']:.0f} s (features and embeddings "
        f"{timings['features_s']:.0f} s)"
    )
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"RouteLLM outcomes (default {DEFAULT_DATA})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument(
        "--plots",
        type=Path,
        default=Path("step_routing_plots"),
        help="folder for the PNG plots (default ./step_routing_plots)",
    )
    parser.add_argument("--seeds", type=int, help="domain splits (default 5; quick 1)")
    parser.add_argument("--episodes", type=int, help="episodes (default 4000; quick 1000)")
    parser.add_argument(
        "--light", action="store_true", help=f"embed with {LIGHT_MODEL} instead of {DEFAULT_MODEL}"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 1000 episodes, MiniLM")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"embedding cache (default {DEFAULT_CACHE})",
    )
    parser.add_argument("--no-cache", action="store_true", help="embed without the on-disk cache")
    parser.add_argument(
        "--device-price", type=float, default=0.0006, help="device call price (default 0.0006)"
    )
    parser.add_argument(
        "--cloud-price", type=float, default=0.03, help="cloud call price (default 0.03)"
    )
    parser.add_argument(
        "--max-per-domain",
        type=int,
        default=0,
        help="use at most this many prompts per MMLU domain (smoke runs; default: all)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.light = True
    args.seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    args.episodes = args.episodes if args.episodes is not None else (1000 if args.quick else 4000)
    if args.seeds < 1 or args.episodes < 1:
        parser.error("--seeds and --episodes must be at least 1")
    doc = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(clean(doc), indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
